//! A release that exits at start, or never signals readiness, is rejected: the old release
//! serves throughout without a failed request, and the error carries the new one's output.

use std::time::Duration;

use blargh_proto::control::AppState;
use test_support::agent::{AgentOptions, TestAgent};
use test_support::hello::{self, Profile};
use test_support::http;
use test_support::load::Wrk;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

#[test]
fn broken_releases_are_rejected_while_the_old_one_serves() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let scripts = tempfile::tempdir().unwrap();
    let exits = hello::script(
        scripts.path(),
        "exits",
        "echo 'connecting to db:5432'\necho 'fatal: database unreachable' >&2\nexit 3",
    )
    .unwrap();
    let hangs = hello::script(
        scripts.path(),
        "hangs",
        "echo 'warming up forever'\nexec sleep 600",
    )
    .unwrap();

    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            ready_timeout: Some("2s".into()),
            ..Default::default()
        },
    );
    let good = agent.receive(&v1, "v1");
    agent.activate(&good).unwrap();
    let wrk = Wrk::start(&format!("http://127.0.0.1:{}/", agent.port()), 16, 1).unwrap();
    // The load is on before the broken releases come.
    agent.wait_for_clients_on_current(16, Duration::from_secs(15));

    let bad = agent.receive(&exits, "exits");
    let err = agent.activate(&bad).unwrap_err();
    assert!(
        err.message
            .contains("exited with status 3 before it was ready"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains(&format!("release {good} keeps serving")),
        "{}",
        err.message
    );
    assert!(
        err.release_log
            .iter()
            .any(|l| l.contains("fatal: database unreachable")),
        "log lines in the error: {:?}",
        err.release_log
    );
    assert!(
        err.release_log
            .iter()
            .any(|l| l.contains("connecting to db:5432"))
    );

    let slow = agent.receive(&hangs, "hangs");
    let err = agent.activate(&slow).unwrap_err();
    assert!(
        err.message.contains("did not signal readiness"),
        "{}",
        err.message
    );
    assert!(
        err.release_log
            .iter()
            .any(|l| l.contains("warming up forever"))
    );

    // What a person sees: exit code 1, the reason and the release's output on stderr.
    let out = agent.ctl(&["activate", &bad], None).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: release"), "{stderr}");
    assert!(stderr.contains("fatal: database unreachable"), "{stderr}");

    let r = http::get(agent.port(), "/").unwrap();
    assert!(r.body.starts_with("hello from v1 "), "{}", r.body);
    let st = agent.status();
    assert_eq!(st.state, AppState::Running);
    assert_eq!(st.current.unwrap().id, good);

    // wrk is still connected to the release that kept serving.
    agent.wait_for_clients_on_current(16, Duration::from_secs(15));
    let report = wrk.finish().unwrap();
    assert!(report.requests > 100, "{}", report.raw);
    assert_eq!(report.failures(), 0, "failed requests:\n{}", report.raw);
    let failures = agent
        .audit()
        .iter()
        .filter(|e| e.event == "failure")
        .count();
    assert_eq!(failures, 3);
}
