//! `cargo blargh seed` against real Debian 12 servers (systemd, and OpenRC) under QEMU:
//! refusal of a binary the host cannot run before anything is sent, a dry run that
//! touches nothing, the seed itself, a second seed that changes nothing, a release served
//! on port 80 by the app's unprivileged user, deployed as a non-root user without sudo,
//! the privilege model (who owns what, who runs with which capabilities, what the app can
//! reach, a tampered release refused), an agent that comes back after `kill -9` and after a
//! reboot, and a re-seed that moves an older layout's files to the agent user.

use std::time::{Duration, Instant};

use test_support::hello::{self, Profile};
use test_support::remote::{Cli, ship_release, text};
use test_support::vm::{Init, Vm, one_at_a_time};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");
const AGENT: &str = "/var/lib/blargh/hello/agent/blargh";
const ROOT: &str = "/var/lib/blargh/hello";

/// `mode owner:group` of each path under the app's root, one line each.
fn owners(vm: &Vm) -> String {
    vm.ssh_ok(&format!(
        "cd {ROOT} && stat -c '%n %a %U:%G' . agent agent/blargh data env releases logs run incoming agent.sock"
    ))
    .unwrap()
}

/// What seed promises (docs/security.md): root's root and agent, the app's data, the agent
/// user's everything else.
fn assert_owned_as_designed(vm: &Vm) {
    let got = owners(vm);
    let want = "\
. 1775 root:_blargh-hello
agent 755 root:root
agent/blargh 755 root:root
data 700 hello:hello
env 600 _blargh-hello:_blargh-hello
releases 755 _blargh-hello:_blargh-hello
logs 700 _blargh-hello:_blargh-hello
run 711 _blargh-hello:_blargh-hello
incoming 700 _blargh-hello:_blargh-hello
agent.sock 660 _blargh-hello:_blargh-hello
";
    assert_eq!(got, want, "ownership under {ROOT}");
    let strays = vm
        .ssh_ok(&format!(
            "find {ROOT} -mindepth 1 \\( -path {ROOT}/agent -o -path {ROOT}/data \\) -prune -o ! -user _blargh-hello -print"
        ))
        .unwrap();
    assert_eq!(strays, "", "entries not owned by the agent user");
}

/// The `Cap…:` lines of a process's status, as `name=hex` words.
fn caps(vm: &Vm, pid: &str) -> String {
    vm.ssh_ok(&format!(
        "grep -E '^(CapPrm|CapEff|CapAmb|CapBnd|NoNewPrivs)' /proc/{pid}/status | sed 's/:[[:space:]]*/=/' | tr '\\n' ' '"
    ))
    .unwrap()
}

