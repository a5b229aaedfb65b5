//! HTTPS end to end on a real systemd server: seed, deploy an app whose config has a `tls`
//! key, and the app gets its certificate from a real ACME CA (Pebble on this machine,
//! reached by the VM at the QEMU gateway) by TLS-ALPN-01 on its own port 443, serves HTTPS
//! that `curl --cacert <Pebble's root>` accepts from this machine, reports the expiry in
//! `cargo blargh status`, keeps the certificate across a deploy under HTTPS load (no second
//! order, 0 failed requests), and keeps serving it with the CA down.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use test_support::hello::{self, Profile};
use test_support::load::Wrk;
use test_support::pebble::{Pebble, https_get, served_certificate};
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm, VmOptions, one_at_a_time};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");
const DOMAIN: &str = "shop.test";
/// Where the VM keeps the root it trusts for Pebble's own HTTPS (its ACME directory).
const CA_ON_VM: &str = "/etc/ssl/pebble-https-ca.pem";

struct App {
    cli: Cli,
    dir: tempfile::TempDir,
}

impl App {
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.cli.command(args);
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "{args:?} failed:\n{}", text(&out));
        text(&out)
    }

    fn deploy(&self, binary: &Path) -> String {
        self.ok(&["deploy", "--binary", binary.to_str().unwrap()], None)
    }
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn a_seeded_server_serves_https_with_a_certificate_from_the_acme_ca() {
    let _one = one_at_a_time();
    let t0 = Instant::now();
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let vm = Vm::boot_with(
        Init::Systemd,
        VmOptions {
            forward: vec![443],
            // The app must reach the CA: Pebble, on this machine's loopback (10.0.2.2).
            restrict: false,
            ..VmOptions::default()
        },
    )
    .unwrap();
    let https = vm.http_port(443);
    // Pebble validates TLS-ALPN-01 by connecting to shop.test (challtestsrv: 127.0.0.1) on
    // the port that QEMU forwards to the VM's 443; the VM reaches Pebble at 10.0.2.2.
    let unused_http01 = test_support::agent::free_port();
    let mut pebble = Pebble::start_reachable_as(unused_http01, https, &["10.0.2.2"]);
    let ca_pem = std::fs::read_to_string(&pebble.ca_file).unwrap();
    vm.ssh_ok(&format!(
        "printf '%s' '{ca_pem}' > {CA_ON_VM} && chmod 644 {CA_ON_VM}"
    ))
    .unwrap();

    let app = App {
        cli: Cli::for_vm(BIN, &vm).unwrap(),
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(
        app.dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"shop\"\nversion = \"1.0.0\"\nedition = \"2024\"\n\n\
             [package.metadata.blargh]\nhosts = [\"{}\"]\nlisten = {{ web = \"0.0.0.0:443\" }}\n\
             tls = {{ domains = [\"{DOMAIN}\"], contact = \"ops@example.com\", directory = \"{}\", ca_file = \"{CA_ON_VM}\" }}\n",
            app.cli.destination("admin"),
            pebble.directory_via("10.0.2.2"),
        ),
    )
    .unwrap();
    app.ok(&["seed"], None);
    app.deploy(&v1);
    eprintln!("seeded and deployed v1 after {:?}", t0.elapsed());

    // First start: self-signed at once, then Pebble's certificate, with no restart.
    let root = pebble.issuer_root();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        match https_get(&root, DOMAIN, https) {
            Ok(body) => break body,
            Err(e) if Instant::now() > deadline => panic!(
                "no certificate from Pebble the client trusts after 60 s: {e}\napp log:\n{}\n{}",
                app.ok(&["logs", "-n", "40"], None),
                pebble.log()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    assert!(body.starts_with("hello from v1 "), "{body}");
    eprintln!("HTTPS verified with Pebble's root after {:?}", t0.elapsed());
    assert_eq!(pebble.orders(), 1, "{}", pebble.log());
    let serial = served_certificate(DOMAIN, https).0;
    assert!(!serial.is_empty(), "openssl read no serial");

    // status shows the domain's expiry, reported by the app (the agent cannot read its data).
    let status = app.ok(&["status"], None);
    let line = status
        .lines()
        .find(|l| l.contains("tls") && l.contains(DOMAIN))
        .unwrap_or_else(|| panic!("no tls line for {DOMAIN} in status:\n{status}"));
    assert!(
        line.contains("expires") && line.contains("Pebble"),
        "the status line names the expiry and the issuer: {line}"
    );
    assert!(!line.contains("self-signed"), "{line}");

    // The key and certificate live in the app's data dir, the app's own and nobody else's.
    let modes = vm
        .ssh_ok(
            "stat -c '%a %U %n' /var/lib/blargh/shop/data/tls /var/lib/blargh/shop/data/tls/*.pem",
        )
        .unwrap();
    for l in modes.lines() {
        let (mode, _) = l.split_once(' ').unwrap();
        assert!(mode == "700" || mode == "600", "{modes}");
    }

    // A deploy under HTTPS load: the new release loads the certificate from disk, orders
    // nothing, and not one request fails across the switch.
    let wrk = Wrk::start(&format!("https://127.0.0.1:{https}/"), 8, 2).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    app.deploy(&v2);
    std::thread::sleep(Duration::from_secs(2));
    let report = wrk.finish().unwrap();
    eprintln!(
        "HTTPS across the switch: {} requests, {} failed, p99 {} ms, max {} ms",
        report.requests,
        report.failures(),
        report.p99_ms,
        report.max_ms
    );
    assert!(report.requests > 50, "{}", report.raw);
    assert_eq!(report.failures(), 0, "{}", report.raw);
    let body = https_get(&root, DOMAIN, https).unwrap();
    assert!(body.starts_with("hello from v2 "), "{body}");
    assert_eq!(
        served_certificate(DOMAIN, https).0,
        serial,
        "the same certificate"
    );
    assert_eq!(pebble.orders(), 1, "no second order:\n{}", pebble.log());

    // The CA goes down: a deploy still serves the certificate on disk.
    pebble.stop();
    app.deploy(&v1);
    let body = https_get(&root, DOMAIN, https).unwrap();
    assert!(body.starts_with("hello from v1 "), "{body}");
    assert_eq!(served_certificate(DOMAIN, https).0, serial);
    eprintln!("done after {:?}", t0.elapsed());
}
