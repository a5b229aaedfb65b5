//! The client side of the control socket: [`AgentClient`], one typed method per request,
//! over any [`Transport`] (the Unix socket here, an SSH exec channel in the CLI), many
//! requests per connection; and [`request`], one request with a streamed upload, for
//! `cargo-blargh agent ctl`.

use std::future::Future;
use std::io;
use std::path::Path;

use blargh_proto::control::{
    Activation, AgentSettings, AgentStatus, AuditEvent, AutoRollback, ControlError, DecodeError,
    Encoding, LockInfo, LockRequest, ReleaseEntry, Reply, Request, decode_line, encode_line,
};
use blargh_proto::manifest::ReleaseMeta;
use blargh_proto::{EnvKey, ReleaseId, ReleaseManifest};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Sends `req` (followed by `body` for a receive) and returns the agent's reply.
pub async fn request(
    socket: &Path,
    req: &Request,
    body: Option<&mut (dyn AsyncRead + Unpin + Send)>,
) -> io::Result<Reply> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the agent at {}: {e}. Is it running, and is this the app's root? \
                 (start it with `cargo-blargh agent run`, or check its service)",
                socket.display()
            ),
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(encode_line(req).as_bytes()).await?;
    if let Some(body) = body {
        // The agent answers early (and stops reading) when it refuses the upload; its reply
        // explains more than the broken pipe would.
        let _ = tokio::io::copy(body, &mut write).await;
    }
    let _ = write.shutdown().await;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the agent closed the connection without answering (see its log)",
        ));
    }
    decode_line(line.trim_end())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// A byte pipe to an agent's control socket: the socket itself, or a remote
/// `cargo-blargh agent ctl pipe` on an SSH exec channel.
pub trait Transport: Send {
    /// Sends bytes (a request line, an upload).
    fn send(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), String>> + Send;
    /// The next line from the agent, without its newline; `None` when the other side closed.
    fn recv_line(&mut self) -> impl Future<Output = Result<Option<String>, String>> + Send;
    /// Why the other side closed without answering (for the error message).
    fn closed_reason(&self) -> String {
        "the agent closed the connection without answering (see its log)".to_string()
    }
}

/// The control socket on this machine.
#[derive(Debug)]
pub struct UnixTransport {
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl UnixTransport {
    /// Connects to the socket at `socket` (`<root>/agent.sock`).
    pub async fn connect(socket: &Path) -> Result<Self, String> {
        let stream = UnixStream::connect(socket).await.map_err(|e| {
            format!(
                "cannot reach the agent at {}: {e}. Is it running, and is this the app's root? \
                 (start it with `cargo-blargh agent run`, or check its service)",
                socket.display()
            )
        })?;
        let (read, write) = stream.into_split();
        Ok(UnixTransport {
            read: BufReader::new(read),
            write,
        })
    }
}

impl Transport for UnixTransport {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.write
            .write_all(bytes)
            .await
            .map_err(|e| format!("cannot write to the agent: {e}"))
    }

    async fn recv_line(&mut self) -> Result<Option<String>, String> {
        let mut line = String::new();
        match self.read.read_line(&mut line).await {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line.trim_end_matches(['\n', '\r']).to_string())),
            Err(e) => Err(format!("cannot read the agent's answer: {e}")),
        }
    }
}

/// Why a request got no answer of the kind asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The agent refused or failed the request (nothing changed unless it says so).
    Agent(ControlError),
    /// The agent speaks another protocol version; the text says which side is older.
    Version(String),
    /// The agent could not be reached, or the connection broke.
    Transport(String),
    /// The agent answered something else than the request calls for.
    Unexpected(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Agent(e) => f.write_str(&e.message),
            ClientError::Version(m) | ClientError::Transport(m) | ClientError::Unexpected(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The failing release's last output lines, when a release failed to start.
    pub fn release_log(&self) -> &[String] {
        match self {
            ClientError::Agent(e) => &e.release_log,
            _ => &[],
        }
    }
}

/// The env file after `env set` / `env unset`.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvChange {
    /// The names now set.
    pub names: Vec<EnvKey>,
    /// The restart that applied the change, if the app was running.
    pub restarted: Option<Activation>,
}

