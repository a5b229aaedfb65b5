//! The control server: the agent's Unix socket, requests answered in turn until the client
//! closes its side (see [`blargh_proto::control`]). The socket is 0600, or 0660 for a
//! group given to deployers; the app's own uid is refused. Every wait is bounded: the
//! connections at once, the time to finish a line, to stay idle, to send an upload's
//! next byte and to take a reply.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use blargh_proto::control::{
    ControlError, DecodeError, ReleaseEntry, Reply, Request, decode_line, encode_line,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::supervisor::{Action, Supervisor};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

/// Connections served at once; the next one is refused with a reply saying so.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to finish a request line once its first byte has arrived.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay silent between two requests (`logs --follow` asks
/// once a second) before the agent closes it and frees its slot.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an upload may go without a byte before it fails.
pub const UPLOAD_STALL: Duration = Duration::from_secs(60);
/// How long a reply may wait for a client that does not read it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Binds the control socket at `path`, replacing a stale one, with mode 0600 (0660 and
/// group `gid` when given).
pub fn bind(path: &Path, gid: Option<u32>) -> io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another agent already answers on {}; stop it first",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(listener)
}

/// Answers requests until the listener fails, [`MAX_CONNECTIONS`] at a time.
pub async fn serve(sup: Arc<Supervisor>, listener: UnixListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let sup = sup.clone();
                    tokio::spawn(async move {
                        handle(sup, stream).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    tokio::spawn(refuse(
                        stream,
                        format!(
                            "too many control connections ({MAX_CONNECTIONS} at once); try \
                             again when one of them has finished"
                        ),
                    ));
                }
            },
            Err(e) => {
                eprintln!("blargh-agent: control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers `message` as an error and closes, without reading a request.
async fn refuse(stream: UnixStream, message: String) {
    let (read, mut write) = stream.into_split();
    let reply = encode_line(&error(message));
    // Short: refusals are not counted against the limit, so none may linger.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        write.write_all(reply.as_bytes()).await?;
        write.shutdown().await
    })
    .await;
    // Take (and drop) what the client sends meanwhile for a moment, so that its request
    // does not fail with a broken pipe before it reads the refusal.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::copy(&mut read.take(MAX_REQUEST), &mut tokio::io::sink()),
    )
    .await;
}

/// Why the connection's next request line could not be read.
enum LineError {
    /// The client closed its side between requests: nothing to answer.
    Closed,
    /// Nothing came between requests for [`IDLE_TIMEOUT`]: closed without a word.
    Idle,
    /// Answer this and close.
    Refuse(String),
}

