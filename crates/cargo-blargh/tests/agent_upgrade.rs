//! Upgrading the agent in place (`agent ctl upgrade`, which `cargo blargh seed` uses when
//! only the agent's executable changed): the agent re-executes the new file as the same
//! process and hands over its sockets and the running release, which serves on through it
//! under load. The release here warms up for 3 s, so a restart would stall every request for
//! that long; the upgrade must not. The new agent then supervises the handed-over process
//! as its own: it restarts it after a crash and drains it on the next activation. A new
//! executable that cannot take over is refused, and the agent keeps running as it was.

use std::path::Path;
use std::time::Duration;

use test_support::agent::{AgentOptions, TestAgent, install_agent, signal};
use test_support::hello::{self, Profile};
use test_support::load::Wrk;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// wrk's keep-alive connections.
const CLIENTS: u32 = 8;

/// The file the agent runs from, as `/proc/PID/exe` names it now.
fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("({e})"))
}

fn sha256_of_exe(pid: u32) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        std::fs::read(format!("/proc/{pid}/exe")).unwrap(),
    ))
}

#[test]
fn the_agent_upgrades_in_place_under_load_and_the_release_serves_on() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent_exe = dir.path().join("blargh");
    install_agent(Path::new(BIN), &agent_exe, "").unwrap();
    let agent = TestAgent::start(
        &agent_exe,
        AgentOptions {
            env: vec![("HELLO_WARMUP_MS".into(), "3000".into())],
            ..AgentOptions::default()
        },
    );
    let r1 = agent.receive(&v1, "v1");
    let r2 = agent.receive(&v2, "v2");
    agent.activate(&r1).unwrap();
    let before = agent.status();
    let app_pid = before.pid.expect("v1 runs");
    let url = format!("http://127.0.0.1:{}/", agent.port());

    // Steady state first: the latency the upgrade is compared with.
    let steady = Wrk::start(&url, CLIENTS, 1).unwrap();
    agent.wait_for_clients_on_current(CLIENTS as usize, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(3));
    let steady = steady.finish().unwrap();

    let wrk = Wrk::start(&url, CLIENTS, 1).unwrap();
    agent.wait_for_clients_on_current(CLIENTS as usize, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));
    let new_sha = install_agent(Path::new(BIN), &agent_exe, "a newer agent").unwrap();
    assert_ne!(
        sha256_of_exe(agent.pid()),
        new_sha,
        "the old agent still runs"
    );
    let up = agent
        .upgrade()
        .unwrap_or_else(|e| panic!("upgrade failed: {e:?}\n{}", agent.agent_log()));
    std::thread::sleep(Duration::from_secs(2));
    let during = wrk.finish().unwrap();
    eprintln!(
        "steady: p99 {:.1} ms, max {:.1} ms; across the upgrade: {} requests, max {:.1} ms \
         ({:.2}x steady p99), upgrade took {} ms",
        steady.p99_ms,
        steady.max_ms,
        during.requests,
        during.max_ms,
        during.max_ms / steady.p99_ms.max(0.001),
        up.took_ms
    );

    // The same agent process, now running the new file, kept the same release process.
    assert_eq!(up.agent_pid, agent.pid());
    assert_eq!(sha256_of_exe(agent.pid()), new_sha);
    assert!(!exe_of(agent.pid()).ends_with("(deleted)"));
    let kept = up.kept.as_ref().expect("a release was handed over");
    assert_eq!((kept.release.as_str(), kept.pid), (r1.as_str(), app_pid));
    let after = agent.status();
    assert_eq!(
        after.pid,
        Some(app_pid),
        "the release was restarted: {after:?}"
    );
    assert_eq!(after.agent_pid, agent.pid());
    assert_eq!(after.restarts, 0);
    // No request failed, and none waited for a warm-up (a restart would stall 3 s).
    assert!(during.requests > 100, "load was sustained: {}", during.raw);
    assert_eq!(during.failures(), 0, "failed requests:\n{}", during.raw);
    assert!(
        during.max_ms < 1500.0,
        "a request waited {:.0} ms across the upgrade:\n{}",
        during.max_ms,
        during.raw
    );
    let audit = agent.audit();
    let ev = audit
        .iter()
        .find(|e| e.event == "upgrade")
        .unwrap_or_else(|| panic!("no upgrade event in {audit:?}"));
    assert_eq!(ev.release.as_deref(), Some(r1.as_str()));

    // The new agent watches the handed-over process: a crash is seen and restarted.
    signal(app_pid, "KILL").unwrap();
    let restarted = agent.wait_for("a restart after the crash", Duration::from_secs(20), |s| {
        s.pid.is_some_and(|p| p != app_pid) && s.restarts == 1
    });
    // And a later upgrade hands over what this agent started, then an activation drains it.
    install_agent(Path::new(BIN), &agent_exe, "newer still").unwrap();
    let up2 = agent.upgrade().unwrap();
    assert_eq!(up2.kept.map(|k| k.pid), restarted.pid);
    let old = restarted.pid.unwrap();
    agent.activate(&r2).unwrap();
    hello_answers(agent.port(), "v2");
    test_support::wait::wait_until_or_explain(
        Duration::from_secs(15),
        "the drained process to be gone (reaped, not a zombie)",
        || !Path::new(&format!("/proc/{old}")).exists(),
        || agent.agent_log(),
    );

    // An executable that cannot take over is refused before anything changes.
    let broken = dir.path().join("broken");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'GLIBC_2.99 not found' >&2\nexit 1\n",
    )
    .unwrap();
    let before_sha = sha256_of_exe(agent.pid());
    let serving = agent.status().pid;
    let good = dir.path().join("good");
    std::fs::copy(&agent_exe, &good).unwrap();
    install_agent(&broken, &agent_exe, "").unwrap();
    let err = match agent_ctl_upgrade_with(&good, agent.root()) {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    };
    assert!(
        err.contains("cannot take over") && err.contains("GLIBC_2.99"),
        "{err}"
    );
    assert_eq!(sha256_of_exe(agent.pid()), before_sha);
    std::fs::rename(&good, &agent_exe).unwrap();
    assert_eq!(agent.status().pid, serving);
}

/// `agent ctl upgrade` run by `client` (the agent's own file is broken meanwhile); what it
/// printed on stderr, which must say why it failed.
fn agent_ctl_upgrade_with(client: &Path, root: &Path) -> Result<String, String> {
    let out = std::process::Command::new(client)
        .args(["agent", "ctl", "--root"])
        .arg(root)
        .arg("upgrade")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Err(format!(
            "the upgrade to a broken executable succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn hello_answers(port: u16, version: &str) {
    let r = test_support::http::get(port, "/").expect("GET /");
    assert!(
        r.body.starts_with(&format!("hello from {version} ")),
        "expected {version}, got {:?}",
        r.body
    );
}
