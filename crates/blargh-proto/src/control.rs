//! The control protocol on the agent's Unix socket: one JSON request line from the client
//! (for `receive`, followed by exactly `size` raw bytes), then one JSON reply line; a
//! connection may carry several requests in turn. Every line carries the protocol version
//! (`{"v":2,"request":{"cmd":…}}`, `{"v":2,"reply":…}`, see [`Wire`]): a side that sees
//! another version refuses and says which side is older (see [`check_version`]).
//!
//! The socket is the only way to steer an agent; there is no TCP control port. Remote
//! callers reach it through SSH by running `cargo-blargh agent ctl …` on the server.

use serde::{Deserialize, Serialize};

use crate::manifest::{ReleaseManifest, ReleaseMeta};
use crate::names::{AppName, EnvKey, ReleaseId};

/// Version of the control protocol spoken by this build. Requests and replies of another
/// version are refused. Version 1 (blargh 0.1.0 before versioning) carried no `v`.
pub const PROTOCOL_VERSION: u32 = 2;

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
        id: ReleaseId,
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
        id: Option<ReleaseId>,
        /// Who asks.
        #[serde(default)]
        by: Option<String>,
    },
    /// The last lines the app wrote to stdout/stderr.
    Logs {
        /// Only lines of this release; all releases when absent.
        #[serde(default)]
        release: Option<ReleaseId>,
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
        key: EnvKey,
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
        key: EnvKey,
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
        release: Option<ReleaseId>,
        /// The command: `{bin}` in any argument is replaced by the release's executable,
        /// and the first word is the program (`["{bin}", "migrate"]`, `["sh", "-c", "…"]`).
        args: Vec<String>,
        /// Seconds before it is killed.
        timeout_s: u64,
        /// Who asks.
        #[serde(default)]
        by: Option<String>,
    },
    /// Change the agent's settings at once and keep them (`<root>/settings.json`) over its
    /// command-line defaults; releases beyond the new `keep_releases` are pruned.
    Configure {
        /// The new settings (checked by [`AgentSettings::check`]).
        settings: AgentSettings,
        /// Who asks.
        #[serde(default)]
        by: Option<String>,
    },
    /// Replace the agent with the executable now at its path, in place: it re-executes
    /// itself (same pid) and hands over its sockets and the running release, which keeps
    /// serving. The new agent answers on the same connection once it has taken over.
    Upgrade {
        /// Who asks.
        #[serde(default)]
        by: Option<String>,
    },
}

/// The largest `ready_timeout_ms` and `drain_timeout_ms`: one hour.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// The longest `auto_rollback.window_s`: one day.
pub const MAX_WINDOW_S: u64 = 86_400;
/// The largest upload (`receive`'s `size`): 2 GiB.
pub const MAX_UPLOAD_BYTES: u64 = 2 << 30;
/// The longest `exec` `timeout_s`: one day.
pub const MAX_EXEC_TIMEOUT_S: u64 = 86_400;
/// The longest deploy lock `ttl_s`: one week.
pub const MAX_LOCK_TTL_S: u64 = 7 * 86_400;
/// The smallest `keep_releases`: the current release and the one to roll back to.
pub const MIN_KEEP_RELEASES: u32 = 2;
/// The largest `keep_releases`.
pub const MAX_KEEP_RELEASES: u32 = 1000;

/// How the agent learns that a new process of the app is ready for traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// `READY=1` on `NOTIFY_SOCKET` (the blargh library sends it).
    #[default]
    Notify,
    /// An HTTP `GET` of this path, answered 2xx on a listener only that process gets
    /// (named [`crate::env::READY_LISTENER`]), for apps that cannot notify.
    Http(String),
    /// A command the agent runs (as the app's user, with the release's environment and
    /// `BLARGH_READY_PID`, in the data directory) until it exits 0; `{bin}` in an argument
    /// is the release's executable. For apps whose readiness only a tool can tell.
    Exec(Vec<String>),
}

