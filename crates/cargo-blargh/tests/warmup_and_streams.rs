//! The old release serves until the new one is ready, however long it warms up; a
//! streaming response keeps streaming from the old release until it ends, or until the
//! drain deadline.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use test_support::agent::{AgentOptions, TestAgent};
use test_support::hello::{self, Profile};
use test_support::http;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

#[test]
fn requests_are_not_stalled_by_a_slow_warm_up() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            env: vec![("HELLO_WARMUP_MS".into(), "3000".into())],
            ..Default::default()
        },
    );
    let r1 = agent.receive(&v1, "v1");
    let r2 = agent.receive(&v2, "v2");
    agent.activate(&r1).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let port = agent.port();
    let probe = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let at = Instant::now();
                seen.push((at, http::get(port, "/")));
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    let t0 = Instant::now();
    let a = agent.activate(&r2).unwrap();
    let switched = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let seen = probe.join().unwrap();

    assert!(a.ready_ms >= 3000, "the warm-up was honoured: {a:?}");
    let mut slowest = Duration::ZERO;
    for (at, r) in &seen {
        let r = r.as_ref().expect("every probe request succeeds");
        assert_eq!(r.status, 200);
        slowest = slowest.max(r.elapsed);
        if *at < t0 + Duration::from_millis(2900) {
            assert!(
                r.body.starts_with("hello from v1 "),
                "old release serves during warm-up: {}",
                r.body
            );
        }
        if *at > switched {
            assert!(
                r.body.starts_with("hello from v2 "),
                "new release after the switch: {}",
                r.body
            );
        }
    }
    eprintln!("{} probe requests, slowest {slowest:?}", seen.len());
    assert!(seen.len() > 50);
    // A stall behind the warm-up would take about 3 s.
    assert!(
        slowest < Duration::from_secs(1),
        "a request stalled for {slowest:?}"
    );
}

#[test]
fn a_stream_opened_before_a_switch_finishes_from_the_old_release() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let r1 = agent.receive(&v1, "v1");
    let r2 = agent.receive(&v2, "v2");
    agent.activate(&r1).unwrap();

    let (status, mut stream) =
        http::open_stream(agent.port(), "/stream?ticks=25&interval_ms=100").unwrap();
    assert_eq!(status, 200);
    let mut first = String::new();
    stream.read_line(&mut first).unwrap();
    agent.activate(&r2).unwrap();
    let r = http::get(agent.port(), "/").unwrap();
    assert!(r.body.starts_with("hello from v2 "), "{}", r.body);

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stream, &mut rest).unwrap();
    let ticks: Vec<&str> = std::iter::once(first.as_str())
        .chain(rest.lines())
        .filter(|l| l.contains("tick"))
        .collect();
    assert_eq!(ticks.len(), 25, "the whole stream arrived: {rest}");
    assert!(ticks.iter().all(|t| t.contains("from v1")), "{ticks:?}");
}

#[test]
fn a_stream_longer_than_the_drain_deadline_is_cut_at_the_deadline() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            drain_timeout: Some("2s".into()),
            ..Default::default()
        },
    );
    let r1 = agent.receive(&v1, "v1");
    agent.activate(&r1).unwrap();
    let (_, mut stream) =
        http::open_stream(agent.port(), "/stream?ticks=1000&interval_ms=50").unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    let t0 = Instant::now();
    agent.activate(&r1).unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut rest);
    let took = t0.elapsed();
    assert!(rest.lines().count() < 900, "the stream was cut");
    assert!(
        took < Duration::from_secs(5),
        "cut near the 2 s deadline, took {took:?}"
    );
}
