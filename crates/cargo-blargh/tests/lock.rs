//! The deploy lock is not advisory: while someone holds it, activate, rollback, env set,
//! env unset and exec by anyone else are refused, naming the holder and since when; its
//! holder (a deploy's own steps) passes. A deploy refreshes its lock as it goes, so a long
//! one does not lose it midway, and applies the config's `watchdog_timeout` (loopback sshd,
//! root only).

use std::path::Path;
use std::time::{Duration, Instant};

use blargh_agent::client::{self, ClientError};
use blargh_proto::control::LockInfo;
use test_support::agent::{AgentOptions, TestAgent};
use test_support::hello::{self, Profile};
use test_support::loopback::{AppDir, LocalServer, can_run};
use test_support::remote::text;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

const HOLDER: &str = "ana@laptop (deploy, pid 7)";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[track_caller]
fn refused(r: Result<impl std::fmt::Debug, ClientError>, what: &str, held: &LockInfo) {
    match r {
        Err(ClientError::Agent(e)) => assert!(
            e.message.starts_with(&format!("{what} refused"))
                && e.message
                    .contains(&format!("held by {HOLDER} since {}", held.since)),
            "{}",
            e.message
        ),
        other => panic!("{what} by someone else went through the lock: {other:?}"),
    }
}

#[test]
fn changes_by_anyone_but_the_holder_are_refused_while_the_lock_holds() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let id = agent.receive(&v1, "v1");
    agent.activate(&id).unwrap();
    let id: blargh_proto::ReleaseId = id.parse().unwrap();
    // Activating the running release again (a restart) is an activation all the same.
    let second = id.clone();
    let key: blargh_proto::EnvKey = "GREETING".parse().unwrap();
    let socket = agent.root().join("agent.sock");
    rt().block_on(async {
        let mut c = client::connect(&socket).await.unwrap();
        let held = c
            .lock_acquire(HOLDER, "deploying 1.4", 600, false)
            .await
            .unwrap()
            .unwrap();
        let bo = || Some("bo@ci".to_string());
        refused(
            c.activate(&second, bo(), None, None).await,
            "activate",
            &held,
        );
        refused(c.rollback(Some(id.clone()), bo()).await, "rollback", &held);
        refused(c.env_set(&key, "hi", bo(), true).await, "env set", &held);
        refused(c.env_unset(&key, bo(), true).await, "env unset", &held);
        refused(
            c.exec(None, vec!["{bin}".into(), "migrate".into()], 10, bo())
                .await,
            "exec",
            &held,
        );
        // No claim at all is not the holder either.
        refused(c.rollback(Some(id.clone()), None).await, "rollback", &held);
        assert_eq!(
            c.status().await.unwrap().current.unwrap().id,
            id,
            "nothing changed"
        );

        // The holder passes: a deploy's own steps go through its lock.
        let me = || Some(HOLDER.to_string());
        c.env_set(&key, "hi", me(), false).await.unwrap();
        let out = c
            .exec(None, vec!["{bin}".into(), "migrate".into()], 10, me())
            .await
            .unwrap();
        assert_eq!(out.status, Some(0), "{out:?}");
        c.activate(&second, me(), None, None).await.unwrap();
        c.rollback(Some(id.clone()), me()).await.unwrap();

        // Released: anyone again.
        c.lock_release(HOLDER, false).await.unwrap();
        c.activate(&second, bo(), None, None).await.unwrap();
    });
    // The command-line client says the same.
    let out = agent.ctl(&["lock"], None).unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_deploy_acts_through_its_own_lock_and_refreshes_it_as_it_goes() {
    if !can_run("a_deploy_acts_through_its_own_lock_and_refreshes_it_as_it_goes") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let server = LocalServer::start(Path::new(BIN), "lockrefresh");
    let app = AppDir::new(Path::new(BIN));
    // Env and before_activate are steps the agent guards with the lock: the deploy's
    // own must pass. before_activate takes 3 s. The release then warms up for 2 s, so the
    // refresh after before_activate stays in view for the watcher below (without the
    // warm-up the lock could be released before the watcher looks again).
    app.configure(
        "hello",
        &format!(
            "hosts = [\"{}\"]\napp = \"lockrefresh\"\n{}\n\
             ready_timeout = \"5s\"\ndrain_timeout = \"1s\"\nlock_expiry = \"8s\"\n\
             env = {{ HELLO_GREETING = \"hi\", HELLO_WARMUP_MS = \"2000\" }}\nwatchdog_timeout = \"7s\"\n\
             before_activate = [\"sh\", \"-c\", \"sleep 3\", \"{{bin}}\"]",
            server.destination(),
            server.listen_line(),
        ),
    );
    let socket = server.root().join("agent.sock");
    let mut deploy = app
        .command(&["deploy", "--binary", v1.to_str().unwrap()])
        .args(server.connect_flags())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Watch the lock while the deploy runs: its expiry moves forward.
    let mut expiries = Vec::new();
    let t0 = Instant::now();
    let rt = rt();
    while deploy.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the deploy hangs");
        let held = rt.block_on(async {
            let mut c = client::connect(&socket).await.ok()?;
            c.lock_status().await.ok()?
        });
        if let Some(h) = held
            && expiries.last() != Some(&h.expires_unix)
        {
            assert!(h.holder.contains("(deploy, pid "), "{h:?}");
            expiries.push(h.expires_unix);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = deploy.wait_with_output().unwrap();
    assert!(out.status.success(), "deploy failed:\n{}", text(&out));
    assert!(
        expiries.len() >= 2 && expiries[expiries.len() - 1] >= expiries[0] + 3,
        "the lock was not refreshed during the deploy (expiries seen: {expiries:?})"
    );
    let r = test_support::http::get(server.web_port(), "/greeting").unwrap();
    assert_eq!(r.body, "hi\n");
    let (lock, settings) = rt.block_on(async {
        let mut c = client::connect(&socket).await.unwrap();
        (
            c.lock_status().await.unwrap(),
            c.status().await.unwrap().settings,
        )
    });
    assert_eq!(lock, None, "released at the end");
    // The config's watchdog_timeout reached the agent (deploy applies it, like the timeouts).
    assert_eq!(settings.watchdog_timeout_ms, 7_000);
    assert!(
        text(&out).contains("watchdog_timeout 30s → 7s"),
        "deploy says what it applied:\n{}",
        text(&out)
    );
}
