//! Any stack, proven with the seed's own (issue 10): examples/elixir-hello, an Elixir app
//! with no blargh library and no hex packages, built by `mix release` and shipped as a
//! `release_dir` tree. It takes its listener from fd 3, says READY=1 through OTP's
//! `:socket`, and drains on SIGTERM. Deployed over a loopback sshd to a real agent, the
//! switches v1→v2→v1 and a rollback fail no request under wrk, and v2 after v1 travels as a
//! delta of the archive (root and `mix` only).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use test_support::http;
use test_support::load::Wrk;
use test_support::loopback::{AppDir, LocalServer, can_run};
use test_support::remote::text;
use test_support::stacks::{elixir_hello_release, have_mix};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// Bytes in the regular files under `dir`.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            total += tree_size(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

/// Some process on this machine is named `name` (its /proc/PID/comm).
fn process_named(name: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
}

#[test]
fn an_elixir_release_switches_and_rolls_back_under_load_without_a_failed_request() {
    let name = "an_elixir_release_switches_and_rolls_back_under_load_without_a_failed_request";
    if !can_run(name) {
        return;
    }
    if !have_mix() {
        println!("SKIPPED {name}: needs mix (Debian's elixir: cargo xtask prereqs)");
        return;
    }
    let server = LocalServer::start(Path::new(BIN), "beam");
    let app = AppDir::new(Path::new(BIN));
    for (vsn, dir) in [("1.0.0", "rel-v1"), ("2.0.0", "rel-v2")] {
        elixir_hello_release(vsn, &app.path().join(dir)).unwrap();
    }
    let configure = |dir: &str| {
        app.configure(
            "elixir_hello",
            &format!(
                "hosts = [\"{}\"]\napp = \"beam\"\n{}\nready_timeout = \"30s\"\n\
                 drain_timeout = \"10s\"\nrelease_dir = \"{dir}\"\n\
                 start = [\"bin/elixir_hello\", \"start\"]",
                server.destination(),
                server.listen_line()
            ),
        )
    };
    let hello = || http::get(server.web_port(), "/").unwrap().body;
    // `current` links to releases/ID.
    let current = || std::fs::read_link(server.root().join("current")).unwrap();
    let id = |link: &Path| link.file_name().unwrap().to_string_lossy().into_owned();

    configure("rel-v1");
    let (sent, whole) = app.deploy_json(&server, &[]);
    assert_eq!(sent, "whole");
    assert_eq!(
        hello(),
        format!("hello from elixir 1.0.0 (release {})\n", id(&current()))
    );

    let wrk = Wrk::start(&format!("http://127.0.0.1:{}/", server.web_port()), 8, 1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // A keep-alive connection to v1 that stays idle: v1's drain must close it.
    let mut idle = TcpStream::connect(("127.0.0.1", server.web_port())).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 512];
    let n = idle.read(&mut first).unwrap();
    let head = String::from_utf8_lossy(&first[..n]).into_owned();
    assert!(head.contains("connection: keep-alive"), "{head}");
    assert!(head.contains("hello from elixir 1.0.0"), "{head}");
    configure("rel-v2");
    let (sent, delta) = app.deploy_json(&server, &[]);
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        idle.read(&mut first).unwrap(),
        0,
        "the draining release closes an idle keep-alive connection"
    );
    assert_eq!(sent, "delta", "v2 after v1");
    assert!(hello().starts_with("hello from elixir 2.0.0 (release "));
    std::thread::sleep(Duration::from_millis(500));
    configure("rel-v1");
    let (again, again_bytes) = app.deploy_json(&server, &[]);
    assert!(hello().starts_with("hello from elixir 1.0.0 (release "));
    std::thread::sleep(Duration::from_millis(500));
    let out = app.run(&["rollback"], &server.connect_flags());
    assert!(out.status.success(), "{}", text(&out));
    assert!(hello().starts_with("hello from elixir 2.0.0 (release "));
    std::thread::sleep(Duration::from_millis(500));
    let report = wrk.finish().unwrap();

    let size = tree_size(&app.path().join("rel-v1"));
    eprintln!(
        "elixir release: {size} bytes in its tree; sent whole (zstd) {whole} bytes, v2 after \
         v1 (delta) {delta} bytes, v1 again ({again}) {again_bytes} bytes; wrk across \
         v1→v2→v1→rollback: {} requests, {} failed, p99 {} ms",
        report.requests,
        report.failures(),
        report.p99_ms
    );
    // Each of the three replaced releases drained and exited 0 (SIGTERM → init:stop/0).
    let mut logs = String::new();
    for _ in 0..60 {
        logs = text(&app.run(&["logs", "-n", "500"], &server.connect_flags()));
        if logs.matches("exited with status 0").count() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(logs.matches("exited with status 0").count(), 3, "{logs}");
    assert!(!logs.contains("SIGKILL"), "{logs}");
    assert!(report.requests > 100, "{}", report.raw);
    assert_eq!(report.failures(), 0, "failed requests:\n{}", report.raw);
    assert!(delta < whole, "delta {delta} vs whole {whole}");
    assert!(!process_named("epmd"), "no distribution, so no epmd");
    let tree = server.root().join(current()).join("tree");
    assert!(
        !tree.join("tmp").exists(),
        "the release wrote into its tree"
    );
}
