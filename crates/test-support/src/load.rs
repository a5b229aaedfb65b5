//! wrk as the load generator: keep-alive connections that never retry, so every dropped
//! or reset request shows up in its counters.

use std::io;
use std::process::{Child, Command, Stdio};

/// A wrk run in the background.
#[derive(Debug)]
pub struct Wrk {
    /// `None` once [`Wrk::finish`] took it.
    child: Option<Child>,
}

/// A test that fails before [`Wrk::finish`] must not leave wrk running for an hour.
impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What wrk counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkReport {
    /// Requests completed.
    pub requests: u64,
    /// Responses that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// Failed connects.
    pub connect_errors: u64,
    /// Read errors (resets, closes without a response).
    pub read_errors: u64,
    /// Write errors.
    pub write_errors: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest request, ms.
    pub max_ms: f64,
    /// wrk's own text, for failure messages.
    pub raw: String,
}

impl WrkReport {
    /// Every kind of failure added up.
    pub fn failures(&self) -> u64 {
        self.non_2xx + self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }
}

impl Wrk {
    /// Starts `wrk` against `url` with `connections` keep-alive connections on `threads`
    /// threads; it runs until [`Wrk::finish`].
    pub fn start(url: &str, connections: u32, threads: u32) -> io::Result<Wrk> {
        let child = Command::new("wrk")
            .args([
                "-t",
                &threads.to_string(),
                "-c",
                &connections.to_string(),
                "-d",
                "3600s",
                "--timeout",
                "10s",
                "--latency",
                url,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run wrk ({e}); apt-get install wrk"),
                )
            })?;
        Ok(Wrk { child: Some(child) })
    }

    /// Stops wrk (SIGINT, after which it prints its report) and parses the report.
    ///
    /// # Errors
    /// When wrk cannot be signalled or waited for, or its report does not parse (see
    /// [`parse`]): a report we cannot read must not pass as "no failures".
    pub fn finish(mut self) -> io::Result<WrkReport> {
        let mut child = self.child.take().expect("finish runs once");
        if let Err(e) = crate::agent::signal(child.id(), "INT") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let out = child.wait_with_output()?;
        let raw = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        parse(&raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Parses wrk's text report.
///
/// # Errors
/// When the report has no `N requests in T` line, when a number in it does not parse, or
/// when a socket error kind is not one wrk 4 prints (`connect`, `read`, `write`, `timeout`):
/// a change in wrk's output must fail the test that reads it, not turn into zeros. The
/// message names the line and carries the whole report.
pub fn parse(raw: &str) -> Result<WrkReport, String> {
    let mut r = WrkReport {
        raw: raw.to_string(),
        ..Default::default()
    };
    let bad = |what: &str, line: &str| {
        format!("wrk's report: cannot read {what} in line {line:?}; the whole report:\n{raw}")
    };
    let mut saw_total = false;
    for line in raw.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        if t.contains(" requests in ") {
            r.requests = words[0].parse().map_err(|_| bad("the request count", t))?;
            saw_total = true;
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().map_err(|_| bad("the non-2xx count", t))?;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            for part in v.split(',') {
                let mut kv = part.split_whitespace();
                let (Some(k), Some(n), None) = (kv.next(), kv.next(), kv.next()) else {
                    return Err(bad("a socket error count", t));
                };
                let n = n
                    .parse()
                    .map_err(|_| bad(&format!("the {k} error count"), t))?;
                match k {
                    "connect" => r.connect_errors = n,
                    "read" => r.read_errors = n,
                    "write" => r.write_errors = n,
                    "timeout" => r.timeouts = n,
                    _ => return Err(bad(&format!("socket error kind {k:?}"), t)),
                }
            }
        } else if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().map_err(|_| bad("requests/sec", t))?;
        } else if words.first() == Some(&"50%") {
            r.p50_ms = millis(words.get(1).copied().unwrap_or("")).ok_or_else(|| bad("p50", t))?;
        } else if words.first() == Some(&"99%") {
            r.p99_ms = millis(words.get(1).copied().unwrap_or("")).ok_or_else(|| bad("p99", t))?;
        } else if words.first() == Some(&"Latency") && words.len() >= 4 {
            r.max_ms = millis(words[3]).ok_or_else(|| bad("the slowest latency", t))?;
        }
    }
    if !saw_total {
        return Err(format!(
            "wrk's report has no \"N requests in T\" line (did wrk run?):\n{raw}"
        ));
    }
    Ok(r)
}

/// `812.00us`, `6.89ms`, `1.20s`, `2.00m` → milliseconds; `None` for anything else.
fn millis(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().ok()?;
    match unit {
        "us" => Some(v / 1000.0),
        "ms" => Some(v),
        "s" => Some(v * 1000.0),
        "m" => Some(v * 60_000.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report_with_errors() {
        let raw = "Running 30s test @ http://127.0.0.1:1/\n  1 threads and 4 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     6.81ms    3.36ms   1.20s   65.00%\n    Req/Sec   585.15    126.52     0.95k    85.00%\n  Latency Distribution\n     50%  812.00us\n     75%    9.05ms\n     90%   10.93ms\n     99%   16.02ms\n  1166 requests in 2.00s, 3.69MB read\n  Socket errors: connect 0, read 2, write 1, timeout 0\n  Non-2xx or 3xx responses: 3\nRequests/sec:    582.11\n";
        let r = parse(raw).unwrap();
        assert_eq!(r.requests, 1166);
        assert_eq!(r.read_errors, 2);
        assert_eq!(r.write_errors, 1);
        assert_eq!(r.non_2xx, 3);
        assert_eq!(r.failures(), 6);
        assert!((r.p50_ms - 0.812).abs() < 1e-9);
        assert!((r.max_ms - 1200.0).abs() < 1e-9);
        assert!((r.rps - 582.11).abs() < 1e-9);
    }

    const CLEAN: &str = "Running 2s test @ http://127.0.0.1:1/\n  1 threads and 4 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.00ms    0.10ms   2.00ms   65.00%\n  Latency Distribution\n     50%  1.00ms\n     99%    2.00ms\n  800 requests in 2.00s, 1.00MB read\nRequests/sec:    400.00\n";

    #[test]
    fn a_report_without_errors_has_zero_failures() {
        let r = parse(CLEAN).unwrap();
        assert_eq!(r.requests, 800);
        assert_eq!(r.failures(), 0);
    }

    #[test]
    fn a_count_that_does_not_parse_is_an_error_not_zero() {
        for (from, to) in [
            (
                "Requests/sec:",
                "Socket errors: connect 0, read lots, write 0, timeout 0\nRequests/sec:",
            ),
            (
                "Requests/sec:",
                "Socket errors: connect 0, read 1, resets 2\nRequests/sec:",
            ),
            (
                "Requests/sec:",
                "Socket errors: connect 0 read 1\nRequests/sec:",
            ),
            (
                "Requests/sec:",
                "Non-2xx or 3xx responses: 1.5k\nRequests/sec:",
            ),
            ("800 requests in", "8k requests in"),
            ("400.00", "fast"),
            ("50%  1.00ms", "50%  1.00 ms"),
        ] {
            let raw = CLEAN.replace(from, to);
            assert_ne!(raw, CLEAN);
            let e = parse(&raw).expect_err(&raw);
            assert!(e.contains("cannot read") && e.contains(&raw), "{e}");
        }
    }

    #[test]
    fn a_report_without_a_total_is_an_error() {
        let raw = CLEAN.replace("  800 requests in 2.00s, 1.00MB read\n", "");
        let e = parse(&raw).unwrap_err();
        assert!(e.contains("requests in"), "{e}");
    }
}
