//! The day-to-day commands end to end on this machine: `cargo-blargh` connects to a real
//! sshd on loopback and speaks to a real agent through one `agent ctl pipe` channel per
//! command, at the server paths of `blargh_proto::paths` (linked to a temporary root).
//! Needs root (the paths are under /var/lib/blargh); skipped otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::time::Instant;

use test_support::agent::{AgentOptions, TestAgent, running_as_root};
use test_support::hello::{self, Profile};
use test_support::sshd::{Keygen, Sshd};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// `/var/lib/blargh/<app>` linked to the test agent's root, removed when dropped.
struct AppLink(PathBuf);

impl Drop for AppLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Setup {
    _sshd: Sshd,
    _home: tempfile::TempDir,
    home: PathBuf,
    port: u16,
    key: PathBuf,
}

impl Setup {
    fn cli(&self, app: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(BIN);
        cmd.arg("blargh")
            .args(args)
            .args(["--host", &format!("root@127.0.0.1:{}", self.port)])
            .args(["--app", app, "-i"])
            .arg(&self.key)
            .arg("--known-hosts")
            .arg(self.home.join("known_hosts"))
            .arg("--ssh-config")
            .arg(self.home.join("ssh_config"))
            .current_dir(&self.home)
            .env("HOME", &self.home)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run cargo-blargh");
        let mut si = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            si.write_all(text.as_bytes()).unwrap();
        }
        drop(si);
        child.wait_with_output().unwrap()
    }
}

fn setup() -> Setup {
    let sshd = Sshd::start();
    let home = tempfile::tempdir().unwrap();
    let key = Keygen::ed25519(home.path(), "id").generate();
    sshd.authorize(&key);
    std::fs::write(
        home.path().join("known_hosts"),
        sshd.known_hosts_line() + "\n",
    )
    .unwrap();
    std::fs::write(home.path().join("ssh_config"), "").unwrap();
    Setup {
        port: sshd.port(),
        home: home.path().to_path_buf(),
        _home: home,
        _sshd: sshd,
        key: key.private,
    }
}

fn link(app: &str, root: &Path) -> AppLink {
    let app: blargh_proto::AppName = app.parse().unwrap();
    let path = blargh_proto::paths::app_root(&app);
    std::fs::create_dir_all(blargh_proto::paths::APPS_DIR).unwrap();
    let _ = std::fs::remove_file(&path);
    std::os::unix::fs::symlink(root, &path).unwrap();
    let agent_dir = blargh_proto::paths::Layout::new(root).agent_dir();
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::os::unix::fs::symlink(BIN, agent_dir.join("blargh")).unwrap();
    AppLink(path)
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stdout {}\nstderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn commands_reach_the_agent_over_one_channel_each() {
    if !running_as_root() {
        eprintln!("skipped: needs root for /var/lib/blargh");
        return;
    }
    let s = setup();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let app = format!("ctest{}", std::process::id() % 100_000);
    let _link = link(&app, agent.root());

    let status = json(&s.cli(&app, &["status", "--json"], None));
    assert_eq!(status[0]["reply"]["reply"], "status", "{status}");
    assert_eq!(status[0]["reply"]["app"], "hello", "{status}");
    assert_eq!(
        status[0]["reply"]["settings"]["keep_releases"], 5,
        "{status}"
    );

    let out = s.cli(&app, &["env", "set", "RUST_LOG"], Some("debug\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = json(&s.cli(&app, &["env", "list", "--json"], None));
    assert_eq!(
        list[0]["reply"]["names"],
        serde_json::json!(["RUST_LOG"]),
        "{list}"
    );

    let out = s.cli(&app, &["lock", "acquire", "-m", "maintenance"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock = json(&s.cli(&app, &["lock", "status", "--json"], None));
    assert_eq!(lock[0]["reply"]["held"]["message"], "maintenance", "{lock}");

    // Refused names never reach the server.
    let out = s.cli(&app, &["env", "set", "LISTEN_FDS"], Some("3\n"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set by the agent"), "{err}");

    // A host where the app was never seeded says so, and what to run.
    let out = s.cli("ctest-missing", &["status"], None);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cargo blargh seed"), "{err}");
}

#[test]
fn deploy_redeploy_and_rollback_over_loopback() {
    if !running_as_root() {
        eprintln!("skipped: needs root for /var/lib/blargh");
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let s = setup();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let app = format!("dtest{}", std::process::id() % 100_000);
    let _link = link(&app, agent.root());
    // Deploy compares the host with the configuration: say where this agent listens.
    std::fs::write(
        s.home.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{app}\"\nversion = \"0.1.0\"\n\n[package.metadata.blargh]\n\
             hosts = [\"root@127.0.0.1:{}\"]\nlisten = {{ web = \"127.0.0.1:{}\" }}\n",
            s.port,
            agent.port()
        ),
    )
    .unwrap();
    let timed = |args: &[&str]| {
        let t = Instant::now();
        let out = s.cli(&app, args, None);
        let ms = t.elapsed().as_millis();
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (ms, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (first, out) = timed(&["deploy", "--binary", v1.to_str().unwrap()]);
    assert!(out.contains("activated"), "{out}");
    let (again, out) = timed(&["deploy", "--binary", v1.to_str().unwrap()]);
    assert!(out.contains("sent nothing"), "{out}");
    timed(&["deploy", "--binary", v2.to_str().unwrap()]);
    let (back, _) = timed(&["rollback"]);
    let v1_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&v1).unwrap()))
    };
    let current = agent.status().current.expect("a current release");
    assert_eq!(current.sha256, v1_sha, "rolled back to v1");
    let (status, _) = timed(&["status"]);
    eprintln!(
        "loopback sshd + agent: first deploy {first} ms, no-op redeploy {again} ms, rollback {back} ms, status {status} ms"
    );
}
