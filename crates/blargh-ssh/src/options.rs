//! [`ConnectOptions`]: what the caller decides about a connection — where
//! `~/.ssh` is, the host key policy for unknown hosts, which keys, agent and password
//! may be used, and how the caller is asked for passphrases.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A server whose host key is not in known_hosts, shown to [`HostKeyPolicy::Ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownHost {
    /// `host` or `[host]:port`, the name it will get in known_hosts.
    pub host: String,
    /// The key's algorithm, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// `SHA256:…` fingerprint, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// The known_hosts file the key is added to if accepted.
    pub known_hosts: PathBuf,
}

/// Asked about an unknown host; return `true` to trust the key (it is then appended
/// to known_hosts, like answering "yes" to `ssh`). Called on a blocking thread, so it
/// may read a terminal.
pub type AskHostKey = Arc<dyn Fn(&UnknownHost) -> bool + Send + Sync>;

/// Asked for the passphrase of an encrypted key file; return `None` to skip that key.
/// Called on a blocking thread, so it may read a terminal. Never put passphrases in argv.
pub type PassphraseFn = Arc<dyn Fn(&Path) -> Option<String> + Send + Sync>;

/// What to do when the server's host key is not in known_hosts.
///
/// A key that differs from a recorded one is always refused, whatever the policy.
#[derive(Clone, Default)]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts (the non-interactive default, like `StrictHostKeyChecking yes`).
    #[default]
    Refuse,
    /// Trust an unknown host on first use and append it to known_hosts (like
    /// `StrictHostKeyChecking accept-new`).
    AcceptNew,
    /// Ask the callback; if it says yes, append the key to known_hosts.
    Ask(AskHostKey),
}

impl fmt::Debug for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostKeyPolicy::Refuse => "Refuse",
            HostKeyPolicy::AcceptNew => "AcceptNew",
            HostKeyPolicy::Ask(_) => "Ask(..)",
        })
    }
}

/// Which ssh config file to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SshConfigFile {
    /// `<home>/.ssh/config`, if it exists.
    #[default]
    Default,
    /// This file (it must exist).
    Path(PathBuf),
    /// No config file: destinations are taken literally.
    Ignore,
}

/// How to connect and authenticate. `Default` suits a developer's machine.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Home directory whose `.ssh/` holds config, known_hosts and default keys
    /// (`None`: `$HOME`).
    pub home: Option<PathBuf>,
    /// The ssh config file to honour.
    pub ssh_config: SshConfigFile,
    /// The known_hosts file (`None`: `UserKnownHostsFile` from the config, else
    /// `<home>/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// What to do with hosts that are not in known_hosts.
    pub host_key_policy: HostKeyPolicy,
    /// Extra key files (like `ssh -i`), tried first, before the config's
    /// `IdentityFile`s. When neither names a key, `~/.ssh/id_ed25519`, `id_ecdsa` and
    /// `id_rsa` are tried if they exist.
    pub identity_files: Vec<PathBuf>,
    /// Use ssh-agent keys (the agent is never forwarded to the server).
    pub use_agent: bool,
    /// The agent socket (`None`: `IdentityAgent` from the config, else `$SSH_AUTH_SOCK`).
    pub agent_socket: Option<PathBuf>,
    /// Supplies passphrases for encrypted key files; without it they are skipped
    /// (unless the agent holds the same key).
    pub passphrase: Option<PassphraseFn>,
    /// Password for password authentication on the destination (not on jump hosts),
    /// e.g. read by the CLI from `--password-stdin`.
    pub password: Option<String>,
    /// Limit for each of: the TCP connect, the SSH handshake.
    pub connect_timeout: Duration,
    /// Send a keepalive after this much silence from the server; the connection is
    /// dropped after 3 unanswered ones. `None`: never.
    pub keepalive_interval: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            home: None,
            ssh_config: SshConfigFile::Default,
            known_hosts: None,
            host_key_policy: HostKeyPolicy::Refuse,
            identity_files: Vec::new(),
            use_agent: true,
            agent_socket: None,
            passphrase: None,
            password: None,
            connect_timeout: Duration::from_secs(20),
            keepalive_interval: Some(Duration::from_secs(30)),
        }
    }
}

impl ConnectOptions {
    /// The home directory: [`ConnectOptions::home`], else `$HOME`.
    pub fn home_dir(&self) -> Option<PathBuf> {
        self.home
            .clone()
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
            .or_else(std::env::home_dir)
    }

    /// `<home>/.ssh`.
    pub fn ssh_dir(&self) -> Option<PathBuf> {
        self.home_dir().map(|h| h.join(".ssh"))
    }

    /// Set the passphrase callback.
    pub fn with_passphrase(
        mut self,
        f: impl Fn(&Path) -> Option<String> + Send + Sync + 'static,
    ) -> ConnectOptions {
        self.passphrase = Some(Arc::new(f));
        self
    }

    /// Ask `f` about unknown hosts ([`HostKeyPolicy::Ask`]).
    pub fn with_ask(
        mut self,
        f: impl Fn(&UnknownHost) -> bool + Send + Sync + 'static,
    ) -> ConnectOptions {
        self.host_key_policy = HostKeyPolicy::Ask(Arc::new(f));
        self
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("home", &self.home)
            .field("ssh_config", &self.ssh_config)
            .field("known_hosts", &self.known_hosts)
            .field("host_key_policy", &self.host_key_policy)
            .field("identity_files", &self.identity_files)
            .field("use_agent", &self.use_agent)
            .field("agent_socket", &self.agent_socket)
            .field("passphrase", &self.passphrase.as_ref().map(|_| ".."))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .finish()
    }
}
