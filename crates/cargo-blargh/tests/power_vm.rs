//! An OOM kill and power cuts on one real systemd server under QEMU, seeded with `cargo
//! blargh seed` and deployed with examples/hello (docs/reliability.md, "Faults", lists
//! every check and its figures):
//!
//! 1. The app OOM-killed under a memory limit on the agent's service (`MemoryMax`), under
//!    wrk's keep-alive load: the app runs with `oom_score_adj` 500 (set by the trampoline)
//!    and the agent with 0, the kernel kills the app and not the agent (same agent pid),
//!    the agent restarts it, it serves again, `cargo blargh status` and `audit` say so, and
//!    wrk loses at most the request in flight on each connection.
//! 2. Power cuts (QEMU SIGKILLed, the same disk booted again: `Vm::power_cycle`) (a) right
//!    after a deploy returned, (b) during an upload, (c) during an activation, (d) right
//!    after `cargo blargh env set` returned. After each boot, with nobody acting: the app
//!    serves; `current` names a complete release whose executable matches its manifest's
//!    sha256; the env file parses and holds the value last set; the dead deploy's lock does
//!    not refuse the next deploy; the next deploy works.
//!
//! A power cut loses what the guest had not flushed; whether an unsynced write is lost
//! depends on timing and on ext4's own habits, so a pass here shows the common case, not
//! every ordering. The fsync discipline itself is unit-tested in blargh-agent (`durable`).

use std::process::Output;
use std::time::{Duration, Instant};

use test_support::faults::{
    self, AppDir, SERVICE, current_release_intact, env_file_value, leftovers, padded_release,
    release_ids, truth, wait_for_load_on_one_app, wait_for_true_status,
};
use test_support::hello::{self, Profile};
use test_support::load::Wrk;
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm, one_at_a_time};
use test_support::wait::wait_until_or_explain;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// wrk's keep-alive connections through the VM's port 80.
const CLIENTS: usize = 8;
/// What the trampoline sets the app's `oom_score_adj` to.
const APP_OOM_SCORE_ADJ: i32 = 500;
/// Headroom above what the agent's service uses when the memory limit is set.
const HEADROOM_MIB: u64 = 48;
/// How long the app may take to serve again after a boot, with nobody acting.
const BACK_AFTER_BOOT: Duration = Duration::from_secs(120);

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed:\n{}", text(out));
    text(out)
}

fn env_set(app: &AppDir, key: &str, value: &str) {
    ok(&app
        .run(&["env", "set", key], Some(format!("{value}\n").as_bytes()))
        .unwrap());
}

