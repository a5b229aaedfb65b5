//! Flags of the day-to-day commands that no other test drives, each through the real CLI:
//! `--manifest-path` (deploy, init) and `deploy --target` (no server), and against an
//! OpenSSH sshd and an agent on loopback (root only; test_support::loopback): `exec` and
//! its `--timeout`, `lock acquire --expiry / --force`, `lock release --force`, `audit -n`,
//! `logs -n`, `logs -f`, `--accept-new-host-key` and `rollback RELEASE`.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use test_support::hello::{self, Profile};
use test_support::loopback::{AppDir, LocalServer, can_run};
use test_support::remote::text;
use test_support::wait::wait_for;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed:\n{}", text(out));
    text(out)
}

#[track_caller]
fn json(out: &Output) -> serde_json::Value {
    let t = ok(out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{t}"))
}

/// `--manifest-path` reads (deploy) and writes (init) the Cargo.toml it names, wherever
/// the command runs.
#[test]
fn manifest_path_names_the_app_from_another_directory() {
    let app = AppDir::new(Path::new(BIN));
    app.configure(
        "flagged",
        "hosts = [\"deploy@192.0.2.1\"]\napp = \"fromflag\"",
    );
    let manifest = app.path().join("Cargo.toml");
    let elsewhere = tempfile::tempdir().unwrap();
    let binary = elsewhere.path().join("release");
    std::fs::write(&binary, b"not run, only hashed").unwrap();
    let dry_run = |extra: &[&str]| {
        app.command(&["deploy", "--dry-run", "--binary", binary.to_str().unwrap()])
            .args(extra)
            .current_dir(elsewhere.path())
            .output()
            .unwrap()
    };
    let t = ok(&dry_run(&["--manifest-path", manifest.to_str().unwrap()]));
    assert!(
        t.contains(" as fromflag to: deploy@192.0.2.1"),
        "deploy did not read the named Cargo.toml:\n{t}"
    );
    let out = dry_run(&[]);
    assert!(
        !out.status.success(),
        "without the flag there is no Cargo.toml here:\n{}",
        text(&out)
    );

    // init: appends the section to the named file, once.
    let bare = tempfile::tempdir().unwrap();
    let bare_manifest = bare.path().join("Cargo.toml");
    std::fs::write(
        &bare_manifest,
        "[package]\nname = \"bare\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let init = || {
        app.command(&["init", "--manifest-path", bare_manifest.to_str().unwrap()])
            .current_dir(elsewhere.path())
            .output()
            .unwrap()
    };
    ok(&init());
    let written = std::fs::read_to_string(&bare_manifest).unwrap();
    assert!(
        written.starts_with("[package]\nname = \"bare\"")
            && written.contains("[package.metadata.blargh]"),
        "{written}"
    );
    assert!(!elsewhere.path().join("Cargo.toml").exists());
    let out = init();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&bare_manifest).unwrap(), written);
}

/// One host on loopback with hello v1 deployed, and the CLI set up to reach it.
struct Host {
    server: LocalServer,
    app: AppDir,
    key: Vec<String>,
}

impl Host {
    fn start(app_name: &str, v1: &Path) -> Host {
        Host::start_with(app_name, v1, "")
    }

    /// [`Host::start`] with more configuration `keys`.
    fn start_with(app_name: &str, v1: &Path, keys: &str) -> Host {
        let server = LocalServer::start(Path::new(BIN), app_name);
        let app = AppDir::new(Path::new(BIN));
        app.configure(
            "hello",
            &format!(
                "hosts = [\"{}\"]\napp = \"{app_name}\"\n{}\nknown_hosts = [\"{}\"]\n\
                 ready_timeout = \"30s\"\ndrain_timeout = \"1s\"\n{keys}",
                server.destination(),
                server.listen_line(),
                server.known_hosts_line(),
            ),
        );
        let key = vec!["-i".to_string(), server.key().display().to_string()];
        let host = Host { server, app, key };
        host.ok(&["deploy", "--binary", v1.to_str().unwrap()]);
        host
    }

    /// `cargo-blargh ARGS` with the key that logs in (before `--`, if any), to adjust.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let mut c = self.app.command(&args[..at]);
        c.args(&self.key).args(&args[at..]);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs as the local user `user` (the lock's holder is `user@machine`).
    fn run_as(&self, user: &str, args: &[&str]) -> Output {
        self.command(args).env("USER", user).output().unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed:\n{}\n{}",
            text(&out),
            self.server.agent_log()
        );
        text(&out)
    }

