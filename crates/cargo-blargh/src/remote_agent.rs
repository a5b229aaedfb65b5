//! The agent of one app on one host, reached over SSH: each request runs
//! `<agent> agent ctl --root <root> pipe` and sends the JSON request (and any upload) on
//! its stdin, so nothing secret is ever in a command line.

use blargh_proto::control::{Reply, Request, encode_line};
use blargh_seed::seed_plan::{agent_path, app_root};
use blargh_seed::shell::quote;
use blargh_ssh::Session;

/// An app's agent on a connected host.
pub struct RemoteAgent<'a> {
    /// The SSH session.
    pub session: &'a Session,
    /// App name.
    pub app: String,
}

impl RemoteAgent<'_> {
    /// `user@host:port`, for messages.
    pub fn host(&self) -> String {
        format!(
            "{}@{}",
            self.session.host().user,
            self.session.host().display_addr()
        )
    }

    /// Sends `req` (followed by `body`) and returns the agent's reply.
    pub async fn request(&self, req: &Request, body: Option<&[u8]>) -> Result<Reply, String> {
        let mut input = encode_line(req).into_bytes();
        if let Some(b) = body {
            input.extend_from_slice(b);
        }
        let cmd = format!(
            "{} agent ctl --root {} pipe",
            quote(&agent_path(&self.app)),
            quote(&app_root(&self.app))
        );
        let out = self
            .session
            .exec(&cmd, &input[..])
            .await
            .map_err(|e| format!("{}: {e}", self.host()))?;
        if !out.success() {
            let stderr = out.stderr_str();
            let hint = if stderr.contains("No such file") || stderr.contains("not found") {
                format!(
                    "; is {} seeded? run `cargo blargh seed {} --app {}`",
                    self.host(),
                    self.host(),
                    self.app
                )
            } else {
                String::new()
            };
            return Err(format!("{}: {}{hint}", self.host(), stderr.trim()));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "{}: the agent's answer is not understood ({e}): {}",
                self.host(),
                out.stdout_str().trim()
            )
        })
    }
}
