//! User authentication, in OpenSSH's order: key files first (`-i`, then
//! `IdentityFile`, else the default `~/.ssh/id_*`), signed by ssh-agent when it holds
//! the same key and otherwise decrypted here with a passphrase from the caller; then
//! the remaining agent keys (unless `IdentitiesOnly`); then the password, if the
//! caller gave one. Trying the named files first keeps agents with many keys from
//! running into the server's "Too many authentication failures".
//!
//! RSA keys are signed with SHA-2 (`rsa-sha2-512`/`-256`, as the server's
//! `server-sig-algs` allows). This crate is built without russh's `rsa` feature
//! (RUSTSEC-2023-0071), so RSA keys are used through ssh-agent only; ed25519 and
//! ECDSA key files are used directly too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{MethodKind, MethodSet};

use crate::config::{AgentSetting, HostSettings};
use crate::error::SshError;
use crate::host_key::Client;
use crate::options::ConnectOptions;

type Agent = AgentClient<tokio::net::UnixStream>;

/// Default key files, tried when neither `-i` nor `IdentityFile` names one.
const DEFAULT_KEYS: &[&str] = &["id_ed25519", "id_ecdsa", "id_rsa"];

/// The state of one authentication run, for the final error message.
struct Attempts<'a> {
    settings: &'a HostSettings,
    tried: Vec<String>,
    /// What the server last said it accepts (`None` until it said anything).
    methods: Option<MethodSet>,
    /// The connection broke (e.g. MaxAuthTries reached).
    broken: Option<String>,
    /// The best RSA signature hash, asked from the server once.
    rsa_hash: Option<Option<HashAlg>>,
    passphrase_skipped: Vec<PathBuf>,
    rsa_files: Vec<PathBuf>,
    /// How many credentials reached the server.
    offered: usize,
}

impl Attempts<'_> {
    fn allows(&self, kind: MethodKind) -> bool {
        self.broken.is_none() && self.methods.as_ref().is_none_or(|m| m.contains(&kind))
    }

    /// Record a server reply; true when authentication is complete.
    fn record(&mut self, what: String, result: Result<AuthResult, String>) -> bool {
        self.offered += 1;
        match result {
            Ok(AuthResult::Success) => true,
            Ok(AuthResult::Failure {
                remaining_methods,
                partial_success,
            }) => {
                self.tried.push(if partial_success {
                    format!("{what}: accepted, but the server wants a second factor")
                } else {
                    format!("{what}: rejected")
                });
                if remaining_methods.is_empty() {
                    self.broken = Some("the server closed the connection".into());
                }
                self.methods = Some(remaining_methods);
                false
            }
            Err(e) => {
                self.tried.push(format!("{what}: {e}"));
                self.broken = Some(e);
                false
            }
        }
    }

    async fn rsa_hash(&mut self, handle: &client::Handle<Client>) -> Option<HashAlg> {
        if let Some(h) = self.rsa_hash {
            return h;
        }
        let wait = Duration::from_secs(10);
        let h = match tokio::time::timeout(wait, handle.best_supported_rsa_hash()).await {
            Ok(Ok(Some(best))) => best,
            // No server-sig-algs: every OpenSSH since 7.2 knows rsa-sha2-256.
            Ok(Ok(None) | Err(_)) | Err(_) => Some(HashAlg::Sha256),
        };
        self.rsa_hash = Some(h);
        h
    }
}

