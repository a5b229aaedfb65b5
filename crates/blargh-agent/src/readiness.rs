//! Knowing that a new process is ready when it cannot say `READY=1`: an HTTP `GET` of the
//! configured path on a listener only that process holds (`ready = { http = "/up" }`), or
//! a command that exits 0 once it is (`ready = { exec = [...] }`).
//!
//! The shared listening sockets cannot be used for this: the process being replaced
//! accepts on them too, and would answer for the new one.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sockets::Listener;

/// How long one try may take (connect, request, status line).
const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between tries.
const TRY_EVERY: Duration = Duration::from_millis(100);

/// A listener on a free loopback port, named [`blargh_proto::env::READY_LISTENER`], for one
/// process to serve its readiness path on; and its address, for [`wait_until_ready`].
pub fn private_listener() -> io::Result<(Listener, SocketAddr)> {
    let socket = TcpListener::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    Ok((
        Listener {
            name: blargh_proto::env::READY_LISTENER.to_string(),
            socket,
        },
        addr,
    ))
}

/// Asks `GET path` at `addr` until an answer's status is 2xx; returns then. The caller
/// bounds the wait (the ready timeout).
pub async fn wait_until_ready(addr: SocketAddr, path: &str) {
    loop {
        if let Ok(Ok(true)) = tokio::time::timeout(TRY_TIMEOUT, answers_2xx(addr, path)).await {
            return;
        }
        tokio::time::sleep(TRY_EVERY).await;
    }
}

/// How long one run of a readiness command may take before it is killed (a failed try).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between runs of a readiness command (each is a fork and an exec).
const COMMAND_EVERY: Duration = Duration::from_millis(250);

/// A readiness command, ready to run as the app's user (see [`crate::spawn::run_once`]).
#[derive(Debug, Clone)]
pub struct ReadyCommand {
    /// The release it checks.
    pub release: String,
    /// The command, `{bin}` replaced.
    pub argv: Vec<String>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// Its working directory (the data directory, or a tree release's tree).
    pub workdir: std::path::PathBuf,
    /// The agent's run directory.
    pub run_dir: std::path::PathBuf,
    /// Uid and gid to run as.
    pub run_as: Option<(u32, u32)>,
    /// The agent's executable (the trampoline).
    pub trampoline: std::path::PathBuf,
}

impl ReadyCommand {
    /// Runs the command every [`COMMAND_EVERY`] until it exits 0; returns then. The caller
    /// bounds the wait (the ready timeout).
    pub async fn wait_until_ready(self) {
        let Some((program, args)) = self.argv.split_first() else {
            return std::future::pending().await;
        };
        loop {
            let spec = crate::spawn::SpawnSpec {
                release: &self.release,
                app: program,
                binary: std::path::PathBuf::from(program),
                args: Vec::new(),
                verify: std::path::PathBuf::from(program),
                workdir: self.workdir.clone(),
                listeners: &[],
                env: self.env.clone(),
                run_dir: self.run_dir.clone(),
                run_as: self.run_as,
                trampoline: self.trampoline.clone(),
            };
            if let Ok(out) = crate::spawn::run_once(spec, args, COMMAND_TIMEOUT).await
                && out.status == Some(0)
            {
                return;
            }
            tokio::time::sleep(COMMAND_EVERY).await;
        }
    }
}

/// One try: true when the status line says 2xx.
async fn answers_2xx(addr: SocketAddr, path: &str) -> io::Result<bool> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: blargh-agent\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    // "HTTP/1.1 200": the status code is bytes 9 to 11.
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match s.read(&mut head[got..]).await? {
            0 => return Ok(false),
            n => got += n,
        }
    }
    Ok(status_is_2xx(&head))
}

/// True for a status line starting `HTTP/1.x 2nn`.
fn status_is_2xx(head: &[u8; 12]) -> bool {
    head.starts_with(b"HTTP/1.")
        && head[8] == b' '
        && head[9] == b'2'
        && head[10].is_ascii_digit()
        && head[11].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_2xx_status_line_counts() {
        assert!(status_is_2xx(b"HTTP/1.1 200"));
        assert!(status_is_2xx(b"HTTP/1.0 204"));
        assert!(!status_is_2xx(b"HTTP/1.1 503"));
        assert!(!status_is_2xx(b"HTTP/1.1 302"));
        assert!(!status_is_2xx(b"SSH-2.0-Open"));
        assert!(!status_is_2xx(b"HTTP/1.1 2xx"));
    }

    /// A server that says 503 twice, then 200: the wait ends after the third request, and
    /// every request asked for the path.
    #[tokio::test]
    async fn waits_through_refusals_until_a_2xx() {
        let (listener, addr) = private_listener().unwrap();
        assert_eq!(listener.name, "blargh-ready");
        listener.socket.set_nonblocking(true).unwrap();
        let server = tokio::net::TcpListener::from_std(listener.socket).unwrap();
        let served = tokio::spawn(async move {
            let mut requests = Vec::new();
            for status in [
                "503 Service Unavailable",
                "503 Service Unavailable",
                "200 OK",
            ] {
                let (mut c, _) = server.accept().await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = c.read(&mut buf).await.unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                c.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
            requests
        });
        tokio::time::timeout(Duration::from_secs(10), wait_until_ready(addr, "/up"))
            .await
            .expect("ready after the 200");
        let requests = served.await.unwrap();
        assert_eq!(requests.len(), 3);
        assert!(
            requests
                .iter()
                .all(|r| r.starts_with("GET /up HTTP/1.1\r\n")),
            "{requests:?}"
        );
    }

    /// Nothing listening, or a listener that never answers: the wait goes on (the caller's
    /// timeout ends it).
    #[tokio::test]
    async fn silence_is_not_readiness() {
        let (listener, addr) = private_listener().unwrap();
        let waited =
            tokio::time::timeout(Duration::from_millis(600), wait_until_ready(addr, "/up")).await;
        assert!(
            waited.is_err(),
            "a listener that never answers is not ready"
        );
        drop(listener);
        let waited =
            tokio::time::timeout(Duration::from_millis(400), wait_until_ready(addr, "/up")).await;
        assert!(waited.is_err(), "a closed port is not ready");
    }
}
