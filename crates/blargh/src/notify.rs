//! Readiness and stopping notifications to the agent (the sd_notify protocol).
//!
//! Outside blargh or systemd (no `NOTIFY_SOCKET`) these do nothing and succeed.

use std::io;

use sd_notify::NotifyState;

/// Tells the agent the app is ready to serve: only then does the agent drain the old release.
pub fn ready() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Ready])
}

/// Tells the agent the app has stopped accepting new connections and is draining.
pub fn stopping() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Stopping])
}

/// A free-form status line (shown by systemd; kept by the agent's log).
pub fn status(text: &str) -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Status(text)])
}
