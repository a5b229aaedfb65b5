//! The control server: the agent's Unix socket, requests answered in turn until the client
//! closes its side (see [`blargh_proto::control`]). The socket is 0600, or 0660 for a
//! group given to deployers.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use blargh_proto::control::{
    ControlError, DecodeError, ReleaseEntry, Reply, Request, decode_line, encode_line,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::supervisor::{Action, Supervisor};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

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

/// Answers requests until the listener fails.
pub async fn serve(sup: Arc<Supervisor>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(sup.clone(), stream));
            }
            Err(e) => {
                eprintln!("blargh-agent: control socket accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(sup: Arc<Supervisor>, stream: UnixStream) {
    let peer = peer_name(&stream);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        let (reply, go_on) = match (&mut read).take(MAX_REQUEST).read_line(&mut line).await {
            Ok(0) => return,
            Ok(_) => match decode_line::<Request>(line.trim_end()) {
                Ok(req) => (answer(&sup, req, &peer, &mut read).await, true),
                // Whatever follows a request of another version cannot be read safely.
                Err(DecodeError::Version(m)) => (error(m), false),
                Err(DecodeError::Invalid(m)) => (
                    error(format!(
                        "{m}; use `cargo-blargh agent ctl`, which speaks this protocol"
                    )),
                    false,
                ),
            },
            Err(e) => (error(format!("cannot read the request: {e}")), false),
        };
        if write
            .write_all(encode_line(&reply).as_bytes())
            .await
            .is_err()
            || !go_on
        {
            break;
        }
    }
    let _ = write.shutdown().await;
}

async fn answer(
    sup: &Arc<Supervisor>,
    req: Request,
    peer: &str,
    body: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
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
            let mut upload = body.take(size);
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
    }
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

/// `uid 1000 (ana)` for the process on the other end of the socket.
fn peer_name(stream: &UnixStream) -> String {
    match stream.peer_cred() {
        Ok(cred) => {
            let uid = cred.uid();
            let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| "?".into());
            format!("uid {uid} ({name})")
        }
        Err(_) => "unknown peer".to_string(),
    }
}
