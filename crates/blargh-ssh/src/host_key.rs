//! Checking the server's host key during the handshake: the russh client handler,
//! which compares the key with known_hosts and applies the [`HostKeyPolicy`] to
//! unknown hosts. A changed or revoked key is always refused.

use std::path::PathBuf;

use russh::client;
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

use crate::error::SshError;
use crate::known_hosts::{self, HostKeyStatus, KnownHosts};
use crate::options::{HostKeyPolicy, UnknownHost};

/// What one connection checks its server's key against.
#[derive(Debug, Clone)]
pub(crate) struct HostKeyCheck {
    pub host: String,
    pub port: u16,
    pub known_hosts: PathBuf,
    pub policy: HostKeyPolicy,
}

impl HostKeyCheck {
    /// Accept `key` (Ok) or say why not.
    pub async fn check(&self, key: &PublicKey) -> Result<(), SshError> {
        let entry = known_hosts::host_entry_name(&self.host, self.port);
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let key_type = key.algorithm().as_str().to_string();
        let file = KnownHosts::load(&self.known_hosts)?;
        match file.check(&self.host, self.port, key) {
            HostKeyStatus::Known { .. } => Ok(()),
            HostKeyStatus::Changed { line, known_type } => Err(SshError::HostKeyChanged {
                other_type: known_type != key_type,
                host: entry,
                key_type,
                fingerprint,
                known_hosts: self.known_hosts.clone(),
                line,
            }),
            HostKeyStatus::Revoked { line } => Err(SshError::HostKeyRevoked {
                host: entry,
                fingerprint,
                known_hosts: self.known_hosts.clone(),
                line,
            }),
            HostKeyStatus::Unknown => {
                let unknown = UnknownHost {
                    host: entry,
                    key_type,
                    fingerprint,
                    known_hosts: self.known_hosts.clone(),
                };
                let accepted = match &self.policy {
                    HostKeyPolicy::Refuse => false,
                    HostKeyPolicy::AcceptNew => true,
                    HostKeyPolicy::Ask(ask) => {
                        let ask = ask.clone();
                        let question = unknown.clone();
                        tokio::task::spawn_blocking(move || ask(&question))
                            .await
                            .unwrap_or(false)
                    }
                };
                if accepted {
                    known_hosts::append(&self.known_hosts, &self.host, self.port, key)
                } else {
                    Err(SshError::UnknownHostKey {
                        host: unknown.host,
                        key_type: unknown.key_type,
                        fingerprint: unknown.fingerprint,
                        known_hosts: unknown.known_hosts,
                    })
                }
            }
        }
    }
}

/// Why russh's handshake ended: a protocol error, or our refusal of the host key.
#[derive(Debug)]
pub(crate) enum HandlerError {
    Ssh(russh::Error),
    Refused(Box<SshError>),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> HandlerError {
        HandlerError::Ssh(e)
    }
}

/// The russh client handler: checks the host key; everything else is default
/// (no agent forwarding, no port forwarding from the server).
pub(crate) struct Client {
    check: HostKeyCheck,
}

impl Client {
    pub fn new(check: HostKeyCheck) -> Client {
        Client { check }
    }
}

impl client::Handler for Client {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, HandlerError> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        self.check
            .check(&key)
            .await
            .map(|()| true)
            .map_err(|e| HandlerError::Refused(Box::new(e)))
    }
}
