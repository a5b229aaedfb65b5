//! The one error type of this crate, [`SshError`]: each variant names the step that
//! failed (destination, config, DNS, TCP, handshake, host key, authentication, exec)
//! and its message says what to try next.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::exec::ExitStatus;

/// What went wrong, and at which step of connecting or running a command.
///
/// The `Display` text is meant to be shown to a person as is: it names the host, the
/// file and line where relevant, and the next thing to try.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// The destination string could not be parsed.
    #[error(
        "invalid destination {input:?}: {reason}; expected user@host, user@host:port, \
         user@[ipv6]:port or a Host alias from ~/.ssh/config"
    )]
    InvalidDestination {
        /// What was given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },

    /// `~/.ssh/config` (or the file given instead) could not be read or parsed.
    #[error("could not read the ssh config {}: {message}; fix the file, or point blargh at another one", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// The parser's or the system's message.
        message: String,
    },

    /// No user name was given and none could be found.
    #[error("no user name for {host}: write user@{host}, or set `User` for it in ~/.ssh/config")]
    NoUser {
        /// The host (alias) being connected to.
        host: String,
    },

    /// The host name did not resolve.
    #[error(
        "DNS lookup of {host} failed: {source}; check the spelling (and `HostName` in \
         ~/.ssh/config), or use the server's IP address"
    )]
    Dns {
        /// The name that was looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },

    /// No TCP connection could be made to any address of the host.
    #[error(
        "TCP connection to {host} port {port} failed: {message}; check that the server is up, \
         that sshd listens on port {port} (`Port` in ~/.ssh/config or user@host:port), and \
         that no firewall is in the way"
    )]
    Connect {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
        /// What each address answered.
        message: String,
    },

    /// The step `step` did not finish in time.
    #[error(
        "{step} with {host} port {port} timed out after {after:?}; check the network, or \
         raise the timeout"
    )]
    Timeout {
        /// What was being done (e.g. "TCP connect", "SSH handshake").
        step: &'static str,
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// How long it waited.
        after: Duration,
    },

    /// The SSH handshake (version exchange, key exchange) failed.
    #[error(
        "SSH handshake with {host} port {port} failed: {source}; is that port an SSH server? \
         (try `ssh -v -p {port} {host}`)"
    )]
    Handshake {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// russh's error.
        #[source]
        source: Box<russh::Error>,
    },

    /// The server's host key is not in known_hosts and the policy did not accept it.
    #[error(
        "the host key of {host} is not in {}: the server showed {key_type} {fingerprint}, and \
         unknown hosts are not accepted without asking. Compare that fingerprint with the \
         server's own (on the server: `ssh-keygen -lf {}`); if they match, record it \
         (`ssh-keyscan {} >> {}`), or run again interactively and answer yes, or allow \
         accept-new (trust on first use)",
        known_hosts.display(),
        server_key_file(key_type),
        keyscan_args(host),
        known_hosts.display()
    )]
    UnknownHostKey {
        /// `host` or `[host]:port`, as written in known_hosts.
        host: String,
        /// The key's algorithm, e.g. `ssh-ed25519`.
        key_type: String,
        /// `SHA256:…` fingerprint of the key the server showed.
        fingerprint: String,
        /// The known_hosts file that was searched.
        known_hosts: PathBuf,
    },

    /// The server showed a different key than the one recorded in known_hosts.
    #[error(
        "HOST KEY CHANGED for {host}: the server showed {key_type} {fingerprint}, but \
         {}:{line} records a different key for it{}. This can be a man-in-the-middle \
         attack, or the server was reinstalled. Refusing to connect. Check with the server's \
         owner (on the server: `ssh-keygen -lf {}`); if the new key is right, remove the old \
         entry with `ssh-keygen -R {} -f {}` and connect again",
        known_hosts.display(),
        other_type_note(*other_type),
        server_key_file(key_type),
        keygen_host_arg(host),
        known_hosts.display()
    )]
    HostKeyChanged {
        /// `host` or `[host]:port`, as written in known_hosts.
        host: String,
        /// The algorithm of the key the server showed.
        key_type: String,
        /// `SHA256:…` fingerprint of the key the server showed.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
        /// The 1-based line of the recorded key.
        line: usize,
        /// The recorded key is of another type than the one the server showed (only
        /// ed25519 and ECDSA host keys are checked, so a host known only by its RSA key
        /// lands here too).
        other_type: bool,
    },

    /// The server's key is marked `@revoked` in known_hosts.
    #[error(
        "the host key of {host} ({fingerprint}) is marked @revoked at {}:{line}; refusing to \
         connect. Ask the server's owner for its current key",
        known_hosts.display()
    )]
    HostKeyRevoked {
        /// `host` or `[host]:port`.
        host: String,
        /// `SHA256:…` fingerprint.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: PathBuf,
        /// The 1-based line.
        line: usize,
    },

    /// known_hosts could not be read or written.
    #[error("could not {action} {}: {source}", path.display())]
    KnownHostsFile {
        /// "read" or "append to".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// Every authentication method that was tried failed.
    #[error(
        "authentication as {user} on {host} failed. Tried: {}. The server accepts: {}. {hint}",
        if tried.is_empty() { "nothing".to_string() } else { tried.join("; ") },
        if server_methods.is_empty() { "(unknown)".to_string() } else { server_methods.join(", ") }
    )]
    Auth {
        /// The remote user.
        user: String,
        /// The host.
        host: String,
        /// One line per method and key tried, with its outcome.
        tried: Vec<String>,
        /// The methods the server said it would accept.
        server_methods: Vec<String>,
        /// What to try next.
        hint: String,
    },

    /// Connecting to a ProxyJump host failed.
    #[error("via jump host {jump}: {source}")]
    Jump {
        /// The jump host, as written in ProxyJump.
        jump: String,
        /// What went wrong there.
        #[source]
        source: Box<SshError>,
    },

    /// The jump host refused or failed to open a tunnel to the next host.
    #[error(
        "jump host {jump} could not open a connection to {target}: {source}; check that \
         {target} is reachable from {jump} and that its sshd allows TCP forwarding \
         (AllowTcpForwarding)"
    )]
    Tunnel {
        /// The jump host.
        jump: String,
        /// `host:port` it was asked to reach.
        target: String,
        /// russh's error.
        #[source]
        source: Box<russh::Error>,
    },

    /// Opening a channel or starting a command failed, or the connection broke while it ran.
    #[error("running `{command}` on {host} failed: {message}")]
    Exec {
        /// The host.
        host: String,
        /// The command.
        command: String,
        /// What happened.
        message: String,
    },

    /// A command ran but did not succeed (from [`crate::Session::exec_checked`]).
    #[error("`{command}` on {host} {status}{}", stderr_tail(stderr))]
    CommandFailed {
        /// The host.
        host: String,
        /// The command.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },

    /// Reading the stdin given to [`crate::Session::exec`] failed.
    #[error("reading the input for `{command}` failed: {source}")]
    Input {
        /// The command.
        command: String,
        /// The reader's error.
        #[source]
        source: io::Error,
    },

    /// Any other SSH protocol error.
    #[error("SSH error with {host}: {source}")]
    Protocol {
        /// The host.
        host: String,
        /// russh's error.
        #[source]
        source: Box<russh::Error>,
    },
}

