//! `cargo blargh deploy` and the commands around it, on a real systemd server under QEMU:
//! seed → deploy v1 → deploy v2 under keep-alive load → rollback under load, with zero
//! failed requests; a redeploy of the same build sends nothing, a one-literal change sends
//! a small delta; a failing `before_activate` leaves the old release serving and shows its
//! output; a held lock refuses a deploy with the holder's name and message; `env set`
//! reaches the app without a failed request and its value shows up in no log or status.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use test_support::hello::{self, Profile};
use test_support::load::Wrk;
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm, one_at_a_time, skip_vm_tests};

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

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed:\n{}", text(out));
    text(out)
}

#[test]
fn deploy_rollback_env_and_lock_on_a_systemd_server() {
    if skip_vm_tests("deploy_rollback_env_and_lock_on_a_systemd_server") {
        return;
    }
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
    let wrk = Wrk::start(&format!("http://127.0.0.1:{}/", vm.http_port(80)), 8, 1).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let out = ok(&c.deploy(&v2, "second"));
    eprintln!("{out}");
    assert!(
        body(c.vm, "/").starts_with("hello from v2 "),
        "{}",
        body(c.vm, "/")
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let out = ok(&c.run(&["rollback"], None));
    assert!(out.contains("is serving"), "{out}");
    assert!(body(c.vm, "/").starts_with("hello from v1 "));
    std::thread::sleep(std::time::Duration::from_secs(1));

    // env set reaches the app with zero downtime; the value is never shown.
    let secret = "s3cr3t-greeting-7731";
    let out = ok(&c.run(
        &["env", "set", "HELLO_GREETING"],
        Some(format!("{secret}\n").as_bytes()),
    ));
    assert!(!out.contains(secret), "{out}");
    assert_eq!(body(c.vm, "/greeting").trim(), secret);
    std::thread::sleep(std::time::Duration::from_secs(1));
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
