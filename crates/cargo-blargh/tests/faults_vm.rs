//! Faults on one real systemd server under QEMU, seeded with `cargo blargh seed` and deployed
//! with examples/hello, with wrk's keep-alive load through the VM's port 80 where a fault
//! could cost requests (docs/reliability.md, "Faults", lists every check and its figures):
//!
//! 1. `kill -9` of the app, of the agent, and of both: the app serves again, connections
//!    opened during the outage queue in the systemd socket units' backlog (none refused),
//!    wrk loses at most the request in flight on each connection the killed process held,
//!    and `cargo blargh status` agrees with what the guest runs.
//! 2. The deploy killed mid-upload (a release padded with 8 MiB of random bytes, sent
//!    whole, takes ~25 s): nothing half-stored stays in `incoming/` or `releases/`, the old
//!    release serves throughout (0 failed requests).
//! 3. A stale lock: the killed deploy's lock refuses the next deploy while unexpired,
//!    naming the dead holder; past its expiry the retry goes through.
//! 4. The deploy killed after it asked the agent to activate (the new release warming up
//!    beside the old one): the activation completes on its own, `status` tells the truth,
//!    0 failed requests; its lock refuses the next deploy until released with `--force`.
//! 5. The disk full during an upload: a clear error, nothing left behind, the old release
//!    serves; after freeing space the deploy works.
//! 6. The server's clock 6 hours ahead, then 6 hours behind: deploy and status behave; a
//!    60 s lock taken before the clock went back expires within 60 s, not 12 hours later.
//!
//! A reboot is checked by seed_vm.rs (the app serves the same release after `reboot`).

use std::process::Output;
use std::time::{Duration, Instant};

use test_support::faults::{
    self, AppDir, leftovers, padded_release, release_ids, truth, wait_for_load_on_one_app,
    wait_for_true_status,
};
use test_support::hello::{self, Profile};
use test_support::load::{Wrk, WrkReport};
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm, one_at_a_time};
use test_support::wait::wait_until_or_explain;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// wrk's keep-alive connections through the VM's port 80.
const CLIENTS: usize = 8;
/// The deploy lock's expiry in the app's Cargo.toml: short, so a dead deploy's lock goes
/// stale within the test, yet outlives the connect and the start of the upload that the
/// upload cut kills (and must exceed `ready_timeout + drain_timeout`, 15 s + 5 s).
const LOCK_EXPIRY_S: u64 = 40;
/// How long a release warms up before it is ready, for the activation cut: long enough to
/// see the new process beside the old one and kill the CLI then.
const WARMUP_MS: u64 = 5000;

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed:\n{}", text(out));
    text(out)
}

fn wrk(vm: &Vm) -> Wrk {
    Wrk::start(
        &format!("http://127.0.0.1:{}/", vm.http_port(80)),
        CLIENTS as u32,
        1,
    )
    .unwrap()
}

