//! A whole server on this machine for fast tests: OpenSSH sshd on loopback and an agent run
//! by hand under /var/lib/blargh/<app> (where the CLI reaches it over SSH), plus the CLI
//! pointed at it from an app directory. Needs root (sshd, /var/lib/blargh).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::sshd::{KeyPair, Keygen, Sshd};

/// True when the loopback tier can run; otherwise prints `SKIPPED <name>: needs root`.
pub fn can_run(name: &str) -> bool {
    if crate::agent::running_as_root() {
        return true;
    }
    println!("SKIPPED {name}: needs root");
    false
}

/// An sshd on loopback and the agent of `app` (as root, the app running as `nobody`,
/// socket `web` on a free loopback port). `Drop` kills both and removes the app's root.
#[derive(Debug)]
pub struct LocalServer {
    agent: Child,
    root: PathBuf,
    app: String,
    web_port: u16,
    sshd: Sshd,
    key: KeyPair,
}

impl LocalServer {
    /// Starts the agent of `app` from executable `cli` (cargo-blargh, which is also the
    /// agent) and an sshd that lets the returned key log in as root.
    ///
    /// Panics if the agent does not create its control socket within 20 seconds.
    pub fn start(cli: &Path, app: &str) -> LocalServer {
        LocalServer::start_in(cli, app, None)
    }

    /// A second server of `first`'s app on this machine, as a host of its own: its agent
    /// lives in `base/<app>` and runs in a private network namespace (so its `web` socket
    /// takes the same loopback port as `first`'s), and every SSH session of its sshd runs
    /// in a private mount namespace where `base` is mounted over /var/lib/blargh, so the
    /// CLI finds the agent where it looks on any host. It lets `first`'s key log in.
    pub fn start_beside(cli: &Path, first: &LocalServer, base: &Path) -> LocalServer {
        let server = LocalServer::start_in(cli, &first.app, Some((base, first.web_port)));
        server.sshd.authorize(&first.key);
        server
    }

