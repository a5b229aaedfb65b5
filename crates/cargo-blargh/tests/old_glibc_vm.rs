//! A server older than the machine that builds: Debian 11 (glibc 2.31) under QEMU, where
//! nothing built here starts ("version `GLIBC_2.34' not found"). `seed` finds that its own
//! executable does not fit, builds an agent for glibc 2.31 with `cargo zigbuild` (a second
//! seed takes it from the cache), and `deploy` of examples/hello chooses a zigbuild for
//! glibc 2.31 by itself and switches versions under keep-alive load with zero failed
//! requests. Neither the installed agent nor the app references a glibc symbol version
//! above 2.31.
//!
//! Needs cargo-zigbuild and zig (`cargo xtask prereqs` installs them).

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use blargh_platform::GlibcVersion;
use test_support::load::Wrk;
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm, one_at_a_time, repo_root};
use test_support::wait::wait_until_or_explain;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");
const BULLSEYE: GlibcVersion = GlibcVersion {
    major: 2,
    minor: 31,
};
/// wrk's keep-alive connections through the VM's port 80.
const CLIENTS: usize = 8;

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed:\n{}", text(out));
    text(out)
}

/// The highest `GLIBC_x.y` a binary references.
fn glibc_needed(bytes: &[u8]) -> Option<GlibcVersion> {
    blargh_platform::binary_requirements(bytes).unwrap().glibc
}

/// A file of the guest, read over ssh.
fn guest_file(vm: &Vm, path: &str) -> Vec<u8> {
    let out = vm.ssh(&format!("cat {path}")).unwrap();
    assert!(out.status.success(), "cat {path}: {}", text(&out));
    out.stdout
}

fn body(vm: &Vm) -> String {
    test_support::http::get(vm.http_port(80), "/")
        .map(|r| r.body)
        .unwrap_or_else(|e| format!("error: {e}"))
}

/// Waits until `clients` established connections to the guest's port 80 are held by the
/// current release: the load is on, and after a switch it has moved to the new release.
fn wait_for_load_on_current(vm: &Vm, clients: usize) {
    let last = std::cell::RefCell::new(String::new());
    wait_until_or_explain(
        Duration::from_secs(60),
        &format!("{clients} connections on guest port 80 held by the current release"),
        || {
            let Ok(out) = vm.ssh_ok(
                "/var/lib/blargh/hello/agent/blargh agent ctl --root /var/lib/blargh/hello \
                 --json status; echo '--- ss'; ss -Htnp state established '( sport = :80 )'",
            ) else {
                return false;
            };
            *last.borrow_mut() = out.clone();
            let (status, ss) = out.split_once("--- ss").unwrap_or((&out, ""));
            let pid = serde_json::from_str::<blargh_proto::control::Reply>(status.trim())
                .ok()
                .and_then(|r| match r {
                    blargh_proto::control::Reply::Status(s) => s.pid,
                    _ => None,
                });
            let Some(pid) = pid else { return false };
            let mine = format!("pid={pid},");
            ss.lines().filter(|l| l.contains(&mine)).count() >= clients
        },
        || format!("last seen in the guest:\n{}", last.borrow()),
    );
}

struct Ctx<'a> {
    cli: Cli,
    vm: &'a Vm,
    /// Where the CLI runs (its delta cache lands here, not in the repository).
    scratch: tempfile::TempDir,
    /// Built agents, kept between runs like a developer's ~/.cache/blargh/agents.
    agents: PathBuf,
}