/// Where OpenSSH servers keep the public host key of this algorithm.
fn server_key_file(key_type: &str) -> String {
    let kind = match key_type {
        t if t.starts_with("ecdsa-") => "ecdsa",
        t if t.starts_with("ssh-rsa") || t.starts_with("rsa-") => "rsa",
        _ => "ed25519",
    };
    format!("/etc/ssh/ssh_host_{kind}_key.pub")
}

fn other_type_note(other_type: bool) -> &'static str {
    if other_type {
        " (of another type: blargh checks only ed25519 and ECDSA host keys, so if the \
         recorded key is the server's RSA key, add its ed25519 key to the file)"
    } else {
        ""
    }
}

/// `ssh-keygen -R` wants `[host]:port` quoted for the shell.
fn keygen_host_arg(entry: &str) -> String {
    if entry.starts_with('[') {
        format!("'{entry}'")
    } else {
        entry.to_string()
    }
}

/// `ssh-keyscan` arguments for a known_hosts name: `host` or `-p PORT host`.
fn keyscan_args(entry: &str) -> String {
    match entry
        .strip_prefix('[')
        .and_then(|rest| rest.rsplit_once("]:"))
    {
        Some((host, port)) => format!("-p {port} {host}"),
        None => entry.to_string(),
    }
}

fn stderr_tail(stderr: &str) -> String {
    let trimmed = stderr.trim_end();
    if trimmed.is_empty() {
        return String::new();
    }
    // Keep messages readable: the last 20 lines are where the reason usually is.
    let lines: Vec<&str> = trimmed.lines().collect();
    let start = lines.len().saturating_sub(20);
    format!(": {}", lines[start..].join("\n"))
}