/// How a one-off command ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecResult {
    /// Exit status (`None` when killed by a signal or the timeout).
    pub status: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Takes the expected variant out of a reply, or says what came instead.
macro_rules! expect {
    ($reply:expr, $cmd:literal, $pat:pat => $out:expr) => {
        match $reply {
            $pat => Ok($out),
            Reply::Error(e) => Err(ClientError::Agent(e)),
            other => Err(ClientError::Unexpected(format!(
                "the agent answered {} to `{}`; are the CLI and the agent of the same version?",
                reply_kind(&other),
                $cmd
            ))),
        }
    };
}

fn reply_kind(r: &Reply) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.get("reply").and_then(|k| k.as_str().map(str::to_string)))
        .unwrap_or_else(|| "something else".into())
}

/// An app's agent, one typed method per request, all over one [`Transport`].
#[derive(Debug)]
pub struct AgentClient<T> {
    transport: T,
    broken: Option<String>,
}

impl<T: Transport> AgentClient<T> {
    /// A client speaking over `transport`.
    pub fn new(transport: T) -> Self {
        AgentClient {
            transport,
            broken: None,
        }
    }

    /// The transport (to close it).
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends `req` (and `body`, for a receive) and reads the reply. After a version
    /// mismatch or a broken connection, every later call fails the same way.
    pub async fn call(&mut self, req: &Request, body: Option<&[u8]>) -> Result<Reply, ClientError> {
        if let Some(why) = &self.broken {
            return Err(ClientError::Transport(why.clone()));
        }
        let result = self.exchange(req, body).await;
        if let Err(ClientError::Transport(m) | ClientError::Version(m)) = &result {
            self.broken = Some(m.clone());
        }
        result
    }

