//! The control protocol on the agent's Unix socket: one JSON request line from the client,
//! (for `receive`, followed by exactly `size` raw bytes), then one JSON reply line.
//!
//! The socket is the only way to steer an agent; there is no TCP control port. Remote
//! callers reach it through SSH by running `cargo-blargh agent ctl …` on the server.

use serde::{Deserialize, Serialize};

use crate::manifest::{ReleaseManifest, ReleaseMeta};

/// File name of the control socket inside the app's root directory.
pub const SOCKET_FILE: &str = "agent.sock";

/// A request from a client to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// What runs, since when, how it is doing.
    Status,
    /// Every release on disk, newest first.
    Releases,
    /// Store a new release: the request line is followed by `size` bytes of executable.
    Receive {
        /// Expected lower-case hex sha256 of the executable (after decoding a frame).
        sha256: String,
        /// Exact number of bytes that follow.
        size: u64,
        /// What the sender knows about the build.
        #[serde(default)]
        meta: ReleaseMeta,
        /// How the bytes that follow encode the executable.
        #[serde(default)]
        encoding: Encoding,
    },
    /// Start a stored release, wait for it to be ready, then drain the running one.
    Activate {
        /// Release id.
        id: String,
        /// Who asks (recorded in the audit log beside the socket peer's uid).
        #[serde(default)]
        by: Option<String>,
        /// Go back to the release that served before by itself if the new one crashes
        /// this often soon after switching.
        #[serde(default)]
        auto_rollback: Option<AutoRollback>,
        /// Why (the deploy message), for the audit log.
        #[serde(default)]
        message: Option<String>,
    },
    /// Activate the previous release (or the named one).
    Rollback {
        /// Release id; the previous release when absent.
        #[serde(default)]
        id: Option<String>,
        /// Who asks.
        #[serde(default)]
        by: Option<String>,
    },
    /// The last lines the app wrote to stdout/stderr.
    Logs {
        /// Only lines of this release; all releases when absent.
        #[serde(default)]
        release: Option<String>,
        /// How many lines at most.
        lines: usize,
    },
    /// The last events of the audit log.
    Audit {
        /// How many events at most.
        lines: usize,
    },
    /// The deploy lock: acquire, release, or look.
    Lock(LockRequest),
    /// Set one variable of the app's env file (the value travels in this JSON line, never
    /// in a command line), then restart the app with zero downtime if it runs.
    EnvSet {
        /// Variable name.
        key: String,
        /// Its value.
        value: String,
        /// Who asks.
        #[serde(default)]
        by: Option<String>,
        /// Restart the running app so it sees the change (false: the next activation will).
        #[serde(default = "yes")]
        restart: bool,
    },
    /// Remove one variable from the app's env file, then restart the app if it runs.
    EnvUnset {
        /// Variable name.
        key: String,
        /// Who asks.
        #[serde(default)]
        by: Option<String>,
        /// Restart the running app so it sees the change.
        #[serde(default = "yes")]
        restart: bool,
    },
    /// The names (never the values) in the app's env file.
    EnvList,
    /// Run a command once with a release's env and the app's data directory (no sockets),
    /// as the app's user: `before_activate` migrations and one-off tasks.
    Exec {
        /// Release id; the current release when absent.
        #[serde(default)]
        release: Option<String>,
        /// The command: `{bin}` in any argument is replaced by the release's executable,
        /// and the first word is the program (`["{bin}", "migrate"]`, `["sh", "-c", "…"]`).
        args: Vec<String>,
        /// Seconds before it is killed.
        timeout_s: u64,
        /// Who asks.
        #[serde(default)]
        by: Option<String>,
    },
}

fn yes() -> bool {
    true
}

/// How an uploaded executable is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The executable itself.
    #[default]
    Raw,
    /// A `blargh-delta` frame: compressed whole, or a delta against a release the host has.
    Frame,
}

/// When the agent rolls back by itself after an activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoRollback {
    /// Seconds after the switch during which crashes count.
    pub window_s: u64,
    /// Crashes within the window that trigger the rollback.
    pub crashes: u32,
}

/// What to do with the deploy lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum LockRequest {
    /// Take it, or fail naming its holder.
    Acquire {
        /// Who takes it (`user@machine`).
        holder: String,
        /// Why (shown to whoever is refused).
        message: String,
        /// Seconds after which a lock left behind by a crashed deploy expires.
        ttl_s: u64,
        /// Take it even when someone else holds it.
        #[serde(default)]
        force: bool,
    },
    /// Give it back (only its holder, unless forced).
    Release {
        /// Who gives it back.
        holder: String,
        /// Release someone else's lock.
        #[serde(default)]
        force: bool,
    },
    /// Who holds it.
    Status,
}

/// A held deploy lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Who holds it.
    pub holder: String,
    /// Why.
    pub message: String,
    /// RFC 3339 time it was taken.
    pub since: String,
    /// Unix seconds after which it no longer counts.
    pub expires_unix: u64,
}

