//! The resolved deploy configuration, [`DeployConfig`], and the defaults it falls back on.
//!
//! Every field is final: defaults filled in, the chosen destination's overrides applied,
//! every value checked. Only `bin` and `target` stay optional, because resolving them needs
//! cargo (the caller asks `cargo metadata` for the package's binaries).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use blargh_proto::{AppName, EnvKey, SocketName};

/// `ready_timeout` when not set: how long a new release may take to say `READY=1`.
pub const DEFAULT_READY_TIMEOUT: Duration =
    Duration::from_millis(blargh_proto::control::AgentSettings::DEFAULT.ready_timeout_ms);
/// `drain_timeout` when not set: how long a replaced release may drain before SIGKILL.
pub const DEFAULT_DRAIN_TIMEOUT: Duration =
    Duration::from_millis(blargh_proto::control::AgentSettings::DEFAULT.drain_timeout_ms);
/// `watchdog_timeout` when not set: a release that pinged `WATCHDOG=1` once and then goes
/// this long without a ping is replaced as hung. 30 s: well past any GC pause or busy
/// spell of a healthy app (it pings every 15 s), short enough that a hung app is back
/// within a minute. Apps that never ping are not watched, so on by default costs nothing.
pub const DEFAULT_WATCHDOG_TIMEOUT: Duration =
    Duration::from_millis(blargh_proto::control::AgentSettings::DEFAULT.watchdog_timeout_ms);
/// The shortest `watchdog_timeout`.
pub const MIN_WATCHDOG_TIMEOUT: Duration =
    Duration::from_millis(blargh_proto::control::AgentSettings::MIN_WATCHDOG_TIMEOUT_MS);
/// `keep_releases` when not set.
pub const DEFAULT_KEEP_RELEASES: u32 = blargh_proto::control::AgentSettings::DEFAULT.keep_releases;
/// The smallest `keep_releases`: the current release and the one to roll back to.
pub const MIN_KEEP_RELEASES: u32 = blargh_proto::control::MIN_KEEP_RELEASES;
/// `lock_expiry` when not set: after this long a deploy lock counts as abandoned.
pub const DEFAULT_LOCK_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// The socket name of the default `listen`.
pub const DEFAULT_LISTEN_NAME: &str = "web";
/// The address of the default `listen`.
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:80";
/// `auto_rollback` when not set: on, 3 crashes within 60 s.
pub const DEFAULT_AUTO_ROLLBACK: AutoRollback = AutoRollback {
    window: Duration::from_secs(60),
    crashes: 3,
};
/// The longest app name: it becomes a system user, and `useradd` caps those at 32 bytes
/// on some systems, with `blargh-<app>-<socket>` unit names built from it.
pub const MAX_APP_LEN: usize = blargh_proto::names::MAX_APP_LEN;
/// `max_release_size` when not set: 500 MB. The agent holds a release in memory while it
/// decodes it, and keeps `keep_releases` of them on disk; a release this big is most
/// likely a mistake (a `target/` or `node_modules/` caught by `include`).
pub const DEFAULT_MAX_RELEASE_SIZE: u64 = 500_000_000;
/// The largest `max_release_size`: what the agent decodes at most (1 GiB).
pub const MAX_RELEASE_SIZE: u64 = 1 << 30;

/// In a `before_activate` argument, replaced by the path of the new release's binary.
pub const BIN_PLACEHOLDER: &str = "{bin}";

/// What a release is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseContent {
    /// The binary cargo builds, started as `app`, with the files `include` matches beside
    /// it (glob patterns relative to the package's directory, checked for syntax here and
    /// matched by the caller). No patterns: a single executable, as before trees.
    Binary {
        /// Glob patterns, relative, without `..`.
        include: Vec<String>,
    },
    /// A directory built by other tools (`release_dir`, relative to the package's
    /// directory or absolute), shipped whole and started with `start` inside it.
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The start command: `start[0]` a relative path inside `dir`, then its arguments.
        start: Vec<String>,
    },
}

/// When the agent goes back to the previous release by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AutoRollback {
    /// How long after activation crashes count.
    pub window: Duration,
    /// How many crashes of the new release within `window` trigger the rollback (≥ 1).
    pub crashes: u32,
}

