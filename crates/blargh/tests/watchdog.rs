//! The watchdog ping: `WATCHDOG=1` every half `WATCHDOG_USEC` from a task of the app's
//! runtime, and none while every worker thread is blocked (so the agent sees a hung app).
//! Its own test binary: it sets the process's environment.

#![cfg(feature = "tokio")]

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Datagrams received on `sock` within `window`.
fn received(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    while let Some(left) = window.checked_sub(t0.elapsed()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn pings_come_from_the_runtime_and_stop_while_its_workers_are_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // SAFETY: this test binary runs this one test, before any runtime starts.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "200000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    }
    assert_eq!(
        blargh::notify::watchdog_interval(),
        Some(Duration::from_millis(100))
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pings = rt.block_on(async { blargh::notify::spawn_watchdog() });
    assert!(pings.is_some(), "a watched process pings");

    let alive = received(&sock, Duration::from_millis(450));
    assert!(
        alive.len() >= 3 && alive.iter().all(|d| d.trim_end() == "WATCHDOG=1"),
        "every 100 ms: {alive:?}"
    );

    // Block both workers (and a spare task for the slot a blocked worker keeps).
    for _ in 0..4 {
        rt.spawn(async { std::thread::sleep(Duration::from_millis(1200)) });
    }
    std::thread::sleep(Duration::from_millis(150)); // a ping already on its way
    let _ = received(&sock, Duration::from_millis(1));
    let hung = received(&sock, Duration::from_millis(600));
    assert!(
        hung.is_empty(),
        "no ping while the runtime is stuck: {hung:?}"
    );

    // Another process's WATCHDOG_USEC is not ours.
    unsafe { std::env::set_var("WATCHDOG_PID", "1") };
    assert_eq!(blargh::notify::watchdog_interval(), None);
    drop(rt);
}
