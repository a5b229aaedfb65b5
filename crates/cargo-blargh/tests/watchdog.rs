//! A hung release is replaced: examples/hello's `GET /block` blocks every worker thread, the
//! library's watchdog pings stop, and the agent starts a fresh process of the same release,
//! switches to it once ready and kills the hung one, under wrk load. And the trampoline's
//! parent-death signal is tied to a thread that lives as long as the agent.

use std::time::Duration;

use blargh_proto::control::AppState;
use test_support::agent::{AgentOptions, TestAgent};
use test_support::hello::{self, Profile};
use test_support::http;
use test_support::load::Wrk;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// The agent's watchdog timeout in these tests.
const WATCHDOG: &str = "1s";
/// wrk's keep-alive connections.
const CONNECTIONS: u32 = 8;

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_hung_release_is_replaced_and_requests_succeed_again() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            watchdog_timeout: Some(WATCHDOG.into()),
            drain_timeout: Some("3s".into()),
            env: vec![("HELLO_BLOCKABLE".into(), "1".into())],
            ..Default::default()
        },
    );
    let id = agent.receive(&v1, "v1");
    agent.activate(&id).unwrap();
    let hung = agent.status().pid.unwrap();
    let url = format!("http://127.0.0.1:{}/", agent.port());

    let load = Wrk::start(&url, CONNECTIONS, 2).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // Hang it: every worker thread of its runtime blocks for good.
    let _block = http::send(agent.port(), "/block").unwrap();
    let replaced = agent.wait_for(
        "the watchdog to replace the hung process",
        Duration::from_secs(20),
        |s| s.watchdog_restarts == 1 && s.pid.is_some_and(|p| p != hung),
    );
    assert_eq!(replaced.state, AppState::Running);
    assert_eq!(replaced.restarts, 0, "a replacement, not a crash restart");
    test_support::wait::wait_until(
        Duration::from_secs(5),
        "the hung process to be killed",
        || !alive(hung),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let across = load.finish().unwrap();
    eprintln!("wrk across the hang: {across:?}");
    // Each keep-alive connection the hung process held loses at most the request it had
    // in flight; nothing else fails.
    assert!(
        across.failures() <= CONNECTIONS as u64,
        "{} failures across the hang, more than one per connection ({CONNECTIONS}):\n{}",
        across.failures(),
        across.raw
    );

    // The fresh process serves, under load, without a failure.
    let after = Wrk::start(&url, CONNECTIONS, 2).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let after = after.finish().unwrap();
    assert_eq!(after.failures(), 0, "{}", after.raw);
    assert!(after.requests > 100, "{}", after.raw);
    let r = http::get(agent.port(), "/").unwrap();
    assert!(r.body.starts_with("hello from v1 "), "{}", r.body);

    let audit = agent.audit();
    let event = audit
        .iter()
        .find(|e| e.event == "watchdog")
        .expect("the replacement is audited");
    let detail = event.detail.as_deref().unwrap_or("");
    assert!(
        detail.contains(&format!("pid {hung} sent no WATCHDOG=1"))
            && detail.contains(&format!("replaced by pid {}", replaced.pid.unwrap())),
        "{detail}"
    );
    assert_eq!(event.release.as_deref(), Some(id.as_str()));
    let out = agent.ctl(&["status"], None).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 hung and replaced"), "{text}");
}

#[test]
fn with_the_watchdog_off_a_blocked_release_is_left_alone() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            watchdog_timeout: Some("0s".into()),
            env: vec![("HELLO_BLOCKABLE".into(), "1".into())],
            ..Default::default()
        },
    );
    let id = agent.receive(&v1, "v1");
    agent.activate(&id).unwrap();
    let pid = agent.status().pid.unwrap();
    let _block = http::send(agent.port(), "/block").unwrap();
    test_support::wait::holds_for(
        Duration::from_secs(3),
        "the blocked process stays (no watchdog)",
        || {
            let s = agent.status();
            s.pid == Some(pid) && s.watchdog_restarts == 0
        },
    );
}