impl Readiness {
    /// The longest HTTP readiness path.
    pub const MAX_PATH_LEN: usize = 1024;

    /// Checks an HTTP path: it starts with `/`, holds only visible ASCII (no spaces or
    /// control characters, which would change the request) and is at most
    /// [`Self::MAX_PATH_LEN`] bytes.
    /// The most arguments of a readiness command.
    pub const MAX_ARGS: usize = 64;

    /// Checks an HTTP path (see below) or a command: 1 to [`Self::MAX_ARGS`] arguments of at
    /// most 4096 bytes, no NUL, a non-empty program.
    pub fn check(&self) -> Result<(), String> {
        if let Readiness::Exec(argv) = self {
            if argv.is_empty() || argv.len() > Self::MAX_ARGS || argv[0].is_empty() {
                return Err(format!(
                    "the readiness command has {} arguments; give a program and at most {} in all",
                    argv.len(),
                    Self::MAX_ARGS
                ));
            }
            if let Some(a) = argv.iter().find(|a| a.len() > 4096 || a.contains('\0')) {
                return Err(format!(
                    "the readiness command's argument {:?} is longer than 4096 bytes or holds NUL",
                    a.chars().take(40).collect::<String>()
                ));
            }
            return Ok(());
        }
        let Readiness::Http(path) = self else {
            return Ok(());
        };
        if !path.starts_with('/') {
            return Err(format!("the readiness path {path:?} must start with '/'"));
        }
        if path.len() > Self::MAX_PATH_LEN {
            return Err(format!(
                "the readiness path is {} bytes; at most {} are allowed",
                path.len(),
                Self::MAX_PATH_LEN
            ));
        }
        if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "the readiness path {path:?} holds {c:?}; use visible ASCII only (percent-encode the rest)"
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Notify => f.write_str("READY=1"),
            Readiness::Http(path) => write!(f, "http {path}"),
            Readiness::Exec(argv) => write!(f, "exec {argv:?}"),
        }
    }
}

/// Certificates from an ACME CA for the app's own HTTPS (the blargh library's `tls`
/// feature): the agent hands them to each release as `BLARGH_TLS_DOMAINS`,
/// `BLARGH_TLS_CONTACT`, `BLARGH_ACME_DIRECTORY` and `BLARGH_ACME_CA_FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSettings {
    /// The domains one certificate covers (DNS names, no wildcard: HTTP-01 and TLS-ALPN-01
    /// cannot prove one).
    pub domains: Vec<String>,
    /// The contact address for the CA's expiry warnings (an email address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// The CA's ACME directory URL; Let's Encrypt's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// A PEM file on the server with the root the app trusts for the directory's HTTPS (a
    /// private ACME CA); the system's roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl TlsSettings {
    /// The most domains on one certificate (Let's Encrypt's limit).
    pub const MAX_DOMAINS: usize = 100;

    /// Checks the domains (1 to [`Self::MAX_DOMAINS`] DNS names of letters, digits, `-`
    /// and `.`, labels of 1 to 63, at most 253 bytes), the contact (an email address
    /// without spaces), the directory (an `https://` URL without spaces) and the CA file
    /// (an absolute path without spaces).
    pub fn check(&self) -> Result<(), String> {
        if self.domains.is_empty() || self.domains.len() > Self::MAX_DOMAINS {
            return Err(format!(
                "tls.domains has {} names; give 1 to {}",
                self.domains.len(),
                Self::MAX_DOMAINS
            ));
        }
        for d in &self.domains {
            check_domain(d)?;
        }
        if let Some(c) = &self.contact {
            let ok = c.len() <= 254
                && c.split_once('@')
                    .is_some_and(|(u, h)| !u.is_empty() && h.contains('.'))
                && c.chars().all(|ch| ch.is_ascii_graphic());
            if !ok {
                return Err(format!(
                    "tls.contact {c:?} is not an email address; write one like \"ops@shop.example\""
                ));
            }
        }
        if let Some(u) = &self.directory {
            let ok = u.len() <= 2048
                && u.starts_with("https://")
                && u.len() > "https://".len()
                && u.chars().all(|ch| ch.is_ascii_graphic());
            if !ok {
                return Err(format!(
                    "tls.directory {u:?} is not an https:// URL; write the CA's directory URL, e.g. \"https://acme-staging-v02.api.letsencrypt.org/directory\""
                ));
            }
        }
        if let Some(f) = &self.ca_file {
            let ok = f.len() <= 4096
                && f.starts_with('/')
                && !f.split('/').any(|part| part == "..")
                && f.chars().all(|ch| ch.is_ascii_graphic());
            if !ok {
                return Err(format!(
                    "tls.ca_file {f:?} is not an absolute path on the server; write one like \"/etc/ssl/my-ca.pem\""
                ));
            }
        }
        Ok(())
    }
}