/// Reads the next request line: the client may wait up to [`IDLE_TIMEOUT`] before it
/// starts one, then has [`LINE_TIMEOUT`] to finish it.
async fn read_request_line(
    read: &mut BufReader<OwnedReadHalf>,
    line: &mut String,
) -> Result<(), LineError> {
    match tokio::time::timeout(IDLE_TIMEOUT, read.fill_buf()).await {
        Err(_) => return Err(LineError::Idle),
        Ok(Ok([])) => return Err(LineError::Closed),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(LineError::Refuse(format!("cannot read the request: {e}"))),
    }
    let limited = read.take(MAX_REQUEST);
    tokio::pin!(limited);
    match tokio::time::timeout(LINE_TIMEOUT, limited.read_line(line)).await {
        Err(_) => Err(LineError::Refuse(format!(
            "no complete request within {} s of its first byte; closing the connection",
            LINE_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => Err(LineError::Refuse(format!("cannot read the request: {e}"))),
        Ok(Ok(_)) if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST => {
            Err(LineError::Refuse(format!(
                "a request line is longer than {MAX_REQUEST} bytes; closing the connection"
            )))
        }
        Ok(Ok(_)) => Ok(()),
    }
}

async fn handle(sup: Arc<Supervisor>, stream: UnixStream) {
    let (uid, peer) = peer_of(&stream);
    if let (Some(app), Some(uid)) = (sup.app_uid(), uid)
        && app == uid
    {
        return refuse(
            stream,
            format!(
                "{peer} is the app's user: the app may not control its agent; connect as \
                 the deploy user (cargo blargh over SSH)"
            ),
        )
        .await;
    }
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        let (reply, go_on) = match read_request_line(&mut read, &mut line).await {
            Err(LineError::Closed | LineError::Idle) => break,
            Err(LineError::Refuse(m)) => (error(m), false),
            Ok(()) => match decode_line::<Request>(line.trim_end()) {
                // Out of range: refused before anything changes. After a refused receive
                // its body would be read as requests, so that connection ends.
                Ok(req) => match req.check() {
                    Ok(()) => (answer(&sup, req, &peer, &mut read).await, true),
                    Err(m) => (
                        error(format!("request refused: {m}")),
                        !matches!(req, Request::Receive { .. }),
                    ),
                },
                // Whatever follows a request of another version cannot be read safely.
                Err(DecodeError::Version(m)) => (error(m), false),
                Err(DecodeError::Invalid(m)) => (
                    error(format!(
                        "{m}; use `cargo-blargh agent ctl`, which speaks this protocol"
                    )),
                    false,
                ),
            },
        };
        let sent = tokio::time::timeout(
            WRITE_TIMEOUT,
            write.write_all(encode_line(&reply).as_bytes()),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) || !go_on {
            break;
        }
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write.shutdown()).await;
}

async fn answer(
    sup: &Arc<Supervisor>,
    req: Request,
    peer: &str,
    body: &mut BufReader<OwnedReadHalf>,
) -> Reply {
    let who = |claim: Option<String>| match claim {
        Some(c) => format!("{c} via {peer}"),
        None => peer.to_string(),
    };
    if let Some((what, claim)) = locked_change(&req)
        && let Err(e) = sup.lock_allows(claim, what)
    {
        return Reply::Error(e);
    }
    match req {
        Request::Status => Reply::Status(sup.status()),
        Request::Releases => match sup.store().list() {
            Ok(list) => {
                let current = sup.store().current();
                let previous = sup.store().previous();
                Reply::Releases {
                    releases: list
                        .into_iter()
                        .map(|m| ReleaseEntry {
                            current: current.as_deref() == Some(m.id.as_str()),
                            previous: previous.as_deref() == Some(m.id.as_str()),
                            manifest: m,
                        })
                        .collect(),
                }
            }
            Err(e) => error(format!("cannot list releases: {e}")),
        },
        Request::Receive {
            sha256,
            size,
            meta,
            encoding,
        } => {
            let by = who(meta.deployed_by.clone());
            let mut meta = meta;
            meta.deployed_by = Some(by.clone());
            // Exactly `size` bytes belong to this request: what a refused upload left
            // unread is skipped so that the next request line is read from its start.
            // A sender that stops sending mid-upload fails the upload instead of holding
            // the connection; a slow but moving one is fine.
            let mut upload = Stalled::new(body.take(size), UPLOAD_STALL);
            let reply = match sup
                .receive(&mut upload, &sha256, size, meta, encoding, &by)
                .await
            {
                Ok((release, already_present)) => Reply::Received {
                    release,
                    already_present,
                },
                Err(e) => Reply::Error(e),
            };
            let _ = tokio::io::copy(&mut upload, &mut tokio::io::sink()).await;
            reply
        }
        Request::Configure { settings, by } => match sup.configure(settings, &who(by)).await {
            Ok(settings) => Reply::Configured { settings },
            Err(e) => Reply::Error(e),
        },
        Request::Activate {
            id,
            by,
            auto_rollback,
            message,
        } => match sup
            .activate_with(
                &id,
                Action::Activate,
                &who(by),
                auto_rollback,
                message.as_deref(),
            )
            .await
        {
            Ok(a) => Reply::Activated(a),
            Err(e) => Reply::Error(e),
        },
        Request::Rollback { id, by } => match sup.rollback(id.as_ref(), &who(by)).await {
            Ok(a) => Reply::Activated(a),
            Err(e) => Reply::Error(e),
        },
        Request::Logs { release, lines } => match sup.app_log().tail(release.as_deref(), lines) {
            Ok(lines) => Reply::Logs { lines },
            Err(e) => error(format!("cannot read the app log: {e}")),
        },
        Request::Audit { lines } => match sup.audit().tail(lines) {
            Ok(events) => Reply::Audit { events },
            Err(e) => error(format!("cannot read the audit log: {e}")),
        },
        Request::Lock(req) => match sup.lock(&req) {
            Ok(held) => Reply::Lock { held },
            Err(e) => Reply::Error(e),
        },
        Request::EnvSet {
            key,
            value,
            by,
            restart,
        } => sup
            .env_change(&key, Some(&value), &who(by), restart)
            .await
            .unwrap_or_else(Reply::Error),
        Request::EnvUnset { key, by, restart } => sup
            .env_change(&key, None, &who(by), restart)
            .await
            .unwrap_or_else(Reply::Error),
        Request::EnvList => match sup.env_names() {
            Ok(names) => Reply::Env {
                names,
                restarted: None,
            },
            Err(e) => Reply::Error(e),
        },
        Request::Exec {
            release,
            args,
            timeout_s,
            by,
        } => sup
            .exec(
                release.as_ref(),
                &args,
                std::time::Duration::from_secs(timeout_s),
                &who(by),
            )
            .await
            .unwrap_or_else(Reply::Error),
        Request::Upgrade { by } => {
            // The new agent answers on this connection; it gets a copy of it.
            let conn = match body.get_ref().as_ref().as_fd().try_clone_to_owned() {
                Ok(c) => c,
                Err(e) => return error(format!("cannot keep this connection for the answer: {e}")),
            };
            match sup.upgrade(&who(by), conn).await {
                Ok(never) => match never {},
                Err(e) => Reply::Error(e),
            }
        }
    }
}

/// Sends one reply on a connection and closes it (the answer to an upgrade, from the new
/// agent, on the connection that asked).
pub async fn answer_on(conn: std::os::fd::OwnedFd, reply: &Reply) {
    let stream = std::os::unix::net::UnixStream::from(conn);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(mut stream) = UnixStream::from_std(stream) else {
        return;
    };
    let _ = tokio::time::timeout(
        WRITE_TIMEOUT,
        stream.write_all(encode_line(reply).as_bytes()),
    )
    .await;
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
}

/// Takes over the control socket's listener an earlier agent handed over.
pub fn adopt(fd: std::os::fd::OwnedFd) -> io::Result<UnixListener> {
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// The requests the deploy lock guards (what they are called, and who claims to ask).
fn locked_change(req: &Request) -> Option<(&'static str, Option<&str>)> {
    match req {
        Request::Activate { by, .. } => Some(("activate", by.as_deref())),
        Request::Rollback { by, .. } => Some(("rollback", by.as_deref())),
        Request::EnvSet { by, .. } => Some(("env set", by.as_deref())),
        Request::EnvUnset { by, .. } => Some(("env unset", by.as_deref())),
        Request::Exec { by, .. } => Some(("exec", by.as_deref())),
        _ => None,
    }
}

fn error(message: String) -> Reply {
    Reply::Error(ControlError {
        message,
        release_log: Vec::new(),
    })
}

/// The peer's uid and `uid 1000 (ana)` for the process on the other end of the socket.
fn peer_of(stream: &UnixStream) -> (Option<u32>, String) {
    match stream.peer_cred() {
        Ok(cred) => {
            let uid = cred.uid();
            let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| "?".into());
            (Some(uid), format!("uid {uid} ({name})"))
        }
        Err(_) => (None, "unknown peer".to_string()),
    }
}

/// A reader that fails with `TimedOut` when no byte arrives for `limit`.
struct Stalled<R> {
    inner: R,
    limit: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<R> Stalled<R> {
    fn new(inner: R, limit: Duration) -> Self {
        Stalled {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Stalled<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the upload stalled: no byte for {} s; send it again",
                        this.limit.as_secs()
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
