//! Injecting faults into a seeded test VM and reading what they left: an app directory to
//! run `cargo blargh` deploys from (and to kill them mid-way), the agent's status as the CLI
//! reports it and as the guest really is, what an interrupted upload left in the store, a
//! release padded with incompressible bytes (so its upload takes seconds), and a disk
//! filled up to a few MiB.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use blargh_proto::control::{AgentStatus, Reply};

use crate::remote::{Cli, text};
use crate::vm::Vm;

/// The app's root on a server seeded with `--app hello`.
pub const ROOT: &str = "/var/lib/blargh/hello";
/// The agent executable seed installs for `hello`.
pub const AGENT: &str = "/var/lib/blargh/hello/agent/blargh";

/// An app's directory on the developer's side, deploying to one VM as `admin` with
/// `--app hello`.
pub struct AppDir<'a> {
    /// The CLI pointed at the VM.
    pub cli: Cli,
    /// The server.
    pub vm: &'a Vm,
    dir: tempfile::TempDir,
}

impl<'a> AppDir<'a> {
    /// A fresh directory whose Cargo.toml holds `metadata` under
    /// `[package.metadata.blargh]` (besides `hosts`).
    pub fn new(cli: Cli, vm: &'a Vm, metadata: &str) -> io::Result<AppDir<'a>> {
        let dir = tempfile::tempdir()?;
        let app = AppDir { cli, vm, dir };
        app.set_metadata(metadata)?;
        Ok(app)
    }

    /// Rewrites the Cargo.toml with `metadata` under `[package.metadata.blargh]`.
    pub fn set_metadata(&self, metadata: &str) -> io::Result<()> {
        std::fs::write(
            self.dir.path().join("Cargo.toml"),
            format!(
                "[package]\nname = \"hello\"\nversion = \"0.1.0\"\n\n[package.metadata.blargh]\n\
                 hosts = [\"{}\"]\n{metadata}\n",
                self.cli.destination("admin")
            ),
        )
    }

    /// Empties the CLI's cache of shipped releases (`target/blargh/hello/shipped` in the
    /// app's directory), so the next deploy sends the whole file instead of a delta:
    /// diffing tens of MiB of random bytes takes the CLI minutes.
    pub fn forget_shipped(&self) -> io::Result<()> {
        match std::fs::remove_dir_all(self.dir.path().join("target/blargh/hello/shipped")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The directory (the deploy's working directory).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `cargo-blargh ARGS --host admin@vm --app hello`, started in the app's directory
    /// with stdout and stderr piped, to be waited for or killed.
    pub fn spawn(&self, args: &[&str], stdin: Option<&[u8]>) -> io::Result<Child> {
        let host = self.cli.destination("admin");
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--host", &host, "--app", "hello"]);
        let mut cmd = self.cli.command(&full);
        cmd.current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn()?;
        if let Some(bytes) = stdin {
            child.stdin.take().expect("piped").write_all(bytes)?;
        }
        Ok(child)
    }

    /// [`AppDir::spawn`], waited for.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> io::Result<Output> {
        self.spawn(args, stdin)?.wait_with_output()
    }

    /// `deploy --binary BINARY -m MESSAGE`, started, to be killed. Like
    /// [`AppDir::deploy`], it sends the whole file.
    pub fn spawn_deploy(&self, binary: &Path, message: &str) -> io::Result<KillOnDrop> {
        self.forget_shipped()?;
        let b = binary.to_str().expect("a UTF-8 path");
        self.spawn(&["deploy", "--binary", b, "-m", message], None)
            .map(KillOnDrop)
    }

    /// `deploy --binary BINARY -m MESSAGE`, waited for. It sends the whole file (see
    /// [`AppDir::forget_shipped`]), so how long it takes does not depend on what the
    /// server had.
    pub fn deploy(&self, binary: &Path, message: &str) -> io::Result<Output> {
        self.forget_shipped()?;
        let b = binary.to_str().expect("a UTF-8 path");
        self.run(&["deploy", "--binary", b, "-m", message], None)
    }

    /// The agent's status as `cargo blargh status --json` reports it.
    pub fn status(&self) -> io::Result<AgentStatus> {
        let out = self.run(&["status", "--json"], None)?;
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| io::Error::other(format!("status --json: {e}: {}", text(&out))))?;
        let reply = doc
            .get(0)
            .and_then(|h| h.get("reply"))
            .cloned()
            .ok_or_else(|| io::Error::other(format!("status --json: {}", text(&out))))?;
        match serde_json::from_value::<Reply>(reply) {
            Ok(Reply::Status(s)) => Ok(s),
            other => Err(io::Error::other(format!("status --json: {other:?}"))),
        }
    }
}

/// A child process killed (SIGKILL) and reaped when dropped: a deploy a failing test
/// started must not outlive it.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Kills it now and returns what it printed.
    pub fn kill(mut self) -> io::Result<Output> {
        self.0.kill()?;
        let mut out = Output {
            status: self.0.wait()?,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        if let Some(mut s) = self.0.stdout.take() {
            s.read_to_end(&mut out.stdout)?;
        }
        if let Some(mut s) = self.0.stderr.take() {
            s.read_to_end(&mut out.stderr)?;
        }
        Ok(out)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the guest really runs: the pids of the app's processes (user `hello`, oldest
/// first), the release `current` points at, and what `GET /` on port 80 answers (or the
/// error).
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// Pids of processes named `app` run by user `hello`.
    pub app_pids: Vec<u32>,
    /// The release id `current` names.
    pub current: String,
    /// The body of `GET /` (or `error: …`).
    pub body: String,
}

/// Reads [`Truth`] from the guest.
pub fn truth(vm: &Vm) -> io::Result<Truth> {
    let out = vm.ssh_ok(&format!(
        "pgrep -u hello -x app | sort -n | tr '\\n' ' '; echo; basename \"$(readlink {ROOT}/current)\""
    ))?;
    let mut lines = out.lines();
    let app_pids = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let current = lines.next().unwrap_or("").trim().to_string();
    let body = crate::http::get(vm.http_port(80), "/")
        .map(|r| r.body)
        .unwrap_or_else(|e| format!("error: {e}"));
    Ok(Truth {
        app_pids,
        current,
        body,
    })
}

/// Whether `status` says what `truth` shows: running, one app process whose pid status
/// names, the current release's id, and that release answering. `None` when it does,
/// else what differs.
pub fn status_disagrees(status: &AgentStatus, truth: &Truth) -> Option<String> {
    let id = status.current.as_ref().map(|m| m.id.as_str()).unwrap_or("");
    let ok = status.state == blargh_proto::control::AppState::Running
        && truth.app_pids.len() == 1
        && status.pid == truth.app_pids.first().copied()
        && id == truth.current
        && truth.body.contains(&format!("(release {id})"));
    (!ok).then(|| {
        format!(
            "status says {:?}, pid {:?}, release {id:?}; the guest runs {:?}, current -> {:?}, GET / -> {:?}",
            status.state, status.pid, truth.app_pids, truth.current, truth.body
        )
    })
}

/// Entries an interrupted upload could leave: everything in `incoming/`, and hidden
/// (staging) entries in `releases/`, one per line; empty when there are none.
pub fn leftovers(vm: &Vm) -> io::Result<String> {
    vm.ssh_ok(&format!(
        "cd {ROOT} && find incoming releases -mindepth 1 -maxdepth 1 \\( -path 'incoming/*' -o -name '.*' \\) | sort"
    ))
}

/// Ids of the releases in the store, sorted.
pub fn release_ids(vm: &Vm) -> io::Result<Vec<String>> {
    Ok(vm
        .ssh_ok(&format!("ls -1 {ROOT}/releases | sort"))?
        .lines()
        .map(str::to_string)
        .collect())
}

/// The agent's resident memory in KiB. An upload is held in the agent's memory until it is
/// whole (a frame is decoded before the store sees a byte), so this is how a test sees an
/// upload under way.
pub fn agent_rss_kib(vm: &Vm) -> io::Result<u64> {
    let out = vm.ssh_ok(
        "awk '/^VmRSS:/ {print $2}' /proc/$(systemctl show -p MainPID --value blargh-hello.service)/status",
    )?;
    out.trim()
        .parse()
        .map_err(|e| io::Error::other(format!("{e}: {out:?}")))
}

/// A copy of `binary` in `dir` with `mib` MiB of random bytes appended: it still runs (the
/// ELF loader ignores trailing bytes), is as good as new to the server's store, and
/// neither compresses nor deltas, so its upload takes a while.
pub fn padded_release(binary: &Path, dir: &Path, mib: usize) -> io::Result<PathBuf> {
    let mut bytes = std::fs::read(binary)?;
    let mut random = vec![0u8; mib << 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    bytes.extend_from_slice(&random);
    let path = dir.join(format!("padded-{mib}m"));
    std::fs::write(&path, bytes)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(path)
}

/// The file [`fill_disk`] creates.
pub const FILLER: &str = "/var/lib/blargh/.faults-filler";

/// Fills the filesystem holding the app's root (as root, with `fallocate`) until `leave_mib`
/// MiB stay available to non-root users. Returns the MiB available afterwards.
pub fn fill_disk(vm: &Vm, leave_mib: u64) -> io::Result<u64> {
    let avail = |vm: &Vm| -> io::Result<u64> {
        let out = vm.ssh_ok(&format!("df -B1M --output=avail {ROOT} | tail -n 1"))?;
        out.trim()
            .parse()
            .map_err(|e| io::Error::other(format!("{e}: {out:?}")))
    };
    let now = avail(vm)?;
    let fill = now.saturating_sub(leave_mib);
    vm.ssh_ok(&format!("fallocate -l {fill}M {FILLER} && sync"))?;
    avail(vm)
}

/// Removes what [`fill_disk`] took.
pub fn free_disk(vm: &Vm) -> io::Result<()> {
    vm.ssh_ok(&format!("rm -f {FILLER} && sync")).map(drop)
}

/// Waits until one app process alone runs and holds at least `clients` established
/// connections on the guest's port 80 (`ss -p`): load is on, and after a restart or a
/// switch it has moved to the process now serving. Returns that process's pid.
///
/// # Panics
/// After `timeout`, with what the guest showed last.
pub fn wait_for_load_on_one_app(vm: &Vm, clients: usize, timeout: std::time::Duration) -> u32 {
    let last = std::cell::RefCell::new(String::new());
    crate::wait::wait_for_or_explain(
        timeout,
        &format!("{clients} connections on guest port 80 held by the one app process"),
        || {
            let out = vm
                .ssh_ok(
                    "pgrep -u hello -x app | tr '\\n' ' '; echo; \
                     ss -Htnp state established '( sport = :80 )'",
                )
                .ok()?;
            *last.borrow_mut() = out.clone();
            let (pids, ss) = out.split_once('\n')?;
            let pids: Vec<&str> = pids.split_whitespace().collect();
            let [pid] = pids[..] else { return None };
            let mine = format!("pid={pid},");
            (ss.lines().filter(|l| l.contains(&mine)).count() >= clients)
                .then(|| pid.parse().ok())
                .flatten()
        },
        || format!("last seen in the guest:\n{}", last.borrow()),
    )
}

/// The agent's systemd service on a server seeded with `--app hello`.
pub const SERVICE: &str = "blargh-hello.service";

/// The agent's pid: the main pid of [`SERVICE`] (an error when it is not running).
pub fn agent_pid(vm: &Vm) -> io::Result<u32> {
    let out = vm.ssh_ok(&format!("systemctl show -p MainPID --value {SERVICE}"))?;
    match out.trim().parse() {
        Ok(0) | Err(_) => Err(io::Error::other(format!(
            "{SERVICE} has no main pid: {out:?}"
        ))),
        Ok(pid) => Ok(pid),
    }
}

/// `/proc/PID/oom_score_adj` of a process in the guest.
pub fn oom_score_adj(vm: &Vm, pid: u32) -> io::Result<i32> {
    let out = vm.ssh_ok(&format!("cat /proc/{pid}/oom_score_adj"))?;
    out.trim()
        .parse()
        .map_err(|e| io::Error::other(format!("{e}: {out:?}")))
}

/// The kernel's log lines of this boot that name a process the OOM killer killed
/// (`… Killed process PID (NAME) …`).
pub fn oom_kills(vm: &Vm) -> io::Result<Vec<String>> {
    Ok(vm
        .ssh_ok("dmesg | grep -F 'Killed process' || true")?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Checks that `current` names a complete release: the link resolves to a directory in
/// `releases/` holding `release.json` and the executable `app`, whose sha256 is the one the
/// manifest records. Returns the release's id; an error says what is wrong.
pub fn current_release_intact(vm: &Vm) -> io::Result<String> {
    let out = vm.ssh_ok(&format!(
        "cd {ROOT} && d=$(readlink current) && echo \"$d\" && \
         grep -o '\"sha256\": *\"[0-9a-f]*\"' \"$d/release.json\" | grep -o '[0-9a-f]\\{{64\\}}' && \
         sha256sum \"$d/app\" | cut -d' ' -f1"
    ))?;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let [link, recorded, actual] = lines[..] else {
        return Err(io::Error::other(format!(
            "current is not a complete release: {out:?}"
        )));
    };
    let id = link.strip_prefix("releases/").unwrap_or(link);
    if recorded != actual || recorded.len() != 64 {
        return Err(io::Error::other(format!(
            "release {id}: its executable's sha256 is {actual}, its manifest says {recorded}"
        )));
    }
    Ok(id.to_string())
}

/// The value `key` has in the app's env file (read as root): `None` when the file does
/// not set it. An error when the file is missing, or holds a line that is neither empty,
/// a comment, nor `NAME=VALUE` (a torn or corrupt file).
pub fn env_file_value(vm: &Vm, key: &str) -> io::Result<Option<String>> {
    let text = vm.ssh_ok(&format!("cat {ROOT}/env"))?;
    let mut value = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(io::Error::other(format!(
                "{ROOT}/env holds a line that is not NAME=VALUE: {line:?}"
            )));
        };
        let name_ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            return Err(io::Error::other(format!(
                "{ROOT}/env holds a line with a bad name: {line:?}"
            )));
        }
        if k == key {
            value = Some(v.to_string());
        }
    }
    Ok(value)
}

/// Waits until `cargo blargh status` agrees with the guest ([`status_disagrees`] finds
/// nothing) and `cond` holds for the guest's [`Truth`]; returns that truth.
///
/// # Panics
/// After `timeout`, naming `what` and the last disagreement seen.
pub fn wait_for_true_status(
    app: &AppDir,
    what: &str,
    timeout: std::time::Duration,
    mut cond: impl FnMut(&Truth) -> bool,
) -> Truth {
    let last = std::cell::RefCell::new(String::new());
    crate::wait::wait_for_or_explain(
        timeout,
        what,
        || {
            let t = truth(app.vm).ok()?;
            let s = app.status().ok()?;
            match status_disagrees(&s, &t) {
                None if cond(&t) => Some(t),
                None => {
                    *last.borrow_mut() = format!("agrees, but not yet: {t:?}");
                    None
                }
                Some(d) => {
                    *last.borrow_mut() = d;
                    None
                }
            }
        },
        || format!("last: {}", last.borrow()),
    )
}

/// Waits until the agent holds at least `min_kib` KiB more than `base_kib` (see
/// [`agent_rss_kib`]): an upload is under way. Returns the growth in KiB.
///
/// # Panics
/// After 120 s.
pub fn wait_for_upload(vm: &Vm, base_kib: u64, min_kib: u64) -> u64 {
    crate::wait::wait_for_or_explain(
        std::time::Duration::from_secs(120),
        "the upload to be under way (the agent's memory growing)",
        || {
            agent_rss_kib(vm)
                .ok()
                .map(|r| r.saturating_sub(base_kib))
                .filter(|&n| n >= min_kib)
        },
        || format!("agent VmRSS {:?} KiB", agent_rss_kib(vm)),
    )
}