fn check_domain(d: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("tls.domains: {d:?} {why}"));
    if d.starts_with("*.") {
        return bad("is a wildcard, which HTTP-01 and TLS-ALPN-01 cannot prove; list each name");
    }
    if d.is_empty() || d.len() > 253 {
        return bad("must be 1 to 253 bytes long");
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("has an empty label or one longer than 63 bytes");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("has a label that starts or ends with '-'");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return bad(
                "holds a character other than letters, digits, '-' and '.' (write IDNs in punycode)",
            );
        }
    }
    if !d.contains('.') {
        return bad("is not a fully qualified name (a public CA needs one like shop.example)");
    }
    Ok(())
}

/// The settings an agent can change while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSettings {
    /// How long a starting release may take to say `READY=1`, in milliseconds.
    pub ready_timeout_ms: u64,
    /// How long a draining release may take to finish before SIGKILL, in milliseconds.
    pub drain_timeout_ms: u64,
    /// Releases kept on disk (at least 2: the current one and the one to roll back to).
    pub keep_releases: u32,
    /// How long a release that has sent `WATCHDOG=1` once may go without sending it again
    /// before the agent replaces it as hung, in milliseconds; 0 turns the watchdog off.
    /// Absent in settings saved by older agents: the default.
    #[serde(default = "default_watchdog_timeout_ms")]
    pub watchdog_timeout_ms: u64,
    /// How a new process shows it is ready. Absent in settings saved by older agents:
    /// `READY=1`.
    #[serde(default, skip_serializing_if = "is_notify")]
    pub ready: Readiness,
    /// Certificates from ACME for the app's HTTPS; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

fn is_notify(r: &Readiness) -> bool {
    *r == Readiness::Notify
}

fn default_watchdog_timeout_ms() -> u64 {
    AgentSettings::DEFAULT.watchdog_timeout_ms
}

impl AgentSettings {
    /// The settings of an agent nobody configured: the one place these defaults are
    /// written (the config's `ready_timeout`, `drain_timeout`, `keep_releases` and the
    /// agent's flags take them from here).
    pub const DEFAULT: AgentSettings = AgentSettings {
        ready_timeout_ms: 60_000,
        drain_timeout_ms: 30_000,
        keep_releases: 5,
        watchdog_timeout_ms: 30_000,
        ready: Readiness::Notify,
        tls: None,
    };

    /// The smallest watchdog timeout other than 0 (off): the app pings every half of it, and
    /// a ping more often than every 50 ms is busy work.
    pub const MIN_WATCHDOG_TIMEOUT_MS: u64 = 100;