/// One `kill -9` under load: `kill` is a shell command run in the guest as root, given the
/// app's pid as `$APP` and the agent's as `$AGENT`. Returns wrk's report over the fault.
fn kill_under_load(app: &AppDir, what: &str, kill: &str) -> WrkReport {
    let vm = app.vm;
    let before = truth(vm).unwrap();
    let load = wrk(vm);
    let app_pid = wait_for_load_on_one_app(vm, CLIENTS, Duration::from_secs(60));
    let t0 = Instant::now();
    vm.ssh_ok(&format!(
        "APP={app_pid}; AGENT=$(systemctl show -p MainPID --value blargh-hello.service); {kill}"
    ))
    .unwrap();
    // Connections opened right after the kill wait in the socket unit's backlog.
    let pending: Vec<_> = (0..CLIENTS)
        .map(|i| {
            test_support::http::send(vm.http_port(80), "/")
                .unwrap_or_else(|e| panic!("{what}: connection {i} after the kill: {e}"))
        })
        .collect();
    for (i, p) in pending.into_iter().enumerate() {
        let r = p
            .response()
            .unwrap_or_else(|e| panic!("{what}: connection {i} opened after the kill: {e}"));
        assert_eq!(r.status, 200, "{what}: {}", r.body);
    }
    let back = t0.elapsed();
    let after = wait_for_true_status(
        app,
        &format!("status to tell the truth after {what}"),
        Duration::from_secs(90),
        |t| t.app_pids.first() != Some(&app_pid),
    );
    assert_eq!(after.current, before.current, "{what}: the same release");
    wait_for_load_on_one_app(vm, CLIENTS, Duration::from_secs(60));
    let report = load.finish().unwrap();
    eprintln!(
        "{what}: queued connections answered {back:?} after the kill; wrk: {} requests, \
         connect {} read {} write {} timeout {} non-2xx {}, max latency {} ms",
        report.requests,
        report.connect_errors,
        report.read_errors,
        report.write_errors,
        report.timeouts,
        report.non_2xx,
        report.max_ms
    );
    assert_eq!(
        report.connect_errors + report.non_2xx + report.timeouts,
        0,
        "{what}: nothing refused, nothing timed out, no error status:\n{}",
        report.raw
    );
    assert!(
        report.read_errors + report.write_errors <= CLIENTS as u64,
        "{what}: at most the request in flight on each of the {CLIENTS} connections the \
         killed process held:\n{}",
        report.raw
    );
    report
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn faults_on_a_systemd_server() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let v3 = hello::build("v3", Profile::Debug).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let vm = Vm::boot(Init::Systemd).unwrap();
    let cli = Cli::for_vm(BIN, &vm).unwrap();
    ok(&cli.run("seed", "admin", &["--app", "hello"]).unwrap());
    let metadata = format!(
        "ready_timeout = \"15s\"\ndrain_timeout = \"5s\"\nlock_expiry = \"{LOCK_EXPIRY_S}s\""
    );
    let app = AppDir::new(cli, &vm, &metadata).unwrap();
    ok(&app.deploy(&v1, "first").unwrap());
    eprintln!("booted, seeded, deployed in {:?}", started.elapsed());

    // 1. kill -9 of the app, of the agent, of both.
    let t = Instant::now();
    kill_under_load(&app, "kill -9 of the app", "kill -9 $APP");
    kill_under_load(&app, "kill -9 of the agent", "kill -9 $AGENT");
    kill_under_load(
        &app,
        "kill -9 of the app and the agent",
        "kill -9 $APP $AGENT",
    );
    eprintln!("kill -9 checks took {:?}", t.elapsed());

    // 2. The deploy killed mid-upload: nothing half-stored, the old release serves.
    let t = Instant::now();
    let big = padded_release(&v2, scratch.path(), 8).unwrap();
    let before = truth(&vm).unwrap();
    let ids_before = release_ids(&vm).unwrap();
    let load = wrk(&vm);
    wait_for_load_on_one_app(&vm, CLIENTS, Duration::from_secs(60));
    let base_kib = faults::agent_rss_kib(&vm).unwrap();
    let cut = app.spawn_deploy(&big, "cut mid-upload").unwrap();
    let cut_pid = cut.0.id();
    let t_cut = Instant::now();
    let seen = faults::wait_for_upload(&vm, base_kib, 2 << 10);
    let out = cut.kill().unwrap();
    let killed = Instant::now();
    eprintln!(
        "upload cut {:?} after the deploy started, the agent holding {seen} KiB more (of a \
         {} byte release):\n{}",
        t_cut.elapsed(),
        std::fs::metadata(&big).unwrap().len(),
        text(&out)
    );
    wait_until_or_explain(
        Duration::from_secs(30),
        "incoming/ and releases/ to hold nothing half-stored",
        || leftovers(&vm).is_ok_and(|l| l.is_empty()),
        || format!("left: {}", leftovers(&vm).unwrap_or_default()),
    );
    assert_eq!(
        release_ids(&vm).unwrap(),
        ids_before,
        "no release was added"
    );
    let after = truth(&vm).unwrap();
    assert_eq!(after.current, before.current);
    assert!(after.body.starts_with("hello from v1 "), "{}", after.body);

    // 3. The dead deploy's lock: unexpired, it refuses the retry naming its holder.
    let out = app.deploy(&big, "retry too soon").unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let holder = format!("(deploy, pid {cut_pid})");
    assert!(
        text(&out).contains("held by") && text(&out).contains(&holder),
        "the refusal names the dead holder {holder}:\n{}",
        text(&out)
    );
    // Past its expiry (at most LOCK_EXPIRY_S after its holder died), it blocks nothing:
    // the retry goes through.
    std::thread::sleep(Duration::from_secs(LOCK_EXPIRY_S + 1).saturating_sub(killed.elapsed()));
    let t_retry = Instant::now();
    let out = ok(&app.deploy(&big, "retry after the cut").unwrap());
    eprintln!("retry took {:?}:\n{out}", t_retry.elapsed());
    assert!(out.contains("activated"), "{out}");
    wait_for_true_status(&app, "v2 serving", Duration::from_secs(30), |t| {
        t.body.starts_with("hello from v2 ")
    });
    wait_for_load_on_one_app(&vm, CLIENTS, Duration::from_secs(60));
    let report = load.finish().unwrap();
    eprintln!(
        "across the upload cut, the stale lock and the retry: {} requests, {} failed",
        report.requests,
        report.failures()
    );
    assert_eq!(report.failures(), 0, "{}", report.raw);
    assert_eq!(leftovers(&vm).unwrap(), "");
    eprintln!("upload cut and stale lock took {:?}", t.elapsed());

    // 4. The deploy killed after it asked the agent to activate.
    let t = Instant::now();
    ok(&app
        .run(
            &["env", "set", "HELLO_WARMUP_MS"],
            Some(format!("{WARMUP_MS}\n").as_bytes()),
        )
        .unwrap());
    let before = truth(&vm).unwrap();
    let load = wrk(&vm);
    let old_pid = wait_for_load_on_one_app(&vm, CLIENTS, Duration::from_secs(60));
    let cut = app.spawn_deploy(&v3, "cut during activation").unwrap();
    let cut_pid = cut.0.id();
    wait_until_or_explain(
        Duration::from_secs(120),
        "the new release starting beside the old one",
        || truth(&vm).is_ok_and(|t| t.app_pids.len() >= 2),
        String::new,
    );
    let out = cut.kill().unwrap();
    eprintln!("deploy killed during activation:\n{}", text(&out));
    let after = wait_for_true_status(
        &app,
        "the activation to finish on its own",
        Duration::from_secs(90),
        |t| t.app_pids.first() != Some(&old_pid),
    );
    assert_ne!(after.current, before.current, "the activation completed");
    assert!(after.body.starts_with("hello from v3 "), "{}", after.body);
    wait_for_load_on_one_app(&vm, CLIENTS, Duration::from_secs(60));
    let report = load.finish().unwrap();
    eprintln!(
        "across the activation cut: {} requests, {} failed",
        report.requests,
        report.failures()
    );
    assert_eq!(report.failures(), 0, "{}", report.raw);
    // It left its lock behind: refused now, naming the dead holder; released by hand
    // (`lock release --force`, what the refusal suggests) rather than waited out again.
    let out = app.deploy(&v1, "too soon again").unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("(deploy, pid {cut_pid})")),
        "{}",
        text(&out)
    );
    ok(&app.run(&["lock", "release", "--force"], None).unwrap());
    ok(&app.run(&["env", "unset", "HELLO_WARMUP_MS"], None).unwrap());
    eprintln!("activation cut took {:?}", t.elapsed());

    // 5. The disk full during an upload.
    let t = Instant::now();
    let big2 = padded_release(&v1, scratch.path(), 4).unwrap();
    let ids_before = release_ids(&vm).unwrap();
    let before = truth(&vm).unwrap();
    let left = faults::fill_disk(&vm, 16).unwrap();
    let out = app.deploy(&big2, "onto a full disk").unwrap();
    let said = text(&out);
    eprintln!("deploy with {left} MiB free:\n{said}");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("No space left on device"), "{said}");
    assert_eq!(leftovers(&vm).unwrap(), "", "nothing left behind");
    assert_eq!(release_ids(&vm).unwrap(), ids_before);
    let after = truth(&vm).unwrap();
    assert_eq!(after.current, before.current);
    assert!(after.body.starts_with("hello from v3 "), "{}", after.body);
    faults::free_disk(&vm).unwrap();
    let out = ok(&app.deploy(&big2, "after freeing space").unwrap());
    assert!(out.contains("activated"), "{out}");
    wait_for_true_status(&app, "v1 serving", Duration::from_secs(30), |t| {
        t.body.starts_with("hello from v1 ")
    });
    eprintln!("disk full took {:?}", t.elapsed());

    // 6. The server's clock hours off.
    let t = Instant::now();
    vm.ssh_ok("date -s '+6 hours' >/dev/null").unwrap();
    let out = ok(&app.deploy(&v2, "clock 6 h ahead").unwrap());
    assert!(out.contains("activated"), "{out}");
    wait_for_true_status(
        &app,
        "v2 serving, clock ahead",
        Duration::from_secs(30),
        |t| t.body.starts_with("hello from v2 "),
    );
    ok(&app
        .run(
            &["lock", "acquire", "-m", "clock test", "--expiry", "60s"],
            None,
        )
        .unwrap());
    // The clock goes back 12 hours: the lock must not now last 12 hours longer.
    vm.ssh_ok("date -s '-12 hours' >/dev/null").unwrap();
    let out = app.deploy(&v3, "blocked by the lock").unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let secs: u64 = said
        .split("(it expires in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("names when the lock expires: {said}"));
    eprintln!("clock 12 h back: the 60 s lock expires in {secs} s");
    assert!(
        secs <= 60,
        "a 60 s lock expires in {secs} s after the clock went back"
    );
    ok(&app.run(&["lock", "release"], None).unwrap());
    let out = ok(&app.deploy(&v3, "clock 6 h behind").unwrap());
    assert!(out.contains("activated"), "{out}");
    wait_for_true_status(
        &app,
        "v3 serving, clock behind",
        Duration::from_secs(30),
        |t| t.body.starts_with("hello from v3 "),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    vm.ssh_ok(&format!("date -s @{now} >/dev/null")).unwrap();
    eprintln!("clock checks took {:?}", t.elapsed());
    eprintln!("all fault checks took {:?}", started.elapsed());
}