/// Authenticate `handle` as `settings.user`; `password` is offered last if given.
pub(crate) async fn authenticate(
    handle: &mut client::Handle<Client>,
    settings: &HostSettings,
    options: &ConnectOptions,
    password: Option<&str>,
) -> Result<(), SshError> {
    let user = settings.user.clone();
    let mut a = Attempts {
        settings,
        tried: Vec::new(),
        methods: None,
        broken: None,
        rsa_hash: None,
        passphrase_skipped: Vec::new(),
        rsa_files: Vec::new(),
        offered: 0,
    };

    // "none" tells which methods the server accepts (and lets in servers that need none).
    let none = answer(settings, options, handle.authenticate_none(user.clone()))
        .await?
        .map_err(|e| e.to_string());
    match none {
        Ok(AuthResult::Success) => return Ok(()),
        Ok(AuthResult::Failure {
            remaining_methods, ..
        }) => a.methods = Some(remaining_methods),
        Err(e) => a.broken = Some(e),
    }

    let mut agent = open_agent(settings, options, &mut a).await;
    let agent_keys: Vec<PublicKey> = match agent.as_mut() {
        Some(agent) => match agent.request_identities().await {
            Ok(ids) => ids
                .into_iter()
                .filter_map(|id| match id {
                    AgentIdentity::PublicKey { key, .. } => Some(key),
                    AgentIdentity::Certificate { .. } => None,
                })
                .collect(),
            Err(e) => {
                a.tried
                    .push(format!("ssh-agent: could not list its keys ({e})"));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let mut used_agent_keys: Vec<PublicKey> = Vec::new();

    for file in key_files(settings, options) {
        if !a.allows(MethodKind::PublicKey) {
            break;
        }
        let shown = file.display().to_string();
        let public = read_public_key(&file);
        // The agent holds this key: let it sign, no passphrase needed.
        if let (Some(public), Some(agent)) = (&public, agent.as_mut())
            && let Some(key) = agent_keys
                .iter()
                .find(|k| k.key_data() == public.key_data())
        {
            used_agent_keys.push(key.clone());
            let hash = hash_for(&mut a, handle, key).await;
            let what = format!("{shown} (via ssh-agent)");
            let signed = handle.authenticate_publickey_with(user.clone(), key.clone(), hash, agent);
            match answer(settings, options, signed).await? {
                Ok(r) => {
                    if a.record(what, Ok(r)) {
                        return Ok(());
                    }
                }
                // The agent declined; the connection is still usable.
                Err(e) => a
                    .tried
                    .push(format!("{what}: ssh-agent could not sign ({e})")),
            }
            continue;
        }
        let Some(key) = load_private_key(&file, options, &mut a).await else {
            continue;
        };
        let hash = if key.algorithm().is_rsa() {
            a.rsa_hash(handle).await
        } else {
            None
        };
        let offered = handle.authenticate_publickey(
            user.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
        );
        let r = answer(settings, options, offered)
            .await?
            .map_err(|e| e.to_string());
        if a.record(shown, r) {
            return Ok(());
        }
    }

    if !settings.identities_only
        && let Some(agent) = agent.as_mut()
    {
        for key in &agent_keys {
            if !a.allows(MethodKind::PublicKey) {
                break;
            }
            if used_agent_keys
                .iter()
                .any(|k| k.key_data() == key.key_data())
            {
                continue;
            }
            let hash = hash_for(&mut a, handle, key).await;
            let what = format!(
                "ssh-agent key {} {}{}",
                key.algorithm().as_str(),
                key.fingerprint(HashAlg::Sha256),
                match key.comment().to_string() {
                    c if c.is_empty() => String::new(),
                    c => format!(" ({c})"),
                }
            );
            let signed = handle.authenticate_publickey_with(user.clone(), key.clone(), hash, agent);
            match answer(settings, options, signed).await? {
                Ok(r) => {
                    if a.record(what, Ok(r)) {
                        return Ok(());
                    }
                }
                Err(e) => a
                    .tried
                    .push(format!("{what}: ssh-agent could not sign ({e})")),
            }
        }
    }

    if let Some(password) = password {
        if a.allows(MethodKind::Password) {
            let r = answer(
                settings,
                options,
                handle.authenticate_password(user.clone(), password),
            )
            .await?
            .map_err(|e| e.to_string());
            if a.record("password".into(), r) {
                return Ok(());
            }
        } else if a.allows(MethodKind::KeyboardInteractive) {
            if keyboard_interactive(handle, &user, password, options, &mut a).await? {
                return Ok(());
            }
        } else if a.broken.is_none() {
            a.tried
                .push("password: not offered by the server (PasswordAuthentication no)".into());
        }
    }

    Err(failure(a))
}

/// Answer keyboard-interactive prompts that do not echo with the password (PAM's
/// "Password:" prompt).
async fn keyboard_interactive(
    handle: &mut client::Handle<Client>,
    user: &str,
    password: &str,
    options: &ConnectOptions,
    a: &mut Attempts<'_>,
) -> Result<bool, SshError> {
    let settings = a.settings;
    let start = handle.authenticate_keyboard_interactive_start(user.to_string(), None::<String>);
    let mut reply = answer(settings, options, start).await?;
    for _ in 0..5 {
        match reply {
            Ok(KeyboardInteractiveAuthResponse::Success) => return Ok(true),
            Ok(KeyboardInteractiveAuthResponse::Failure {
                remaining_methods,
                partial_success,
            }) => {
                return Ok(a.record(
                    "password (keyboard-interactive)".into(),
                    Ok(AuthResult::Failure {
                        remaining_methods,
                        partial_success,
                    }),
                ));
            }
            Ok(KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. }) => {
                let answers = prompts
                    .iter()
                    .map(|p| {
                        if p.echo {
                            String::new()
                        } else {
                            password.to_string()
                        }
                    })
                    .collect();
                let respond = handle.authenticate_keyboard_interactive_respond(answers);
                reply = answer(settings, options, respond).await?;
            }
            Err(e) => {
                return Ok(a.record("password (keyboard-interactive)".into(), Err(e.to_string())));
            }
        }
    }
    a.tried
        .push("password (keyboard-interactive): too many prompts".into());
    Ok(false)
}

/// Waits for the server's answer to one authentication request, at most
/// `connect_timeout` (a passphrase typed at the prompt does not count: it is asked for
/// between requests).
async fn answer<T>(
    settings: &HostSettings,
    options: &ConnectOptions,
    request: impl std::future::Future<Output = T>,
) -> Result<T, SshError> {
    let after = options.connect_timeout;
    tokio::time::timeout(after, request)
        .await
        .map_err(|_| SshError::Timeout {
            step: "SSH authentication",
            host: settings.host_name.clone(),
            port: settings.port,
            after,
        })
}

async fn hash_for(
    a: &mut Attempts<'_>,
    handle: &client::Handle<Client>,
    key: &PublicKey,
) -> Option<HashAlg> {
    if key.algorithm().is_rsa() {
        a.rsa_hash(handle).await
    } else {
        None
    }
}

/// `-i` files, then `IdentityFile`s, else the default files that exist; no duplicates.
fn key_files(settings: &HostSettings, options: &ConnectOptions) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for f in options
        .identity_files
        .iter()
        .chain(&settings.identity_files)
    {
        if !files.contains(f) {
            files.push(f.clone());
        }
    }
    if files.is_empty()
        && let Some(dir) = options.ssh_dir()
    {
        files = DEFAULT_KEYS
            .iter()
            .map(|name| dir.join(name))
            .filter(|p| p.exists())
            .collect();
    }
    files
}

async fn open_agent(
    settings: &HostSettings,
    options: &ConnectOptions,
    a: &mut Attempts<'_>,
) -> Option<Agent> {
    if !options.use_agent {
        return None;
    }
    let socket = match (&options.agent_socket, &settings.agent) {
        (Some(explicit), _) => explicit.clone(),
        (None, AgentSetting::Disabled) => return None,
        (None, AgentSetting::Socket(path)) => path.clone(),
        (None, AgentSetting::Default) => PathBuf::from(std::env::var_os("SSH_AUTH_SOCK")?),
    };
    match AgentClient::connect_uds(&socket).await {
        Ok(agent) => Some(agent),
        Err(e) => {
            a.tried.push(format!(
                "ssh-agent at {}: could not connect ({e})",
                socket.display()
            ));
            None
        }
    }
}

/// The public half of a key file: `FILE.pub`, else the public part that OpenSSH-format
/// private keys carry unencrypted.
fn read_public_key(file: &Path) -> Option<PublicKey> {
    let pub_file = PathBuf::from(format!("{}.pub", file.display()));
    if let Ok(key) = russh::keys::load_public_key(&pub_file) {
        return Some(key);
    }
    let text = std::fs::read_to_string(file).ok()?;
    PrivateKey::from_openssh(text.trim())
        .ok()
        .map(|k| k.public_key().clone())
}

/// Read and, if needed, decrypt a key file; records why a file is skipped.
async fn load_private_key(
    file: &Path,
    options: &ConnectOptions,
    a: &mut Attempts<'_>,
) -> Option<PrivateKey> {
    let shown = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            a.tried.push(format!("{shown}: cannot read ({e})"));
            return None;
        }
    };
    let key = match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => key,
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let Some(ask) = options.passphrase.clone() else {
                a.tried.push(format!(
                    "{shown}: skipped, it is passphrase-protected and no passphrase was given"
                ));
                a.passphrase_skipped.push(file.to_path_buf());
                return None;
            };
            let path = file.to_path_buf();
            let passphrase = tokio::task::spawn_blocking(move || ask(&path))
                .await
                .ok()
                .flatten();
            let Some(passphrase) = passphrase else {
                a.tried
                    .push(format!("{shown}: skipped, no passphrase was given"));
                a.passphrase_skipped.push(file.to_path_buf());
                return None;
            };
            match russh::keys::decode_secret_key(&text, Some(&passphrase)) {
                Ok(key) => key,
                Err(e) => {
                    a.tried.push(format!(
                        "{shown}: could not decrypt it (wrong passphrase?): {e}"
                    ));
                    return None;
                }
            }
        }
        Err(russh::keys::Error::UnsupportedKeyType { .. }) if text.contains("RSA PRIVATE KEY") => {
            a.tried.push(format!(
                "{shown}: RSA key files are used only through ssh-agent (blargh does no RSA signing itself)"
            ));
            a.rsa_files.push(file.to_path_buf());
            return None;
        }
        Err(e) => {
            a.tried
                .push(format!("{shown}: not a usable private key ({e})"));
            return None;
        }
    };
    if key.algorithm().is_rsa() {
        a.tried.push(format!(
            "{shown}: RSA key files are used only through ssh-agent (blargh does no RSA signing itself)"
        ));
        a.rsa_files.push(file.to_path_buf());
        return None;
    }
    Some(key)
}

