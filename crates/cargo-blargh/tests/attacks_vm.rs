//! Attacks on a seeded systemd server under QEMU (issue 8), each shown to fail, on ONE VM
//! seeded with `cargo blargh seed` and deployed with examples/hello:
//!
//! 1. a secret canary set with `cargo blargh env set KEY` (value on stdin) appears in no
//!    command line (sampled in a loop during a deploy, a rollback and the `env set`
//!    itself), no file outside the env file, no log, the journal, `status`, `status --json`
//!    or the CLI's own output, and in no process's environment but the app's;
//! 2. another local user (`mallory`) is refused by the control socket and by
//!    `agent ctl`, and cannot read the agent's files or touch its process;
//! 3. the app's user plants symlinks in `data/` (the only place it can write) at every
//!    name the agent or seed uses; a deploy, a rollback, an `env set` and a re-seed later,
//!    no file outside `data/` changed owner, mode or content;
//! 4. the app's user cannot signal, ptrace or read the environment of the agent;
//! 5. a changed host key: `deploy` and `status` refuse, name the host and say how to
//!    proceed, and nothing reaches the agent; with the new key recorded they work again.
//!
//! Where the defence is a file mode or a uid, the test also shows, every run, that the
//! probe succeeds when the defence is absent (the socket opened to all; a process of the
//! attacker's own uid), so an empty answer means "refused" and not "the probe is broken".
//! The privilege checks `seed_vm.rs` already makes (owners and modes, capabilities, what
//! the app's user can write, the app's user on the control socket, a tampered release
//! refused on rollback) are not repeated here.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use test_support::attack::{self, CmdlineSampler};
use test_support::hello::{self, Profile};
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm, one_at_a_time};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");
const ROOT: &str = "/var/lib/blargh/hello";
const AGENT: &str = "/var/lib/blargh/hello/agent/blargh";
/// The secret. It is only ever written to stdin (the CLI's, or `cat` into a root-only file
/// on the VM), so a hit anywhere is blargh's doing.
const CANARY: &str = "canary-9c41e07b-secret-value";

struct Ctx<'a> {
    cli: Cli,
    vm: &'a Vm,
    dir: tempfile::TempDir,
}

impl Ctx<'_> {
    /// `cargo-blargh ARGS --host admin@vm --app hello`, run in an empty directory.
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

    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "{args:?} failed:\n{}", text(&out));
        text(&out)
    }

    fn deploy(&self, binary: &Path, message: &str) -> String {
        self.ok(
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

    fn serves(&self, version: &str) -> bool {
        test_support::http::get(self.vm.http_port(80), "/")
            .is_ok_and(|r| r.body.starts_with(&format!("hello from {version} ")))
    }

    fn agent_pid(&self) -> u32 {
        let pid = self.vm.ssh_ok("pgrep -x -u _blargh-hello blargh").unwrap();
        pid.trim()
            .parse()
            .unwrap_or_else(|_| panic!("one agent: {pid:?}"))
    }

    fn current(&self) -> String {
        self.vm.ssh_ok(&format!("readlink {ROOT}/current")).unwrap()
    }
}

/// Everything an attack achieved, printed together at the end.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn expect_empty(&mut self, attack: &str, what_worked: &str) {
        if !what_worked.trim().is_empty() {
            self.0
                .push(format!("{attack}:\n{}", what_worked.trim_end()));
        }
    }
    fn check(&mut self, attack: &str, ok: bool, detail: impl FnOnce() -> String) {
        if !ok {
            self.0.push(format!("{attack}:\n{}", detail()));
        }
    }
}

