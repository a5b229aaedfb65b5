//! `cargo blargh seed` against real Debian 12 servers (systemd, and OpenRC) under QEMU:
//! refusal of a binary the host cannot run before anything is sent, a dry run that
//! touches nothing, the seed itself, a second seed that changes nothing, a release served
//! on port 80 by the app's unprivileged user, deployed as a non-root user without sudo,
//! and an agent that comes back after `kill -9` and after a reboot.

use std::time::{Duration, Instant};

use test_support::hello::{self, Profile};
use test_support::remote::{Cli, ship_release, text};
use test_support::vm::{Init, Vm, one_at_a_time};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");
const AGENT: &str = "/var/lib/blargh/hello/agent/blargh";

/// A copy of our executable that claims to need GLIBC_2.99 (same length as GLIBC_2.34, so
/// the ELF stays valid): what a binary built on a newer distribution looks like.
fn binary_needing_newer_glibc(dir: &std::path::Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(BIN).unwrap();
    let needle = b"GLIBC_2.34\0";
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("our executable references GLIBC_2.34");
    bytes[pos..pos + needle.len()].copy_from_slice(b"GLIBC_2.99\0");
    let path = dir.join("agent-new-glibc");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn agent_status(vm: &Vm, user: &str) -> Result<String, std::io::Error> {
    vm.ssh_ok_as(
        user,
        &format!("{AGENT} agent ctl --root /var/lib/blargh/hello status"),
    )
}

fn wait_until(what: &str, vm: &Vm, timeout: Duration, ok: impl FnMut() -> bool) {
    test_support::wait::wait_until_or_explain(timeout, what, ok, || {
        format!("console:\n{}", vm.console_tail(30))
    });
}

fn serves(vm: &Vm, version: &str) -> bool {
    test_support::http::get(vm.http_port(80), "/")
        .map(|r| r.body.starts_with(&format!("hello from {version} ")))
        .unwrap_or(false)
}

fn seed_scenario(init: Init) {
    let _one = one_at_a_time();
    let release = hello::build("v1", Profile::Debug).unwrap();
    let vm = Vm::boot(init).unwrap();
    let cli = Cli::for_vm(BIN, &vm).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let seed = |extra: &[&str]| {
        let mut args = vec!["--app", "hello", "--listen", "web=0.0.0.0:80"];
        args.extend_from_slice(extra);
        cli.run("seed", "admin", &args).unwrap()
    };
    let nothing_installed = || {
        vm.ssh_ok("test ! -e /var/lib/blargh && ! id -u hello 2>/dev/null && echo clean")
            .is_ok_and(|o| o.trim() == "clean")
    };

    // A binary the host cannot run is refused before anything is sent.
    let newer = binary_needing_newer_glibc(scratch.path());
    let out = seed(&["--agent-binary", newer.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("GLIBC_2.99"), "{}", text(&out));
    assert!(
        text(&out).contains("2.36"),
        "names the host's glibc: {}",
        text(&out)
    );
    assert!(nothing_installed(), "refused before upload");

    // A dry run lists every step and touches nothing.
    let out = seed(&["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("would change"), "{}", text(&out));
    assert!(text(&out).contains("nothing was changed"), "{}", text(&out));
    assert!(nothing_installed(), "dry run changed the host");

    // The seed, as a sudo user.
    let t0 = Instant::now();
    let out = seed(&[]);
    assert!(out.status.success(), "seed failed:\n{}", text(&out));
    eprintln!(
        "{}: seed took {:?}\n{}",
        init.name(),
        t0.elapsed(),
        text(&out)
    );
    let status = agent_status(&vm, "admin").expect("admin reaches the agent without sudo");
    assert!(
        status.contains("app hello: no release activated yet"),
        "{status}"
    );

    // Again: nothing changes, and a dry run agrees.
    let out = seed(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("nothing changed"),
        "second seed:\n{}",
        text(&out)
    );
    let out = seed(&["--dry-run"]);
    assert!(
        text(&out).contains("dry run: 0 steps would change"),
        "{}",
        text(&out)
    );

    // doctor sees a supported host and a healthy agent.
    let out = cli.run("doctor", "admin", &["--app", "hello"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("installed and answering"),
        "{}",
        text(&out)
    );

    // A release on port 80, run by the unprivileged app user, shipped without sudo.
    ship_release(&vm, "admin", "hello", &release, "v1").unwrap();
    assert!(serves(&vm, "v1"), "port 80 serves the release");
    let owners = vm.ssh_ok("ps -o user= -C app").unwrap();
    assert!(
        !owners.trim().is_empty() && owners.lines().all(|u| u.trim() == "hello"),
        "app runs as hello: {owners:?}"
    );

    // kill -9 of the agent: the init system brings it back, and it brings the app back.
    let pid = vm
        .ssh_ok("pgrep -o -f 'agent run --root /var/lib/blargh/hello'")
        .unwrap();
    vm.ssh_ok(&format!("kill -9 {}", pid.trim())).unwrap();
    wait_until(
        "the agent's return after kill -9",
        &vm,
        Duration::from_secs(60),
        || {
            vm.ssh_ok("pgrep -o -f 'agent run --root /var/lib/blargh/hello'")
                .is_ok_and(|p| p.trim() != pid.trim())
                && agent_status(&vm, "admin").is_ok_and(|s| s.contains("running"))
        },
    );
    assert!(serves(&vm, "v1"));

    // A reboot: the agent starts at boot and starts the current release.
    vm.reboot_and_wait().unwrap();
    wait_until(
        "the app serving after a reboot",
        &vm,
        Duration::from_secs(120),
        || serves(&vm, "v1"),
    );
    assert!(agent_status(&vm, "admin").unwrap().contains("running"));
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn seed_a_systemd_server() {
    seed_scenario(Init::Systemd);
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn seed_an_openrc_server() {
    seed_scenario(Init::OpenRc);
}