/// Build the error: what was tried, what the server takes, what to do next.
fn failure(a: Attempts<'_>) -> SshError {
    let s = a.settings;
    let mut hints: Vec<String> = Vec::new();
    if let Some(broken) = &a.broken {
        hints.push(format!(
            "The connection ended during authentication ({broken}); if the server said \
             \"Too many authentication failures\", name the right key with IdentityFile and \
             set IdentitiesOnly yes in ~/.ssh/config."
        ));
    }
    for f in a.passphrase_skipped.iter().chain(&a.rsa_files) {
        hints.push(format!(
            "Add {} to ssh-agent with `ssh-add {}`.",
            f.display(),
            f.display()
        ));
    }
    if a.offered == 0 && !a.tried.is_empty() {
        hints.push("No credential could be offered to the server.".into());
    } else if a.tried.is_empty() {
        hints.push(
            "No key was available: give one with IdentityFile in ~/.ssh/config, start \
             ssh-agent and `ssh-add` your key, or use --password-stdin."
                .into(),
        );
    } else {
        hints.push(format!(
            "Make sure ~{user}/.ssh/authorized_keys on {host} holds one of these public keys \
             (e.g. `ssh-copy-id -i KEY.pub {dest}`), that {user} is the right user (User in \
             ~/.ssh/config, or user@host), and see the server's sshd log \
             (`journalctl -u ssh`) for its reason.",
            user = s.user,
            host = s.host_name,
            dest = if s.port == 22 {
                format!("{}@{}", s.user, s.host_name)
            } else {
                format!("-p {} {}@{}", s.port, s.user, s.host_name)
            },
        ));
    }
    SshError::Auth {
        user: s.user.clone(),
        host: s.display_addr(),
        tried: a.tried,
        server_methods: a
            .methods
            .map(|m| m.iter().map(String::from).collect())
            .unwrap_or_default(),
        hint: hints.join(" "),
    }
}
