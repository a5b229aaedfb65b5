//! blargh's SSH transport: connect to a server the way `ssh` would, and run commands
//! on it with streamed stdin.
//!
//! - Destinations are `user@host[:port]` or a `Host` alias from `~/.ssh/config`
//!   ([`Destination`], [`config`]), with `HostName`, `User`, `Port`, `IdentityFile`,
//!   `IdentitiesOnly`, `IdentityAgent`, `UserKnownHostsFile`, `ProxyJump` and `Include`.
//! - Host keys are checked against known_hosts ([`known_hosts`]): plain, hashed and
//!   `[host]:port` entries. Unknown hosts follow a [`HostKeyPolicy`]; a changed key
//!   is always refused, with a message saying how to check and fix it.
//! - Authentication uses key files (passphrases come from a caller's
//!   callback), ssh-agent (ed25519, ECDSA, RSA with SHA-2) and a password given by the
//!   caller. The agent is never forwarded.
//! - [`Session::exec`] streams any `AsyncRead` to a command's stdin and returns its
//!   exit status, stdout and stderr; [`Session::exec_lines`] follows stdout line by
//!   line (`logs -f`).
//!
//! Every failure is an [`SshError`] that names the step (DNS, TCP, handshake, host
//! key, authentication, exec) and what to try next.
//!
//! ```no_run
//! # async fn demo() -> Result<(), blargh_ssh::SshError> {
//! use blargh_ssh::{ConnectOptions, Destination, Session};
//!
//! let dest: Destination = "deploy@203.0.113.10".parse()?;
//! let session = Session::connect(&dest, &ConnectOptions::default()).await?;
//! let out = session
//!     .exec("sha256sum", &b"hello"[..])
//!     .await?;
//! println!("{} {}", out.status, out.stdout_str());
//! session.close().await?;
//! # Ok(())
//! # }
//! ```

mod auth;
pub mod channel;
pub mod config;
pub mod destination;
pub mod error;
pub mod exec;
mod host_key;
pub mod known_hosts;
pub mod options;
pub mod session;

pub use channel::ExecChannel;
pub use config::{AgentSetting, HostSettings, SshConfig};
pub use destination::Destination;
pub use error::SshError;
pub use exec::{ExecOutput, ExitStatus};
pub use known_hosts::{HostKeyStatus, KnownHosts};
pub use options::{
    AskHostKey, ConnectOptions, HostKeyPolicy, PassphraseFn, SshConfigFile, UnknownHost,
};
pub use session::Session;
