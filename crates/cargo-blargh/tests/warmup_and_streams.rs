//! The old release serves until the new one is ready, however long it warms up; a
//! streaming response keeps streaming from the old release until it ends, or until the
//! drain deadline.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use test_support::agent::{AgentOptions, TestAgent};
use test_support::hello::{self, Profile};
use test_support::http;
use test_support::wait::wait_until;

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
    let done = Arc::new(AtomicUsize::new(0));
    let port = agent.port();
    let probe = {
        let (stop, done) = (stop.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let at = Instant::now();
                seen.push((at, http::get(port, "/")));
                done.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    let t0 = Instant::now();
    let a = agent.activate(&r2).unwrap();
    let switched = Instant::now();
    let at_switch = done.load(Ordering::SeqCst);
    // A few probes after the switch: the new release answers them.
    wait_until(
        Duration::from_secs(10),
        "five probe requests after the switch",
        || done.load(Ordering::SeqCst) >= at_switch + 6,
    );
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
    const DRAIN: Duration = Duration::from_secs(2);
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            drain_timeout: Some(format!("{}s", DRAIN.as_secs())),
            ..Default::default()
        },
    );
    let r1 = agent.receive(&v1, "v1");
    agent.activate(&r1).unwrap();
    // 1000 ticks, 50 ms apart: 50 s, far longer than the drain deadline.
    let (_, mut stream) =
        http::open_stream(agent.port(), "/stream?ticks=1000&interval_ms=50").unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    // The app finishes its streams by itself at its drain budget: the agent's deadline less
    // a tenth (at most 1 s), so that it exits before the agent's SIGKILL (blargh's
    // `shutdown::drain_budget`). The old process gets SIGTERM after t0 and before the
    // activation returns: the cut cannot come before t0 + budget.
    let budget = DRAIN - (DRAIN / 10).min(Duration::from_secs(1));
    let t0 = Instant::now();
    agent.activate(&r1).unwrap();
    let switched = Instant::now();
    let mut after = 0;
    loop {
        line.clear();
        match stream.read_line(&mut line) {
            Ok(0) | Err(_) => break, // closed, or reset by the SIGKILL at the deadline
            Ok(_) => after += usize::from(line.contains("tick")),
        }
    }
    let took = t0.elapsed();
    eprintln!(
        "stream cut {took:?} after the activation began ({:?} after it returned); \
         {after} ticks after the switch",
        switched.elapsed()
    );
    assert!(
        after < 900,
        "the stream was cut ({after} ticks after the switch)"
    );
    // Less a few milliseconds of timer rounding.
    assert!(
        took >= budget - Duration::from_millis(20),
        "the stream was cut {took:?} after the activation began, before the {budget:?} \
         drain budget"
    );
    assert!(
        after >= 10,
        "only {after} ticks after the switch: the stream did not go on until the deadline"
    );
    assert!(
        took < DRAIN + Duration::from_secs(3),
        "cut near the {DRAIN:?} deadline (activation included), took {took:?}"
    );
}
