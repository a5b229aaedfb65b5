//! Replacing the agent in place: what one agent hands the next across `execve` (the
//! listening sockets, the control socket, the running release's output pipes and notify
//! socket, and the connection that asked), and how the next one takes it over. The pid
//! stays the same, so the release stays the agent's child and the init system sees no
//! restart.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use blargh_proto::ReleaseId;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The environment variable that carries the [`Handover`] (JSON) into the new agent.
pub const HANDOVER_VAR: &str = "BLARGH_AGENT_HANDOVER";
/// The handover format this build writes and reads. An agent hands over only to an
/// executable that prints the same number for `agent handover-version`.
pub const HANDOVER_VERSION: u32 = 1;
/// How long the new executable may take to print its handover version.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the next agent takes over, by fd number (the fds stay open across the exec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// [`HANDOVER_VERSION`] of the agent that wrote it.
    pub version: u32,
    /// The version of the agent that handed over.
    pub from_version: String,
    /// Who asked for the upgrade (for the audit log).
    pub by: String,
    /// When it was asked for, in milliseconds since the Unix epoch.
    pub asked_at_ms: u64,
    /// The listening sockets, in the order releases get them.
    pub listeners: Vec<HandedListener>,
    /// The control socket's listener.
    pub control: RawFd,
    /// The connection that asked for the upgrade; the new agent answers on it.
    pub reply_to: RawFd,
    /// The release process that serves, if one does.
    pub current: Option<HandedProcess>,
}

/// A listening socket handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedListener {
    /// Its name (given to the app).
    pub name: String,
    /// Its fd.
    pub fd: RawFd,
}

/// A running release process handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedProcess {
    /// Its release.
    pub release: ReleaseId,
    /// Its pid (the agent's child).
    pub pid: u32,
    /// How long it has been serving, in milliseconds.
    pub ready_for_ms: u64,
    /// Its notify socket.
    pub notify_fd: RawFd,
    /// Where that socket is bound.
    pub notify_path: PathBuf,
    /// The read end of its stdout.
    pub stdout: Option<RawFd>,
    /// The read end of its stderr.
    pub stderr: Option<RawFd>,
}

impl Handover {
    /// Every fd the handover names.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.listeners.iter().map(|l| l.fd).collect();
        fds.extend([self.control, self.reply_to]);
        if let Some(p) = &self.current {
            fds.push(p.notify_fd);
            fds.extend(p.stdout);
            fds.extend(p.stderr);
        }
        fds
    }

    /// Reads the handover an earlier agent left in the environment, if any, and removes it
    /// from the environment. Its fds get close-on-exec again (no release inherits them).
    ///
    /// Call only while the process is single-threaded (first thing in the agent).
    pub fn take() -> Result<Option<Handover>, String> {
        let Some(raw) = std::env::var_os(HANDOVER_VAR) else {
            return Ok(None);
        };
        // SAFETY: the caller contract: no other thread runs yet.
        unsafe { std::env::remove_var(HANDOVER_VAR) };
        let h = Self::decode(&raw.to_string_lossy())?;
        for fd in h.fds() {
            set_cloexec(fd, true).map_err(|e| format!("handed-over fd {fd} is not open ({e})"))?;
        }
        Ok(Some(h))
    }

    /// Parses a handover, refusing one of another format.
    pub fn decode(json: &str) -> Result<Handover, String> {
        let h: Handover = serde_json::from_str(json)
            .map_err(|e| format!("the earlier agent's handover does not parse: {e}"))?;
        if h.version != HANDOVER_VERSION {
            return Err(format!(
                "the earlier agent wrote handover format {}, this one reads {HANDOVER_VERSION}",
                h.version
            ));
        }
        Ok(h)
    }
}

/// Takes ownership of a handed-over fd.
///
/// # Safety
/// `fd` must be open and owned by nothing else in this process (true of a fd named by a
/// [`Handover`] just taken, each taken once).
pub unsafe fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller's contract.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn set_cloexec(fd: RawFd, on: bool) -> nix::Result<()> {
    // SAFETY: fcntl on a number: a closed fd fails with EBADF, nothing is taken over.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
    let flags = if on {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags - FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map(|_| ())
}

/// The agent's executable as a path that names the file there *now* (after an upgrade put a
/// new file there, `/proc/self/exe` reads `… (deleted)`).
pub fn executable_path() -> io::Result<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => exe,
    })
}

/// Checks that `exe` runs on this host and reads this handover format.
pub async fn check_executable(exe: &Path) -> Result<(), String> {
    let out = tokio::time::timeout(
        CHECK_TIMEOUT,
        tokio::process::Command::new(exe)
            .args(["agent", "handover-version"])
            .env_clear()
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| {
        format!(
            "{} did not answer `agent handover-version` within {} s",
            exe.display(),
            CHECK_TIMEOUT.as_secs()
        )
    })?
    .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} cannot take over here (`agent handover-version` failed: {}); \
             the agent keeps running as it was",
            exe.display(),
            err.trim().lines().last().unwrap_or("no output")
        ));
    }
    if said != HANDOVER_VERSION.to_string() {
        return Err(format!(
            "{} reads handover format {said:?}, this agent writes {HANDOVER_VERSION}; \
             restart the agent's service instead (the app restarts with it)",
            exe.display()
        ));
    }
    Ok(())
}

