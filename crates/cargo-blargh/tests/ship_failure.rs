//! A deploy whose upload fails on the host (its `incoming/` is a full tmpfs) gives up
//! there: it says why, leaves the old release serving and releases its deploy lock, so the
//! next deploy goes through (OpenSSH sshd and an agent on loopback; root only, for the
//! mount; test_support::loopback).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::hello::{self, Profile};
use test_support::http;
use test_support::loopback::{AppDir, LocalServer, can_run};
use test_support::remote::text;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// A tmpfs of 64 KiB mounted over a directory until dropped.
struct TinyDisk(PathBuf);

impl TinyDisk {
    fn mount(dir: &Path) -> TinyDisk {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", text(&out));
        TinyDisk(dir.to_path_buf())
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_failed_upload_releases_the_lock_and_the_old_release_serves() {
    if !can_run("a_failed_upload_releases_the_lock_and_the_old_release_serves") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let server = LocalServer::start(Path::new(BIN), "shipfull");
    let app = AppDir::new(Path::new(BIN));
    app.configure(
        "hello",
        &format!(
            "hosts = [\"{}\"]\napp = \"shipfull\"\n{}\nknown_hosts = [\"{}\"]\n\
             ready_timeout = \"30s\"\ndrain_timeout = \"1s\"",
            server.destination(),
            server.listen_line(),
            server.known_hosts_line(),
        ),
    );
    let key = ["-i".to_string(), server.key().display().to_string()];
    let deploy = |binary: &Path| -> Output {
        app.run(&["deploy", "--binary", binary.to_str().unwrap()], &key)
    };
    let out = deploy(&v1);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        server.agent_log()
    );

    let full = TinyDisk::mount(&server.root().join("incoming"));
    let out = deploy(&v2);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}\n{}", server.agent_log());
    assert!(t.contains("No space left on device"), "{t}");
    let body = http::get(server.web_port(), "/").unwrap().body;
    assert!(body.starts_with("hello from v1 "), "{body}");
    let lock = app.run(&["lock", "status", "--json"], &key);
    let held: serde_json::Value =
        serde_json::from_slice(&lock.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&lock)));
    assert!(
        held[0]["reply"]["held"].is_null(),
        "the failed deploy left its lock: {held}"
    );

    // Room again: the next deploy is not held up by the one that failed.
    drop(full);
    let out = deploy(&v2);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        server.agent_log()
    );
    let body = http::get(server.web_port(), "/").unwrap().body;
    assert!(body.starts_with("hello from v2 "), "{body}");
}
