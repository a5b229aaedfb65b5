//! Running one command on an exec channel: stdin streamed from any `AsyncRead`
//! (files travel this way, there is no SFTP), stdout collected or handed over line by
//! line, stderr kept for error messages, and the exit status or signal.

use std::borrow::Cow;
use std::fmt;

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::SshError;

/// Size of the pieces stdin is read and sent in.
const STDIN_CHUNK: usize = 64 * 1024;

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this status (0 is success).
    Code(u32),
    /// It was killed by a signal.
    Signal {
        /// The signal's name, e.g. `TERM`, `KILL`.
        name: String,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// The channel closed without an exit status (e.g. the connection dropped).
    Unknown,
}

impl ExitStatus {
    /// True for exit status 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit status, if it exited normally.
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exited with status {c}"),
            ExitStatus::Signal { name, core_dumped } => {
                write!(f, "was killed by signal {name}")?;
                if *core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
            ExitStatus::Unknown => write!(f, "ended without an exit status"),
        }
    }
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (empty when stdout went to a line callback).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// True for exit status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// Turns stdout chunks into complete lines for a callback.
pub(crate) struct LineSplitter<F: FnMut(&str)> {
    buf: Vec<u8>,
    on_line: F,
}

impl<F: FnMut(&str)> LineSplitter<F> {
    pub fn new(on_line: F) -> Self {
        LineSplitter {
            buf: Vec::new(),
            on_line,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            self.buf.extend_from_slice(&data[..pos]);
            self.emit();
            data = &data[pos + 1..];
        }
        self.buf.extend_from_slice(data);
    }

    pub fn finish(&mut self) {
        if !self.buf.is_empty() {
            self.emit();
        }
    }

    fn emit(&mut self) {
        let line = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
        (self.on_line)(&String::from_utf8_lossy(line));
        self.buf.clear();
    }
}

/// `TERM`, `KILL`, … (russh spells non-standard ones as `Custom("NAME")`).
fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

enum PumpError {
    Input(std::io::Error),
    Channel,
}

async fn pump_stdin<R: AsyncRead + Unpin>(
    writer: &ChannelWriteHalf<Msg>,
    mut stdin: R,
) -> Result<(), PumpError> {
    let mut buf = vec![0u8; STDIN_CHUNK];
    loop {
        let n = stdin.read(&mut buf).await.map_err(PumpError::Input)?;
        if n == 0 {
            break;
        }
        writer
            .data_bytes(buf[..n].to_vec())
            .await
            .map_err(|_| PumpError::Channel)?;
    }
    writer.eof().await.map_err(|_| PumpError::Channel)
}

/// Closes the channel if the exec future is dropped before the command ends (a
/// `logs -f` that the user stops), so the remote command sees its output closed.
struct CloseOnDrop(Option<ChannelWriteHalf<Msg>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = writer.close().await;
            });
        }
    }
}

/// Run `command` on an opened session channel; stdout chunks go to `on_stdout`.
pub(crate) async fn run<R: AsyncRead + Unpin>(
    host: &str,
    command: &str,
    reader: ChannelReadHalf,
    writer: ChannelWriteHalf<Msg>,
    stdin: R,
    on_stdout: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<(ExitStatus, Vec<u8>), SshError> {
    let mut guard = CloseOnDrop(Some(writer));
    let result = match guard.0.as_ref() {
        Some(writer) => drive(host, command, reader, writer, stdin, on_stdout).await,
        None => unreachable!("the guard was just filled"),
    };
    // Finished (or failed) without being dropped: close the channel here and now.
    if let Some(writer) = guard.0.take() {
        let _ = writer.close().await;
    }
    result
}

/// Sends the exec request for `command` and waits until the server accepts it; the error
/// names the host, the command and why it did not start.
pub(crate) async fn start_exec(
    host: &str,
    command: &str,
    reader: &mut ChannelReadHalf,
    writer: &ChannelWriteHalf<Msg>,
) -> Result<(), SshError> {
    let exec_err = |message: String| SshError::Exec {
        host: host.to_string(),
        command: command.to_string(),
        message,
    };
    writer
        .exec(true, command)
        .await
        .map_err(|e| exec_err(format!("could not send the request: {e}")))?;
    loop {
        match reader.wait().await {
            Some(ChannelMsg::Success) => return Ok(()),
            Some(ChannelMsg::Failure) => {
                return Err(exec_err("the server refused to run it".into()));
            }
            Some(ChannelMsg::Close) | None => {
                return Err(exec_err(
                    "the channel closed before the command started".into(),
                ));
            }
            Some(_) => {}
        }
    }
}

async fn drive<R: AsyncRead + Unpin>(
    host: &str,
    command: &str,
    mut reader: ChannelReadHalf,
    writer: &ChannelWriteHalf<Msg>,
    stdin: R,
    on_stdout: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<(ExitStatus, Vec<u8>), SshError> {
    // Wait for the server to accept the request before streaming stdin.
    start_exec(host, command, &mut reader, writer).await?;

    let mut stderr = Vec::new();
    let mut status = ExitStatus::Unknown;
    let pump = pump_stdin(writer, stdin);
    tokio::pin!(pump);
    let mut pumping = true;
    loop {
        tokio::select! {
            msg = reader.wait() => match msg {
                Some(ChannelMsg::Data { data }) => on_stdout(&data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.extend_from_slice(&data),
                Some(ChannelMsg::ExitStatus { exit_status }) => status = ExitStatus::Code(exit_status),
                Some(ChannelMsg::ExitSignal { signal_name, core_dumped, .. }) => {
                    status = ExitStatus::Signal { name: signal_name_of(&signal_name), core_dumped };
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
            done = &mut pump, if pumping => {
                pumping = false;
                match done {
                    Ok(()) => {}
                    Err(PumpError::Input(source)) => {
                        return Err(SshError::Input { command: command.to_string(), source });
                    }
                    // The command stopped reading (or exited); its status tells the rest.
                    Err(PumpError::Channel) => {}
                }
            }
        }
    }
    Ok((status, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks() {
        let mut lines = Vec::new();
        {
            let mut s = LineSplitter::new(|l: &str| lines.push(l.to_string()));
            s.push(b"one\ntw");
            s.push(b"o\r\n\nthr");
            s.push(b"ee");
            s.finish();
        }
        assert_eq!(lines, vec!["one", "two", "", "three"]);
    }

    #[test]
    fn status_text() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exited with status 3");
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Unknown.success());
        let s = ExitStatus::Signal {
            name: "KILL".into(),
            core_dumped: false,
        };
        assert_eq!(s.to_string(), "was killed by signal KILL");
        assert_eq!(s.code(), None);
    }
}