    /// Checks the bounds: timeouts between 1 ms and one hour, `keep_releases` from 2 to 1000,
    /// the watchdog off (0) or from 100 ms to one hour.
    pub fn check(&self) -> Result<(), String> {
        for (name, ms) in [
            ("ready_timeout", self.ready_timeout_ms),
            ("drain_timeout", self.drain_timeout_ms),
        ] {
            if ms == 0 || ms > MAX_TIMEOUT_MS {
                return Err(format!(
                    "{name} of {ms} ms is out of range: use more than 0 and at most 1 hour \
                     ({MAX_TIMEOUT_MS} ms)"
                ));
            }
        }
        if !(MIN_KEEP_RELEASES..=MAX_KEEP_RELEASES).contains(&self.keep_releases) {
            return Err(format!(
                "keep_releases = {} is out of range: keep {MIN_KEEP_RELEASES} to \
                 {MAX_KEEP_RELEASES} (the current release and the one to roll back to at least)",
                self.keep_releases
            ));
        }
        let w = self.watchdog_timeout_ms;
        if w != 0 && !(Self::MIN_WATCHDOG_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&w) {
            return Err(format!(
                "watchdog_timeout of {w} ms is out of range: use 0 (off) or from {} ms to 1 hour \
                 ({MAX_TIMEOUT_MS} ms)",
                Self::MIN_WATCHDOG_TIMEOUT_MS
            ));
        }
        self.ready.check()?;
        match &self.tls {
            Some(t) => t.check(),
            None => Ok(()),
        }
    }
}

impl Request {
    /// Checks every number that becomes a duration, a deadline or an allocation: the one
    /// rule the agent applies to a request as soon as it is decoded, so an out-of-range value is refused before anything
    /// changes. The error names the field, the value and the range.
    pub fn check(&self) -> Result<(), String> {
        fn at_most(name: &str, value: u64, max: u64, unit: &str) -> Result<(), String> {
            if value > max {
                return Err(format!(
                    "{name} = {value} is out of range: use at most {max} {unit}"
                ));
            }
            Ok(())
        }
        match self {
            Request::Receive { size, .. } => {
                at_most("size", *size, MAX_UPLOAD_BYTES, "bytes (2 GiB)")
            }
            Request::Activate {
                auto_rollback: Some(ar),
                ..
            } => ar.check(),
            Request::Lock(LockRequest::Acquire { ttl_s, .. }) => {
                at_most("ttl_s", *ttl_s, MAX_LOCK_TTL_S, "seconds (one week)")
            }
            Request::Exec { timeout_s, .. } => at_most(
                "timeout_s",
                *timeout_s,
                MAX_EXEC_TIMEOUT_S,
                "seconds (one day)",
            ),
            Request::Configure { settings, .. } => settings.check(),
            _ => Ok(()),
        }
    }
}

impl AutoRollback {
    /// Checks the window: at most [`MAX_WINDOW_S`] (one day).
    pub fn check(&self) -> Result<(), String> {
        if self.window_s > MAX_WINDOW_S {
            return Err(format!(
                "auto_rollback.window_s = {} is out of range: use at most {MAX_WINDOW_S} \
                 seconds (one day)",
                self.window_s
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for AgentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ready_timeout {} ms, drain_timeout {} ms, watchdog_timeout {}, keep_releases {}",
            self.ready_timeout_ms,
            self.drain_timeout_ms,
            match self.watchdog_timeout_ms {
                0 => "off".to_string(),
                ms => format!("{ms} ms"),
            },
            self.keep_releases,
        )?;
        if self.ready != Readiness::Notify {
            write!(f, ", ready {}", self.ready)?;
        }
        match &self.tls {
            Some(t) => write!(f, ", tls {}", t.domains.join(",")),
            None => Ok(()),
        }
    }
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
// One reply per request, moved once: boxing the status would buy nothing.
#[allow(clippy::large_enum_variant)]
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
        names: Vec<EnvKey>,
        /// The restart that applied the change, if the app was running.
        restarted: Option<Activation>,
    },
    /// Answer to [`Request::Configure`]: the settings now in effect.
    Configured {
        /// The effective settings.
        settings: AgentSettings,
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
    /// Answer to [`Request::Upgrade`], sent by the new agent once it has taken over.
    Upgraded(Upgraded),
    /// The request failed; nothing changed unless the message says so.
    Error(ControlError),
}

/// What an in-place upgrade of the agent did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgraded {
    /// The version of the agent that handed over.
    pub from_version: String,
    /// The version now running.
    pub to_version: String,
    /// The agent's pid, the same before and after.
    pub agent_pid: u32,
    /// The release process that kept serving across the upgrade, if one ran.
    pub kept: Option<KeptProcess>,
    /// Milliseconds from the request to the new agent answering.
    pub took_ms: u64,
}

/// A release process handed from one agent to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptProcess {
    /// Its release.
    pub release: ReleaseId,
    /// Its pid.
    pub pid: u32,
}