/// As the app's user: everything it should not be able to do, each printed when it worked.
fn what_the_app_can_do(vm: &Vm) -> String {
    vm.ssh_ok(&format!(
        "runuser -u hello -- sh -c '\
           for d in {ROOT} {ROOT}/releases {ROOT}/releases/* {ROOT}/agent {ROOT}/logs {ROOT}/run {ROOT}/incoming; do \
             touch \"$d/planted\" 2>/dev/null && echo \"wrote in $d\"; done; \
           for f in {ROOT}/audit.log {ROOT}/env {ROOT}/releases/*/app {ROOT}/agent/blargh; do \
             [ -e \"$f\" ] && (: >> \"$f\") 2>/dev/null && echo \"could write $f\"; done; \
           mv {ROOT}/agent {ROOT}/agent.old 2>/dev/null && echo \"moved agent/\"; \
           ln -s /etc/passwd {ROOT}/current.new 2>/dev/null && echo \"planted a link\"; \
           {AGENT} agent ctl --root {ROOT} status >/dev/null 2>&1 && echo \"reached the control socket\"; \
           touch {ROOT}/data/mine && echo \"data is mine\"; \
           true'"
    ))
    .unwrap()
}

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

    // Who runs as whom, with what.
    assert_owned_as_designed(&vm);
    let agent_pid = vm.ssh_ok("pgrep -x -u _blargh-hello blargh").unwrap();
    let agent_pid = agent_pid.trim();
    assert!(
        !agent_pid.is_empty() && !agent_pid.contains('\n'),
        "one agent, as _blargh-hello: {agent_pid:?}"
    );
    let agent_caps = caps(&vm, agent_pid);
    eprintln!("{}: agent {agent_caps}", init.name());
    for set in ["CapPrm", "CapEff", "CapAmb", "CapBnd"] {
        assert!(
            agent_caps.contains(&format!("{set}=00000000000000e0 ")),
            "the agent holds CAP_SETUID, CAP_SETGID, CAP_KILL and nothing else: {agent_caps}"
        );
    }
    let app_pid = vm.ssh_ok("pgrep -x -u hello app").unwrap();
    let app_caps = caps(&vm, app_pid.trim());
    eprintln!("{}: app {app_caps}", init.name());
    for set in ["CapPrm", "CapEff", "CapAmb"] {
        assert!(
            app_caps.contains(&format!("{set}=0000000000000000 ")),
            "the app holds no capability: {app_caps}"
        );
    }
    assert!(app_caps.contains("NoNewPrivs=1"), "{app_caps}");
    let reach = what_the_app_can_do(&vm);
    assert_eq!(
        reach, "data is mine\n",
        "the app's user writes data/ and nothing else"
    );
    if init == Init::Systemd {
        let score = vm
            .ssh_ok("systemd-analyze security --no-pager blargh-hello.service | tail -n 1")
            .unwrap();
        eprintln!("systemd-analyze security blargh-hello.service: {score}");
        assert!(
            ["OK", "SAFE", "PERFECT"].iter().any(|l| score.contains(l)),
            "the unit's exposure is OK or better: {score}"
        );
    }

    // A stored release changed behind the agent's back is refused, and what serves keeps
    // serving.
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    ship_release(&vm, "admin", "hello", &v2, "v2").unwrap();
    assert!(serves(&vm, "v2"));
    let previous = vm
        .ssh_ok(&format!("basename $(readlink {ROOT}/previous)"))
        .unwrap();
    let previous = previous.trim();
    vm.ssh_ok(&format!("printf x >> {ROOT}/releases/{previous}/app"))
        .unwrap();
    let out = vm
        .ssh_as(
            "admin",
            &format!("{AGENT} agent ctl --root {ROOT} rollback"),
        )
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "a tampered rollback target: {said}");
    assert!(
        said.contains(&format!(
            "release {previous} was changed after it was uploaded"
        )),
        "{said}"
    );
    let digests = said
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .count();
    assert!(digests >= 2, "names both digests: {said}");
    assert!(serves(&vm, "v2"), "v2 keeps serving");

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
    assert!(serves(&vm, "v2"));

    // A reboot: the agent starts at boot and starts the current release.
    vm.reboot_and_wait().unwrap();
    wait_until(
        "the app serving after a reboot",
        &vm,
        Duration::from_secs(120),
        || serves(&vm, "v2"),
    );
    assert!(agent_status(&vm, "admin").unwrap().contains("running"));

    // An older seed's layout (the app owned the root and everything in it), with a link the
    // app planted: a re-seed moves it all to the agent user without following the link.
    vm.ssh_ok(&format!(
        "chown -R hello:hello {ROOT} && chown -R root:root {ROOT}/agent && chmod 755 {ROOT} && \
         runuser -u hello -- ln -s /etc/passwd {ROOT}/settings.json.new"
    ))
    .unwrap();
    let out = seed(&[]);
    assert!(
        out.status.success(),
        "re-seed over the old layout: {}",
        text(&out)
    );
    assert!(
        text(&out).lines().any(|l| l.trim_start().starts_with("changed")
            && l.contains("everything under /var/lib/blargh/hello but agent/ and data/ belongs to _blargh-hello")),
        "says it moved the old layout: {}",
        text(&out)
    );
    assert_eq!(
        vm.ssh_ok("stat -c %U:%G /etc/passwd").unwrap(),
        "root:root\n",
        "the planted link was not followed"
    );
    vm.ssh_ok(&format!("rm {ROOT}/settings.json.new")).unwrap();
    wait_until(
        "the app serving after the re-seed",
        &vm,
        Duration::from_secs(60),
        || serves(&vm, "v2"),
    );
    assert_owned_as_designed(&vm);
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
