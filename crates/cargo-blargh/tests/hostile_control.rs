//! Hostile input on a real agent's control socket: out-of-range durations, a client that
//! stalls mid-line, too many connections, an upload larger than the agent accepts, the
//! app's own uid asking to control its agent, and an app that writes one endless line.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use blargh_proto::control::{
    AutoRollback, MAX_UPLOAD_BYTES, Reply, Request, decode_line, encode_line,
};
use test_support::agent::{AgentOptions, TestAgent, running_as_root};
use test_support::hello::{self, Profile};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// Sends one raw line and reads one reply line (`None`: the agent closed without a reply).
fn raw_exchange(socket: &Path, line: &str) -> Option<String> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    match BufReader::new(s).read_line(&mut reply) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(reply),
    }
}

fn reply_of(line: &str) -> Reply {
    decode_line::<Reply>(line.trim_end()).unwrap()
}

fn error_message(r: &Reply) -> String {
    match r {
        Reply::Error(e) => e.message.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn an_auto_rollback_window_out_of_range_is_refused_and_nothing_changes() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let r1 = agent.receive(&v1, "v1");
    let r2 = agent.receive(&v2, "v2");
    agent.activate(&r1).unwrap();
    let before = agent.status();
    let socket = agent.root().join("agent.sock");
    // Written by hand: the typed request would not let the client build this.
    let line = format!(
        "{{\"v\":2,\"request\":{{\"cmd\":\"activate\",\"id\":\"{r2}\",\"auto_rollback\":\
         {{\"window_s\":{},\"crashes\":3}}}}}}\n",
        u64::MAX
    );
    let reply = raw_exchange(&socket, &line).expect(
        "the agent closed the connection without a reply (it panicked halfway through the \
         activation)",
    );
    let m = error_message(&reply_of(&reply));
    assert!(m.contains("window_s"), "{m}");
    let after = agent.status();
    assert_eq!(
        after.current.as_ref().map(|c| c.id.to_string()),
        Some(r1.clone()),
        "the current release changed: {after:?}"
    );
    assert_eq!(after.pid, before.pid, "the serving process changed");
    // The bound itself is accepted and arms the guard.
    let ok = encode_line(&Request::Activate {
        id: r2.parse().unwrap(),
        by: None,
        auto_rollback: Some(AutoRollback {
            window_s: blargh_proto::control::MAX_WINDOW_S,
            crashes: 3,
        }),
        message: None,
    });
    let reply = reply_of(&raw_exchange(&socket, &ok).unwrap());
    assert!(matches!(reply, Reply::Activated(_)), "{reply:?}");
}

#[test]
fn a_client_that_stalls_mid_line_is_dropped_but_an_idle_one_is_kept() {
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let socket = agent.root().join("agent.sock");
    // Half a request, then nothing.
    let mut half = UnixStream::connect(&socket).unwrap();
    half.write_all(b"{\"v\":2,\"request\":{\"cm").unwrap();
    // A client between two requests (as `logs --follow` is between polls).
    let mut idle = UnixStream::connect(&socket).unwrap();
    idle.write_all(encode_line(&Request::Status).as_bytes())
        .unwrap();
    let mut idle_read = BufReader::new(idle.try_clone().unwrap());
    let mut first = String::new();
    idle_read.read_line(&mut first).unwrap();
    assert!(matches!(reply_of(&first), Reply::Status(_)));

    half.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let t0 = Instant::now();
    let mut got = String::new();
    let n = half.read_to_string(&mut got);
    let waited = t0.elapsed();
    assert!(
        n.is_ok() && waited < Duration::from_secs(25),
        "the stalled client was held for {waited:?} ({n:?})"
    );
    assert!(got.contains("no complete request"), "{got:?}");

    // The idle client is still served after the stalled one was dropped.
    idle.write_all(encode_line(&Request::Status).as_bytes())
        .unwrap();
    let mut second = String::new();
    idle_read.read_line(&mut second).unwrap();
    assert!(matches!(reply_of(&second), Reply::Status(_)), "{second:?}");
}

#[test]
fn connections_beyond_the_limit_get_a_clear_refusal() {
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let socket = agent.root().join("agent.sock");
    let limit = blargh_agent::control::MAX_CONNECTIONS;
    let mut held = Vec::new();
    for _ in 0..limit {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(encode_line(&Request::Status).as_bytes())
            .unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(matches!(reply_of(&line), Reply::Status(_)), "{line}");
        held.push(s);
    }
    let reply = raw_exchange(&socket, &encode_line(&Request::Status))
        .expect("the connection over the limit was closed without a word");
    let m = error_message(&reply_of(&reply));
    assert!(m.contains("too many"), "{m}");
    drop(held);
    // Slots come back once clients leave.
    let t0 = Instant::now();
    loop {
        let r = raw_exchange(&socket, &encode_line(&Request::Status)).unwrap();
        if matches!(reply_of(&r), Reply::Status(_)) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_upload_larger_than_the_cap_is_refused_before_a_byte_is_read() {
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let socket = agent.root().join("agent.sock");
    for size in [MAX_UPLOAD_BYTES + 1, u64::MAX] {
        let line = format!(
            "{{\"v\":2,\"request\":{{\"cmd\":\"receive\",\"sha256\":\"{}\",\"size\":{size}}}}}\n",
            "ab".repeat(32)
        );
        let t0 = Instant::now();
        let reply = raw_exchange(&socket, &line).expect("no reply");
        assert!(t0.elapsed() < Duration::from_secs(5));
        let m = error_message(&reply_of(&reply));
        assert!(m.contains("size"), "{m}");
    }
    // Bytes beyond `size` are not taken as the next request.
    let body = b"#!/bin/sh\necho hi\n";
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(body))
    };
    let mut s = UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let line = encode_line(&Request::Receive {
        sha256: sha,
        size: body.len() as u64,
        meta: Default::default(),
        encoding: Default::default(),
    });
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s.write_all(b"trailing garbage that is not a request\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    assert!(
        matches!(reply_of(&first), Reply::Received { .. }),
        "{first}"
    );
    let mut second = String::new();
    r.read_line(&mut second).unwrap();
    assert!(error_message(&reply_of(&second)).contains("not a control request"));
}

#[test]
fn the_apps_own_uid_may_not_control_its_agent() {
    if !running_as_root() {
        eprintln!("skipped: needs root to connect as the app's user");
        return;
    }
    // TestAgent runs the app as `nobody`; open the socket to everyone so that only the
    // peer check stands between the app and its agent.
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let socket = agent.root().join("agent.sock");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(agent.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = user_ids("nobody");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import socket,sys\n\
             s=socket.socket(socket.AF_UNIX)\n\
             s.connect(sys.argv[1])\n\
             s.sendall(b'{\"v\":2,\"request\":{\"cmd\":\"status\"}}\\n')\n\
             print(s.makefile().readline(), end='')\n",
        ])
        .arg(&socket)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("python3");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = error_message(&reply_of(&line));
    assert!(m.contains("may not control its agent"), "{m}");
    // Root (the deploy side here) still gets answers.
    let r = raw_exchange(&socket, &encode_line(&Request::Status)).unwrap();
    assert!(matches!(reply_of(&r), Reply::Status(_)), "{r}");
}

