//! The command line: every subcommand and flag, as clap types.

use std::path::PathBuf;
use std::time::Duration;

use blargh_agent::config::ListenSpec;
use clap::{Args, Parser, Subcommand};

use crate::remote::ConnectArgs;
use crate::settings::Overrides;

/// Deploy a Rust web app to your own server over SSH, with zero downtime.
#[derive(Debug, Parser)]
#[command(name = "cargo blargh", bin_name = "cargo blargh", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prepare a server to receive deployments: app user, agent, init service. Idempotent.
    Seed(SeedArgs),
    /// Say what a server is, whether blargh supports it and why, and how its agent is.
    Doctor(DoctorArgs),
    /// Add a commented [package.metadata.blargh] section to the app's Cargo.toml.
    Init {
        /// The app's Cargo.toml.
        #[arg(long, value_name = "PATH", default_value = "Cargo.toml")]
        manifest_path: PathBuf,
    },
    /// Build, ship and switch to a new release on every host, with zero downtime.
    Deploy(DeployArgs),
    /// Switch every host (or those given with --host) to a release already on them, such as
    /// one shipped by `deploy --stage`: lock, env, before_activate, zero-downtime switch,
    /// undo on failure, as a deploy does.
    Activate(ActivateArgs),
    /// Go back to the previous release (or the one named) on every host.
    Rollback {
        /// Release id; the previous release when absent.
        release: Option<blargh_proto::ReleaseId>,
        #[command(flatten)]
        app: AppArgs,
    },
    /// The releases on each host, newest first.
    Releases {
        #[command(flatten)]
        app: AppArgs,
    },
    /// Per host: running release, pid, uptime, memory, restarts, lock.
    Status {
        #[command(flatten)]
        app: AppArgs,
    },
    /// The app's output on every host, each line prefixed with host and release.
    Logs {
        /// Lines per host.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines as they come (Ctrl-C to stop).
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        app: AppArgs,
    },
    /// The audit log of every host: receives, activations, rollbacks, failures.
    Audit {
        /// Events per host.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        #[command(flatten)]
        app: AppArgs,
    },
    /// The app's environment on the servers (values are read from stdin, never argv).
    #[command(subcommand)]
    Env(EnvCommand),
    /// The deploy lock on every host.
    #[command(subcommand)]
    Lock(LockCommand),
    /// Run the current release's executable once with the app's env (one-off tasks).
    Exec {
        #[command(flatten)]
        app: AppArgs,
        /// Seconds before it is killed.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Arguments for the executable.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// The server side: run the agent, or talk to a running one.
    #[command(subcommand)]
    Agent(AgentCommand),
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// `user@host[:port]` or a Host alias from ~/.ssh/config; every host of the
    /// configuration (or of `-d NAME`) when absent.
    pub destination: Option<String>,
    /// A destination from `[package.metadata.blargh.destinations]` (e.g. staging).
    #[arg(short = 'd', long = "destination")]
    pub config_destination: Option<String>,
    /// The app's name on the server (its user, group and service `blargh-<app>`); default:
    /// the configuration's `app`.
    #[arg(long)]
    pub app: Option<String>,
    /// A socket for the app, NAME=ADDRESS; repeat for several; replaces the configuration's
    /// `listen` (default web=0.0.0.0:80).
    #[arg(long = "listen", value_name = "NAME=ADDRESS")]
    pub listen: Vec<ListenSpec>,
    /// Print every step and whether it would change anything; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Install this executable as the agent instead of this one (e.g. a musl build).
    #[arg(long, value_name = "FILE")]
    pub agent_binary: Option<PathBuf>,
    /// Public key to add to the SSH user's authorized_keys (default after a password
    /// login: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub).
    #[arg(long, value_name = "FILE.pub")]
    pub authorize_key: Option<PathBuf>,
    /// How long a new release may take to signal readiness (default: the configuration's
    /// `ready_timeout`, else 60s).
    #[arg(long, value_parser = parse_duration)]
    pub ready_timeout: Option<Duration>,
    /// How long a replaced release may take to drain before SIGKILL (default: the
    /// configuration's `drain_timeout`, else 30s).
    #[arg(long, value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Releases kept on each host (default: the configuration's `keep_releases`, else 5).
    #[arg(long)]
    pub keep_releases: Option<u32>,
    /// The app's Cargo.toml.
    #[arg(long, value_name = "PATH", default_value = "Cargo.toml")]
    pub manifest_path: PathBuf,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl SeedArgs {
    /// These flags as overrides of the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            destination: self.config_destination.clone(),
            hosts: self.destination.iter().cloned().collect(),
            app: self.app.clone(),
            listen: (!self.listen.is_empty()).then(|| {
                self.listen
                    .iter()
                    .map(|l| (l.name.to_string(), l.address.clone()))
                    .collect()
            }),
            ready_timeout: self.ready_timeout,
            drain_timeout: self.drain_timeout,
            keep_releases: self.keep_releases,
            manifest_path: self.manifest_path.clone(),
            connect: self.connect.clone(),
            ..Default::default()
        }
    }
}

