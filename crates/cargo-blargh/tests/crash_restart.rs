//! Crashes: a `kill -9`ed release is restarted while connections opened during the outage
//! wait in the agent's socket backlog (none refused, all answered by the restarted
//! release); a release that keeps crashing is retried less and less often (a crash loop)
//! and serves again on its own once its dependency is back; the app never runs as root.

use std::time::Duration;

use blargh_agent::supervisor::{LOOP_RETRY_FIRST, next_loop_delay};
use blargh_proto::control::AppState;
use test_support::agent::{AgentOptions, TestAgent, running_as_root, signal};
use test_support::hello::{self, Profile};
use test_support::http;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// How long the restarted release warms up before it accepts: the outage during which
/// connections must queue.
const WARMUP_MS: u64 = 1500;

/// The uid the agent runs the app as: `nobody`'s when the tests run as root (the agent is
/// given `--user nobody`), else ours (an unprivileged agent cannot change user).
fn expected_app_uid() -> u32 {
    if running_as_root() {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&"nobody")).then(|| f[2].parse().unwrap())
            })
            .expect("a nobody user in /etc/passwd")
    } else {
        uids(std::process::id())[0]
    }
}

/// Real, effective, saved and filesystem uids of `pid`.
fn uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|u| u.parse().unwrap())
        .collect()
}

#[test]
fn the_app_runs_as_the_unprivileged_user_never_root() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let id = agent.receive(&v1, "v1");
    agent.activate(&id).unwrap();
    let pid = agent.status().pid.unwrap();
    let want = expected_app_uid();
    eprintln!(
        "tests run as {}: the app must run as uid {want}",
        if running_as_root() { "root" } else { "a user" }
    );
    assert_ne!(want, 0, "the app's user must not be root");
    assert_eq!(uids(pid), vec![want; 4], "uids of the app (pid {pid})");
}

#[test]
fn a_killed_release_is_restarted_and_waiting_connections_succeed() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            env: vec![("HELLO_WARMUP_MS".into(), WARMUP_MS.to_string())],
            ..Default::default()
        },
    );
    let id = agent.receive(&v1, "v1");
    agent.activate(&id).unwrap();
    let before = agent.status().pid.unwrap();

    signal(before, "KILL").unwrap();
    // The agent notices, and restarts the release, which warms up before it accepts.
    agent.wait_for(
        "the agent to notice the crash",
        Duration::from_secs(10),
        |s| s.state == AppState::Starting && s.pid.is_none(),
    );
    // Connect now, while nothing accepts: the agent's socket queues the connections.
    let port = agent.port();
    let pending: Vec<http::Pending> = (0..20)
        .map(|i| http::send(port, "/").unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let st = agent.status();
    assert!(
        st.state == AppState::Starting && st.pid.is_none(),
        "all 20 connections were opened while the app was down; status now {st:?}"
    );
    for (i, p) in pending.iter().enumerate() {
        assert!(
            !p.answered_yet().unwrap(),
            "connection {i} was answered while the app was down"
        );
    }

    // All of them are answered by the restarted release.
    for (i, p) in pending.into_iter().enumerate() {
        let r = p
            .response()
            .unwrap_or_else(|e| panic!("queued connection {i} failed: {e}"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.starts_with("hello from v1 "), "{}", r.body);
        assert!(
            r.elapsed >= Duration::from_millis(WARMUP_MS / 2),
            "connection {i} waited only {:?}: it did not wait for the restart",
            r.elapsed
        );
    }
    let st = agent.status();
    assert_eq!(st.state, AppState::Running);
    assert!(st.pid.is_some_and(|p| p != before), "{st:?}");
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
fn a_dependency_outage_is_a_crash_loop_retried_less_often_until_the_app_serves_again() {
    const MAX_RESTARTS: u32 = 3;
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let outage = tempfile::tempdir().unwrap();
    let down = outage.path().join("database-down");
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            max_restarts: Some(MAX_RESTARTS),
            env: vec![("HELLO_EXIT_IF_FILE".into(), down.display().to_string())],
            ..Default::default()
        },
    );
    let id = agent.receive(&v1, "v1");
    agent.activate(&id).unwrap();
    let pid = agent.status().pid.unwrap();

    // The database goes away and the app dies: every restart exits before it is ready.
    std::fs::write(&down, "").unwrap();
    signal(pid, "KILL").unwrap();
    let looped = agent.wait_for("the crash loop", Duration::from_secs(30), |s| {
        s.state == AppState::CrashLoop
    });
    assert_eq!(
        looped.retry_every_ms,
        Some(LOOP_RETRY_FIRST.as_millis() as u64)
    );
    let audit = agent.audit();
    let event = audit
        .iter()
        .find(|e| e.event == "crash_loop")
        .expect("crash_loop audited");
    let detail = event.detail.as_deref().unwrap();
    assert!(
        detail.contains("retrying every 2 s") && detail.contains("up to every 60 s"),
        "{detail}"
    );
    let out = agent.ctl(&["status"], None).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CRASH LOOP (retrying every "), "{text}");

    // The agent keeps trying, less often each time.
    let failures = |agent: &TestAgent| {
        agent
            .audit()
            .iter()
            .filter(|e| e.event == "failure")
            .count()
    };
    let before = failures(&agent);
    let slower = agent.wait_for("a retry in the crash loop", Duration::from_secs(10), |s| {
        s.retry_every_ms > looped.retry_every_ms
    });
    assert_eq!(
        slower.retry_every_ms,
        Some(next_loop_delay(LOOP_RETRY_FIRST).as_millis() as u64)
    );
    assert!(
        failures(&agent) > before,
        "a failed attempt in the loop was audited"
    );

    // The database is back: the next attempt serves, and nobody did anything.
    std::fs::remove_file(&down).unwrap();
    let back = agent.wait_for("the app to serve again", Duration::from_secs(30), |s| {
        s.state == AppState::Running
    });
    assert!(
        back.pid.is_some() && back.retry_every_ms.is_none(),
        "{back:?}"
    );
    let r = http::get(agent.port(), "/").unwrap();
    assert!(r.body.starts_with("hello from v1 "), "{}", r.body);
    assert!(agent.audit().iter().any(|e| e.event == "restart"));
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