    async fn exchange(&mut self, req: &Request, body: Option<&[u8]>) -> Result<Reply, ClientError> {
        self.transport
            .send(encode_line(req).as_bytes())
            .await
            .map_err(ClientError::Transport)?;
        if let Some(body) = body {
            self.transport
                .send(body)
                .await
                .map_err(ClientError::Transport)?;
        }
        let line = match self.transport.recv_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return Err(ClientError::Transport(self.transport.closed_reason())),
            Err(e) => return Err(ClientError::Transport(e)),
        };
        decode_line(&line).map_err(|e| match e {
            DecodeError::Version(m) => ClientError::Version(m),
            DecodeError::Invalid(m) => ClientError::Transport(m),
        })
    }

    /// What runs, since when, how it is doing.
    pub async fn status(&mut self) -> Result<AgentStatus, ClientError> {
        expect!(self.call(&Request::Status, None).await?, "status", Reply::Status(s) => s)
    }

    /// Every release on the host, newest first.
    pub async fn releases(&mut self) -> Result<Vec<ReleaseEntry>, ClientError> {
        expect!(self.call(&Request::Releases, None).await?, "releases",
            Reply::Releases { releases } => releases)
    }

    /// Uploads an executable encoded as `encoding` (`body`); `sha256` is the executable's.
    /// Returns the stored release and whether it was already there.
    pub async fn receive(
        &mut self,
        sha256: &str,
        meta: ReleaseMeta,
        encoding: Encoding,
        body: &[u8],
    ) -> Result<(ReleaseManifest, bool), ClientError> {
        let req = Request::Receive {
            sha256: sha256.to_string(),
            size: body.len() as u64,
            meta,
            encoding,
        };
        expect!(self.call(&req, Some(body)).await?, "receive",
            Reply::Received { release, already_present } => (release, already_present))
    }

    /// Starts release `id`, waits for it to be ready, drains the old one.
    pub async fn activate(
        &mut self,
        id: &ReleaseId,
        by: Option<String>,
        auto_rollback: Option<AutoRollback>,
        message: Option<String>,
    ) -> Result<Activation, ClientError> {
        let req = Request::Activate {
            id: id.clone(),
            by,
            auto_rollback,
            message,
        };
        expect!(self.call(&req, None).await?, "activate", Reply::Activated(a) => a)
    }

    /// Goes back to the previous release, or `id`.
    pub async fn rollback(
        &mut self,
        id: Option<ReleaseId>,
        by: Option<String>,
    ) -> Result<Activation, ClientError> {
        expect!(self.call(&Request::Rollback { id, by }, None).await?, "rollback",
            Reply::Activated(a) => a)
    }

    /// The app's last `lines` output lines (of one release, or all).
    pub async fn logs(
        &mut self,
        release: Option<ReleaseId>,
        lines: usize,
    ) -> Result<Vec<String>, ClientError> {
        expect!(self.call(&Request::Logs { release, lines }, None).await?, "logs",
            Reply::Logs { lines } => lines)
    }

    /// The last `lines` audit events.
    pub async fn audit(&mut self, lines: usize) -> Result<Vec<AuditEvent>, ClientError> {
        expect!(self.call(&Request::Audit { lines }, None).await?, "audit",
            Reply::Audit { events } => events)
    }

    /// Applies a deploy-lock request; the lock afterwards.
    pub async fn lock(&mut self, req: LockRequest) -> Result<Option<LockInfo>, ClientError> {
        expect!(self.call(&Request::Lock(req), None).await?, "lock", Reply::Lock { held } => held)
    }

    /// Takes the deploy lock, or fails naming its holder.
    pub async fn lock_acquire(
        &mut self,
        holder: &str,
        message: &str,
        ttl_s: u64,
        force: bool,
    ) -> Result<Option<LockInfo>, ClientError> {
        self.lock(LockRequest::Acquire {
            holder: holder.to_string(),
            message: message.to_string(),
            ttl_s,
            force,
        })
        .await
    }

    /// Gives the deploy lock back.
    pub async fn lock_release(
        &mut self,
        holder: &str,
        force: bool,
    ) -> Result<Option<LockInfo>, ClientError> {
        self.lock(LockRequest::Release {
            holder: holder.to_string(),
            force,
        })
        .await
    }

    /// Who holds the deploy lock.
    pub async fn lock_status(&mut self) -> Result<Option<LockInfo>, ClientError> {
        self.lock(LockRequest::Status).await
    }

    /// Sets one variable of the app's env file (restarting the app when `restart`).
    pub async fn env_set(
        &mut self,
        key: &EnvKey,
        value: &str,
        by: Option<String>,
        restart: bool,
    ) -> Result<EnvChange, ClientError> {
        let req = Request::EnvSet {
            key: key.clone(),
            value: value.to_string(),
            by,
            restart,
        };
        expect!(self.call(&req, None).await?, "env set",
            Reply::Env { names, restarted } => EnvChange { names, restarted })
    }

    /// Removes one variable from the app's env file.
    pub async fn env_unset(
        &mut self,
        key: &EnvKey,
        by: Option<String>,
        restart: bool,
    ) -> Result<EnvChange, ClientError> {
        let req = Request::EnvUnset {
            key: key.clone(),
            by,
            restart,
        };
        expect!(self.call(&req, None).await?, "env unset",
            Reply::Env { names, restarted } => EnvChange { names, restarted })
    }

    /// The names in the app's env file.
    pub async fn env_list(&mut self) -> Result<Vec<EnvKey>, ClientError> {
        expect!(self.call(&Request::EnvList, None).await?, "env list",
            Reply::Env { names, .. } => names)
    }

    /// Runs a command once with a release's env (`{bin}` is its executable).
    pub async fn exec(
        &mut self,
        release: Option<ReleaseId>,
        args: Vec<String>,
        timeout_s: u64,
        by: Option<String>,
    ) -> Result<ExecResult, ClientError> {
        let req = Request::Exec {
            release,
            args,
            timeout_s,
            by,
        };
        expect!(self.call(&req, None).await?, "exec",
            Reply::Exec { status, stdout, stderr } => ExecResult { status, stdout, stderr })
    }

    /// Changes the agent's settings; returns those in effect.
    pub async fn configure(
        &mut self,
        settings: AgentSettings,
        by: Option<String>,
    ) -> Result<AgentSettings, ClientError> {
        expect!(self.call(&Request::Configure { settings, by }, None).await?, "configure",
            Reply::Configured { settings } => settings)
    }
}

/// A client of the agent whose control socket is `socket`.
pub async fn connect(socket: &Path) -> Result<AgentClient<UnixTransport>, ClientError> {
    UnixTransport::connect(socket)
        .await
        .map(AgentClient::new)
        .map_err(ClientError::Transport)
}
