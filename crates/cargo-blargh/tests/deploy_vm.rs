//! `cargo blargh deploy` and the commands around it, on a real systemd server under QEMU:
//! seed → deploy v1 → deploy v2 under keep-alive load → rollback under load, with zero
//! failed requests; a redeploy of the same build sends nothing, a one-literal change sends
//! a small delta; a failing `before_activate` leaves the old release serving and shows its
//! output; a held lock refuses a deploy with the holder's name and message, and of two
//! simultaneous deploys exactly one goes through; `env set` reaches the app without a
//! failed request and its value shows up in no log or status.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use test_support::hello::{self, Profile};
use test_support::load::Wrk;
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm, one_at_a_time};
use test_support::wait::wait_until_or_explain;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

fn body(vm: &Vm, path: &str) -> String {
    test_support::http::get(vm.http_port(80), path)
        .map(|r| r.body)
        .unwrap_or_else(|e| format!("error: {e}"))
}

struct Ctx<'a> {
    cli: Cli,
    vm: &'a Vm,
    dir: tempfile::TempDir,
}

impl Ctx<'_> {
    /// `cargo-blargh ARGS --host admin@vm --app hello`, run in the app's directory.
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let host = self.cli.destination("admin");
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--host", &host, "--app", "hello"]);
        let mut cmd = self.cli.command(&full);
        cmd.current_dir(self.dir.path());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(bytes) = stdin {
            child.stdin.take().unwrap().write_all(bytes).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn deploy(&self, binary: &Path, message: &str) -> Output {
        self.run(
            &[
                "deploy",
                "--binary",
                binary.to_str().unwrap(),
                "-m",
                message,
            ],
            None,
        )
    }
}

/// wrk's keep-alive connections through the VM's port 80.
const CLIENTS: usize = 8;

/// Waits until `clients` established connections to the guest's port 80 are held by the
/// process the agent runs as the current release (`ss -p` in the guest): the load is on,
/// and after a switch it has moved to the new release.
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

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed:\n{}", text(out));
    text(out)
}

