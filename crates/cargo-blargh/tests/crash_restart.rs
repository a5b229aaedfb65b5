//! Crashes: a `kill -9`ed release is restarted while connections wait in the agent's socket
//! backlog (none refused); a release that keeps crashing is left alone after a few tries.

use std::time::Duration;

use blargh_proto::control::AppState;
use test_support::agent::{AgentOptions, TestAgent, running_as_root, signal};
use test_support::hello::{self, Profile};
use test_support::http;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

#[test]
fn a_killed_release_is_restarted_and_waiting_connections_succeed() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let id = agent.receive(&v1, "v1");
    agent.activate(&id).unwrap();
    let before = agent.status().pid.unwrap();
    if running_as_root() {
        let status = std::fs::read_to_string(format!("/proc/{before}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            !uid.split_whitespace().skip(1).any(|u| u == "0"),
            "app runs as root: {uid}"
        );
    }

    signal(before, "KILL");
    // Connect at once, while nothing accepts: the agent's socket queues the connections.
    let port = agent.port();
    let clients: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || http::get(port, "/")))
        .collect();
    let mut refused = 0;
    for c in clients {
        match c.join().unwrap() {
            Ok(r) => assert!(r.body.starts_with("hello from v1 "), "{}", r.body),
            Err(e) => {
                eprintln!("request failed: {e}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 0, "connections refused or failed while restarting");
    let st = agent.wait_for("the restart", Duration::from_secs(10), |s| {
        s.state == AppState::Running && s.pid.is_some_and(|p| p != before)
    });
    assert_eq!(st.restarts, 1);
    let audit = agent.audit();
    assert!(
        audit
            .iter()
            .any(|e| e.event == "crash" && e.detail.as_deref().unwrap_or("").contains("SIGKILL"))
    );
    assert!(audit.iter().any(|e| e.event == "restart"));
}

#[test]
fn a_crash_loop_stops_restarts_until_a_new_activation() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            max_restarts: Some(3),
            env: vec![("HELLO_CRASH_AFTER_MS".into(), "100".into())],
            ..Default::default()
        },
    );
    let id = agent.receive(&v1, "v1");
    agent.activate(&id).unwrap();
    agent.wait_for("the crash loop", Duration::from_secs(30), |s| {
        s.state == AppState::CrashLoop
    });
    let audit = agent.audit();
    assert_eq!(audit.iter().filter(|e| e.event == "crash").count(), 4);
    let looped = audit
        .iter()
        .find(|e| e.event == "crash_loop")
        .expect("crash_loop audited");
    assert!(
        looped
            .detail
            .as_deref()
            .unwrap()
            .contains("Deploy a fix or roll back")
    );
    // No more restarts happen on their own.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        agent.audit().iter().filter(|e| e.event == "crash").count(),
        4
    );

    // Fix the configuration and activate again: it serves.
    std::fs::write(agent.root().join("env"), "").unwrap();
    agent.activate(&id).unwrap();
    let r = http::get(agent.port(), "/").unwrap();
    assert!(r.body.starts_with("hello from v1 "));
    assert_eq!(agent.status().state, AppState::Running);
}

#[test]
fn a_release_that_crashes_soon_after_its_activation_is_rolled_back_by_the_agent() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v4 = hello::build("v4", Profile::Debug).unwrap();
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            env: vec![
                ("HELLO_CRASH_AFTER_MS".into(), "200".into()),
                ("HELLO_CRASH_IN_VERSION".into(), "v4".into()),
            ],
            ..Default::default()
        },
    );
    let good = agent.receive(&v1, "v1");
    let bad = agent.receive(&v4, "v4");
    agent.activate(&good).unwrap();
    match agent
        .request(&[
            "activate",
            &bad,
            "--auto-rollback-crashes",
            "2",
            "--auto-rollback-window",
            "30s",
        ])
        .unwrap()
    {
        blargh_proto::control::Reply::Activated(a) => assert_eq!(a.release, bad),
        other => panic!("{other:?}"),
    }
    // It becomes ready, then crashes twice: the agent goes back to v1 by itself.
    let st = agent.wait_for("the automatic rollback", Duration::from_secs(20), |s| {
        s.state == AppState::Running && s.current.as_ref().is_some_and(|m| m.id == good)
    });
    assert!(st.pid.is_some());
    let r = http::get(agent.port(), "/").unwrap();
    assert!(r.body.starts_with("hello from v1 "), "{}", r.body);
    let audit = agent.audit();
    let rolled = audit
        .iter()
        .find(|e| e.event == "auto_rollback")
        .expect("the rollback is audited");
    assert_eq!(rolled.release.as_deref(), Some(good.as_str()));
    assert_eq!(rolled.previous.as_deref(), Some(bad.as_str()));
    assert!(
        rolled
            .detail
            .as_deref()
            .unwrap()
            .contains("crashed soon after its activation")
    );
}
