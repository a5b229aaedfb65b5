//! Starting one process of a release: the exec trampoline with the sockets on fd 3…, the
//! release's environment, its own notify socket, its output captured into the app log.
//!
//! Every process is forked by the agent's leader thread ([`fork`], [`crate::leader`]): the
//! trampoline's parent-death signal fires when the *thread* that forked it ends, and tokio
//! retires its threads (a worker that ran `block_in_place` becomes a blocking-pool thread,
//! which exits after 10 s idle; `spawn_blocking` threads likewise), which would SIGTERM a
//! healthy release while the agent lives on; an upgrade's exec ends every other thread.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use command_fds::{CommandFdExt, FdMapping};
use tokio::process::Child;

use crate::logs::{AppLog, RecentLines, capture};
use crate::notify::NotifySocket;
use crate::sockets::Listener;
use crate::trampoline;

/// How to start one process of a release.
#[derive(Debug)]
pub struct SpawnSpec<'a> {
    /// Release id.
    pub release: &'a str,
    /// App name (argv[0] of the process).
    pub app: &'a str,
    /// The release's executable.
    pub binary: PathBuf,
    /// Its arguments ([`spawn`] only; [`run_once`] takes its own).
    pub args: Vec<String>,
    /// The file that must hash to the manifest beside it before [`spawn`] starts anything:
    /// the executable, or a tree release's archive.
    pub verify: PathBuf,
    /// Working directory: the app's data directory, or a tree release's tree.
    pub workdir: PathBuf,
    /// Sockets to place at fd 3, 4, … in this order.
    pub listeners: &'a [Listener],
    /// The process's whole environment except `LISTEN_PID` and `NOTIFY_SOCKET`.
    pub env: Vec<(String, String)>,
    /// Directory for the notify socket.
    pub run_dir: PathBuf,
    /// Uid and gid to run as, when the agent is root.
    pub run_as: Option<(u32, u32)>,
    /// The agent's own executable (the trampoline).
    pub trampoline: PathBuf,
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid (also its process group id).
    pub pid: u32,
    /// The child handle, for waiting.
    pub child: Child,
    /// Where it reports readiness.
    pub notify: NotifySocket,
    /// Its last output lines.
    pub recent: Arc<RecentLines>,
    /// The output copiers; they end when the process and its children close stdout/stderr.
    pub capture: Vec<tokio::task::JoinHandle<()>>,
    /// Copies of its output pipes, for an upgrade's handover.
    pub output: OutputPipes,
}

/// Copies of the read ends of a process's stdout and stderr, kept so that an in-place
/// upgrade can hand them to the next agent, which goes on copying them into the app log.
#[derive(Debug, Default)]
pub struct OutputPipes {
    /// Its stdout.
    pub stdout: Option<OwnedFd>,
    /// Its stderr.
    pub stderr: Option<OwnedFd>,
}

/// Copies a handed-over process's output pipes into the app log (see [`OutputPipes`]).
pub fn capture_adopted(
    pipes: OutputPipes,
    release: &str,
    log: Arc<AppLog>,
    recent: Arc<RecentLines>,
) -> io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut copiers = Vec::new();
    for (fd, stream) in [(pipes.stdout, "out"), (pipes.stderr, "err")] {
        if let Some(fd) = fd {
            let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
            copiers.push(capture(
                reader,
                release.to_string(),
                stream,
                log.clone(),
                recent.clone(),
            ));
        }
    }
    Ok(copiers)
}

/// What a one-off run printed and how it ended.
#[derive(Debug, Clone)]
pub struct RunOnce {
    /// Exit status; `None` when killed (by a signal or the timeout).
    pub status: Option<i32>,
    /// Its stdout (at most 1 MiB kept).
    pub stdout: String,
    /// Its stderr (at most 1 MiB kept).
    pub stderr: String,
    /// It ran past the timeout and was killed.
    pub timed_out: bool,
}

/// Starts `cmd` from the agent's leader thread ([`crate::leader`]), which lives as long as
/// the process and survives an upgrade's exec, so that the parent-death signal of what it
/// starts means "the agent died" and nothing else. Blocks the caller for the fork and exec
/// only. Must be called within a tokio runtime.
pub fn fork(mut cmd: tokio::process::Command) -> io::Result<Child> {
    let runtime = tokio::runtime::Handle::current();
    crate::leader::run(move || {
        let _in_runtime = runtime.enter();
        cmd.spawn()
    })?
}