impl Reply {
    /// True for [`Reply::Error`]: the request failed.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
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
    /// The current release kept crashing; the agent keeps trying to start it, less and
    /// less often (see [`AgentStatus::retry_every_ms`]).
    CrashLoop,
}

/// Answer to a status request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// App name.
    pub app: AppName,
    /// Version of the agent executable.
    pub agent_version: String,
    /// Pid of the agent.
    pub agent_pid: u32,
    /// Supervision state.
    pub state: AppState,
    /// The current release, if any.
    pub current: Option<ReleaseManifest>,
    /// The release a rollback without argument would go to.
    pub previous: Option<ReleaseId>,
    /// Pid of the process serving the current release.
    pub pid: Option<u32>,
    /// Milliseconds since the current process became ready.
    pub uptime_ms: Option<u64>,
    /// Restarts of the current release after crashes.
    pub restarts: u32,
    /// Replacements of a hung process (no `WATCHDOG=1` within the watchdog timeout).
    #[serde(default)]
    pub watchdog_restarts: u32,
    /// In a crash loop: how long the agent waits between attempts to start the release now.
    #[serde(default)]
    pub retry_every_ms: Option<u64>,
    /// Resident memory of the app process in bytes, when known.
    pub rss_bytes: Option<u64>,
    /// The listening sockets the agent owns.
    pub listeners: Vec<ListenerInfo>,
    /// The settings in effect (flags, overridden by `configure`).
    pub settings: AgentSettings,
    /// The TLS certificates the app serves, as it last reported them (see
    /// [`crate::env::CERT_NOTIFY`]); empty when it serves none or reports nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertStatus>,
}

/// A certificate the app serves, as the app reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertStatus {
    /// The domain it is for.
    pub domain: String,
    /// When it expires (RFC 3339, UTC).
    pub not_after: String,
    /// Who issued it (`self-signed` for a development certificate).
    pub issuer: String,
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
    pub release: ReleaseId,
    /// The release that served before, now draining.
    pub previous: Option<ReleaseId>,
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

/// A message that travels as one line: a [`Request`] nests under `request`
/// (`{"v":2,"request":{"cmd":"status"}}`), so an agent older than versioning, which reads
/// a bare request, refuses it instead of acting on it; a [`Reply`] keeps its fields beside
/// `v` (`{"v":2,"reply":"status",…}`), so an older CLI still reads a refusal's message.
pub trait Wire: Sized {
    /// The line, newline included.
    fn to_line(&self) -> String;
    /// Decodes a line (without its newline), checking its version first.
    fn from_line(line: &str) -> Result<Self, DecodeError>;
}

#[derive(Serialize)]
struct RequestOut<'a> {
    v: u32,
    request: &'a Request,
}

#[derive(Deserialize)]
struct RequestIn {
    request: Request,
}

#[derive(Serialize)]
struct ReplyOut<'a> {
    v: u32,
    #[serde(flatten)]
    reply: &'a Reply,
}

#[derive(Deserialize)]
struct ReplyIn {
    #[serde(flatten)]
    reply: Reply,
}

fn line_of(value: &impl Serialize) -> String {
    let mut s = serde_json::to_string(value).expect("control messages serialize");
    s.push('\n');
    s
}

impl Wire for Request {
    fn to_line(&self) -> String {
        line_of(&RequestOut {
            v: PROTOCOL_VERSION,
            request: self,
        })
    }