/// Names in `data/` the agent or seed might open, each a symlink to something the app must
/// not reach; directory names point at directories.
const PLANTED: &[(&str, &str)] = &[
    ("env", "/etc/blargh-canary"),
    ("env.new", "/etc/blargh-canary"),
    ("settings.json", "/etc/blargh-canary"),
    ("settings.json.new", "/etc/blargh-canary"),
    ("lock.json", "/etc/blargh-canary"),
    ("audit.log", "/etc/shadow"),
    ("app.log", "/etc/passwd"),
    ("agent.sock", "/etc/blargh-canary"),
    ("current", "/etc"),
    ("previous", "/etc"),
    ("blargh", "/var/lib/blargh/hello/agent/blargh"),
    ("blargh.blargh-new", "/var/lib/blargh/hello/agent/blargh"),
    ("agent", "/var/lib/blargh/hello/agent"),
    ("logs", "/etc"),
    ("run", "/etc"),
    ("releases", "/etc"),
    ("incoming", "/etc"),
    ("data", "/etc"),
    ("state-env", "/var/lib/blargh/hello/env"),
    ("state-audit", "/var/lib/blargh/hello/audit.log"),
    ("authorized_keys", "/root/.ssh/authorized_keys"),
    ("unit", "/etc/systemd/system/blargh-hello.service"),
];