/// Two deploys at once (`v1` as "racer one", `v3` as "racer two"): one holds the lock, the
/// other is refused naming the holder's message, and the winner's release serves. The
/// app's Cargo.toml (in `c.dir`) must have `before_activate = ["{bin}", "migrate"]`.
fn two_deploys_at_once(c: &Ctx, v1: &Path, v3: &Path) {
    // A slow migration (before_activate sleeps, then migrates) keeps the lock held for
    // seconds, longer than the gap between the two starts: they overlap on every run.
    let manifest = c.dir.path().join("Cargo.toml");
    let with_migration = std::fs::read_to_string(&manifest).unwrap();
    let slow = with_migration.replace(
        "before_activate = [\"{bin}\", \"migrate\"]",
        "before_activate = [\"sh\", \"-c\", \"sleep 3 && exec $0 migrate\", \"{bin}\"]",
    );
    assert_ne!(slow, with_migration, "the slow migration is configured");
    std::fs::write(&manifest, slow).unwrap();
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| c.deploy(v1, "racer one"));
        let b = scope.spawn(|| c.deploy(v3, "racer two"));
        (a.join().unwrap(), b.join().unwrap())
    });
    std::fs::write(&manifest, with_migration).unwrap();
    let (winner, refused, other_message, version) = match (a.status.success(), b.status.success()) {
        (true, false) => (&a, &b, "racer one", "v1"),
        (false, true) => (&b, &a, "racer two", "v3"),
        _ => panic!(
            "exactly one of two simultaneous deploys must be refused by the lock:\n\
             --- racer one ({}):\n{}\n--- racer two ({}):\n{}",
            a.status,
            text(&a),
            b.status,
            text(&b)
        ),
    };
    assert_eq!(refused.status.code(), Some(1), "{}", text(refused));
    assert!(
        text(refused).contains("held by") && text(refused).contains(other_message),
        "the refused deploy names the holder's message {other_message:?}:\n{}",
        text(refused)
    );
    assert!(text(winner).contains("activated"), "{}", text(winner));
    assert!(
        body(c.vm, "/").starts_with(&format!("hello from {version} ")),
        "the winner ({version}) serves: {}",
        body(c.vm, "/")
    );
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn deploy_rollback_env_and_lock_on_a_systemd_server() {
    let _one = one_at_a_time();
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let v3 = hello::build("v3", Profile::Debug).unwrap();
    let vm = Vm::boot(Init::Systemd).unwrap();
    let cli = Cli::for_vm(BIN, &vm).unwrap();
    let seeded = cli.run("seed", "admin", &["--app", "hello"]).unwrap();
    ok(&seeded);
    let dir = tempfile::tempdir().unwrap();
    let c = Ctx { cli, vm: &vm, dir };

    // First deploy: the whole file, compressed.
    let out = ok(&c.deploy(&v1, "first"));
    assert!(
        out.contains("activated") && out.contains("sent whole"),
        "{out}"
    );
    assert!(body(c.vm, "/").starts_with("hello from v1 "));

    // v2 then a rollback, under keep-alive load through the VM's port 80.
    let wrk = Wrk::start(
        &format!("http://127.0.0.1:{}/", vm.http_port(80)),
        CLIENTS as u32,
        1,
    )
    .unwrap();
    wait_for_load_on_current(&vm, CLIENTS);
    let out = ok(&c.deploy(&v2, "second"));
    eprintln!("{out}");
    assert!(
        body(c.vm, "/").starts_with("hello from v2 "),
        "{}",
        body(c.vm, "/")
    );
    wait_for_load_on_current(&vm, CLIENTS);
    let out = ok(&c.run(&["rollback"], None));
    assert!(out.contains("is serving"), "{out}");
    assert!(body(c.vm, "/").starts_with("hello from v1 "));
    wait_for_load_on_current(&vm, CLIENTS);

    // env set reaches the app with zero downtime; the value is never shown.
    let secret = "s3cr3t-greeting-7731";
    let out = ok(&c.run(
        &["env", "set", "HELLO_GREETING"],
        Some(format!("{secret}\n").as_bytes()),
    ));
    assert!(!out.contains(secret), "{out}");
    assert_eq!(body(c.vm, "/greeting").trim(), secret);
    wait_for_load_on_current(&vm, CLIENTS);
    let report = wrk.finish().unwrap();
    eprintln!("{}", report.raw);
    assert!(report.requests > 100, "{}", report.raw);
    assert_eq!(report.failures(), 0, "failed requests:\n{}", report.raw);
    for args in [
        &["status"][..],
        &["logs", "-n", "500"][..],
        &["audit", "-n", "500"][..],
        &["env", "list"][..],
    ] {
        let out = ok(&c.run(args, None));
        assert!(!out.contains(secret), "{args:?} shows the secret:\n{out}");
    }
    assert!(ok(&c.run(&["env", "list"], None)).contains("HELLO_GREETING=********"));
    let ps = vm.ssh_ok("ps -eo args").unwrap();
    assert!(!ps.contains(secret), "the secret is in a command line");

    // The same build again: nothing sent. A one-literal change: a small delta.
    let out = ok(&c.deploy(&v1, "same again"));
    assert!(out.contains("sent nothing (0 bytes)"), "{out}");
    let out = ok(&c.deploy(&v3, "one literal changed"));
    eprintln!("{out}");
    assert!(out.contains("sent delta"), "{out}");
    let size = std::fs::metadata(&v3).unwrap().len();
    let sent: u64 = out
        .split("sent delta (")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    eprintln!(
        "one-literal change: {sent} of {size} bytes ({:.3} %)",
        sent as f64 * 100.0 / size as f64
    );
    assert!(sent * 20 < size, "the delta is small: {sent} of {size}");

    // A held lock refuses a deploy, naming who holds it and why.
    ok(&c.run(&["lock", "acquire", "-m", "hotfix in progress"], None));
    let out = c.deploy(&v2, "blocked");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("hotfix in progress") && text(&out).contains("held by"),
        "{}",
        text(&out)
    );
    ok(&c.run(&["lock", "release"], None));

    // A failing before_activate: the old release keeps serving, the output is shown.
    std::fs::write(
        c.dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"hello\"\nversion = \"0.1.0\"\n\n[package.metadata.blargh]\n\
             hosts = [\"{}\"]\nbefore_activate = [\"{{bin}}\", \"migrate\"]\n",
            c.cli.destination("admin")
        ),
    )
    .unwrap();
    ok(&c.run(&["env", "set", "HELLO_MIGRATION_FAILS"], Some(b"1\n")));
    let out = c.deploy(&v2, "with a failing migration");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("before_activate"), "{}", text(&out));
    assert!(
        text(&out).contains("column \"email\" already exists"),
        "{}",
        text(&out)
    );
    assert!(
        body(c.vm, "/").starts_with("hello from v3 "),
        "the old release serves"
    );
    ok(&c.run(&["env", "unset", "HELLO_MIGRATION_FAILS"], None));
    let out = ok(&c.deploy(&v2, "migration fixed"));
    assert!(out.contains("activated"), "{out}");
    assert!(body(c.vm, "/").starts_with("hello from v2 "));

    two_deploys_at_once(&c, &v1, &v3);

    // Hooks: a failing pre-deploy hook stops the deploy before anything is sent;
    // post-deploy learns the result.
    let hooks = c.dir.path().join(".blargh/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let write_hook = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = hooks.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_hook("pre-deploy", "echo 'not on a Friday' >&2; exit 1");
    write_hook(
        "post-deploy",
        "echo \"$BLARGH_RESULT $BLARGH_APP\" > post-deploy.out",
    );
    let out = c.deploy(&v1, "stopped by a hook");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not on a Friday") && text(&out).contains("nothing was sent"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(hooks.join("pre-deploy")).unwrap();
    ok(&c.deploy(&v1, "after the hooks"));
    assert_eq!(
        std::fs::read_to_string(c.dir.path().join("post-deploy.out")).unwrap(),
        "ok hello\n"
    );

    let releases = ok(&c.run(&["releases"], None));
    assert!(releases.contains("one literal changed"), "{releases}");
    let audit = ok(&c.run(&["audit", "-n", "100"], None));
    assert!(
        audit.contains("migration fixed"),
        "the deploy message is audited:\n{audit}"
    );
    assert!(
        audit.contains("env_set") && audit.contains("HELLO_GREETING"),
        "{audit}"
    );
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn a_host_that_fails_rolls_back_the_hosts_that_switched() {
    let _one = one_at_a_time();
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let first = Vm::boot(Init::Systemd).unwrap();
    let second = Vm::boot(Init::Systemd).unwrap();
    let cli1 = Cli::for_vm(BIN, &first).unwrap();
    let cli2 = Cli::for_vm(BIN, &second).unwrap();
    ok(&cli1.run("seed", "admin", &["--app", "hello"]).unwrap());
    ok(&cli2
        .run(
            "seed",
            "admin",
            &["--app", "hello", "--ready-timeout", "5s"],
        )
        .unwrap());
    // Both hosts in one known_hosts file, as a developer's would be.
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "{}\n{}\n",
            first.known_hosts_line().unwrap(),
            second.known_hosts_line().unwrap()
        ),
    )
    .unwrap();
    let deploy = |binary: &Path| {
        let (h1, h2) = (cli1.destination("admin"), cli2.destination("admin"));
        let mut cmd = std::process::Command::new(BIN);
        cmd.args([
            "deploy", "--app", "hello", "--host", &h1, "--host", &h2, "--binary",
        ])
        .arg(binary)
        .args(["-i", first.key_path().to_str().unwrap(), "--known-hosts"])
        .arg(&known)
        .args(["--ssh-config", "/dev/null"])
        .env_remove("SSH_AUTH_SOCK")
        .current_dir(dir.path());
        cmd.output().unwrap()
    };
    let out = ok(&deploy(&v1));
    assert_eq!(out.matches("activated").count(), 2, "{out}");
    // v2 never becomes ready on the second host only. The env file is the agent user's, in
    // a sticky group-writable root where the kernel (protected_regular=2) refuses even
    // root's O_CREAT open of it: written as its owner.
    second
        .ssh_ok(
            "runuser -u _blargh-hello -- sh -c 'echo HELLO_HANG_IN_VERSION=v2 >> /var/lib/blargh/hello/env'",
        )
        .unwrap();
    let out = deploy(&v2);
    let shown = text(&out);
    eprintln!("{shown}");
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("rolled back"),
        "the first host was rolled back:\n{shown}"
    );
    assert!(shown.contains("did not signal readiness"), "{shown}");
    assert!(
        shown.contains("waiting for a database that never answers"),
        "the release's output:\n{shown}"
    );
    assert!(
        body(&first, "/").starts_with("hello from v1 "),
        "{}",
        body(&first, "/")
    );
    assert!(
        body(&second, "/").starts_with("hello from v1 "),
        "{}",
        body(&second, "/")
    );
}