    fn from_line(line: &str) -> Result<Self, DecodeError> {
        decode::<RequestIn>(line, Reader::Agent).map(|r| r.request)
    }
}

impl Wire for Reply {
    fn to_line(&self) -> String {
        line_of(&ReplyOut {
            v: PROTOCOL_VERSION,
            reply: self,
        })
    }

    fn from_line(line: &str) -> Result<Self, DecodeError> {
        decode::<ReplyIn>(line, Reader::Cli).map(|r| r.reply)
    }
}

/// Encodes a [`Request`] or a [`Reply`] as one line with this build's protocol version,
/// newline included (see [`Wire`]).
pub fn encode_line<T: Wire>(msg: &T) -> String {
    msg.to_line()
}

/// Decodes one line (without its newline) of a [`Request`] or a [`Reply`]: the version is
/// checked before the message, so a message of another version is refused by its version
/// rather than misread.
pub fn decode_line<T: Wire>(line: &str) -> Result<T, DecodeError> {
    T::from_line(line)
}

/// Which side of a conversation reads the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The agent reads a request from a CLI.
    Agent,
    /// A CLI reads a reply from an agent.
    Cli,
}

/// A line that did not decode: of another protocol version, or not a message at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The other side speaks another protocol version; the text says which side is older
    /// and how to bring them together.
    Version(String),
    /// Not a message of this protocol.
    Invalid(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Version(m) | DecodeError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Compares the version `theirs` of a line (`None`: version 1, which carried none) with
/// [`PROTOCOL_VERSION`]; the error says which side is older and what to do.
pub fn check_version(theirs: Option<u32>, reader: Reader) -> Result<(), String> {
    let theirs = theirs.unwrap_or(1);
    let ours = PROTOCOL_VERSION;
    if theirs == ours {
        return Ok(());
    }
    let (agent, cli) = match reader {
        Reader::Agent => (ours, theirs),
        Reader::Cli => (theirs, ours),
    };
    Err(if agent < cli {
        format!(
            "the agent on this host is older than this cargo-blargh (control protocol {agent} \
             vs {cli}); run `cargo blargh seed` to upgrade the agent, then try again"
        )
    } else {
        format!(
            "this cargo-blargh is older than the agent on this host (control protocol {cli} vs \
             {agent}); install a newer cargo-blargh (`cargo install cargo-blargh`), or run \
             `cargo blargh seed` with the one you have to put its own agent back"
        )
    })
}

fn decode<T: serde::de::DeserializeOwned>(line: &str, reader: Reader) -> Result<T, DecodeError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        #[serde(default)]
        v: Option<u32>,
    }
    let what = match reader {
        Reader::Agent => "a control request",
        Reader::Cli => "an answer of the agent",
    };
    let version: VersionOnly = serde_json::from_str(line)
        .map_err(|e| DecodeError::Invalid(format!("not {what} ({e}): {}", clip(line))))?;
    check_version(version.v, reader).map_err(DecodeError::Version)?;
    serde_json::from_str::<T>(line)
        .map_err(|e| DecodeError::Invalid(format!("not {what} ({e}): {}", clip(line))))
}

