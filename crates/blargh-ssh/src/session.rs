//! [`Session`]: one authenticated SSH connection (through any `ProxyJump` hosts) that
//! runs commands. Connecting goes DNS → TCP → handshake with host key check →
//! authentication, hop by hop; each step has its own error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::client::Msg;
use russh::client::{self, Handle};
use russh::keys::Algorithm;
use russh::{ChannelReadHalf, ChannelWriteHalf, Disconnect, Preferred};
use tokio::io::AsyncRead;
use tokio::net::TcpStream;

use crate::auth;
use crate::channel::ExecChannel;
use crate::config::{HostSettings, SshConfig};
use crate::destination::Destination;
use crate::error::SshError;
use crate::exec::{self, ExecOutput, LineSplitter};
use crate::host_key::{Client, HandlerError, HostKeyCheck};
use crate::known_hosts::KnownHosts;
use crate::options::ConnectOptions;

/// Our receive window per channel (the server's window limits what we send).
const WINDOW_SIZE: u32 = 16 * 1024 * 1024;
/// The largest data packet we accept (russh warns above 65535).
const MAX_PACKET: u32 = 65535;

/// An authenticated connection to one host.
///
/// Commands run on their own channels, so several may run at once on one session.
/// The ssh-agent is never forwarded.
pub struct Session {
    handle: Handle<Client>,
    /// Connections to the jump hosts, kept open while the session lives.
    jumps: Vec<Handle<Client>>,
    target: HostSettings,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("jumps", &self.jumps.len())
            .finish()
    }
}

impl Session {
    /// Connect to `dest` (resolved through the ssh config that `options` names),
    /// check its host key and authenticate.
    pub async fn connect(
        dest: &Destination,
        options: &ConnectOptions,
    ) -> Result<Session, SshError> {
        let config = SshConfig::load(options)?;
        let route = config.route(dest)?;
        Session::connect_route(route, options).await
    }

    /// Connect through `route`: jump hosts first, the destination last (as returned by
    /// [`SshConfig::route`]).
    pub async fn connect_route(
        route: Vec<HostSettings>,
        options: &ConnectOptions,
    ) -> Result<Session, SshError> {
        let mut route = route;
        let target = route.pop().ok_or_else(|| SshError::InvalidDestination {
            input: String::new(),
            reason: "no host to connect to".into(),
        })?;
        let mut jumps: Vec<Handle<Client>> = Vec::new();
        for (i, hop) in route.iter().enumerate() {
            let via = jumps.last().map(|h| (h, route[i - 1].display_addr()));
            let handle =
                connect_hop(hop, via, options, None)
                    .await
                    .map_err(|e| SshError::Jump {
                        jump: hop.display_addr(),
                        source: Box::new(e),
                    })?;
            jumps.push(handle);
        }
        let via = jumps
            .last()
            .zip(route.last())
            .map(|(h, r)| (h, r.display_addr()));
        let handle = connect_hop(&target, via, options, options.password.as_deref()).await?;
        Ok(Session {
            handle,
            jumps,
            target,
        })
    }

