//! A tiny blocking HTTP/1.1 client for probes (one request per connection). Load comes
//! from wrk; this only asks "who answers?" and "how long did it take?".

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A response: status, body, and the time it took.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body (the whole rest of the stream after the headers).
    pub body: String,
    /// From connect to the last byte.
    pub elapsed: Duration,
}

/// `GET path` on 127.0.0.1:port with `Connection: close`.
pub fn get(port: u16, path: &str) -> io::Result<Response> {
    send(port, path)?.response()
}

/// A request sent on an open connection whose response has not been read yet.
#[derive(Debug)]
pub struct Pending {
    stream: TcpStream,
    t0: Instant,
}

/// Connects to 127.0.0.1:port and sends `GET path` with `Connection: close`, without
/// waiting for the answer: the connection is established (by the kernel, in the listening
/// socket's backlog, even when no process is accepting) when this returns.
pub fn send(port: u16, path: &str) -> io::Result<Pending> {
    let t0 = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    Ok(Pending { stream, t0 })
}

impl Pending {
    /// True when some of the response has arrived (or the peer closed), without waiting.
    pub fn answered_yet(&self) -> io::Result<bool> {
        self.stream.set_nonblocking(true)?;
        let mut byte = [0u8; 1];
        let r = self.stream.peek(&mut byte);
        self.stream.set_nonblocking(false)?;
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads the whole response (up to 30 s).
    pub fn response(mut self) -> io::Result<Response> {
        let mut raw = Vec::new();
        self.stream.read_to_end(&mut raw)?;
        parse(&raw, self.t0.elapsed())
    }
}

/// Opens `GET path` and returns the stream positioned after the response headers, for
/// reading a streaming body as it arrives.
pub fn open_stream(port: u16, path: &str) -> io::Result<(u16, io::BufReader<TcpStream>)> {
    use io::BufRead;
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = io::BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status = status_code(&status_line)?;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
    }
    Ok((status, r))
}

fn status_code(line: &str) -> io::Result<u16> {
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })
}

fn parse(raw: &[u8], elapsed: Duration) -> io::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no header end in {text:?}"),
        )
    })?;
    let status = status_code(head.lines().next().unwrap_or(""))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        body,
        elapsed,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