/// The first 200 characters of `s`, for messages.
fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ReleaseId {
        s.parse().unwrap()
    }

    #[test]
    fn requests_are_versioned_tagged_json_lines() {
        let req = Request::Activate {
            id: id("r1"),
            by: None,
            auto_rollback: None,
            message: None,
        };
        let line = encode_line(&req);
        assert_eq!(
            line,
            "{\"v\":2,\"request\":{\"cmd\":\"activate\",\"id\":\"r1\",\"by\":null,\"auto_rollback\":null,\"message\":null}}\n"
        );
        let back: Request = decode_line(line.trim()).unwrap();
        assert_eq!(back, req);
        let lock: Request =
            decode_line(r#"{"v":2,"request":{"cmd":"lock","action":"status"}}"#).unwrap();
        assert_eq!(lock, Request::Lock(LockRequest::Status));
        let status: Request = decode_line(r#"{"v":2,"request":{"cmd":"status"}}"#).unwrap();
        assert_eq!(status, Request::Status);
        let rollback: Request = decode_line(r#"{"request":{"cmd":"rollback"},"v":2}"#).unwrap();
        assert_eq!(rollback, Request::Rollback { id: None, by: None });
    }

    #[test]
    fn other_versions_are_refused_naming_the_older_side() {
        // A CLI of version 1 sent no version: the agent is newer.
        let Err(DecodeError::Version(m)) = decode_line::<Request>(r#"{"cmd":"status"}"#) else {
            panic!("a request without a version was accepted")
        };
        assert!(
            m.contains("this cargo-blargh is older than the agent"),
            "{m}"
        );
        // A newer CLI: the agent is older, and seed upgrades it.
        let Err(DecodeError::Version(m)) =
            decode_line::<Request>(r#"{"v":3,"request":{"cmd":"status"}}"#)
        else {
            panic!("a request of version 3 was accepted")
        };
        assert!(m.contains("the agent on this host is older"), "{m}");
        assert!(m.contains("`cargo blargh seed`"), "{m}");
        // An old agent answers without a version: the CLI says the agent is older.
        let Err(DecodeError::Version(m)) = decode_line::<Reply>(r#"{"reply":"lock","held":null}"#)
        else {
            panic!("a reply without a version was accepted")
        };
        assert!(m.contains("the agent on this host is older"), "{m}");
        assert!(m.contains("cargo blargh seed"), "{m}");
        // A version 3 command unknown here is refused by its version, not as unknown.
        let e = decode_line::<Request>(r#"{"v":3,"request":{"cmd":"teleport"}}"#);
        assert!(matches!(e, Err(DecodeError::Version(_))), "{e:?}");
    }

    #[test]
    fn an_agent_older_than_versioning_cannot_act_on_a_request() {
        // Such an agent reads a bare `Request` from the line: the nested request has no
        // `cmd` where it looks, so it refuses (and answers without a version, which the
        // CLI reports as an older agent) instead of acting.
        let line = encode_line(&Request::Lock(LockRequest::Acquire {
            holder: "ana".into(),
            message: "deploy".into(),
            ttl_s: 60,
            force: false,
        }));
        assert!(
            serde_json::from_str::<Request>(line.trim_end()).is_err(),
            "{line}"
        );
        // And a reply stays readable by an older CLI: its fields sit beside `v`.
        let reply = Reply::Error(ControlError {
            message: "the agent on this host is older".into(),
            release_log: vec![],
        });
        let old: Reply = serde_json::from_str(encode_line(&reply).trim_end()).unwrap();
        assert_eq!(old, reply);
    }

    #[test]
    fn names_are_validated_on_the_wire() {
        let e = decode_line::<Request>(r#"{"v":2,"request":{"cmd":"activate","id":"../../etc"}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("not a valid release id"), "{e}");
        let e = decode_line::<Request>(
            r#"{"v":2,"request":{"cmd":"env_set","key":"LISTEN_FDS","value":"9"}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("set by the agent"), "{e}");
    }

    #[test]
    fn settings_are_bounded() {
        let ok = AgentSettings {
            ready_timeout_ms: 60_000,
            drain_timeout_ms: 30_000,
            keep_releases: 5,
            watchdog_timeout_ms: 30_000,
            ready: Readiness::Notify,
            tls: None,
        };
        let tls = |domains: &[&str], contact: Option<&str>, directory: Option<&str>| {
            AgentSettings {
                tls: Some(TlsSettings {
                    domains: domains.iter().map(|d| d.to_string()).collect(),
                    contact: contact.map(str::to_string),
                    directory: directory.map(str::to_string),
                    ca_file: None,
                }),
                ..ok.clone()
            }
            .check()
        };
        let ca = |file: &str| {
            AgentSettings {
                tls: Some(TlsSettings {
                    domains: vec!["shop.example".into()],
                    contact: None,
                    directory: None,
                    ca_file: Some(file.into()),
                }),
                ..ok.clone()
            }
            .check()
        };
        assert!(ca("/etc/ssl/private-ca.pem").is_ok());
        for bad in ["etc/ca.pem", "/etc/../root/ca.pem", "/etc/my ca.pem", ""] {
            let e = ca(bad).unwrap_err();
            assert!(e.contains("tls.ca_file"), "{bad:?}: {e}");
        }
        assert!(
            tls(
                &["shop.example", "www.shop.example"],
                Some("a@b.example"),
                Some("https://ca.example/dir")
            )
            .is_ok()
        );
        for bad in [
            tls(&[], None, None),
            tls(&["*.shop.example"], None, None),
            tls(&["shop"], None, None),
            tls(&["-shop.example"], None, None),
            tls(&["sh op.example"], None, None),
            tls(&["shop.example"], Some("not-an-email"), None),
            tls(&["shop.example"], None, Some("http://ca.example/dir")),
            tls(&["shop.example"], None, Some("https://ca.example/a b")),
        ] {
            assert!(bad.is_err());
        }
        for (path, good) in [
            ("/up", true),
            ("/health?full=1", true),
            ("up", false),
            ("/up now", false),
            ("/up\r\nX-Evil: 1", false),
            ("/é", false),
        ] {
            let r = AgentSettings {
                ready: Readiness::Http(path.into()),
                ..ok.clone()
            }
            .check();
            assert_eq!(r.is_ok(), good, "ready http {path:?}: {r:?}");
        }
        assert!(
            Readiness::Exec(vec!["sh".into(), "-c".into(), "true".into()])
                .check()
                .is_ok()
        );
        assert!(Readiness::Exec(vec![]).check().is_err());
        assert!(Readiness::Exec(vec![String::new()]).check().is_err());
        assert!(Readiness::Exec(vec!["a\0b".into()]).check().is_err());
        assert!(
            Readiness::Exec(vec!["x".into(); Readiness::MAX_ARGS + 1])
                .check()
                .is_err()
        );
        let long = format!("/{}", "a".repeat(Readiness::MAX_PATH_LEN));
        assert!(Readiness::Http(long).check().is_err());
        for (w, good) in [
            (0, true),
            (99, false),
            (100, true),
            (MAX_TIMEOUT_MS + 1, false),
        ] {
            let r = AgentSettings {
                watchdog_timeout_ms: w,
                ..ok.clone()
            }
            .check();
            assert_eq!(r.is_ok(), good, "watchdog {w}: {r:?}");
        }
        // Settings saved before the watchdog existed read with the default.
        let old: AgentSettings = serde_json::from_str(
            r#"{"ready_timeout_ms":1,"drain_timeout_ms":1,"keep_releases":2}"#,
        )
        .unwrap();
        assert_eq!(
            old.watchdog_timeout_ms,
            AgentSettings::DEFAULT.watchdog_timeout_ms
        );
        assert_eq!(ok.check(), Ok(()));
        let e = AgentSettings {
            keep_releases: 1,
            ..ok.clone()
        }
        .check()
        .unwrap_err();
        assert!(e.contains("keep_releases = 1"), "{e}");
        let e = AgentSettings {
            ready_timeout_ms: 0,
            ..ok.clone()
        }
        .check()
        .unwrap_err();
        assert!(e.contains("ready_timeout of 0 ms"), "{e}");
        assert!(
            AgentSettings {
                drain_timeout_ms: MAX_TIMEOUT_MS + 1,
                ..ok.clone()
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn errors_carry_the_release_log() {
        let reply = Reply::Error(ControlError {
            message: "release r2 exited with status 3 before it was ready".into(),
            release_log: vec!["boom".into()],
        });
        let back: Reply = decode_line(encode_line(&reply).trim()).unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn unknown_commands_are_rejected() {
        assert!(decode_line::<Request>(r#"{"v":2,"request":{"cmd":"format_disk"}}"#).is_err());
    }
}
