//! Shared setup for the tests against a real sshd: a daemon, a home directory with
//! `.ssh/` for the client, and options that see nothing of the machine's own
//! `~/.ssh` or `$SSH_AUTH_SOCK`.

use std::fs;
use std::path::PathBuf;

use blargh_ssh::{ConnectOptions, Destination, HostKeyPolicy, SshConfigFile, SshError};
use test_support::sshd::{KeyPair, Keygen, Sshd};

/// A running sshd plus a client home whose known_hosts already knows it.
pub struct Env {
    pub sshd: Sshd,
    pub home: tempfile::TempDir,
}

impl Env {
    /// A default sshd (ed25519 host key, keys only) and a known_hosts with its
    /// `[127.0.0.1]:port` entry.
    pub fn new() -> Env {
        Env::with(Sshd::start())
    }

    /// Like [`Env::new`] with a daemon built by the caller.
    pub fn with(sshd: Sshd) -> Env {
        let home = tempfile::Builder::new()
            .prefix("blargh-ssh-home-")
            .tempdir()
            .expect("temporary home");
        fs::create_dir_all(home.path().join(".ssh")).expect("mkdir .ssh");
        let env = Env { sshd, home };
        fs::write(
            env.known_hosts(),
            format!("{}\n", env.sshd.known_hosts_line()),
        )
        .expect("write known_hosts");
        env
    }

    /// `<home>/.ssh`.
    pub fn ssh_dir(&self) -> PathBuf {
        self.home.path().join(".ssh")
    }

    /// `<home>/.ssh/known_hosts`.
    pub fn known_hosts(&self) -> PathBuf {
        self.ssh_dir().join("known_hosts")
    }

    /// A new ed25519 key that the daemon accepts.
    pub fn authorized_key(&self, name: &str) -> KeyPair {
        let key = Keygen::ed25519(&self.ssh_dir(), name).generate();
        self.sshd.authorize(&key);
        key
    }

    /// `user@127.0.0.1:port`.
    pub fn dest(&self, user: &str) -> Destination {
        Destination::new("127.0.0.1")
            .with_user(user)
            .with_port(self.sshd.port())
    }

    /// Options confined to this test's home: no config file, no agent, refuse
    /// unknown hosts.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            home: Some(self.home.path().to_path_buf()),
            ssh_config: SshConfigFile::Ignore,
            known_hosts: Some(self.known_hosts()),
            host_key_policy: HostKeyPolicy::Refuse,
            use_agent: false,
            ..ConnectOptions::default()
        }
    }

    /// Unwrap `r`, or panic with the error and the daemon's log.
    pub fn ok<T>(&self, r: Result<T, SshError>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{e}\n--- sshd log ---\n{}", self.sshd.log_text()),
        }
    }
}
