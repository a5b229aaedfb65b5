//! A real agent (`cargo-blargh agent run`) on a loopback port in a temporary root, driven
//! through the real `cargo-blargh agent ctl` client.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use blargh_proto::control::{Activation, AgentStatus, AuditEvent, ControlError, Reply, Upgraded};

/// Settings for a test agent; `Default` is what most tests want.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// `--ready-timeout` (default: the agent's).
    pub ready_timeout: Option<String>,
    /// `--drain-timeout` (default here: 10s).
    pub drain_timeout: Option<String>,
    /// `--max-restarts`.
    pub max_restarts: Option<u32>,
    /// `--watchdog-timeout` (default: the agent's).
    pub watchdog_timeout: Option<String>,
    /// Lines of the app's env file.
    pub env: Vec<(String, String)>,
}

/// A running agent; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct TestAgent {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    child: Child,
    log: PathBuf,
}

/// True when the tests run as root (then the app runs as `nobody`).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TestAgent {
    /// Starts `bin agent run` with a `web` listener on a free port and waits until its
    /// control socket answers.
    pub fn start(bin: impl AsRef<Path>, opts: AgentOptions) -> TestAgent {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        // The app's user must be able to reach the root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(&root).unwrap();
        if !opts.env.is_empty() {
            let text: String = opts.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            std::fs::write(root.join("env"), text).unwrap();
        }
        let port = free_port();
        let log = dir.path().join("agent.log");
        let mut cmd = Command::new(bin.as_ref());
        cmd.args(["agent", "run", "--app", "hello", "--root"])
            .arg(&root)
            .args(["--listen", &format!("web=127.0.0.1:{port}")])
            .args([
                "--drain-timeout",
                opts.drain_timeout.as_deref().unwrap_or("10s"),
            ]);
        if let Some(t) = &opts.ready_timeout {
            cmd.args(["--ready-timeout", t]);
        }
        if let Some(n) = opts.max_restarts {
            cmd.args(["--max-restarts", &n.to_string()]);
        }
        if let Some(t) = &opts.watchdog_timeout {
            cmd.args(["--watchdog-timeout", t]);
        }
        if running_as_root() {
            cmd.args(["--user", "nobody"]);
        }
        let logfile = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile);
        let child = cmd.spawn().expect("start the agent");
        let agent = TestAgent {
            _dir: dir,
            root,
            bin: bin.as_ref().to_path_buf(),
            port,
            child,
            log,
        };
        let t0 = Instant::now();
        loop {
            if let Ok(Reply::Status(_)) = agent.request(&["status"]) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "agent did not answer within 15 s; its log:\n{}",
                agent.agent_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    /// The `web` port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The app's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `cargo-blargh agent ctl --root ROOT ARGS…`.
    pub fn ctl(&self, args: &[&str], stdin: Option<&[u8]>) -> io::Result<Output> {
        use std::io::Write;
        let mut child = Command::new(&self.bin)
            .args(["agent", "ctl", "--root"])
            .arg(&self.root)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(bytes) = stdin {
            let mut si = child.stdin.take().unwrap();
            let _ = si.write_all(bytes);
        }
        child.wait_with_output()
    }

    /// Runs a ctl command with `--json` and decodes the agent's reply.
    pub fn request(&self, args: &[&str]) -> io::Result<Reply> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.ctl(&full, None)?;
        serde_json::from_slice(&out.stdout).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{e}: stdout {:?} stderr {:?}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        })
    }

    /// Uploads `binary` as a release and returns its id.
    pub fn receive(&self, binary: &Path, version: &str) -> String {
        let path = binary.to_str().unwrap();
        match self
            .request(&["receive", path, "--app-version", version])
            .unwrap()
        {
            Reply::Received { release, .. } => release.id.to_string(),
            other => panic!("receive {path}: {other:?}"),
        }
    }

    /// Activates release `id`.
    pub fn activate(&self, id: &str) -> Result<Activation, ControlError> {
        activation(self.request(&["activate", id]).unwrap())
    }

    /// Rolls back to the previous release (or `id`).
    pub fn rollback(&self, id: Option<&str>) -> Result<Activation, ControlError> {
        let mut args = vec!["rollback"];
        args.extend(id);
        activation(self.request(&args).unwrap())
    }

    /// Asks the agent to upgrade in place (`agent ctl upgrade`) to the executable now at
    /// its path (see [`install_agent`]).
    pub fn upgrade(&self) -> Result<Upgraded, ControlError> {
        match self.request(&["upgrade"]).unwrap() {
            Reply::Upgraded(u) => Ok(u),
            Reply::Error(e) => Err(e),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// The agent's executable (the one `ctl` runs too).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The agent's status.
    pub fn status(&self) -> AgentStatus {
        match self.request(&["status"]).unwrap() {
            Reply::Status(s) => s,
            other => panic!("status: {other:?}"),
        }
    }

    /// The audit log's last 1000 events.
    pub fn audit(&self) -> Vec<AuditEvent> {
        match self.request(&["audit", "-n", "1000"]).unwrap() {
            Reply::Audit { events } => events,
            other => panic!("audit: {other:?}"),
        }
    }

    /// Waits until `pred` holds for the status, or panics after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&AgentStatus) -> bool,
    ) -> AgentStatus {
        let t0 = Instant::now();
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < timeout,
                "timed out waiting for {what}; last status {s:?}\nagent log:\n{}",
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until at least `clients` established connections on the `web` port are held
    /// by the current release's process: a load generator's keep-alive connections have
    /// reached the release that is current now (after a switch, the old one closed them
    /// and they reconnected to the new one).
    ///
    /// # Panics
    /// After `timeout`, with the agent's log.
    pub fn wait_for_clients_on_current(&self, clients: usize, timeout: Duration) {
        let last = std::cell::RefCell::new(String::new());
        crate::wait::wait_until_or_explain(
            timeout,
            &format!("{clients} client connections served by the current release"),
            || {
                let st = self.status();
                let Some(pid) = st.pid else {
                    *last.borrow_mut() = format!("no current process: {st:?}");
                    return false;
                };
                match crate::conns::served_by(pid, self.port) {
                    Ok(n) => {
                        *last.borrow_mut() = format!("pid {pid} holds {n}");
                        n >= clients
                    }
                    Err(e) => {
                        *last.borrow_mut() = e.to_string();
                        false
                    }
                }
            },
            || {
                format!(
                    "last seen: {}\nagent log:\n{}",
                    last.borrow(),
                    self.agent_log()
                )
            },
        );
    }

    /// What the agent printed.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn activation(reply: Reply) -> Result<Activation, ControlError> {
    match reply {
        Reply::Activated(a) => Ok(a),
        Reply::Error(e) => Err(e),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Sends `signal` (e.g. "KILL", "TERM") to `pid` with kill(1).
///
/// # Errors
/// When `kill` cannot run or fails (no such process, not permitted, unknown signal); the
/// message names the pid, the signal and what kill said. A test that meant to kill
/// something must not carry on as if it had.
pub fn signal(pid: u32, signal: &str) -> io::Result<()> {
    let out = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run kill(1): {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "kill -{signal} {pid} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        // The agent may have exited already; SIGKILL below is the fallback either way.
        let _ = signal(self.child.id(), "TERM");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts a copy of `src` at `dest` the way seed installs an agent (written beside it, then
/// renamed over it), with `mark` appended so that it differs from every other copy (a
/// "newer" agent; an ELF file runs the same with bytes after its end). Returns its sha256.
pub fn install_agent(src: &Path, dest: &Path, mark: &str) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(src)?;
    bytes.extend_from_slice(mark.as_bytes());
    let tmp = dest.with_extension("new");
    std::fs::write(&tmp, &bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, dest)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_reaches_a_live_process() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        signal(child.id(), "KILL").unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
    }

    #[test]
    fn a_failed_kill_is_an_error() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap(); // reaped: the pid names no process now
        let e = signal(pid, "TERM").unwrap_err();
        assert!(
            e.to_string().contains(&format!("kill -TERM {pid} failed")),
            "{e}"
        );
        let e = signal(std::process::id(), "NOSUCHSIGNAL").unwrap_err();
        assert!(e.to_string().contains("NOSUCHSIGNAL"), "{e}");
    }
}
