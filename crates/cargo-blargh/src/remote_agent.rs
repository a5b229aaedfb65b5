//! The agent of one app on one host, reached over SSH: one exec channel running
//! `<agent> agent ctl --root <root> pipe` carries all of a command's requests (and
//! uploads) on its stdin, so nothing secret is ever in a command line and each request
//! costs a round trip, not a new exec. The typed methods are those of
//! [`blargh_agent::client::AgentClient`].

use blargh_agent::client::{AgentClient, Transport};
use blargh_proto::AppName;
use blargh_proto::paths::{agent_path, app_root};
use blargh_seed::shell::quote;
use blargh_ssh::{ExecChannel, Session};

pub use blargh_agent::client::ClientError;

/// A `cargo-blargh agent ctl pipe` running on a host.
pub struct SshTransport {
    channel: ExecChannel,
    host: String,
    app: AppName,
}

impl Transport for SshTransport {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.channel
            .write(bytes)
            .await
            .map_err(|e| format!("{}: {e}", self.host))
    }

    async fn recv_line(&mut self) -> Result<Option<String>, String> {
        self.channel
            .read_line()
            .await
            .map_err(|e| format!("{}: {e}", self.host))
    }

    fn closed_reason(&self) -> String {
        let stderr = self.channel.stderr();
        let stderr = stderr.trim();
        let hint = if stderr.contains("No such file") || stderr.contains("not found") {
            format!(
                "; is {} seeded? run `cargo blargh seed {} --app {}`",
                self.host, self.host, self.app
            )
        } else {
            String::new()
        };
        if stderr.is_empty() {
            format!(
                "{}: the agent's pipe ended without answering ({}){hint}",
                self.host,
                self.channel.status()
            )
        } else {
            format!("{}: {stderr}{hint}", self.host)
        }
    }
}

/// An app's agent on a connected host.
pub type RemoteAgent = AgentClient<SshTransport>;

/// `user@host:port` of a session, for messages.
pub fn host_name(session: &Session) -> String {
    format!("{}@{}", session.host().user, session.host().display_addr())
}

/// Opens the one channel to `app`'s agent on `session`'s host.
pub async fn open(session: &Session, app: &AppName) -> Result<RemoteAgent, String> {
    open_as(session, app, false).await
}

/// [`open`], through `sudo -n` when `sudo` (seed, whose SSH user may have joined the app's
/// group only during this connection).
pub async fn open_as(session: &Session, app: &AppName, sudo: bool) -> Result<RemoteAgent, String> {
    let host = host_name(session);
    let cmd = format!(
        "{}{} agent ctl --root {} pipe",
        if sudo { "sudo -n " } else { "" },
        quote(&agent_path(app).display().to_string()),
        quote(&app_root(app).display().to_string())
    );
    let channel = session
        .open_exec(&cmd)
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    Ok(AgentClient::new(SshTransport {
        channel,
        host,
        app: app.clone(),
    }))
}

/// Closes the channel: the remote pipe sees the end of its input and exits.
pub async fn close(agent: RemoteAgent) {
    let _ = agent.into_transport().channel.finish().await;
}