    /// The lock as `lock status --json` shows it (null when free).
    fn lock(&self) -> serde_json::Value {
        json(&self.run(&["lock", "status", "--json"]))[0]["reply"]["held"].clone()
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `exec` runs the current release's executable on the host with the arguments given and
/// prints its output; `--timeout` kills it (the default would wait 300 s).
#[test]
fn exec_runs_with_the_current_release_and_timeout_kills_it() {
    if !can_run("exec_runs_with_the_current_release_and_timeout_kills_it") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    // hello warms up 4 s before it looks for its socket, which exec does not hand over:
    // it exits with 1 after 4 s unless killed sooner.
    let h = Host::start_with("flagexec", &v1, "env = { HELLO_WARMUP_MS = \"4000\" }");
    let t = h.ok(&["exec", "--", "migrate"]);
    assert!(t.contains("hello v1: migration done"), "{t}");

    let t0 = Instant::now();
    let mut child = h
        .command(&["exec", "--timeout", "1", "--", "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(30), "exec --timeout 2 to end", || {
        child.try_wait().unwrap()
    });
    let took = t0.elapsed();
    let out = child.wait_with_output().unwrap();
    // A command that failed fails `exec` (CI must see a failed migration).
    assert_eq!(
        status.code(),
        Some(1),
        "exec of a killed command: {status:?}"
    );
    assert!(
        text(&out).contains("error: exited with a signal or the timeout"),
        "not killed at --timeout 1 ({took:?}):\n{}",
        text(&out)
    );
    assert!(took >= Duration::from_secs(1), "ended after {took:?}");
}

/// `lock acquire --expiry` sets how long the lock counts; someone else's lock refuses
/// `lock acquire` and `lock release` but not their `--force`.
#[test]
fn lock_expiry_and_force_reach_the_agent() {
    if !can_run("lock_expiry_and_force_reach_the_agent") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let h = Host::start("flaglock", &v1);
    let before = now_unix();
    ok(&h.run_as(
        "alice",
        &["lock", "acquire", "-m", "alice migrates", "--expiry", "90s"],
    ));
    let held = h.lock();
    assert!(
        held["holder"].as_str().unwrap_or("").starts_with("alice@"),
        "{held}"
    );
    let expires = held["expires_unix"].as_u64().unwrap();
    assert!(
        (before + 90..=now_unix() + 90).contains(&expires),
        "--expiry 90s: expires {} s from now",
        expires as i64 - now_unix() as i64
    );

    let refused = h.run_as("bob", &["lock", "acquire", "-m", "bob deploys"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("alice migrates"),
        "{}",
        text(&refused)
    );
    let refused = h.run_as("bob", &["lock", "release"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(h.lock()["holder"].as_str().unwrap().starts_with("alice@"));

    ok(&h.run_as("bob", &["lock", "release", "--force"]));
    assert!(h.lock().is_null(), "{}", h.lock());

    ok(&h.run_as("alice", &["lock", "acquire", "-m", "alice again"]));
    ok(&h.run_as(
        "bob",
        &["lock", "acquire", "--force", "-m", "bob takes over"],
    ));
    let held = h.lock();
    assert!(
        held["holder"].as_str().unwrap_or("").starts_with("bob@")
            && held["message"] == "bob takes over",
        "{held}"
    );
}

/// `audit -n` and `logs -n` bound what each host sends; `logs -f` keeps printing the lines
/// that come after it started (here: v2's, deployed while it follows).
#[test]
fn audit_and_logs_take_their_line_counts_and_logs_follows() {
    if !can_run("audit_and_logs_take_their_line_counts_and_logs_follows") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let h = Host::start("flaglogs", &v1);
    let count = |args: &[&str], field: &str| -> usize {
        json(&h.run(args))[0]["reply"][field]
            .as_array()
            .unwrap_or_else(|| panic!("no {field} in the answer to {args:?}"))
            .len()
    };
    assert!(count(&["audit", "--json"], "events") > 2, "too few events");
    assert_eq!(count(&["audit", "--json", "-n", "2"], "events"), 2);
    assert!(count(&["logs", "--json"], "lines") > 1, "too few lines");
    assert_eq!(count(&["logs", "--json", "-n", "1"], "lines"), 1);

    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut follow = h
        .command(&["logs", "-f", "-n", "1"])
        .stdout(out_file.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let printed = || std::fs::read_to_string(out_file.path()).unwrap();
    wait_for(
        Duration::from_secs(20),
        "logs -f to print the last line",
        || (!printed().is_empty()).then_some(()),
    );
    h.ok(&["deploy", "--binary", v2.to_str().unwrap()]);
    let seen = wait_for(
        Duration::from_secs(20),
        "logs -f to print v2's start",
        || {
            if let Some(status) = follow.try_wait().unwrap() {
                panic!(
                    "logs -f ended ({status}) instead of following:\n{}",
                    printed()
                );
            }
            printed().contains("hello v2 starting").then(printed)
        },
    );
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        seen.lines().count() > 1,
        "the last line, then the new ones:\n{seen}"
    );
}

/// `deploy --target TRIPLE` builds for that triple (cargo's `target/TRIPLE/release`) and
/// ships what it built; the configuration names no target.
#[test]
fn target_flag_builds_for_that_triple() {
    let app = AppDir::new(Path::new(BIN));
    app.configure("onebin", "hosts = [\"deploy@192.0.2.1\"]");
    std::fs::create_dir_all(app.path().join("src")).unwrap();
    std::fs::write(app.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    let triple = "x86_64-unknown-linux-gnu";
    let out = app
        .command(&["deploy", "--dry-run", "--target", triple])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap();
    let t = ok(&out);
    let shipped = app.path().join(format!("target/{triple}/release/onebin"));
    assert!(
        t.contains(&format!("would deploy {} (", shipped.display())),
        "{t}"
    );
    assert!(
        shipped.exists(),
        "{} was not built:\n{t}",
        shipped.display()
    );
}

/// `--accept-new-host-key` records the key of a host that `--known-hosts` does not know
/// yet, after which the host is known; without it such a host is refused.
#[test]
fn accept_new_host_key_records_an_unknown_host() {
    if !can_run("accept_new_host_key_records_an_unknown_host") {
        return;
    }
    let server = LocalServer::start(Path::new(BIN), "flagkeys");
    let app = AppDir::new(Path::new(BIN));
    app.configure(
        "hello",
        &format!(
            "hosts = [\"{}\"]\napp = \"flagkeys\"\n{}",
            server.destination(),
            server.listen_line()
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let ssh_config = dir.path().join("ssh_config");
    std::fs::write(&ssh_config, "").unwrap();
    let flags = [
        "-i".to_string(),
        server.key().display().to_string(),
        "--known-hosts".into(),
        known_hosts.display().to_string(),
        "--ssh-config".into(),
        ssh_config.display().to_string(),
    ];
    let out = app.run(&["status"], &flags);
    assert_eq!(
        out.status.code(),
        Some(3),
        "an unknown host:\n{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), "");

    ok(&app.run(&["status", "--accept-new-host-key"], &flags));
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    let key = server.known_hosts_line();
    let key = key.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    assert!(recorded.contains(&key), "{key} not in:\n{recorded}");
    ok(&app.run(&["status"], &flags));
}

/// `rollback RELEASE` goes to the release named, not to the previous one.
#[test]
fn rollback_to_a_named_release_skips_the_previous_one() {
    if !can_run("rollback_to_a_named_release_skips_the_previous_one") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let h = Host::start("flagback", &v1);
    // v1 with bytes appended: another release, the same program.
    let dir = tempfile::tempdir().unwrap();
    let v1x = dir.path().join("hello-v1x");
    let mut bytes = std::fs::read(&v1).unwrap();
    bytes.extend_from_slice(b"a third release");
    std::fs::write(&v1x, bytes).unwrap();
    std::fs::set_permissions(&v1x, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    h.ok(&["deploy", "--binary", v2.to_str().unwrap()]);
    h.ok(&["deploy", "--binary", v1x.to_str().unwrap()]);
    let releases = json(&h.run(&["releases", "--json"]));
    let id_of = |what: &str| -> String {
        releases[0]["reply"]["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[what] == true || r["manifest"]["sha256"] == what)
            .unwrap_or_else(|| panic!("no {what} in {releases}"))["manifest"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    use sha2::Digest;
    let v1_sha = hex::encode(sha2::Sha256::digest(std::fs::read(&v1).unwrap()));
    let (first, previous) = (id_of(&v1_sha), id_of("previous"));
    assert_ne!(first, previous, "v2 is the previous release");
    h.ok(&["rollback", &first]);
    let status = json(&h.run(&["status", "--json"]));
    assert_eq!(
        status[0]["reply"]["current"]["id"], first,
        "rollback RELEASE went elsewhere: {status}"
    );
}