/// The agent's single reply to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to [`Request::Status`].
    Status(AgentStatus),
    /// Answer to [`Request::Releases`].
    Releases {
        /// Newest first.
        releases: Vec<ReleaseEntry>,
    },
    /// Answer to [`Request::Receive`].
    Received {
        /// The stored release.
        release: ReleaseManifest,
        /// True when a release with the same sha256 was already stored (nothing new written).
        already_present: bool,
    },
    /// Answer to [`Request::Activate`] and [`Request::Rollback`].
    Activated(Activation),
    /// Answer to [`Request::Logs`].
    Logs {
        /// Oldest first.
        lines: Vec<String>,
    },
    /// Answer to [`Request::Audit`].
    Audit {
        /// Oldest first.
        events: Vec<AuditEvent>,
    },
    /// Answer to [`Request::Lock`]: the lock after the request.
    Lock {
        /// The holder, if the lock is held.
        held: Option<LockInfo>,
    },
    /// Answer to the env requests: the variable names now set (never values).
    Env {
        /// Sorted names.
        names: Vec<String>,
        /// The restart that applied the change, if the app was running.
        restarted: Option<Activation>,
    },
    /// Answer to [`Request::Exec`].
    Exec {
        /// Exit status (`None` when killed by a signal or the timeout).
        status: Option<i32>,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The request failed; nothing changed unless the message says so.
    Error(ControlError),
}

/// A failed request, with what a person needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlError {
    /// What went wrong and what to do about it.
    pub message: String,
    /// The failing release's last log lines, when a release failed to start.
    #[serde(default)]
    pub release_log: Vec<String>,
}

/// State of the app as the agent supervises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// No release has been activated yet.
    Empty,
    /// The current release is starting (first start or restart).
    Starting,
    /// The current release is ready and serving.
    Running,
    /// The current release kept crashing; the agent stopped restarting it.
    CrashLoop,
}

/// Answer to a status request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// App name.
    pub app: String,
    /// Version of the agent executable.
    pub agent_version: String,
    /// Pid of the agent.
    pub agent_pid: u32,
    /// Supervision state.
    pub state: AppState,
    /// The current release, if any.
    pub current: Option<ReleaseManifest>,
    /// The release a rollback without argument would go to.
    pub previous: Option<String>,
    /// Pid of the process serving the current release.
    pub pid: Option<u32>,
    /// Milliseconds since the current process became ready.
    pub uptime_ms: Option<u64>,
    /// Restarts of the current release after crashes.
    pub restarts: u32,
    /// Resident memory of the app process in bytes, when known.
    pub rss_bytes: Option<u64>,
    /// The listening sockets the agent owns.
    pub listeners: Vec<ListenerInfo>,
}

/// One listening socket held by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerInfo {
    /// Name handed to the app in `LISTEN_FDNAMES`.
    pub name: String,
    /// Local address.
    pub address: String,
}

/// A release on disk, as listed by [`Request::Releases`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseEntry {
    /// Its manifest.
    pub manifest: ReleaseManifest,
    /// It is the current release.
    pub current: bool,
    /// It is the previous release (the default rollback target).
    pub previous: bool,
}

/// Result of a successful activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// The release now serving.
    pub release: String,
    /// The release that served before, now draining.
    pub previous: Option<String>,
    /// Pid of the new process.
    pub pid: u32,
    /// Milliseconds from spawning the release to its readiness.
    pub ready_ms: u64,
    /// Milliseconds from the request to the old release having stopped accepting.
    pub total_ms: u64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// RFC 3339 time.
    pub at: String,
    /// What happened: `receive`, `activate`, `rollback`, `failure`, `restart`, `crash_loop`.
    pub event: String,
    /// The release concerned.
    #[serde(default)]
    pub release: Option<String>,
    /// The release it replaced, for activations.
    #[serde(default)]
    pub previous: Option<String>,
    /// Who asked: the client's claim and the socket peer's user.
    #[serde(default)]
    pub by: Option<String>,
    /// Free text: the error, the exit status, the sha256.
    #[serde(default)]
    pub detail: Option<String>,
}

/// Encodes a message as one line of JSON, newline included.
pub fn encode_line<T: Serialize>(msg: &T) -> String {
    let mut s = serde_json::to_string(msg).expect("control messages serialize");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json_lines() {
        let line = encode_line(&Request::Activate {
            id: "r1".into(),
            by: None,
            auto_rollback: None,
            message: None,
        });
        assert_eq!(
            line,
            "{\"cmd\":\"activate\",\"id\":\"r1\",\"by\":null,\"auto_rollback\":null,\"message\":null}\n"
        );
        let back: Request = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(
            back,
            Request::Activate {
                id: "r1".into(),
                by: None,
                auto_rollback: None,
                message: None,
            }
        );
        let lock: Request = serde_json::from_str(r#"{"cmd":"lock","action":"status"}"#).unwrap();
        assert_eq!(lock, Request::Lock(LockRequest::Status));
        let status: Request = serde_json::from_str(r#"{"cmd":"status"}"#).unwrap();
        assert_eq!(status, Request::Status);
        let rollback: Request = serde_json::from_str(r#"{"cmd":"rollback"}"#).unwrap();
        assert_eq!(rollback, Request::Rollback { id: None, by: None });
    }

    #[test]
    fn errors_carry_the_release_log() {
        let reply = Reply::Error(ControlError {
            message: "release r2 exited with status 3 before it was ready".into(),
            release_log: vec!["boom".into()],
        });
        let back: Reply = serde_json::from_str(encode_line(&reply).trim()).unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn unknown_commands_are_rejected() {
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"format_disk"}"#).is_err());
    }
}
