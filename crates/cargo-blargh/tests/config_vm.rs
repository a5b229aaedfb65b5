//! Every key of `[package.metadata.blargh]` that shapes a server takes effect on a real
//! systemd server under QEMU: `cargo blargh seed` with no argument prepares the configured
//! host with the configured app, sockets, timeouts and retention; a socket added, moved or
//! removed in the file is refused by deploy (naming the difference and the seed command)
//! until seed applies it; `keep_releases`, `ready_timeout` and `drain_timeout` changed in
//! the file are applied by deploy itself, which says so.

use std::io::Read;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use test_support::hello::{self, Profile};
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm, VmOptions, one_at_a_time};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// An app directory whose Cargo.toml points at the VM.
struct App<'a> {
    cli: Cli,
    vm: &'a Vm,
    dir: tempfile::TempDir,
}

impl App<'_> {
    /// Rewrites the app's `[package.metadata.blargh]` with `keys` (TOML lines) besides hosts.
    fn configure(&self, keys: &str) {
        std::fs::write(
            self.dir.path().join("Cargo.toml"),
            format!(
                "[package]\nname = \"shop\"\nversion = \"1.0.0\"\nedition = \"2024\"\n\n\
                 [package.metadata.blargh]\nhosts = [\"{}\"]\n{keys}\n",
                self.cli.destination("admin")
            ),
        )
        .unwrap();
    }

    /// `cargo-blargh ARGS` in the app's directory, nothing but the config to go on.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.cli.command(args);
        cmd.current_dir(self.dir.path());
        cmd.output().unwrap()
    }

    fn deploy(&self, binary: &Path) -> Output {
        self.run(&["deploy", "--binary", binary.to_str().unwrap()])
    }

    /// The body of `GET /` on guest port `port`, or the error.
    fn body(&self, port: u16) -> String {
        test_support::http::get(self.vm.http_port(port), "/")
            .map(|r| r.body)
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    fn releases_on_disk(&self) -> usize {
        self.vm
            .ssh_ok("ls /var/lib/blargh/shop/releases")
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('.') && !l.trim().is_empty())
            .count()
    }
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed:\n{}", text(out));
    text(out)
}

