//! `h2load` (Debian's `nghttp2-client`) as an HTTP/2 load: a fixed number of connections,
//! each with several concurrent streams, for a fixed duration; its report parsed strictly.

use std::io;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running h2load.
#[derive(Debug)]
pub struct H2load {
    child: Option<Child>,
}

/// What h2load reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct H2Report {
    /// Requests sent.
    pub started: u64,
    /// Requests finished.
    pub done: u64,
    /// Requests answered with 2xx or 3xx.
    pub succeeded: u64,
    /// Requests that got no usable response (refused streams, resets, 4xx/5xx).
    pub failed: u64,
    /// Requests that met a connection error.
    pub errored: u64,
    /// Requests that timed out.
    pub timeout: u64,
    /// Requests h2load meant to send on a connection that had received GOAWAY, and so never
    /// sent (its `Process Request Failure:N` lines; it counts them as failed and errored,
    /// and it does not reconnect). A client that reconnects sends them elsewhere.
    pub unsent: u64,
    /// The protocol it negotiated (`h2c`, `h2`).
    pub protocol: String,
    /// h2load's own text, for failure messages.
    pub raw: String,
}

impl H2Report {
    /// Requests sent that did not succeed: failed ones other than [`H2Report::unsent`], and
    /// those sent and never finished (h2load does not count a stream lost with its
    /// connection as failed).
    pub fn failures(&self) -> u64 {
        self.failed.saturating_sub(self.unsent) + self.started.saturating_sub(self.done)
    }
}

impl Drop for H2load {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl H2load {
    /// Starts `h2load` against `url` (`http://` is h2c with prior knowledge) with `clients`
    /// connections of `streams` concurrent streams each, for `duration`; extra arguments
    /// (e.g. TLS options) follow.
    pub fn start(
        url: &str,
        clients: u32,
        streams: u32,
        duration: Duration,
        extra: &[&str],
    ) -> io::Result<H2load> {
        let child = Command::new("h2load")
            .args([
                "-c",
                &clients.to_string(),
                "-m",
                &streams.to_string(),
                "-D",
                &duration.as_secs().max(1).to_string(),
                "-T",
                "10",
            ])
            .args(extra)
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run h2load ({e}); apt-get install nghttp2-client"),
                )
            })?;
        Ok(H2load { child: Some(child) })
    }

    /// Waits for h2load to end (its duration) and parses its report.
    pub fn finish(mut self) -> io::Result<H2Report> {
        let child = self.child.take().expect("finish runs once");
        let out = child.wait_with_output()?;
        let raw = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        parse(&raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Parses h2load's report: the `requests:` line (`N total, N started, N done, N succeeded,
/// N failed, N errored, N timeout`) and the `Application protocol:` line.
///
/// # Errors
/// When the requests line is missing or a count does not parse: a report we cannot read
/// must not pass as "no failures".
pub fn parse(raw: &str) -> Result<H2Report, String> {
    let mut r = H2Report {
        raw: raw.to_string(),
        ..Default::default()
    };
    let mut saw = false;
    for line in raw.lines().map(str::trim) {
        if let Some(p) = line.strip_prefix("Application protocol:") {
            r.protocol = p.trim().to_string();
        }
        // Cumulative: the last one counts them all.
        if let Some(n) = line.strip_prefix("Process Request Failure:") {
            r.unsent = n
                .trim()
                .parse()
                .map_err(|_| format!("h2load's report: {line:?} in:\n{raw}"))?;
        }
        let Some(rest) = line.strip_prefix("requests:") else {
            continue;
        };
        for part in rest.split(',') {
            let mut kv = part.split_whitespace();
            let (Some(n), Some(k)) = (kv.next(), kv.next()) else {
                return Err(format!("h2load's report: cannot read {part:?} in:\n{raw}"));
            };
            let n: u64 = n
                .parse()
                .map_err(|_| format!("h2load's report: {k} count {n:?} in:\n{raw}"))?;
            match k {
                "started" => r.started = n,
                "done" => r.done = n,
                "succeeded" => r.succeeded = n,
                "failed" => r.failed = n,
                "errored" => r.errored = n,
                "timeout" => r.timeout = n,
                _ => {}
            }
        }
        saw = true;
    }
    if !saw {
        return Err(format!("h2load's report has no requests line:\n{raw}"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_h2loads_report() {
        let raw = "Application protocol: h2c\n\
                   Process Request Failure:2\n\
                   Process Request Failure:4\n\
                   requests: 2000 total, 2000 started, 1990 done, 1980 succeeded, 10 failed, 3 errored, 1 timeout\n";
        let r = parse(raw).unwrap();
        assert_eq!(
            (r.done, r.succeeded, r.failed, r.errored, r.timeout),
            (1990, 1980, 10, 3, 1)
        );
        assert_eq!(r.protocol, "h2c");
        assert_eq!(r.unsent, 4);
        // 6 failed once sent, and 10 sent and never finished.
        assert_eq!(r.failures(), 16);
        assert!(parse("no report").is_err());
        assert!(parse("requests: x total").is_err());
    }
}