/// The trampoline's parent-death signal fires when the thread that forked it ends. A
/// release started from a thread that then exits (as tokio's blocking-pool threads do
/// after 10 s idle, and a worker that ran `block_in_place` becomes one) must live on.
#[test]
fn a_release_outlives_the_thread_that_asked_for_it() {
    let built = hello::build("v1", Profile::Debug).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A release as the store leaves it: the executable and its manifest side by side
    // (every start checks the one against the other).
    let rel = dir.path().join("r1");
    std::fs::create_dir(&rel).unwrap();
    let v1 = rel.join("app");
    std::fs::copy(&built, &v1).unwrap();
    let bytes = std::fs::read(&v1).unwrap();
    let manifest = blargh_proto::manifest::ReleaseManifest {
        id: "r1".parse().unwrap(),
        version: None,
        git_sha: None,
        sha256: {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        },
        size: bytes.len() as u64,
        built_at: None,
        deployed_at: "2026-12-01T00:00:00Z".into(),
        deployed_by: None,
        message: None,
        tree: None,
    };
    std::fs::write(
        rel.join(blargh_proto::manifest::MANIFEST_FILE),
        manifest.to_json(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let log = blargh_agent::logs::AppLog::open(dir.path()).unwrap();
    let handle = rt.handle().clone();
    let data = dir.path().to_path_buf();
    let spawned = std::thread::spawn(move || {
        let _in = handle.enter();
        let spawned = blargh_agent::spawn::spawn(
            blargh_agent::spawn::SpawnSpec {
                release: "r1",
                app: "hello",
                verify: v1.clone(),
                binary: v1,
                args: Vec::new(),
                workdir: data.clone(),
                listeners: &[],
                env: vec![
                    ("PATH".into(), "/usr/bin:/bin".into()),
                    ("HELLO_ADDR".into(), "127.0.0.1:0".into()),
                ],
                run_dir: data,
                run_as: None,
                trampoline: BIN.into(),
            },
            log,
        )
        .unwrap();
        // Live on until the trampoline has set the parent-death signal and exec'd the
        // release (a thread that ends before that passes its children to another thread,
        // without a signal): the release then runs for a while, as in the agent.
        std::thread::sleep(Duration::from_secs(1));
        spawned
    })
    .join()
    .unwrap(); // the thread has ended here
    let pid = spawned.pid;
    let mut child = spawned.child;
    std::thread::sleep(Duration::from_millis(1500));
    let status = rt.block_on(async { child.try_wait() }).unwrap();
    let _ = test_support::agent::signal(pid, "KILL");
    assert_eq!(
        status, None,
        "pid {pid} ended when the thread that asked for it did (parent-death signal)"
    );
}

/// Under systemd with `WatchdogSec=`, the agent gets WATCHDOG_USEC and pings WATCHDOG=1 on
/// NOTIFY_SOCKET every half of it.
#[test]
fn the_agent_pings_systemds_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("systemd-notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let root = dir.path().join("app");
    let port = test_support::agent::free_port();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["agent", "run", "--app", "hello", "--root"])
        .arg(&root)
        .args(["--listen", &format!("web=127.0.0.1:{port}")])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if test_support::agent::running_as_root() {
        cmd.args(["--user", "nobody"]);
    }
    let mut agent = cmd.spawn().unwrap();
    let mut buf = [0u8; 256];
    let mut seen = Vec::new();
    let t0 = std::time::Instant::now();
    let mut pings = 0;
    while pings < 3 && t0.elapsed() < Duration::from_secs(5) {
        let Ok(n) = sock.recv(&mut buf) else { break };
        let d = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
        pings += usize::from(d == "WATCHDOG=1");
        seen.push(d);
    }
    let took = t0.elapsed();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(seen.iter().any(|d| d == "READY=1"), "{seen:?}");
    assert_eq!(pings, 3, "three pings within 5 s: {seen:?}");
    assert!(
        took < Duration::from_secs(2),
        "every 200 ms, took {took:?}: {seen:?}"
    );
}