/// Files whose content must not change through anything the app planted.
const WATCHED: &[&str] = &[
    "/etc/blargh-canary",
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/root/.ssh/authorized_keys",
    "/etc/systemd/system/blargh-hello.service",
    "/var/lib/blargh/hello/agent/blargh",
];

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn attacks_on_a_systemd_server_fail() {
    let _one = one_at_a_time();
    let t0 = std::time::Instant::now();
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let vm = Vm::boot(Init::Systemd).unwrap();
    let cli = Cli::for_vm(BIN, &vm).unwrap();
    let seed = |cli: &Cli| {
        let out = cli
            .run(
                "seed",
                "admin",
                &["--app", "hello", "--listen", "web=0.0.0.0:80"],
            )
            .unwrap();
        assert!(out.status.success(), "seed:\n{}", text(&out));
    };
    seed(&cli);
    let c = Ctx {
        cli,
        vm: &vm,
        dir: tempfile::tempdir().unwrap(),
    };
    c.deploy(&v1, "first");
    assert!(c.serves("v1"));
    eprintln!("booted, seeded, deployed v1 after {:?}", t0.elapsed());
    let mut found = Findings::default();

    // ---- 1. The secret canary, during env set, a deploy and a rollback. -----------------
    attack::place_canary(&vm, CANARY).unwrap();
    let sampler = CmdlineSampler::start(&vm).unwrap();
    let mut cli_output = String::new();
    cli_output += &c.ok(
        &["env", "set", "HELLO_GREETING"],
        Some(format!("{CANARY}\n").as_bytes()),
    );
    cli_output += &c.deploy(&v2, "with the secret");
    cli_output += &c.ok(&["rollback"], None);
    cli_output += &c.deploy(&v2, "again");
    // The sampler works: a command line that does hold the canary (read from its file on
    // the VM, so it is in no command line of ours) is caught.
    vm.ssh_ok(&format!(
        "sh -c 'sleep 2; true' control-sample \"$(cat {})\"",
        attack::CANARY_FILE
    ))
    .unwrap();
    let sampled = sampler.stop().unwrap();
    eprintln!("command lines sampled {} times", sampled.rounds);
    assert!(sampled.rounds >= 10, "the sampler ran: {sampled:?}");
    assert!(
        sampled.hits.contains("control-sample"),
        "the sampler must catch a command line holding the canary: {sampled:?}"
    );
    let hits: String = sampled
        .hits
        .lines()
        .filter(|l| !l.contains("control-sample"))
        .map(|l| format!("{l}\n"))
        .collect();
    found.expect_empty("the canary in a command line", &hits);
    assert_eq!(
        test_support::http::get(vm.http_port(80), "/greeting")
            .unwrap()
            .body
            .trim(),
        CANARY,
        "the app got the secret (so every search below looks for a value that is there)"
    );
    for args in [
        &["status"][..],
        &["status", "--json"][..],
        &["logs", "-n", "1000"][..],
        &["audit", "-n", "1000"][..],
        &["env", "list"][..],
        &["releases"][..],
    ] {
        cli_output += &c.ok(args, None);
    }
    found.check(
        "the canary in the CLI's stdout/stderr",
        !cli_output.contains(CANARY),
        || cli_output.clone(),
    );
    found.expect_empty(
        "the canary in a file other than the env file",
        &attack::files_holding_canary(&vm)
            .unwrap()
            .replace(&format!("{ROOT}/env\n"), ""),
    );
    let environs = attack::environs_holding_canary(&vm).unwrap();
    found.check(
        "the canary in the environment of a process other than the app",
        !environs.trim().is_empty() && environs.lines().all(|l| l == "hello app"),
        || environs.clone(),
    );
    let journal = attack::journal_lines_holding_canary(&vm).unwrap();
    found.check("the canary in the journal", journal == 0, || {
        format!("{journal} lines")
    });

    // ---- 2. Another local user. ----------------------------------------------------------
    vm.ssh_ok("useradd -m mallory").unwrap();
    let current = c.current();
    let mallory = || {
        vm.ssh_ok(&format!(
            "runuser -u mallory -- sh -c '\
               {AGENT} agent ctl --root {ROOT} status >/dev/null 2>&1 && echo \"agent ctl status answered\"; \
               {AGENT} agent ctl --root {ROOT} rollback >/dev/null 2>&1 && echo \"agent ctl rollback answered\"; \
               for f in {ROOT}/env {ROOT}/audit.log {ROOT}/settings.json {ROOT}/logs/app.log; do \
                 cat \"$f\" >/dev/null 2>&1 && echo \"read $f\"; done; \
               for d in {ROOT}/data {ROOT}/logs {ROOT}/incoming; do \
                 ls \"$d\" >/dev/null 2>&1 && echo \"listed $d\"; done; \
               true'"
        ))
        .unwrap()
    };
    found.expect_empty("mallory", &mallory());
    found.expect_empty(
        "mallory against the agent's process",
        &attack::reach_process_as(&vm, "mallory", c.agent_pid()).unwrap(),
    );
    // The app's process holds the secret in its environment: not for mallory either.
    let app_pid = vm.ssh_ok("pgrep -n -x -u hello app").unwrap();
    found.expect_empty(
        "mallory against the app's process",
        &attack::reach_process_as(&vm, "mallory", app_pid.trim().parse().unwrap()).unwrap(),
    );
    found.check(
        "mallory changed the current release",
        c.current() == current,
        || format!("{current} became {}", c.current()),
    );
    // The probe works: with the socket opened to all (the group wall gone), mallory is
    // served. Only the file mode keeps it out.
    vm.ssh_ok(&format!("chmod 0666 {ROOT}/agent.sock")).unwrap();
    let open = mallory();
    vm.ssh_ok(&format!("chmod 0660 {ROOT}/agent.sock")).unwrap();
    assert!(
        open.contains("agent ctl status answered"),
        "with agent.sock 0666 mallory must reach the agent, or the probe proves nothing: {open:?}"
    );
    c.deploy(&v2, "after mallory's rollback");

    // ---- 3. The app's user plants symlinks in data/, then everything runs again. --------
    vm.ssh_ok(
        "printf 'root only\\n' > /etc/blargh-canary && chown root:root /etc/blargh-canary && chmod 644 /etc/blargh-canary",
    )
    .unwrap();
    let watched_before = attack::snapshot(&vm, WATCHED).unwrap();
    let plant: String = PLANTED
        .iter()
        .map(|(name, target)| format!("ln -sfn {target} {ROOT}/data/{name} && "))
        .collect();
    vm.ssh_ok(&format!("runuser -u hello -- sh -c '{plant} true'"))
        .unwrap();
    // Anything else the app's user could write (outside data/ and the world's temporary
    // directories) would be one more place to plant: there is none. (Symlinks are left out:
    // `-writable` tests their target, and a masked unit is a link to /dev/null.)
    let writable = vm
        .ssh_ok(&format!(
            "runuser -u hello -- find /var/lib/blargh /etc /usr /root /srv /opt /home \
               -path {ROOT}/data -prune -o ! -type l -writable -print 2>/dev/null; true"
        ))
        .unwrap();
    found.expect_empty("writable by the app's user outside data/", &writable);
    c.ok(&["env", "set", "HELLO_GREETING"], Some(b"planted\n"));
    c.deploy(&v1, "over the planted links");
    c.ok(&["rollback"], None);
    seed(&c.cli);
    c.ok(
        &["env", "set", "HELLO_GREETING"],
        Some(format!("{CANARY}\n").as_bytes()),
    );
    let changed = attack::changed_lines(&watched_before, &attack::snapshot(&vm, WATCHED).unwrap());
    found.expect_empty(
        "changed outside data/ after the app planted links",
        &changed,
    );
    let strays = vm
        .ssh_ok(&format!(
            "find {ROOT} -mindepth 1 \\( -path {ROOT}/agent -o -path {ROOT}/data \\) -prune \
               -o ! -user _blargh-hello -print; \
             find {ROOT}/agent ! -user root -print; \
             find {ROOT}/data -mindepth 1 ! -user hello -print"
        ))
        .unwrap();
    found.expect_empty(
        "owners under the app's root after the app planted links",
        &strays,
    );
    let links = vm
        .ssh_ok(&format!(
            "cd {ROOT}/data && for n in {}; do [ -L \"$n\" ] || echo \"$n replaced\"; done",
            PLANTED
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" ")
        ))
        .unwrap();
    found.expect_empty("planted links touched", &links);
    assert!(c.serves("v2"), "the rollback went to v2");

    // ---- 4. The app's user against the agent's process. ----------------------------------
    let agent_pid = c.agent_pid();
    found.expect_empty(
        "the app's user against the agent's process",
        &attack::reach_process_as(&vm, "hello", agent_pid).unwrap(),
    );
    assert_eq!(c.agent_pid(), agent_pid, "the agent is the same process");
    // The probe works: against a process of its own uid, all three succeed.
    vm.ssh_ok("runuser -u hello -- setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        .unwrap();
    let own = vm
        .ssh_ok(
            "for i in $(seq 100); do pgrep -n -x -u hello sleep && exit 0; sleep 0.1; done; exit 1",
        )
        .unwrap();
    let own_reach = attack::reach_process_as(&vm, "hello", own.trim().parse().unwrap()).unwrap();
    assert_eq!(
        own_reach, "environ\nptrace\nsignal\n",
        "against its own process every probe must work, or the probe proves nothing"
    );

    // ---- 5. A changed host key. -----------------------------------------------------------
    let audit_before = vm
        .ssh_ok(&format!("wc -l < {ROOT}/audit.log; ls {ROOT}/releases"))
        .unwrap();
    vm.ssh_ok(
        "rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub && ssh-keygen -A >/dev/null && systemctl restart ssh",
    )
    .unwrap();
    let host = format!("[127.0.0.1]:{}", vm.ssh_port());
    for args in [
        &[
            "deploy",
            "--binary",
            v1.to_str().unwrap(),
            "-m",
            "to an impostor",
        ][..],
        &["status"][..],
    ] {
        let out = c.run(args, None);
        let said = text(&out);
        found.check(
            &format!("{args:?} with a changed host key"),
            !out.status.success()
                && said.contains("HOST KEY CHANGED")
                && said.contains(&host)
                && said.contains("ssh-keygen -R"),
            || format!("{}: {said}", out.status),
        );
    }
    let audit_after = vm
        .ssh_ok(&format!("wc -l < {ROOT}/audit.log; ls {ROOT}/releases"))
        .unwrap();
    found.check(
        "the agent heard from a deploy to a changed host key",
        audit_after == audit_before && c.serves("v2"),
        || format!("audit lines and releases before:\n{audit_before}after:\n{audit_after}"),
    );
    // As the message says: the new key recorded, the same commands work.
    let new_key = vm.ssh_ok("cat /etc/ssh/ssh_host_ed25519_key.pub").unwrap();
    let mut fields = new_key.split_whitespace();
    let known_hosts = c.cli.connect_flags()[3].clone();
    std::fs::write(
        &known_hosts,
        format!(
            "{host} {} {}\n",
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    assert!(c.ok(&["status"], None).contains("hello"));

    eprintln!("attacks_vm took {:?}", t0.elapsed());
    assert!(
        found.0.is_empty(),
        "{} attacks succeeded:\n\n{}",
        found.0.len(),
        found.0.join("\n\n")
    );
}