/// Which app on which hosts: from `[package.metadata.blargh]`, or the flags.
#[derive(Debug, Clone, Args)]
pub struct AppArgs {
    /// A destination from `[package.metadata.blargh.destinations]` (e.g. staging).
    #[arg(short = 'd', long = "destination")]
    pub destination: Option<String>,
    /// A host, instead of the configured ones; repeat for several.
    #[arg(long = "host", value_name = "USER@HOST[:PORT]")]
    pub hosts: Vec<String>,
    /// The app's name on the servers, instead of the configured one.
    #[arg(long)]
    pub app: Option<String>,
    /// The app's Cargo.toml.
    #[arg(long, value_name = "PATH", default_value = "Cargo.toml")]
    pub manifest_path: PathBuf,
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl AppArgs {
    /// These flags as overrides of the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            destination: self.destination.clone(),
            hosts: self.hosts.clone(),
            app: self.app.clone(),
            manifest_path: self.manifest_path.clone(),
            connect: self.connect.clone(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Ship this executable instead of building (any program that speaks socket activation).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Build for this target triple (e.g. x86_64-unknown-linux-musl).
    #[arg(long)]
    pub target: Option<String>,
    /// Why: kept with the release and shown by `releases`.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Show what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Activate all hosts at once instead of one at a time.
    #[arg(long)]
    pub parallel: bool,
    /// Ship and verify the release on every host but start nothing; switch later with
    /// `cargo blargh activate`.
    #[arg(long, conflicts_with = "parallel")]
    pub stage: bool,
}

#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The release: its id on the host, or 8 or more hex digits of its sha256 (the same
    /// on every host; `deploy --stage` prints it).
    #[arg(value_name = "RELEASE")]
    pub release: String,
    #[command(flatten)]
    pub app: AppArgs,
    /// Why: recorded in the audit log.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Activate all hosts at once instead of one at a time.
    #[arg(long)]
    pub parallel: bool,
}

/// `KEY` or `KEY=VALUE` as given to `env set`, split but not checked here: clap would
/// print the whole argument, value included, in the error for a bad name.
#[derive(Clone)]
pub struct EnvAssignment {
    /// Variable name, as typed (checked as an [`blargh_proto::EnvKey`] by the command).
    pub key: String,
    /// The value, when given on the command line.
    pub value: Option<String>,
}

impl std::fmt::Debug for EnvAssignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvAssignment")
            .field("key", &self.key)
            .field("value", &self.value.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl std::str::FromStr for EnvAssignment {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.split_once('=') {
            Some((k, v)) => EnvAssignment {
                key: k.to_string(),
                value: Some(v.to_string()),
            },
            None => EnvAssignment {
                key: s.to_string(),
                value: None,
            },
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Set KEY to a value read from stdin (or asked for on a terminal, not echoed);
    /// restarts the app with zero downtime. `KEY=VALUE` works too, but leaves the value in
    /// the shell's history.
    Set {
        /// Variable name (`KEY`), or `KEY=VALUE`.
        #[arg(value_name = "KEY")]
        key: EnvAssignment,
        #[command(flatten)]
        app: AppArgs,
    },
    /// Remove KEY; restarts the app with zero downtime.
    Unset {
        /// Variable name.
        key: blargh_proto::EnvKey,
        #[command(flatten)]
        app: AppArgs,
    },
    /// The names set on each host (values are never shown).
    List {
        #[command(flatten)]
        app: AppArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Hold the deploy lock (deploys by others are refused until it is released).
    Acquire {
        /// Why, shown to whoever is refused.
        #[arg(short = 'm', long)]
        message: String,
        /// Take it even if someone else holds it.
        #[arg(long)]
        force: bool,
        /// Expire after this long.
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        expiry: Duration,
        #[command(flatten)]
        app: AppArgs,
    },
    /// Release the deploy lock.
    Release {
        /// Release someone else's lock.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        app: AppArgs,
    },
    /// Who holds the deploy lock, since when, and why.
    Status {
        #[command(flatten)]
        app: AppArgs,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// `user@host[:port]` or a Host alias from ~/.ssh/config.
    pub destination: String,
    /// Also check this app's agent.
    #[arg(long)]
    pub app: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run the agent in the foreground (the init system runs it this way on a server).
    Run(AgentRunArgs),
    /// Talk to a running agent through its control socket.
    Ctl(CtlArgs),
    /// Print the handover format this executable reads (an agent upgrading in place asks
    /// the new executable first).
    #[command(hide = true)]
    HandoverVersion,
}

#[derive(Debug, Args)]
pub struct AgentRunArgs {
    /// The app's root directory (releases, data, env, logs, control socket).
    #[arg(long, env = "BLARGH_ROOT")]
    pub root: PathBuf,
    /// The app's name.
    #[arg(long)]
    pub app: blargh_proto::AppName,
    /// A socket to listen on, as NAME=ADDRESS; repeat for several. Ignored when the init
    /// system hands sockets over (systemd socket activation).
    #[arg(long = "listen", value_name = "NAME=ADDRESS")]
    pub listen: Vec<ListenSpec>,
    /// User to run the app as; required when the agent runs as root.
    #[arg(long)]
    pub user: Option<String>,
    /// User the agent becomes once its sockets are bound, when started as root (OpenRC):
    /// it keeps only CAP_SETUID, CAP_SETGID and CAP_KILL.
    #[arg(long)]
    pub agent_user: Option<String>,
    /// Group whose members may use the control socket.
    #[arg(long)]
    pub socket_group: Option<String>,
    /// How long a new release may take to signal readiness (default 60s).
    #[arg(long, value_parser = parse_duration)]
    pub ready_timeout: Option<Duration>,
    /// How long a replaced release may take to drain before SIGKILL (default 30s).
    #[arg(long, value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Releases kept on disk (the current and previous ones are always kept; default 5).
    #[arg(long)]
    pub keep_releases: Option<usize>,
    /// Crashes within --crash-window after which it is a crash loop: restarts go on every
    /// 2 s, doubling up to every 60 s, until one starts.
    #[arg(long, default_value_t = 5)]
    pub max_restarts: usize,
    /// Window in which crashes are counted.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub crash_window: Duration,
    /// Replace a release that sent WATCHDOG=1 once and then none for this long (default
    /// 30s; 0s: no watchdog). The release gets WATCHDOG_USEC; the blargh library pings.
    #[arg(long, value_parser = parse_duration)]
    pub watchdog_timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The app's root directory; the control socket is ROOT/agent.sock.
    #[arg(long, env = "BLARGH_ROOT", global = true)]
    pub root: Option<PathBuf>,
    /// Print the agent's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// What runs, since when, how it is doing.
    Status,
    /// Releases on disk, newest first.
    Releases,
    /// Upload an executable as a new release (from a file, or stdin with --sha256 and --size).
    Receive(ReceiveArgs),
    /// Start a stored release and switch traffic to it once it is ready.
    Activate {
        /// Release id (see `releases`).
        id: blargh_proto::ReleaseId,
        /// Who asks, for the audit log.
        #[arg(long)]
        by: Option<String>,
        /// Roll back by itself if the new release crashes this many times soon after.
        #[arg(long, value_name = "N")]
        auto_rollback_crashes: Option<u32>,
        /// How long after the switch crashes count toward --auto-rollback-crashes.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        auto_rollback_window: Duration,
    },
    /// Go back to the previous release (or the one named).
    Rollback {
        /// Release id; the previous release when absent.
        id: Option<blargh_proto::ReleaseId>,
        /// Who asks, for the audit log.
        #[arg(long)]
        by: Option<String>,
    },
    /// The app's last output lines.
    Logs {
        /// Only this release's lines.
        #[arg(long)]
        release: Option<blargh_proto::ReleaseId>,
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },
    /// The last events of the audit log.
    Audit {
        /// How many events.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// Who holds the deploy lock.
    Lock,
    /// The names (never the values) of the app's environment variables.
    EnvList,
    /// Change the agent's timeouts and retention at once; kept over its command line.
    Configure {
        /// How long a new release may take to signal readiness.
        #[arg(long, value_parser = parse_duration)]
        ready_timeout: Duration,
        /// How long a replaced release may take to drain before SIGKILL.
        #[arg(long, value_parser = parse_duration)]
        drain_timeout: Duration,
        /// Releases kept on disk (at least 2).
        #[arg(long)]
        keep_releases: u32,
        /// Replace a release silent for this long after a WATCHDOG=1 (0s: off; default 30s).
        #[arg(long, value_parser = parse_duration)]
        watchdog_timeout: Option<Duration>,
        /// Check readiness with an HTTP GET of this path on a private listener (named
        /// blargh-ready) instead of waiting for READY=1.
        #[arg(long, value_name = "PATH", conflicts_with = "ready_exec")]
        ready_http: Option<String>,
        /// Check readiness by running `sh -c CMD` (as the app's user, with the release's
        /// environment and BLARGH_READY_PID) until it exits 0, instead of waiting for READY=1.
        #[arg(long, value_name = "CMD")]
        ready_exec: Option<String>,
        /// Who asks, for the audit log.
        #[arg(long)]
        by: Option<String>,
    },
    /// Replace the running agent with the executable now at its path, in place: the same
    /// process re-executes itself and keeps its sockets and the running release, which
    /// serves on throughout. Fails, changing nothing, if the new executable cannot take over.
    Upgrade {
        /// Who asks, for the audit log.
        #[arg(long)]
        by: Option<String>,
    },
    /// Relay requests from stdin to the agent and its answers to stdout, in turn, until
    /// stdin ends (used by `cargo blargh` over SSH: one channel per command).
    #[command(hide = true)]
    Pipe,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The executable; `-` reads stdin (then --sha256 and --size are required).
    pub file: PathBuf,
    /// Expected sha256 (computed from the file when absent).
    #[arg(long)]
    pub sha256: Option<String>,
    /// Exact size in bytes (taken from the file when absent).
    #[arg(long)]
    pub size: Option<u64>,
    /// The app's version.
    #[arg(long = "app-version")]
    pub version: Option<String>,
    /// Git commit the binary was built from.
    #[arg(long)]
    pub git_sha: Option<String>,
    /// Deploy message.
    #[arg(long)]
    pub message: Option<String>,
    /// Who sends it.
    #[arg(long)]
    pub by: Option<String>,
}

/// Parses `500ms`, `30s`, `2m` (humantime syntax), or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); write it like 500ms, 30s or 2m"))
}
