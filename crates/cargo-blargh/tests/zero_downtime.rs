//! The core promise: under sustained keep-alive load (wrk, which never retries), 20
//! activations alternating two builds of examples/hello, then 5 rollbacks, fail no request,
//! and after each switch new connections are answered by the new release.

use std::time::Duration;

use test_support::agent::{AgentOptions, TestAgent};
use test_support::hello::{self, Profile};
use test_support::http;
use test_support::load::Wrk;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// wrk's keep-alive connections.
const CLIENTS: usize = 16;

/// Long enough for every wrk connection to reconnect to a new release on a busy machine.
const MOVE: Duration = Duration::from_secs(15);

fn answers_from(port: u16, version: &str) {
    let r = http::get(port, "/").expect("GET /");
    assert_eq!(r.status, 200);
    assert!(
        r.body.starts_with(&format!("hello from {version} ")),
        "expected {version} to answer, got {:?}",
        r.body
    );
}

#[test]
fn twenty_activations_and_five_rollbacks_under_load_fail_no_request() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let r1 = agent.receive(&v1, "v1");
    let r2 = agent.receive(&v2, "v2");
    agent.activate(&r1).unwrap();
    answers_from(agent.port(), "v1");

    let wrk = Wrk::start(
        &format!("http://127.0.0.1:{}/", agent.port()),
        CLIENTS as u32,
        1,
    )
    .unwrap();
    // The load is on before the first switch.
    agent.wait_for_clients_on_current(CLIENTS, MOVE);
    for i in 0..20 {
        let (id, version) = if i % 2 == 0 { (&r2, "v2") } else { (&r1, "v1") };
        let a = agent
            .activate(id)
            .unwrap_or_else(|e| panic!("activation {i} failed: {e:?}\n{}", agent.agent_log()));
        assert_eq!(&a.release, id);
        answers_from(agent.port(), version);
        // Every keep-alive connection has moved to the new release before the next switch.
        agent.wait_for_clients_on_current(CLIENTS, MOVE);
    }
    // The 20th activation left v1 current and v2 previous: rollbacks alternate.
    for i in 0..5 {
        let version = if i % 2 == 0 { "v2" } else { "v1" };
        agent
            .rollback(None)
            .unwrap_or_else(|e| panic!("rollback {i} failed: {e:?}"));
        answers_from(agent.port(), version);
        agent.wait_for_clients_on_current(CLIENTS, MOVE);
    }
    let report = wrk.finish().unwrap();
    eprintln!("{}", report.raw);
    assert!(report.requests > 1000, "load was sustained: {}", report.raw);
    assert_eq!(report.failures(), 0, "failed requests:\n{}", report.raw);

    let audit = agent.audit();
    let count = |ev: &str| audit.iter().filter(|e| e.event == ev).count();
    assert_eq!(count("activate"), 21);
    assert_eq!(count("rollback"), 5);
    assert_eq!(count("crash"), 0);
    assert_eq!(agent.status().restarts, 0);
}
