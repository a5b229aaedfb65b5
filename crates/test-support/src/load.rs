//! wrk as the load generator: keep-alive connections that never retry, so every dropped
//! or reset request shows up in its counters.

use std::io;
use std::process::{Child, Command, Stdio};

/// A wrk run in the background.
#[derive(Debug)]
pub struct Wrk {
    child: Child,
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
        Ok(Wrk { child })
    }

    /// Stops wrk (SIGINT, after which it prints its report) and parses the report.
    pub fn finish(self) -> io::Result<WrkReport> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status()?;
        let out = self.child.wait_with_output()?;
        let raw = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        Ok(parse(&raw))
    }
}

/// Parses wrk's text report.
pub fn parse(raw: &str) -> WrkReport {
    let mut r = WrkReport {
        raw: raw.to_string(),
        ..Default::default()
    };
    for line in raw.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        if t.contains(" requests in ") {
            r.requests = words[0].parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            for part in v.split(',') {
                let mut kv = part.split_whitespace();
                let (Some(k), Some(n)) = (kv.next(), kv.next()) else {
                    continue;
                };
                let n = n.parse().unwrap_or(0);
                match k {
                    "connect" => r.connect_errors = n,
                    "read" => r.read_errors = n,
                    "write" => r.write_errors = n,
                    "timeout" => r.timeouts = n,
                    _ => {}
                }
            }
        } else if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        } else if words.first() == Some(&"50%") {
            r.p50_ms = millis(words.get(1).copied().unwrap_or(""));
        } else if words.first() == Some(&"99%") {
            r.p99_ms = millis(words.get(1).copied().unwrap_or(""));
        } else if words.first() == Some(&"Latency") && words.len() >= 4 {
            r.max_ms = millis(words[3]);
        }
    }
    r
}

/// `812.00us`, `6.89ms`, `1.20s`, `2.00m` → milliseconds.
fn millis(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report_with_errors() {
        let raw = "Running 30s test @ http://127.0.0.1:1/\n  1 threads and 4 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     6.81ms    3.36ms   1.20s   65.00%\n    Req/Sec   585.15    126.52     0.95k    85.00%\n  Latency Distribution\n     50%  812.00us\n     75%    9.05ms\n     90%   10.93ms\n     99%   16.02ms\n  1166 requests in 2.00s, 3.69MB read\n  Socket errors: connect 0, read 2, write 1, timeout 0\n  Non-2xx or 3xx responses: 3\nRequests/sec:    582.11\n";
        let r = parse(raw);
        assert_eq!(r.requests, 1166);
        assert_eq!(r.read_errors, 2);
        assert_eq!(r.write_errors, 1);
        assert_eq!(r.non_2xx, 3);
        assert_eq!(r.failures(), 6);
        assert!((r.p50_ms - 0.812).abs() < 1e-9);
        assert!((r.max_ms - 1200.0).abs() < 1e-9);
        assert!((r.rps - 582.11).abs() < 1e-9);
    }
}
