//! A long-lived exec channel: one remote command that keeps running while its stdin is
//! written piece by piece and its stdout read line by line, so that a conversation (the
//! agent's control requests) costs one channel instead of one exec per message.

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

use crate::error::SshError;
use crate::exec::{ExecOutput, ExitStatus};

/// Size of the pieces stdin is sent in.
const CHUNK: usize = 64 * 1024;

/// A running remote command with an open stdin (see the module doc). Closed when dropped.
pub struct ExecChannel {
    host: String,
    command: String,
    reader: ChannelReadHalf,
    writer: Option<ChannelWriteHalf<Msg>>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: ExitStatus,
    closed: bool,
}

impl std::fmt::Debug for ExecChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecChannel")
            .field("host", &self.host)
            .field("command", &self.command)
            .field("closed", &self.closed)
            .finish()
    }
}

impl ExecChannel {
    /// Starts `command` on an opened channel and waits until the server accepts it.
    pub(crate) async fn start(
        host: String,
        command: &str,
        mut reader: ChannelReadHalf,
        writer: ChannelWriteHalf<Msg>,
    ) -> Result<Self, SshError> {
        crate::exec::start_exec(&host, command, &mut reader, &writer).await?;
        Ok(ExecChannel {
            host,
            command: command.to_string(),
            reader,
            writer: Some(writer),
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: ExitStatus::Unknown,
            closed: false,
        })
    }

    fn error(&self, message: String) -> SshError {
        SshError::Exec {
            host: self.host.clone(),
            command: self.command.clone(),
            message,
        }
    }

    /// Sends `bytes` to the command's stdin.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), SshError> {
        let Some(writer) = self.writer.as_ref() else {
            return Err(self.error("its stdin was already closed".into()));
        };
        for piece in bytes.chunks(CHUNK) {
            if writer.data_bytes(piece.to_vec()).await.is_err() {
                let why = format!(
                    "it stopped reading its input ({}){}",
                    self.status,
                    stderr_note(&self.stderr)
                );
                return Err(self.error(why));
            }
        }
        Ok(())
    }

    /// The next line of the command's stdout, without its line ending; `None` once the
    /// command has ended and everything was read.
    pub async fn read_line(&mut self) -> Result<Option<String>, SshError> {
        loop {
            if let Some(pos) = self.stdout.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.stdout.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.closed {
                if self.stdout.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.stdout);
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
            self.pump().await;
        }
    }

    /// Waits for one message from the server and files it.
    async fn pump(&mut self) {
        match self.reader.wait().await {
            Some(ChannelMsg::Data { data }) => self.stdout.extend_from_slice(&data),
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => self.stderr.extend_from_slice(&data),
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                self.status = ExitStatus::Code(exit_status)
            }
            Some(ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                ..
            }) => {
                self.status = ExitStatus::Signal {
                    name: match signal_name {
                        russh::Sig::Custom(n) => n,
                        other => format!("{other:?}"),
                    },
                    core_dumped,
                }
            }
            Some(ChannelMsg::Close) | None => self.closed = true,
            Some(_) => {}
        }
    }

    /// What the command wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// How the command ended, once it has ([`ExitStatus::Unknown`] before).
    pub fn status(&self) -> &ExitStatus {
        &self.status
    }

    /// Closes stdin, waits for the command to end and returns how it ended, with what it
    /// wrote that was not read as lines.
    pub async fn finish(mut self) -> Result<ExecOutput, SshError> {
        if let Some(w) = self.writer.as_ref() {
            let _ = w.eof().await;
        }
        while !self.closed {
            self.pump().await;
        }
        if let Some(w) = self.writer.take() {
            let _ = w.close().await;
        }
        Ok(ExecOutput {
            status: std::mem::replace(&mut self.status, ExitStatus::Unknown),
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
        })
    }
}

fn stderr_note(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    let s = s.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

impl Drop for ExecChannel {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = writer.close().await;
            });
        }
    }
}