/// Runs a release's executable once with `args` (no sockets, no readiness), as the app's
/// user, killing its process group after `timeout`.
pub async fn run_once(
    spec: SpawnSpec<'_>,
    args: &[String],
    timeout: std::time::Duration,
) -> io::Result<RunOnce> {
    use tokio::io::AsyncReadExt;
    let mut cmd = tokio::process::Command::new(&spec.trampoline);
    cmd.arg(trampoline::ARG)
        .arg(&spec.binary)
        .arg(spec.app)
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        // Entered by the trampoline, as the app's user (data/ is the app's alone).
        .env(trampoline::DIR_VAR, &spec.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some((uid, gid)) = spec.run_as {
        cmd.env(trampoline::UID_VAR, uid.to_string())
            .env(trampoline::GID_VAR, gid.to_string());
    }
    let mut child = fork(cmd)?;
    let pid = child.id().unwrap_or(0) as i32;
    let read_all = |r: Option<tokio::process::ChildStdout>| async move {
        let mut buf = Vec::new();
        if let Some(r) = r {
            let _ = r.take(1 << 20).read_to_end(&mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    };
    let read_err = |r: Option<tokio::process::ChildStderr>| async move {
        let mut buf = Vec::new();
        if let Some(r) = r {
            let _ = r.take(1 << 20).read_to_end(&mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    };
    let out = tokio::spawn(read_all(child.stdout.take()));
    let err = tokio::spawn(read_err(child.stderr.take()));
    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(st) => (st?.code(), false),
        Err(_) => {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait().await;
            (None, true)
        }
    };
    Ok(RunOnce {
        status,
        stdout: out.await.unwrap_or_default(),
        stderr: err.await.unwrap_or_default(),
        timed_out,
    })
}

/// Starts a process of a release. The caller waits for readiness.
pub fn spawn(spec: SpawnSpec<'_>, log: Arc<AppLog>) -> io::Result<Spawned> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    // The pid stays across an in-place upgrade, and so does the process the earlier agent
    // started: the time the agent began tells the two agents' sockets apart.
    static BORN: OnceLock<u64> = OnceLock::new();
    let born = BORN.get_or_init(crate::upgrade::now_ms);
    let notify_path = spec
        .run_dir
        .join(format!("notify-{}-{born}-{n}.sock", std::process::id()));
    // What runs is what was uploaded: the executable hashes to its manifest's sha256.
    crate::store::verify_binary(&spec.verify, spec.release)?;
    let notify = NotifySocket::bind(&notify_path, spec.run_as.map(|(_, gid)| gid))?;

    let mut mappings = Vec::with_capacity(spec.listeners.len());
    for (i, l) in spec.listeners.iter().enumerate() {
        let dup: OwnedFd = l.socket.as_fd().try_clone_to_owned()?;
        mappings.push(FdMapping {
            parent_fd: dup,
            child_fd: blargh_proto::env::LISTEN_FDS_START + i as i32,
        });
    }

    let mut cmd = tokio::process::Command::new(&spec.trampoline);
    cmd.arg(trampoline::ARG)
        .arg(&spec.binary)
        .arg(spec.app)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(blargh_proto::env::NOTIFY_SOCKET, notify.path().as_os_str())
        // Entered by the trampoline, as the app's user (data/ is the app's alone; a tree
        // release's tree is readable by all).
        .env(trampoline::DIR_VAR, &spec.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the agent's terminal reaches the agent only,
        // and SIGKILL at the drain deadline reaches the app's children too.
        .process_group(0)
        .kill_on_drop(false);
    if let Some((uid, gid)) = spec.run_as {
        cmd.env(trampoline::UID_VAR, uid.to_string())
            .env(trampoline::GID_VAR, gid.to_string());
    }
    cmd.fd_mappings(mappings)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut child = fork(cmd).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot start the trampoline {}: {e}",
                spec.trampoline.display()
            ),
        )
    })?;
    let pid = child.id().unwrap_or(0);
    let recent = Arc::new(RecentLines::default());
    let mut copiers = Vec::new();
    let output = OutputPipes {
        stdout: match &child.stdout {
            Some(p) => Some(p.as_fd().try_clone_to_owned()?),
            None => None,
        },
        stderr: match &child.stderr {
            Some(p) => Some(p.as_fd().try_clone_to_owned()?),
            None => None,
        },
    };
    if let Some(out) = child.stdout.take() {
        copiers.push(capture(
            out,
            spec.release.to_string(),
            "out",
            log.clone(),
            recent.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        copiers.push(capture(
            err,
            spec.release.to_string(),
            "err",
            log,
            recent.clone(),
        ));
    }
    Ok(Spawned {
        pid,
        child,
        notify,
        recent,
        capture: copiers,
        output,
    })
}