fn refused(out: &Output, wants: &[&str]) -> String {
    let t = text(out);
    assert!(!out.status.success(), "should have been refused:\n{t}");
    for w in wants {
        assert!(t.contains(w), "the refusal lacks {w:?}:\n{t}");
    }
    t
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn every_configured_key_reaches_a_systemd_server() {
    let _one = one_at_a_time();
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let v3 = hello::build("v3", Profile::Debug).unwrap();
    let vm = Vm::boot_with(
        Init::Systemd,
        VmOptions {
            forward: vec![80, 8080, 8081],
            ..VmOptions::default()
        },
    )
    .unwrap();
    let app = App {
        cli: Cli::for_vm(BIN, &vm).unwrap(),
        vm: &vm,
        dir: tempfile::tempdir().unwrap(),
    };

    // Seed with no argument: the host, app, sockets, timeouts and retention of the file.
    app.configure(
        "listen = { web = \"0.0.0.0:8080\" }\nkeep_releases = 3\nready_timeout = \"20s\"\ndrain_timeout = \"30s\"",
    );
    let out = ok(&app.run(&["seed"]));
    assert!(out.contains("seeding shop"), "{out}");
    let unit = vm.ssh_ok("systemctl cat blargh-shop.service").unwrap();
    assert!(
        unit.contains("--drain-timeout 30s --ready-timeout 20s --keep-releases 3"),
        "{unit}"
    );
    let socket = vm.ssh_ok("systemctl cat blargh-shop-web.socket").unwrap();
    assert!(socket.contains("ListenStream=0.0.0.0:8080"), "{socket}");
    ok(&app.deploy(&v1));
    assert!(
        app.body(8080).starts_with("hello from v1 "),
        "{}",
        app.body(8080)
    );
    assert!(app.body(80).starts_with("error"), "nothing listens on 80");

    // A socket added in the file: deploy refuses before sending anything, seed applies it.
    app.configure(
        "listen = { web = \"0.0.0.0:8080\", admin = \"0.0.0.0:8081\" }\nkeep_releases = 3\nready_timeout = \"20s\"\ndrain_timeout = \"30s\"",
    );
    let before = app.releases_on_disk();
    refused(
        &app.deploy(&v2),
        &[
            "listen.admin = \"0.0.0.0:8081\" is configured",
            "cargo blargh seed",
            "nothing was sent",
        ],
    );
    assert_eq!(app.releases_on_disk(), before, "nothing was shipped");
    assert!(app.body(8080).starts_with("hello from v1 "));
    ok(&app.run(&["seed"]));
    let out = ok(&app.deploy(&v2));
    assert!(out.contains("activated"), "{out}");
    let status = ok(&app.run(&["status"]));
    assert!(
        status.contains("admin") && status.contains("0.0.0.0:8081"),
        "{status}"
    );
    assert!(app.body(8080).starts_with("hello from v2 "));

    // A socket moved: refused, then applied by seed; the app serves on the new address.
    app.configure(
        "listen = { web = \"0.0.0.0:80\", admin = \"0.0.0.0:8081\" }\nkeep_releases = 3\nready_timeout = \"20s\"\ndrain_timeout = \"30s\"",
    );
    refused(
        &app.deploy(&v1),
        &["listen.web: the host listens on 0.0.0.0:8080, the configuration says 0.0.0.0:80"],
    );
    ok(&app.run(&["seed"]));
    ok(&app.deploy(&v1));
    assert!(
        app.body(80).starts_with("hello from v1 "),
        "{}",
        app.body(80)
    );
    assert!(
        app.body(8080).starts_with("error"),
        "the old address is closed"
    );

    // A socket removed: refused, then seed removes its unit.
    app.configure(
        "listen = { web = \"0.0.0.0:80\" }\nkeep_releases = 3\nready_timeout = \"20s\"\ndrain_timeout = \"30s\"",
    );
    refused(
        &app.deploy(&v2),
        &["the host listens on 0.0.0.0:8081 as admin"],
    );
    ok(&app.run(&["seed"]));
    ok(&app.deploy(&v2));
    let status = ok(&app.run(&["status"]));
    assert!(!status.contains("0.0.0.0:8081"), "{status}");
    let units = vm
        .ssh_ok("systemctl list-unit-files 'blargh-shop*' --no-legend")
        .unwrap();
    assert!(!units.contains("blargh-shop-admin.socket"), "{units}");
    assert!(
        app.body(8081).starts_with("error"),
        "the removed socket is closed"
    );

    // keep_releases changed in the file: deploy applies it itself, and says so.
    app.configure(
        "listen = { web = \"0.0.0.0:80\" }\nkeep_releases = 2\nready_timeout = \"20s\"\ndrain_timeout = \"30s\"",
    );
    let out = ok(&app.deploy(&v3));
    assert!(out.contains("keep_releases 3 → 2"), "{out}");
    assert_eq!(
        app.releases_on_disk(),
        2,
        "v1, v2, v3 deployed, 2 kept:\n{out}"
    );

    // ready_timeout: a release slower to start than the file allows is refused in time,
    // and the old one keeps serving.
    app.configure(
        "listen = { web = \"0.0.0.0:80\" }\nkeep_releases = 2\nready_timeout = \"2s\"\ndrain_timeout = \"30s\"\nenv = { HELLO_WARMUP_MS = \"8000\" }",
    );
    let out = app.deploy(&v1);
    // With the old 20 s the 8 s warm-up would have passed: refused at 2 s is the new value.
    refused(
        &out,
        &[
            "applied ready_timeout 20s → 2s",
            "did not signal readiness",
            "within 2 s",
        ],
    );
    assert!(
        app.body(80).starts_with("hello from v3 "),
        "the old release serves"
    );

    // drain_timeout: a stream longer than the deadline is cut near it after a switch.
    app.configure(
        "listen = { web = \"0.0.0.0:80\" }\nkeep_releases = 2\nready_timeout = \"20s\"\ndrain_timeout = \"1s\"\nenv = { HELLO_WARMUP_MS = \"0\" }",
    );
    let (status, mut stream) =
        test_support::http::open_stream(vm.http_port(80), "/stream?ticks=2000&interval_ms=50")
            .unwrap();
    assert_eq!(status, 200);
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stream.read_to_string(&mut rest);
        Instant::now()
    });
    let switching = Instant::now();
    let out = ok(&app.deploy(&v2));
    let deployed = Instant::now();
    assert!(out.contains("drain_timeout 30s → 1s"), "{out}");
    let ended = reader.join().unwrap();
    let after = ended.saturating_duration_since(deployed);
    assert!(
        after < Duration::from_secs(5),
        "the stream outlived a 1 s drain deadline by {after:?}"
    );
    assert!(ended > switching, "the stream ran until the switch");
    assert!(app.body(80).starts_with("hello from v2 "));

    // Seed brings the unit in line with the file's new timeouts and retention (the flags a
    // fresh agent starts with); run again, it has nothing left to change and says so.
    let out = ok(&app.run(&["seed"]));
    assert!(
        out.contains("changed       service unit"),
        "the unit takes drain_timeout 1s and keep_releases 2:\n{out}"
    );
    let unit = vm.ssh_ok("systemctl cat blargh-shop.service").unwrap();
    assert!(
        unit.contains("--drain-timeout 1s --ready-timeout 20s --keep-releases 2"),
        "{unit}"
    );
    let out = ok(&app.run(&["seed"]));
    assert!(out.contains("nothing changed"), "{out}");
}
