//! The agent's settings, as given on its command line (`cargo-blargh agent run …`).

use std::path::PathBuf;
use std::time::Duration;

use blargh_proto::control::AgentSettings;
use blargh_proto::{AppName, SocketName};

/// A listening socket the agent binds when it does not inherit one: `NAME=ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// Name handed to the app in `LISTEN_FDNAMES`.
    pub name: SocketName,
    /// `host:port` to bind.
    pub address: String,
}

impl std::str::FromStr for ListenSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, address) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=ADDRESS (for example web=0.0.0.0:80)"))?;
        let name: SocketName = name.parse().map_err(|e| format!("{e}"))?;
        Ok(ListenSpec {
            name,
            address: address.to_string(),
        })
    }
}

/// Everything the agent needs to run one app.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The app's root directory (see [`crate::layout::Layout`]).
    pub root: PathBuf,
    /// The app's name.
    pub app: AppName,
    /// Sockets to bind when none are inherited from the init system.
    pub listen: Vec<ListenSpec>,
    /// User the app runs as (the app never runs as root). The agent must be root, or hold
    /// `CAP_SETUID` and `CAP_SETGID`, unless this is its own user.
    pub user: Option<String>,
    /// User the agent becomes once its sockets are bound, when it starts as root (OpenRC):
    /// it keeps only `CAP_SETUID`, `CAP_SETGID` and `CAP_KILL` (see [`crate::privilege`]).
    pub agent_user: Option<String>,
    /// Group allowed to use the control socket (mode 0660 instead of 0600).
    pub socket_group: Option<String>,
    /// How long a starting release may take to say `READY=1`.
    pub ready_timeout: Duration,
    /// How long a draining release may take to finish before SIGKILL.
    pub drain_timeout: Duration,
    /// Releases kept on disk (current and previous are always kept).
    pub keep_releases: usize,
    /// Crashes within `crash_window` after which it is a crash loop (restarts slow down to
    /// every 2 s, doubling up to every 60 s).
    pub max_restarts: usize,
    /// Window for counting crashes.
    pub crash_window: Duration,
    /// How long a release may go without `WATCHDOG=1` (once it sent one) before it is
    /// replaced as hung; `None`: no watchdog.
    pub watchdog_timeout: Option<Duration>,
}

impl AgentConfig {
    /// A configuration with the defaults for everything but root and app name.
    pub fn new(root: impl Into<PathBuf>, app: AppName) -> Self {
        AgentConfig {
            root: root.into(),
            app,
            listen: Vec::new(),
            user: None,
            agent_user: None,
            socket_group: None,
            ready_timeout: Duration::from_millis(AgentSettings::DEFAULT.ready_timeout_ms),
            drain_timeout: Duration::from_millis(AgentSettings::DEFAULT.drain_timeout_ms),
            keep_releases: AgentSettings::DEFAULT.keep_releases as usize,
            max_restarts: 5,
            crash_window: Duration::from_secs(60),
            watchdog_timeout: match AgentSettings::DEFAULT.watchdog_timeout_ms {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
        }
    }
}

impl AgentConfig {
    /// The settings given on the command line (before `settings.json` overrides them).
    pub fn settings(&self) -> AgentSettings {
        AgentSettings {
            ready_timeout_ms: self.ready_timeout.as_millis() as u64,
            drain_timeout_ms: self.drain_timeout.as_millis() as u64,
            keep_releases: self.keep_releases as u32,
            watchdog_timeout_ms: self.watchdog_timeout.map_or(0, |w| w.as_millis() as u64),
            ready: Default::default(),
            tls: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs_parse_with_clear_errors() {
        let s: ListenSpec = "web=127.0.0.1:8080".parse().unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.address, "127.0.0.1:8080");
        let v6: ListenSpec = "api=[::1]:80".parse().unwrap();
        assert_eq!(v6.address, "[::1]:80");
        assert!(
            "127.0.0.1:80"
                .parse::<ListenSpec>()
                .unwrap_err()
                .contains("NAME=ADDRESS")
        );
        let e = "a:b=1.2.3.4:5".parse::<ListenSpec>().unwrap_err();
        assert!(e.contains("not a valid socket name"), "{e}");
    }
}