/// The deploy configuration of one app for one destination, fully resolved.
///
/// Built by [`crate::load`] or [`crate::parse`] from `[package.metadata.blargh]` (and
/// `[package.metadata.blargh.destinations.NAME]` when a destination is chosen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployConfig {
    /// The Cargo.toml this came from.
    pub file: PathBuf,
    /// The package's name (`[package] name`).
    pub package: String,
    /// The destination chosen with `-d NAME`, if any.
    pub destination: Option<String>,
    /// Every configured destination name, sorted.
    pub destinations: Vec<String>,
    /// SSH destinations, in the order written: `user@host`, `user@host:port`,
    /// `user@[2001:db8::1]:port` or a `Host` alias from `~/.ssh/config`. Never empty, no
    /// duplicates, none starts with `-`.
    pub hosts: Vec<String>,
    /// The app's name on the servers: its user, directory `/var/lib/blargh/<app>` and
    /// services. 1-24 characters `[a-z][a-z0-9_-]*`; default: the package name in lower case.
    pub app: AppName,
    /// The binary target to ship, if set; otherwise the caller picks the package's only
    /// binary, its `default-run`, or the binary named like the package.
    pub bin: Option<String>,
    /// The rustc target triple to build for, if set; otherwise cargo's default.
    pub target: Option<String>,
    /// Sockets the agent listens on and hands to the app, by name (`LISTEN_FDNAMES`).
    /// Default: `web` on `0.0.0.0:80`. May be empty (an app that serves no socket).
    pub listen: BTreeMap<SocketName, SocketAddr>,
    /// Non-secret environment variables for the app. Names are `[A-Z_][A-Z0-9_]*` and
    /// never `LISTEN_*`, `NOTIFY_SOCKET` or `BLARGH_*` (the agent sets those).
    pub env: BTreeMap<EnvKey, String>,
    /// How long a new release may take to say `READY=1`.
    pub ready_timeout: Duration,
    /// How long a replaced release may take to finish its requests before SIGKILL.
    pub drain_timeout: Duration,
    /// How many releases each host keeps on disk (≥ 2).
    pub keep_releases: u32,
    /// How long a release may go without `WATCHDOG=1` (once it sent one) before the agent
    /// replaces it as hung; `None` when `watchdog_timeout = false`.
    pub watchdog_timeout: Option<Duration>,
    /// How a new release shows it is ready: `READY=1` (the default), or an HTTP `GET` the
    /// agent sends to a listener of the new process's own (`ready = { http = "/up" }`).
    pub ready: blargh_proto::control::Readiness,
    /// Certificates from ACME for the app's own HTTPS (`tls = { domains = [...], contact,
    /// directory }`), handed to each release through the agent; `None` when not set.
    pub tls: Option<blargh_proto::control::TlsSettings>,
    /// A command (argv) run on the server before the new release takes traffic, with the
    /// app's environment; `{bin}` in any argument stands for the new binary's path (see
    /// [`DeployConfig::before_activate_argv`]), and at least one argument contains it.
    /// `None` when not set or set to `[]`.
    pub before_activate: Option<Vec<String>>,
    /// When the agent rolls back by itself after a bad activation; `None` when
    /// `auto_rollback = false`.
    pub auto_rollback: Option<AutoRollback>,
    /// After how long a deploy lock left behind (a killed deploy) may be taken over.
    pub lock_expiry: Duration,
    /// Switch all hosts at once instead of one after the other.
    pub parallel: bool,
    /// `known_hosts` lines trusted for the hosts, instead of `~/.ssh/known_hosts` (CI).
    pub known_hosts: Vec<String>,
    /// What a release is: the built binary with `include`d files, or a `release_dir`
    /// with its `start` command.
    pub release: ReleaseContent,
    /// A release (the binary, or the archive of a tree) bigger than this many bytes is
    /// refused before anything is sent (`max_release_size`).
    pub max_release_size: u64,
}

impl DeployConfig {
    /// The `before_activate` command with every `{bin}` replaced by `new_binary`, the path
    /// of the new release's executable on the server.
    ///
    /// ```
    /// let text = r#"
    /// [package]
    /// name = "shop"
    /// [package.metadata.blargh]
    /// hosts = ["deploy@203.0.113.10"]
    /// before_activate = ["{bin}", "migrate", "--config={bin}.toml"]
    /// "#;
    /// let config = blargh_config::parse(text, "Cargo.toml".as_ref(), None).unwrap();
    /// assert_eq!(
    ///     config.before_activate_argv("/r/1/app").unwrap(),
    ///     ["/r/1/app", "migrate", "--config=/r/1/app.toml"]
    /// );
    /// ```
    pub fn before_activate_argv(&self, new_binary: &str) -> Option<Vec<String>> {
        self.before_activate.as_ref().map(|argv| {
            argv.iter()
                .map(|arg| arg.replace(BIN_PLACEHOLDER, new_binary))
                .collect()
        })
    }

    /// The sockets as `NAME=ADDRESS` strings, the form `cargo blargh agent run --listen`
    /// and `seed --listen` take.
    pub fn listen_specs(&self) -> Vec<String> {
        self.listen
            .iter()
            .map(|(name, addr)| format!("{name}={addr}"))
            .collect()
    }
}