    fn start_in(cli: &Path, app: &str, beside: Option<(&Path, u16)>) -> LocalServer {
        let base = beside.map(|(b, _)| b);
        let root = base.unwrap_or(Path::new("/var/lib/blargh")).join(app);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("agent"))
            .unwrap_or_else(|e| panic!("mkdir {}/agent (needs root): {e}", root.display()));
        let agent_bin = root.join("agent/blargh");
        std::fs::copy(cli, &agent_bin)
            .unwrap_or_else(|e| panic!("copying {} as the agent: {e}", cli.display()));
        let web_port = beside.map_or_else(crate::agent::free_port, |(_, port)| port);
        let log = std::fs::File::create(root.join("agent.log")).expect("agent log file");
        let mut cmd = match beside {
            None => Command::new(&agent_bin),
            Some(_) => {
                let mut c = Command::new("unshare");
                c.args([
                    "--net",
                    "/bin/sh",
                    "-c",
                    "ip link set lo up && exec \"$0\" \"$@\"",
                ])
                .arg(&agent_bin);
                c
            }
        };
        let agent = cmd
            .args(["agent", "run", "--root"])
            .arg(&root)
            .args(["--app", app, "--user", "nobody", "--listen"])
            .arg(format!("web=127.0.0.1:{web_port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("agent log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting the agent {}: {e}", agent_bin.display()));
        let sshd = match base {
            None => Sshd::start(),
            Some(base) => {
                use std::os::unix::fs::PermissionsExt;
                // The app (as `nobody`) must reach its releases under `base`.
                std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod 755 the second server's base");
                std::fs::create_dir_all("/var/lib/blargh").expect("mkdir /var/lib/blargh");
                Sshd::builder()
                    .config_line(&format!(
                        "ForceCommand unshare --mount --propagation private /bin/sh -c \
                         'mount --bind {} /var/lib/blargh && exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"'",
                        base.display()
                    ))
                    .start()
            }
        };
        let key = Keygen::ed25519(sshd.dir(), "id_ed25519").generate();
        sshd.authorize(&key);
        std::fs::write(
            sshd.dir().join("known_hosts"),
            sshd.known_hosts_line() + "\n",
        )
        .expect("write known_hosts");
        std::fs::write(sshd.dir().join("ssh_config"), "").expect("write ssh_config");
        let server = LocalServer {
            agent,
            root,
            app: app.to_string(),
            web_port,
            sshd,
            key,
        };
        let sock = server.root.join("agent.sock");
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the agent of {app} did not create {} within 20 s; its log:\n{}",
                sock.display(),
                server.agent_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The app's name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// `root@127.0.0.1:PORT`, the SSH destination of this server.
    pub fn destination(&self) -> String {
        format!("root@127.0.0.1:{}", self.sshd.port())
    }

    /// The loopback port of the app's socket `web`.
    pub fn web_port(&self) -> u16 {
        self.web_port
    }

    /// `listen = { web = "127.0.0.1:PORT" }`: the line a config needs to match the agent.
    pub fn listen_line(&self) -> String {
        format!("listen = {{ web = \"127.0.0.1:{}\" }}", self.web_port)
    }

    /// The known_hosts line that vouches for this server's sshd.
    pub fn known_hosts_line(&self) -> String {
        self.sshd.known_hosts_line()
    }

    /// The private key that logs in.
    pub fn key(&self) -> &Path {
        &self.key.private
    }

    /// The app's root, /var/lib/blargh/<app>.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the agent and sshd logged so far, for failure messages.
    pub fn agent_log(&self) -> String {
        format!(
            "--- agent ---\n{}\n--- sshd ---\n{}",
            std::fs::read_to_string(self.root.join("agent.log")).unwrap_or_default(),
            self.sshd.log_text()
        )
    }

    /// `-i KEY --known-hosts FILE --ssh-config EMPTY`: the flags that reach this server.
    pub fn connect_flags(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.key.private.display().to_string(),
            "--known-hosts".into(),
            self.sshd.dir().join("known_hosts").display().to_string(),
            "--ssh-config".into(),
            self.sshd.dir().join("ssh_config").display().to_string(),
        ]
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = crate::agent::signal(self.agent.id(), "TERM");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.agent.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        kill_running_from(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// An app directory (a temporary Cargo.toml) and the CLI run in it.
#[derive(Debug)]
pub struct AppDir {
    cli: PathBuf,
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl AppDir {
    /// An empty app directory for executable `cli`; HOME points at an empty directory so
    /// no personal ssh files take part.
    pub fn new(cli: &Path) -> AppDir {
        AppDir {
            cli: cli.to_path_buf(),
            dir: tempfile::tempdir().expect("app directory"),
            home: tempfile::tempdir().expect("empty HOME"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes Cargo.toml: package `name` and `[package.metadata.blargh]` made of `keys`
    /// (TOML lines, destination tables included).
    pub fn configure(&self, name: &str, keys: &str) {
        std::fs::write(
            self.dir.path().join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"1.0.0\"\nedition = \"2024\"\n\n\
                 [workspace]\n\n[package.metadata.blargh]\n{keys}\n"
            ),
        )
        .expect("write Cargo.toml");
    }

    /// `cargo-blargh ARGS` in the directory, stdin closed, no ssh-agent, to adjust and run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.cli);
        c.args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.home.path())
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        c
    }

    /// Runs `cargo-blargh ARGS EXTRA` in the directory and waits for it.
    pub fn run(&self, args: &[&str], extra: &[String]) -> Output {
        self.command(args)
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.cli.display()))
    }

    /// `deploy --json ARGS` to `server`'s one host, which must succeed: what was sent
    /// (`nothing`, `delta`, `whole`) and how many bytes.
    pub fn deploy_json(&self, server: &LocalServer, args: &[&str]) -> (String, u64) {
        let mut all = vec!["deploy", "--json"];
        all.extend(args);
        let out = self.run(&all, &server.connect_flags());
        assert!(
            out.status.success(),
            "deploy failed:\n{}\n{}",
            crate::remote::text(&out),
            server.agent_log()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", crate::remote::text(&out)));
        let host = &v["hosts"][0];
        (
            host["sent"].as_str().unwrap().to_string(),
            host["bytes_sent"].as_u64().unwrap(),
        )
    }
}

/// SIGKILLs every process whose executable lies under `dir` (releases left running by a
/// killed agent), found by their /proc/PID/exe link.
fn kill_running_from(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if std::fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe.starts_with(dir)) {
            let _ = crate::agent::signal(pid, "KILL");
        }
    }
}