/// Replaces this process with `exe` (same arguments), passing `handover`. Must run on the
/// leader thread ([`crate::leader::run`]). Returns only on failure, with the process as it was.
pub fn exec(exe: &Path, handover: &Handover) -> io::Error {
    let json = serde_json::to_string(handover).expect("handover serializes");
    let to_c = |s: OsString| CString::new(s.into_vec()).map_err(io::Error::other);
    let build = || -> io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let path = to_c(exe.as_os_str().to_owned())?;
        let args = std::env::args_os().map(to_c).collect::<io::Result<_>>()?;
        let mut env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| k != HANDOVER_VAR)
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                to_c(kv)
            })
            .collect::<io::Result<_>>()?;
        env.push(to_c(format!("{HANDOVER_VAR}={json}").into())?);
        Ok((path, args, env))
    };
    let (path, args, env) = match build() {
        Ok(b) => b,
        Err(e) => return e,
    };
    let fds = handover.fds();
    for &fd in &fds {
        if let Err(e) = set_cloexec(fd, false) {
            restore(&fds);
            return io::Error::other(format!("cannot hand over fd {fd}: {e}"));
        }
    }
    let err = match nix::unistd::execve(&path, &args, &env) {
        Err(e) => io::Error::from(e),
        Ok(never) => match never {},
    };
    restore(&fds);
    err
}

fn restore(fds: &[RawFd]) {
    for &fd in fds {
        let _ = set_cloexec(fd, true);
    }
}

/// The pids of this process's children (of every thread), from `/proc`.
pub fn children() -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let text = std::fs::read_to_string(task?.path().join("children"))?;
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    Ok(pids)
}

/// Waits for a handed-over child to exit and reaps it (it is ours, but tokio does not know
/// it). `None` when it cannot be waited for.
pub async fn wait_exit(pid: u32) -> Option<ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigchld = signal(SignalKind::child()).ok();
    loop {
        match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Some(ExitStatus::from_raw((code & 0xff) << 8));
            }
            Ok(WaitStatus::Signaled(_, sig, core)) => {
                return Some(ExitStatus::from_raw(
                    sig as i32 | if core { 0x80 } else { 0 },
                ));
            }
            Ok(_) => {}
            Err(_) => return None,
        }
        // A SIGCHLD wakes this at once; the tick covers one that tokio's own reaper took.
        match &mut sigchld {
            Some(s) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), s.recv()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
// The children here are reaped by `wait_exit` or killed and waited for by hand.
#[allow(clippy::zombie_processes)]
mod tests {
    use super::*;

    fn sample() -> Handover {
        Handover {
            version: HANDOVER_VERSION,
            from_version: "0.1.0".into(),
            by: "root".into(),
            asked_at_ms: 1,
            listeners: vec![HandedListener {
                name: "web".into(),
                fd: 3,
            }],
            control: 7,
            reply_to: 9,
            current: Some(HandedProcess {
                release: "r1".parse().unwrap(),
                pid: 42,
                ready_for_ms: 5,
                notify_fd: 10,
                notify_path: "/run/n".into(),
                stdout: Some(11),
                stderr: None,
            }),
        }
    }

    #[test]
    fn a_handover_names_every_fd_it_passes() {
        assert_eq!(sample().fds(), vec![3, 7, 9, 10, 11]);
    }

    #[test]
    fn a_handover_round_trips_and_another_format_is_refused() {
        let h = sample();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(Handover::decode(&json).unwrap(), h);
        let other = json.replace(&format!("\"version\":{HANDOVER_VERSION}"), "\"version\":99");
        let err = Handover::decode(&other).unwrap_err();
        assert!(err.contains("format 99"), "{err}");
    }

    #[test]
    fn the_executable_path_drops_the_deleted_mark() {
        let p = executable_path().unwrap();
        assert!(p.exists(), "{}", p.display());
    }

    #[test]
    fn children_lists_a_child() {
        let mut c = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kids = children().unwrap();
        let pid = c.id();
        let _ = c.kill();
        let _ = c.wait();
        assert!(kids.contains(&pid), "{kids:?} lacks {pid}");
    }

    #[tokio::test]
    async fn wait_exit_reaps_a_child_tokio_does_not_know() {
        let c = std::process::Command::new("sh")
            .args(["-c", "sleep 0.2; exit 7"])
            .spawn()
            .unwrap();
        let st = wait_exit(c.id()).await.unwrap();
        assert_eq!(st.code(), Some(7));
        let c = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        nix::sys::signal::kill(
            Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let st = wait_exit(c.id()).await.unwrap();
        assert_eq!(st.signal(), Some(9));
    }
}