/// What every boot after a power cut must show, with nobody acting: the app serving a
/// release `version` allows (a release whose `GET /` starts with one of them), `status`
/// agreeing with the guest, `current` complete, the env file intact with `greeting` for
/// `HELLO_GREETING`, the app serving that greeting, and the audit log readable.
fn after_power_cut(app: &AppDir, what: &str, versions: &[&str], greeting: &str) -> faults::Truth {
    let vm = app.vm;
    let t = Instant::now();
    let back = wait_for_true_status(
        app,
        &format!("the app serving again after {what}"),
        BACK_AFTER_BOOT,
        |t| {
            versions
                .iter()
                .any(|v| t.body.starts_with(&format!("hello from {v} ")))
        },
    );
    eprintln!(
        "{what}: serving {:?} {:?} after ssh answered",
        back.body.trim(),
        t.elapsed()
    );
    let id = current_release_intact(vm).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(id, back.current, "{what}");
    let value = env_file_value(vm, "HELLO_GREETING").unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(value.as_deref(), Some(greeting), "{what}: the env file");
    let served = test_support::http::get(vm.http_port(80), "/greeting").unwrap();
    assert_eq!(served.body.trim(), greeting, "{what}: the app's greeting");
    ok(&app.run(&["audit"], None).unwrap());
    assert_eq!(leftovers(vm).unwrap(), "", "{what}: nothing half-stored");
    back
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn oom_and_power_cuts_on_a_systemd_server() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let v3 = hello::build("v3", Profile::Debug).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let vm = Vm::boot(Init::Systemd).unwrap();
    let cli = Cli::for_vm(BIN, &vm).unwrap();
    ok(&cli.run("seed", "admin", &["--app", "hello"]).unwrap());
    // The default lock expiry (15 min): a deploy lock the power cut left behind would
    // refuse every deploy for the rest of the test.
    let app = AppDir::new(cli, &vm, "ready_timeout = \"15s\"\ndrain_timeout = \"5s\"").unwrap();
    ok(&app.deploy(&v1, "first").unwrap());
    env_set(&app, "HELLO_ALLOCATABLE", "1");
    let mut greeting = "before the cuts".to_string();
    env_set(&app, "HELLO_GREETING", &greeting);
    wait_for_true_status(&app, "v1 serving", Duration::from_secs(60), |t| {
        t.body.starts_with("hello from v1 ")
    });
    eprintln!("booted, seeded, deployed in {:?}", started.elapsed());

    // 1. The app OOM-killed under a memory limit on the agent's service.
    let t = Instant::now();
    let agent = faults::agent_pid(&vm).unwrap();
    let load = Wrk::start(
        &format!("http://127.0.0.1:{}/", vm.http_port(80)),
        CLIENTS as u32,
        1,
    )
    .unwrap();
    let app_pid = wait_for_load_on_one_app(&vm, CLIENTS, Duration::from_secs(60));
    let adj = faults::oom_score_adj(&vm, app_pid).unwrap();
    let agent_adj = faults::oom_score_adj(&vm, agent).unwrap();
    eprintln!("oom_score_adj: app {adj}, agent {agent_adj}");
    assert_eq!(adj, APP_OOM_SCORE_ADJ, "the app's oom_score_adj");
    assert!(agent_adj < adj, "the agent's oom_score_adj {agent_adj}");
    let used = vm
        .ssh_ok(&format!(
            "cat /sys/fs/cgroup/system.slice/{SERVICE}/memory.current"
        ))
        .unwrap();
    let limit_mib = used.trim().parse::<u64>().unwrap() / (1 << 20) + HEADROOM_MIB;
    vm.ssh_ok(&format!(
        "systemctl set-property --runtime {SERVICE} MemoryMax={limit_mib}M MemorySwapMax=0"
    ))
    .unwrap();
    let asked = test_support::http::get(vm.http_port(80), "/alloc?mib=1024");
    eprintln!("GET /alloc?mib=1024 under MemoryMax={limit_mib}M: {asked:?}");
    assert!(
        asked.is_err(),
        "the app allocated 1 GiB under a {limit_mib} MiB limit: {asked:?}"
    );
    let after = wait_for_true_status(
        &app,
        "the agent to restart the OOM-killed app",
        Duration::from_secs(90),
        |t| t.app_pids.first() != Some(&app_pid),
    );
    assert!(after.body.starts_with("hello from v1 "), "{}", after.body);
    let kills = faults::oom_kills(&vm).unwrap();
    eprintln!("kernel: {kills:#?}");
    assert!(
        kills
            .iter()
            .any(|l| l.contains(&format!("Killed process {app_pid} (app)"))),
        "the kernel OOM-killed the app (pid {app_pid}): {kills:#?}"
    );
    assert!(
        !kills
            .iter()
            .any(|l| l.contains(&format!("Killed process {agent} "))),
        "the kernel OOM-killed the agent: {kills:#?}"
    );
    assert_eq!(
        faults::agent_pid(&vm).unwrap(),
        agent,
        "the agent survived (same pid); its service:\n{}",
        vm.ssh(&format!("systemctl status {SERVICE} | tail -n 20"))
            .map(|o| text(&o))
            .unwrap_or_default()
    );
    let status = app.status().unwrap();
    assert_eq!(status.agent_pid, agent, "status names the same agent");
    assert_eq!(status.restarts, 1, "status counts the restart");
    let said = ok(&app.run(&["status"], None).unwrap());
    assert!(said.contains("1 restarts"), "{said}");
    let audit = ok(&app.run(&["audit"], None).unwrap());
    assert!(
        audit.contains(&format!("pid {app_pid} was killed by signal 9 (SIGKILL)")),
        "the audit log names the kill:\n{audit}"
    );
    assert_eq!(
        faults::oom_score_adj(&vm, after.app_pids[0]).unwrap(),
        APP_OOM_SCORE_ADJ,
        "the restarted app's oom_score_adj"
    );
    wait_for_load_on_one_app(&vm, CLIENTS, Duration::from_secs(60));
    let report = load.finish().unwrap();
    eprintln!(
        "across the OOM kill: {} requests, connect {} read {} write {} timeout {} non-2xx {}",
        report.requests,
        report.connect_errors,
        report.read_errors,
        report.write_errors,
        report.timeouts,
        report.non_2xx
    );
    assert_eq!(
        report.connect_errors + report.non_2xx + report.timeouts,
        0,
        "nothing refused, nothing timed out, no error status:\n{}",
        report.raw
    );
    assert!(
        report.read_errors + report.write_errors <= CLIENTS as u64,
        "at most the request in flight on each of the {CLIENTS} connections:\n{}",
        report.raw
    );
    vm.ssh_ok(&format!(
        "systemctl set-property --runtime {SERVICE} MemoryMax=infinity MemorySwapMax=infinity"
    ))
    .unwrap();
    eprintln!("OOM check took {:?}", t.elapsed());

    // 2a. The power cut right after a deploy returned: the new release stays current.
    let t = Instant::now();
    ok(&app.deploy(&v2, "then the power went").unwrap());
    let boot = vm.power_cycle().unwrap();
    eprintln!("(a) power back after {boot:?}");
    after_power_cut(&app, "a cut right after a deploy", &["v2"], &greeting);
    eprintln!("(a) took {:?}", t.elapsed());

    // 2b. The power cut during an upload: nothing half-stored, the old release serves,
    // and the dead deploy's lock (taken before the boot) refuses nothing.
    let t = Instant::now();
    let big = padded_release(&v3, scratch.path(), 8).unwrap();
    let ids_before = release_ids(&vm).unwrap();
    let base_kib = faults::agent_rss_kib(&vm).unwrap();
    let cut = app
        .spawn_deploy(&big, "cut by the power mid-upload")
        .unwrap();
    let seen = faults::wait_for_upload(&vm, base_kib, 2 << 10);
    let boot = vm.power_cycle().unwrap();
    let out = cut.kill().unwrap();
    eprintln!(
        "(b) power cut with {seen} KiB of the upload in the agent; back after {boot:?}; \
         the deploy said:\n{}",
        text(&out)
    );
    after_power_cut(&app, "a cut during an upload", &["v2"], &greeting);
    assert_eq!(release_ids(&vm).unwrap(), ids_before, "no release added");
    let out = ok(&app.deploy(&big, "after the cut").unwrap());
    assert!(out.contains("activated"), "{out}");
    wait_for_true_status(&app, "v3 serving", Duration::from_secs(60), |t| {
        t.body.starts_with("hello from v3 ")
    });
    eprintln!("(b) took {:?}", t.elapsed());

    // 2c. The power cut during an activation (the new release warming up beside the old
    // one): either release is current after the boot, complete, and serving.
    let t = Instant::now();
    env_set(&app, "HELLO_WARMUP_MS", "4000");
    wait_for_true_status(
        &app,
        "v3 serving, warmed up",
        Duration::from_secs(60),
        |t| t.body.starts_with("hello from v3 "),
    );
    let cut = app
        .spawn_deploy(&v1, "cut by the power mid-activation")
        .unwrap();
    wait_until_or_explain(
        Duration::from_secs(120),
        "the new release starting beside the old one",
        || truth(&vm).is_ok_and(|t| t.app_pids.len() >= 2),
        String::new,
    );
    let boot = vm.power_cycle().unwrap();
    let out = cut.kill().unwrap();
    eprintln!(
        "(c) power cut during the activation; back after {boot:?}; the deploy said:\n{}",
        text(&out)
    );
    let back = after_power_cut(&app, "a cut during an activation", &["v1", "v3"], &greeting);
    let next = if back.body.starts_with("hello from v1 ") {
        (&v3, "v3")
    } else {
        (&v1, "v1")
    };
    let out = ok(&app.deploy(next.0, "after the cut").unwrap());
    assert!(out.contains("activated"), "{out}");
    wait_for_true_status(
        &app,
        "the next deploy serving",
        Duration::from_secs(60),
        |t| t.body.starts_with(&format!("hello from {} ", next.1)),
    );
    ok(&app.run(&["env", "unset", "HELLO_WARMUP_MS"], None).unwrap());
    eprintln!("(c) took {:?}", t.elapsed());

    // 2d. The power cut right after `env set` returned: the new value stays.
    let t = Instant::now();
    greeting = "after the last cut".to_string();
    env_set(&app, "HELLO_GREETING", &greeting);
    let boot = vm.power_cycle().unwrap();
    eprintln!("(d) power back after {boot:?}");
    after_power_cut(&app, "a cut right after env set", &[next.1], &greeting);
    let out = ok(&app.deploy(&v2, "after the last cut").unwrap());
    assert!(out.contains("activated"), "{out}");
    wait_for_true_status(&app, "v2 serving", Duration::from_secs(60), |t| {
        t.body.starts_with("hello from v2 ")
    });
    eprintln!("(d) took {:?}", t.elapsed());
    eprintln!("all checks took {:?}", started.elapsed());
}