use std::os::unix::process::CommandExt;

/// The uid and gid of `user`, from /etc/passwd.
fn user_ids(user: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == user)
        .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        .unwrap_or_else(|| panic!("no user {user}"))
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn an_endless_log_line_does_not_grow_the_agent() {
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            ready_timeout: Some("60s".into()),
            ..AgentOptions::default()
        },
    );
    // 100 MB without a newline, then a marker line; never ready.
    let script =
        b"#!/bin/sh\nhead -c 100000000 /dev/zero | tr '\\0' x\necho\necho printed-all\nsleep 60\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endless");
    std::fs::write(&path, script).unwrap();
    let id = agent.receive(&path, "endless");
    let rss_before = rss_kib(agent.pid());
    let socket = agent.root().join("agent.sock");
    let activating = std::thread::spawn({
        let socket = socket.clone();
        let id = id.clone();
        move || {
            raw_exchange(
                &socket,
                &encode_line(&Request::Activate {
                    id: id.parse().unwrap(),
                    by: None,
                    auto_rollback: None,
                    message: None,
                }),
            )
        }
    });
    let t0 = Instant::now();
    let mut peak = rss_before;
    let log = agent.root().join("logs/app.log");
    loop {
        peak = peak.max(rss_kib(agent.pid()));
        let text = std::fs::read(&log).unwrap_or_default();
        if text.windows(11).any(|w| w == b"printed-all") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the app's output never reached the log; peak RSS {peak} KiB\n{}",
            agent.agent_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("agent RSS before {rss_before} KiB, peak {peak} KiB");
    assert!(
        peak < rss_before + 32 * 1024,
        "the agent grew from {rss_before} KiB to {peak} KiB on one endless line"
    );
    let lines = agent.request(&["logs", "-n", "5"]).unwrap();
    let Reply::Logs { lines } = lines else {
        panic!("{lines:?}")
    };
    let cut = lines.iter().find(|l| l.contains("[line cut at")).cloned();
    assert!(cut.is_some(), "no cut line marked: {lines:?}");
    assert!(cut.unwrap().len() < 20 * 1024);
    drop(activating);
}
