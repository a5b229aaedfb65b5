//! Readiness, stopping and watchdog notifications to the agent (the sd_notify protocol).
//!
//! Outside blargh or systemd (no `NOTIFY_SOCKET`) these do nothing and succeed.

use std::io;
use std::time::Duration;

use sd_notify::NotifyState;

/// Tells the agent the app is ready to serve: only then does the agent drain the old release.
pub fn ready() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Ready])
}

/// Tells the agent the app has stopped accepting new connections and is draining.
pub fn stopping() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Stopping])
}

/// Tells the agent the app is alive (`WATCHDOG=1`). Once a release has sent it, the agent
/// replaces the release if it goes `WATCHDOG_USEC` without sending it again.
pub fn watchdog() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Watchdog])
}

/// How often to call [`watchdog`]: half the `WATCHDOG_USEC` the agent (or systemd) gave
/// this process; `None` when nothing watches it.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}

/// Pings [`watchdog`] every [`watchdog_interval`] from a task on the current tokio
/// runtime, so the pings stop when the runtime can no longer run tasks (every worker
/// thread blocked or deadlocked): a hung app is then replaced. `None` (and no task) when
/// nothing watches this process. [`crate::serve`] starts it; other apps call it once ready.
///
/// # Panics
/// Outside a tokio runtime.
#[cfg(feature = "tokio")]
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let every = watchdog_interval()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let _ = watchdog();
        }
    }))
}

/// A free-form status line (shown by systemd; kept by the agent's log).
pub fn status(text: &str) -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Status(text)])
}

/// Reports a certificate this app serves to the agent, which shows its expiry in `cargo
/// blargh status` (the agent cannot read the app's data directory, where it lives).
/// `not_after` is RFC 3339; `issuer` is `self-signed` for a development certificate.
pub fn certificate(domain: &str, not_after: &str, issuer: &str) -> io::Result<()> {
    let report = blargh_proto::control::CertStatus {
        domain: domain.to_string(),
        not_after: not_after.to_string(),
        issuer: issuer.to_string(),
    };
    let json = serde_json::to_string(&report).map_err(io::Error::other)?;
    sd_notify::notify(&[NotifyState::Custom(&format!(
        "{}={json}",
        blargh_proto::env::CERT_NOTIFY
    ))])
}