    /// The host this session is connected to, as resolved from the config.
    pub fn host(&self) -> &HostSettings {
        &self.target
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Run `command` (through the user's login shell on the server), streaming `stdin`
    /// to it; returns its exit status, stdout and stderr. A non-zero status is not an
    /// error here: see [`Session::exec_checked`].
    pub async fn exec<R: AsyncRead + Unpin + Send>(
        &self,
        command: &str,
        stdin: R,
    ) -> Result<ExecOutput, SshError> {
        let mut stdout = Vec::new();
        let (status, stderr) = self
            .run(command, stdin, &mut |chunk: &[u8]| {
                stdout.extend_from_slice(chunk)
            })
            .await?;
        Ok(ExecOutput {
            status,
            stdout,
            stderr,
        })
    }

    /// Like [`Session::exec`], but a command that does not exit with 0 is an
    /// [`SshError::CommandFailed`] carrying its stderr.
    pub async fn exec_checked<R: AsyncRead + Unpin + Send>(
        &self,
        command: &str,
        stdin: R,
    ) -> Result<ExecOutput, SshError> {
        let out = self.exec(command, stdin).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(SshError::CommandFailed {
                host: self.target.display_addr(),
                command: command.to_string(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    /// Run `command`, handing each line of its stdout (without the line ending) to
    /// `on_line` as it arrives — for `logs -f`. The returned output has an empty
    /// `stdout`. Ends when the command ends; drop the future to stop following.
    pub async fn exec_lines<R, F>(
        &self,
        command: &str,
        stdin: R,
        on_line: F,
    ) -> Result<ExecOutput, SshError>
    where
        R: AsyncRead + Unpin + Send,
        F: FnMut(&str) + Send,
    {
        let mut lines = LineSplitter::new(on_line);
        let (status, stderr) = self
            .run(command, stdin, &mut |chunk: &[u8]| lines.push(chunk))
            .await?;
        lines.finish();
        Ok(ExecOutput {
            status,
            stdout: Vec::new(),
            stderr,
        })
    }

    /// A new session channel for `command`, split, with the host's name for messages.
    async fn open_channel(
        &self,
        command: &str,
    ) -> Result<(String, ChannelReadHalf, ChannelWriteHalf<Msg>), SshError> {
        let host = self.target.display_addr();
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::Exec {
                host: host.clone(),
                command: command.to_string(),
                message: format!("could not open a channel: {e}"),
            })?;
        let (reader, writer) = channel.split();
        Ok((host, reader, writer))
    }

    async fn run<R: AsyncRead + Unpin + Send>(
        &self,
        command: &str,
        stdin: R,
        on_stdout: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(exec::ExitStatus, Vec<u8>), SshError> {
        let (host, reader, writer) = self.open_channel(command).await?;
        exec::run(&host, command, reader, writer, stdin, on_stdout).await
    }

    /// Starts `command` and keeps its channel open: write its stdin and read its stdout
    /// lines as a conversation goes (see [`ExecChannel`]).
    pub async fn open_exec(&self, command: &str) -> Result<ExecChannel, SshError> {
        let (host, reader, writer) = self.open_channel(command).await?;
        ExecChannel::start(host, command, reader, writer).await
    }

    /// Say goodbye to the server (and the jump hosts) and close the connection.
    pub async fn close(self) -> Result<(), SshError> {
        let result = disconnect(&self.handle, &self.target).await;
        for jump in self.jumps.iter().rev() {
            let _ = jump.disconnect(Disconnect::ByApplication, "", "en").await;
        }
        result
    }
}

async fn disconnect(handle: &Handle<Client>, target: &HostSettings) -> Result<(), SshError> {
    if handle.is_closed() {
        return Ok(());
    }
    match handle.disconnect(Disconnect::ByApplication, "", "en").await {
        Ok(()) | Err(russh::Error::SendError) => Ok(()),
        Err(source) => Err(SshError::Protocol {
            host: target.display_addr(),
            source: Box::new(source),
        }),
    }
}

/// Connect and authenticate one hop, directly or through the previous hop.
async fn connect_hop(
    hop: &HostSettings,
    via: Option<(&Handle<Client>, String)>,
    options: &ConnectOptions,
    password: Option<&str>,
) -> Result<Handle<Client>, SshError> {
    let known_hosts = options
        .known_hosts
        .clone()
        .or_else(|| hop.known_hosts.clone())
        .or_else(|| options.ssh_dir().map(|d| d.join("known_hosts")))
        .unwrap_or_else(|| ".ssh/known_hosts".into());
    let known_types = KnownHosts::load(&known_hosts)?.known_key_types(&hop.host_name, hop.port);
    let config = client_config(options, &known_types);
    let handler = Client::new(HostKeyCheck {
        host: hop.host_name.clone(),
        port: hop.port,
        known_hosts,
        policy: options.host_key_policy.clone(),
    });
    let timeout = options.connect_timeout;
    let handshake = async {
        match via {
            None => {
                let tcp = tcp_connect(&hop.host_name, hop.port, timeout).await?;
                Ok(client::connect_stream(config, tcp, handler).await)
            }
            Some((jump, jump_name)) => {
                let channel = jump
                    .channel_open_direct_tcpip(
                        hop.host_name.clone(),
                        hop.port.into(),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|source| SshError::Tunnel {
                        jump: jump_name,
                        target: hop.display_addr(),
                        source: Box::new(source),
                    })?;
                Ok(client::connect_stream(config, channel.into_stream(), handler).await)
            }
        }
    };
    let result = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| SshError::Timeout {
            step: "SSH handshake",
            host: hop.host_name.clone(),
            port: hop.port,
            after: timeout,
        })??;
    let mut handle = match result {
        Ok(handle) => handle,
        Err(HandlerError::Refused(e)) => return Err(*e),
        Err(HandlerError::Ssh(source)) => {
            return Err(SshError::Handshake {
                host: hop.host_name.clone(),
                port: hop.port,
                source: Box::new(source),
            });
        }
    };
    auth::authenticate(&mut handle, hop, options, password).await?;
    Ok(handle)
}

/// Resolve `host` and connect to the first address that answers.
async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, SshError> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| SshError::Timeout {
                step: "DNS lookup",
                host: host.to_string(),
                port,
                after: timeout,
            })?
            .map_err(|source| SshError::Dns {
                host: host.to_string(),
                source,
            })?
            .collect();
    if addrs.is_empty() {
        return Err(SshError::Dns {
            host: host.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        });
    }
    let mut failures = Vec::new();
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
            Err(_) => failures.push(format!("{addr}: no answer within {timeout:?}")),
        }
    }
    Err(SshError::Connect {
        host: host.to_string(),
        port,
        message: failures.join("; "),
    })
}

/// russh settings: larger windows for streaming, keepalives, and host key algorithms
/// ordered so that the types already in known_hosts come first (as `ssh` does), which
/// avoids a false "host key changed". RSA host keys are left out: without russh's `rsa`
/// feature their signatures cannot be verified (every OpenSSH server also has an
/// ed25519 or ECDSA key).
fn client_config(options: &ConnectOptions, known_types: &[String]) -> Arc<client::Config> {
    let defaults: Vec<Algorithm> = Preferred::DEFAULT
        .key
        .iter()
        .filter(|a| !(*a).clone().is_rsa())
        .cloned()
        .collect();
    let mut keys: Vec<Algorithm> = defaults
        .iter()
        .filter(|a| known_types.iter().any(|t| t == a.as_str()))
        .cloned()
        .collect();
    keys.extend(
        defaults
            .iter()
            .filter(|a| !keys.contains(a))
            .cloned()
            .collect::<Vec<_>>(),
    );
    Arc::new(client::Config {
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAX_PACKET,
        keepalive_interval: options.keepalive_interval,
        keepalive_max: 3,
        nodelay: true,
        preferred: Preferred {
            key: keys.into(),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    })
}
