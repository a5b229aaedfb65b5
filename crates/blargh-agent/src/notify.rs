//! The per-process notify socket: where a release says `READY=1`, `STOPPING=1` and
//! `WATCHDOG=1` (the sd_notify protocol, so apps written for systemd work unchanged).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

/// What a release told the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    /// Ready to serve.
    Ready,
    /// Stopped accepting; draining.
    Stopping,
    /// Still alive (the watchdog ping).
    Watchdog,
    /// A free-form status line.
    Status(String),
    /// A certificate the app serves (`X_BLARGH_CERT`).
    Certificate(blargh_proto::control::CertStatus),
}

/// Parses one notify datagram (newline-separated `KEY=VALUE` assignments).
pub fn parse(datagram: &[u8]) -> Vec<NotifyEvent> {
    String::from_utf8_lossy(datagram)
        .lines()
        .filter_map(|l| match l.split_once('=') {
            Some(("READY", "1")) => Some(NotifyEvent::Ready),
            Some(("STOPPING", "1")) => Some(NotifyEvent::Stopping),
            Some(("WATCHDOG", "1")) => Some(NotifyEvent::Watchdog),
            Some(("STATUS", s)) => Some(NotifyEvent::Status(s.to_string())),
            Some((blargh_proto::env::CERT_NOTIFY, json)) => serde_json::from_str(json)
                .ok()
                .map(NotifyEvent::Certificate),
            _ => None,
        })
        .collect()
}

/// A bound notify socket; the file is removed when dropped.
#[derive(Debug)]
pub struct NotifySocket {
    path: PathBuf,
    events: mpsc::UnboundedReceiver<NotifyEvent>,
    task: tokio::task::JoinHandle<()>,
    /// The socket itself, kept for an upgrade's handover (the task reads its twin).
    kept: OwnedFd,
}

impl NotifySocket {
    /// Binds a datagram socket at `path`. With `app_group`, the app's group and nobody
    /// else may send to it (mode 0620, group `app_group`): the app runs under another uid
    /// than the agent, which is a member of the app's group (seed makes it one) so it may
    /// hand the socket to that group without `CAP_CHOWN`. Without, only the agent's own uid
    /// may (0600 from the agent's umask; the app runs as the agent's user).
    pub fn bind(path: &Path, app_group: Option<u32>) -> io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind notify socket {}: {e}", path.display()),
            )
        })?;
        if let Some(gid) = app_group {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::lchown(path, None, Some(gid)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot give notify socket {} to the app's group {gid} ({e}); the agent's user must be a member of it (run `cargo blargh seed` again)",
                        path.display()
                    ),
                )
            })?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o620))?;
        }
        Self::serve(sock, path)
    }

    /// Takes over a notify socket bound at `path` by an earlier agent (an in-place upgrade
    /// handed it over as `fd`).
    pub fn adopt(fd: OwnedFd, path: &Path) -> io::Result<Self> {
        let std_sock = std::os::unix::net::UnixDatagram::from(fd);
        std_sock.set_nonblocking(true)?;
        Self::serve(UnixDatagram::from_std(std_sock)?, path)
    }

    fn serve(sock: UnixDatagram, path: &Path) -> io::Result<Self> {
        let kept = sock.as_fd().try_clone_to_owned()?;
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf).await {
                for ev in parse(&buf[..n]) {
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(NotifySocket {
            path: path.to_path_buf(),
            events,
            task,
            kept,
        })
    }

    /// A copy of the socket, for handing it to the next agent.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.kept.try_clone()
    }

    /// The socket's path, for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next event; `None` never happens while the socket is open.
    pub async fn recv(&mut self) -> Option<NotifyEvent> {
        self.events.recv().await
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sd_notify_datagrams() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=warming caches\n"),
            vec![
                NotifyEvent::Ready,
                NotifyEvent::Status("warming caches".into())
            ]
        );
        assert_eq!(parse(b"STOPPING=1"), vec![NotifyEvent::Stopping]);
        assert_eq!(
            parse(br#"X_BLARGH_CERT={"domain":"a.example","not_after":"2027-01-01T00:00:00Z","issuer":"Pebble"}"#),
            vec![NotifyEvent::Certificate(blargh_proto::control::CertStatus {
                domain: "a.example".into(),
                not_after: "2027-01-01T00:00:00Z".into(),
                issuer: "Pebble".into(),
            })]
        );
        assert_eq!(parse(b"X_BLARGH_CERT=not json"), vec![]);
        assert_eq!(
            parse(b"READY=0\nWATCHDOG=1\nWATCHDOG=trigger"),
            vec![NotifyEvent::Watchdog]
        );
    }

    #[tokio::test]
    async fn receives_what_sd_notify_sends() {
        let dir = tempfile::tempdir().unwrap();
        let mut sock = NotifySocket::bind(&dir.path().join("n.sock"), None).unwrap();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1", sock.path()).unwrap();
        assert_eq!(sock.recv().await, Some(NotifyEvent::Ready));
        let path = sock.path().to_path_buf();
        drop(sock);
        assert!(!path.exists());
    }
}
