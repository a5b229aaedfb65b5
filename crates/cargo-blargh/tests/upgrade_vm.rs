//! Upgrading the agent on a real server, as a user does: `cargo blargh seed` again with a
//! newer agent executable. On systemd and on OpenRC, seeded and deployed with
//! examples/hello warming up for 3 s (a restart would stall every request that long), with
//! wrk's keep-alive load through port 80:
//!
//! - seed puts the new executable in place without a restart (its output says so);
//! - the agent is the same process, now running the new file, with the same capabilities;
//! - the release process is the same one, and no request fails across the upgrade;
//! - `status` agrees with the guest, and the audit log records the upgrade;
//! - the app's `tls` setting, applied by deploy, survives the seed (run from elsewhere);
//! - the new agent then deploys the next release, draining the one it took over.
//!
//! The figures (latency across the upgrade against steady p99) go to docs/reliability.md.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use test_support::agent::install_agent;
use test_support::faults::{AppDir, status_disagrees, truth, wait_for_load_on_one_app};
use test_support::hello::{self, Profile};
use test_support::load::Wrk;
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm, one_at_a_time};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// wrk's keep-alive connections through the VM's port 80.
const CLIENTS: usize = 8;

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed:\n{}", text(out));
    text(out)
}

/// The agent's pid, the sha256 of the file it runs, and its effective capabilities, as the
/// guest sees them.
fn agent_facts(vm: &Vm) -> (u32, String, String) {
    let out = vm
        .ssh_ok(
            "A=$(pgrep -u _blargh-hello -f 'agent run'); echo $A; \
             sha256sum /proc/$A/exe | cut -d' ' -f1; grep CapEff /proc/$A/status | cut -f2",
        )
        .unwrap();
    let mut l = out.lines().map(str::trim);
    let pid = l
        .next()
        .unwrap_or("")
        .parse()
        .unwrap_or_else(|_| panic!("one agent: {out}"));
    (
        pid,
        l.next().unwrap_or("").to_string(),
        l.next().unwrap_or("").to_string(),
    )
}

fn seed(cli: &Cli, agent: &Path) -> String {
    ok(&cli
        .run(
            "seed",
            "admin",
            &["--app", "hello", "--agent-binary", agent.to_str().unwrap()],
        )
        .unwrap())
}

fn upgrade_on(init: Init) {
    let _one = one_at_a_time();
    let started = Instant::now();
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (older, newer) = (scratch.path().join("older"), scratch.path().join("newer"));
    install_agent(Path::new(BIN), &older, "").unwrap();
    let newer_sha = install_agent(Path::new(BIN), &newer, "a newer agent").unwrap();

    let vm = Vm::boot(init).unwrap();
    let cli = Cli::for_vm(BIN, &vm).unwrap();
    seed(&cli, &older);
    // tls: an app key deploy applies; the seed below runs from elsewhere and must keep it.
    let app = AppDir::new(
        cli,
        &vm,
        "ready_timeout = \"30s\"\ndrain_timeout = \"5s\"\ntls = { domains = [\"shop.example\"] }",
    )
    .unwrap();
    ok(&app
        .run(&["env", "set", "HELLO_WARMUP_MS"], Some(b"3000\n"))
        .unwrap());
    // The tls key is here to survive the seed; the load below is plain HTTP.
    ok(&app
        .run(&["env", "set", "HELLO_PLAIN_HTTP"], Some(b"1\n"))
        .unwrap());
    ok(&app.deploy(&v1, "first").unwrap());
    eprintln!(
        "{init}: booted, seeded, deployed in {:?}",
        started.elapsed()
    );
    let (agent_pid, old_sha, caps) = agent_facts(&vm);
    assert_ne!(old_sha, newer_sha);

    let url = format!("http://127.0.0.1:{}/", vm.http_port(80));
    let steady = Wrk::start(&url, CLIENTS as u32, 1).unwrap();
    let app_pid = wait_for_load_on_one_app(&vm, CLIENTS, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(5));
    let steady = steady.finish().unwrap();

    let load = Wrk::start(&url, CLIENTS as u32, 1).unwrap();
    assert_eq!(
        wait_for_load_on_one_app(&vm, CLIENTS, Duration::from_secs(60)),
        app_pid
    );
    let t = Instant::now();
    let said = seed(&app.cli, &newer);
    let seed_took = t.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let during = load.finish().unwrap();
    eprintln!(
        "{init}: seed with a newer agent took {seed_took:?}; steady p99 {:.1} ms (max {:.1}); \
         across the upgrade {} requests, {} failed, p99 {:.1} ms, max {:.1} ms ({:.2}x steady p99)\n{said}",
        steady.p99_ms,
        steady.max_ms,
        during.requests,
        during.failures(),
        during.p99_ms,
        during.max_ms,
        during.max_ms / steady.p99_ms.max(0.001)
    );
    assert!(
        said.contains("put the new agent in place"),
        "seed did not upgrade the agent:\n{said}"
    );
    assert!(
        !said
            .lines()
            .any(|l| l.trim_start().starts_with("changed") && l.contains("restart")),
        "seed restarted something:\n{said}"
    );
    let (pid_after, sha_after, caps_after) = agent_facts(&vm);
    assert_eq!(pid_after, agent_pid, "the agent is the same process");
    assert_eq!(sha_after, newer_sha, "and runs the new file");
    assert_eq!(caps_after, caps, "with the same capabilities");
    let now = truth(&vm).unwrap();
    assert_eq!(now.app_pids, vec![app_pid], "the release process served on");
    let status = app.status().unwrap();
    assert_eq!(status_disagrees(&status, &now), None);
    assert!(
        status.settings.tls.is_some(),
        "a seed from outside the app switched its tls off: {:?}",
        status.settings
    );
    assert_eq!(status.restarts, 0);
    assert!(during.requests > 100, "load was sustained: {}", during.raw);
    assert_eq!(during.failures(), 0, "failed requests:\n{}", during.raw);
    // No request waited for a warm-up, as after a restart it would (3 s).
    assert!(
        during.max_ms < 2500.0,
        "a request waited {:.0} ms across the upgrade:\n{}",
        during.max_ms,
        during.raw
    );
    let audit = ok(&app.run(&["audit"], None).unwrap());
    assert!(
        audit.contains("upgrade"),
        "no upgrade in the audit log:\n{audit}"
    );

    // The new agent deploys the next release and drains the process it took over.
    let load = Wrk::start(&url, CLIENTS as u32, 1).unwrap();
    wait_for_load_on_one_app(&vm, CLIENTS, Duration::from_secs(60));
    ok(&app.deploy(&v2, "after the upgrade").unwrap());
    let report = load.finish().unwrap();
    assert_eq!(report.failures(), 0, "failed requests:\n{}", report.raw);
    let now = truth(&vm).unwrap();
    assert!(now.body.starts_with("hello from v2 "), "{now:?}");
    assert_eq!(now.app_pids.len(), 1, "the old process is gone: {now:?}");
    assert_ne!(now.app_pids, vec![app_pid]);
    let zombies = vm
        .ssh_ok("ps -eo stat= -o ppid= | awk '$1 ~ /^Z/' | wc -l")
        .unwrap();
    assert_eq!(zombies.trim(), "0", "a process was left unreaped");
    eprintln!("{init}: done in {:?}", started.elapsed());
}

#[test]
fn seed_upgrades_the_agent_in_place_on_systemd() {
    upgrade_on(Init::Systemd);
}

#[test]
fn seed_upgrades_the_agent_in_place_on_openrc() {
    upgrade_on(Init::OpenRc);
}
