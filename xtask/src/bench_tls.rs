//! `cargo xtask bench tls`: HTTPS served by the blargh library itself (rustls, in
//! examples/hello) against the same app behind nginx terminating TLS, side by side in one
//! run: TLS handshakes per second (`openssl s_time -new`), and requests per second over
//! HTTP/1.1 and HTTP/2 (h2load). Ratios are library / nginx (goal ≥ 1.0: no hop should beat
//! a hop). No assertions; record the output in docs/benchmarks.md.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use test_support::agent::free_port;
use test_support::h2load::H2load;
use test_support::hello::Profile;

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) -> Result<(), String> {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("nothing listens on 127.0.0.1:{port} after 10 s"))
}

fn hello(bin: &Path, port: u16, tls: Option<(&Path, &Path)>) -> Result<Running, String> {
    let mut cmd = Command::new(bin);
    cmd.env("HELLO_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((cert, key)) = tls {
        cmd.env("HELLO_TLS_CERT", cert).env("HELLO_TLS_KEY", key);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start hello: {e}"))?;
    let r = Running(child);
    wait_for_port(port)?;
    Ok(r)
}

fn nginx(dir: &Path, port: u16, upstream: u16, cert: &Path, key: &Path) -> Result<Running, String> {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\nuser root;\nerror_log stderr error;\npid {pid};\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 100000000;\n\
               upstream hello {{ server 127.0.0.1:{upstream}; keepalive 256; keepalive_requests 100000000; }}\n\
               server {{\n    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 location / {{ proxy_pass http://hello; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run nginx ({e}); apt-get install nginx"))?;
    let r = Running(child);
    wait_for_port(port)?;
    Ok(r)
}

/// New TLS connections per second, `openssl s_time -new` for `secs`.
fn handshakes(port: u16, secs: u64) -> Result<f64, String> {
    let out = Command::new("openssl")
        .args(["s_time", "-new", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-time", &secs.to_string()])
        .output()
        .map_err(|e| format!("cannot run openssl s_time: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "1234 connections in 5.01s; 246.31 connections/user sec, bytes read 0"
    text.lines()
        .find(|l| l.contains("connections/user sec"))
        .and_then(|l| l.split("; ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("openssl s_time said:\n{text}"))
}

/// Requests per second over `secs` with h2load: HTTP/1.1 (`--h1`) or h2, 16 connections.
fn throughput(port: u16, secs: u64, h1: bool) -> Result<(f64, u64), String> {
    let extra: &[&str] = if h1 { &["--h1"] } else { &["-m", "10"] };
    let r = H2load::start(
        &format!("https://127.0.0.1:{port}/"),
        16,
        if h1 { 1 } else { 10 },
        Duration::from_secs(secs),
        if h1 { extra } else { &[] },
    )
    .and_then(|l| l.finish())
    .map_err(|e| e.to_string())?;
    Ok((r.done as f64 / secs as f64, r.failures()))
}

/// Runs the comparison; `secs` per phase.
pub fn run(secs: u64) -> Result<(), String> {
    for (tool, pkg) in [
        ("nginx", "nginx"),
        ("h2load", "nghttp2-client"),
        ("openssl", "openssl"),
    ] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(format!("{tool} is not installed: apt-get install {pkg}"));
        }
    }
    let (_, v1, _) = crate::build_all(Profile::Release)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (cert, key) = test_support::certs::self_signed(dir.path()).map_err(|e| e.to_string())?;
    let (direct, plain, proxied) = (free_port(), free_port(), free_port());
    let _lib = hello(&v1, direct, Some((&cert, &key)))?;
    let _app = hello(&v1, plain, None)?;
    let _nginx = nginx(dir.path(), proxied, plain, &cert, &key)?;
    println!(
        "# TLS: the library against nginx\n\nmachine: {}\nexamples/hello --release; {secs} s per phase; one machine runs server and client\n",
        crate::bench::machine()
    );
    println!("| | blargh (rustls in the app) | nginx → app | ratio |\n|---|---|---|---|");
    let (a, b) = (handshakes(direct, secs)?, handshakes(proxied, secs)?);
    println!(
        "| TLS handshakes/s (`openssl s_time -new`) | {a:.0} | {b:.0} | **{:.2}** |",
        a / b
    );
    for (name, h1) in [
        ("HTTP/1.1 requests/s (h2load --h1, 16 conns)", true),
        ("h2 requests/s (h2load, 16 conns × 10 streams)", false),
    ] {
        let (a, fa) = throughput(direct, secs, h1)?;
        let (b, fb) = throughput(proxied, secs, h1)?;
        println!(
            "| {name} | {a:.0} ({fa} not answered) | {b:.0} ({fb} not answered) | **{:.2}** |",
            a / b
        );
    }
    println!(
        "\n\"Not answered\": requests in flight when h2load stopped at the end of the phase (or \
         failed). nginx runs one worker per core (`worker_processes auto`) with \
         `keepalive_requests` raised: at its default of 1000, nginx closes each connection \
         after 1000 requests and h2load, which does not reconnect, stops there."
    );
    println!(
        "\nFailed streams across activations under h2 load: `cargo test -p cargo-blargh --test h2_drain` (0 sent streams lost)."
    );
    Ok(())
}