impl Ctx<'_> {
    fn run(&self, args: &[&str], version: Option<&str>) -> (Output, Duration) {
        let mut cmd = self.cli.command(args);
        cmd.current_dir(self.scratch.path())
            .env("BLARGH_AGENT_CACHE", &self.agents)
            // The app's zigbuilds in their own target directory: they never wait for the
            // lock of the build that runs the tests.
            .env(
                "CARGO_TARGET_DIR",
                repo_root().join("target/test-releases/zig-target"),
            );
        if let Some(v) = version {
            cmd.env("HELLO_VERSION", v);
        }
        let t = Instant::now();
        let out = cmd.output().unwrap();
        (out, t.elapsed())
    }

    fn seed(&self) -> (Output, Duration) {
        let dest = self.cli.destination("admin");
        self.run(&["seed", &dest, "--app", "hello"], None)
    }

    fn deploy(&self, version: &str) -> (Output, Duration) {
        let dest = self.cli.destination("admin");
        let manifest = repo_root().join("examples/hello/Cargo.toml");
        self.run(
            &[
                "deploy",
                "--manifest-path",
                manifest.to_str().unwrap(),
                "--host",
                &dest,
                "--app",
                "hello",
                "-m",
                version,
            ],
            Some(version),
        )
    }
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn seed_and_deploy_to_debian_11_whose_glibc_is_older() {
    let _one = one_at_a_time();
    let ours = glibc_needed(&std::fs::read(BIN).unwrap()).unwrap();
    assert!(
        ours > BULLSEYE,
        "this test needs a build machine whose builds need a glibc newer than 2.31 (ours need {ours})"
    );
    let vm = Vm::boot(Init::BullseyeSystemd).unwrap();
    eprintln!("bullseye booted in {:?}", vm.boot_duration());
    assert_eq!(
        vm.ssh_ok("getconf GNU_LIBC_VERSION").unwrap().trim(),
        "glibc 2.31"
    );
    let c = Ctx {
        cli: Cli::for_vm(BIN, &vm).unwrap(),
        vm: &vm,
        scratch: tempfile::tempdir().unwrap(),
        agents: repo_root().join("target/test-agents"),
    };

    // Seed: this executable does not fit; an agent for glibc 2.31 is built (or was, by an
    // earlier run) and installed.
    let (out, took) = c.seed();
    let shown = ok(&out);
    eprintln!("first seed ({took:?}):\n{shown}");
    assert!(
        shown.contains("needs a newer glibc than the host's"),
        "{shown}"
    );
    assert!(
        shown.contains("building an agent that fits: cargo zigbuild --release --target x86_64-unknown-linux-gnu.2.31")
            || shown.contains("using the agent built earlier for x86_64-unknown-linux-gnu.2.31"),
        "{shown}"
    );
    assert!(shown.contains("seeded hello"), "{shown}");
    let agent = guest_file(c.vm, "/var/lib/blargh/hello/agent/blargh");
    let needed = glibc_needed(&agent).unwrap();
    assert!(needed <= BULLSEYE, "the agent needs GLIBC_{needed}");
    eprintln!(
        "installed agent: {} bytes, needs GLIBC_{needed}",
        agent.len()
    );

    // A second seed takes the agent from the cache and changes nothing.
    let (out, took) = c.seed();
    let shown = ok(&out);
    eprintln!("second seed ({took:?}):\n{shown}");
    assert!(shown.contains("using the agent built earlier"), "{shown}");
    assert!(!shown.contains("building an agent"), "{shown}");
    assert!(shown.contains("nothing changed"), "{shown}");

    // Deploy v1: the build is chosen for the host's glibc.
    let (out, took) = c.deploy("v1");
    let shown = ok(&out);
    eprintln!("deploy v1 ({took:?}):\n{shown}");
    assert!(
        shown.contains("cargo zigbuild --release --target x86_64-unknown-linux-gnu.2.31"),
        "{shown}"
    );
    assert!(
        shown.contains("has glibc 2.31, older than this machine's"),
        "{shown}"
    );
    assert!(body(c.vm).starts_with("hello from v1 "), "{}", body(c.vm));

    // v2 under keep-alive load: zero failed requests across the switch.
    let wrk = Wrk::start(
        &format!("http://127.0.0.1:{}/", vm.http_port(80)),
        CLIENTS as u32,
        1,
    )
    .unwrap();
    wait_for_load_on_current(&vm, CLIENTS);
    let (out, took) = c.deploy("v2");
    let shown = ok(&out);
    eprintln!("deploy v2 under load ({took:?}):\n{shown}");
    assert!(body(c.vm).starts_with("hello from v2 "), "{}", body(c.vm));
    wait_for_load_on_current(&vm, CLIENTS);
    let report = wrk.finish().unwrap();
    eprintln!("{}", report.raw);
    eprintln!(
        "wrk across the switch on bullseye: {} requests, {} failed",
        report.requests,
        report.failures()
    );
    assert!(report.requests > 100, "{}", report.raw);
    assert_eq!(report.failures(), 0, "failed requests:\n{}", report.raw);

    let app = guest_file(c.vm, "/var/lib/blargh/hello/current/app");
    let needed = glibc_needed(&app).unwrap();
    assert!(needed <= BULLSEYE, "the app needs GLIBC_{needed}");
    eprintln!("deployed app: {} bytes, needs GLIBC_{needed}", app.len());
}
