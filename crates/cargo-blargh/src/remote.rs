//! Reaching a server: SSH connection flags, the interactive host-key question, the
//! executor that runs plan steps over SSH (through `sudo -n` when needed), and the probe.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use blargh_platform::Platform;
use blargh_seed::exec::{Executor, Output};
use blargh_seed::shell::quote;
use blargh_ssh::{ConnectOptions, Destination, HostKeyPolicy, Session};
use clap::Args;

/// How to connect: flags shared by every command that reaches a server.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectArgs {
    /// A private key to try first (like `ssh -i`).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Vec<PathBuf>,
    /// Trust and record the host key of a host not yet in known_hosts (OpenSSH's
    /// `accept-new`). A changed host key is refused regardless.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Read the SSH password from the first line of stdin (first seed of a fresh server).
    #[arg(long)]
    pub password_stdin: bool,
    /// known_hosts file to use instead of ~/.ssh/known_hosts.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// ssh config file to use instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

/// The CI variables that carry SSH material, taken out of the environment before anything
/// else runs: a child process (`cargo build` and every build script it runs, hooks) must
/// never see the deploy key.
pub const SECRET_VARS: &[&str] = &["BLARGH_SSH_KEY", "BLARGH_KNOWN_HOSTS"];

/// The values of [`SECRET_VARS`] moved out of the environment, and the private directory
/// (0700, removed when this is dropped) holding them as files for the SSH client.
pub struct CiSecrets {
    values: Vec<(&'static str, String)>,
    dir: std::sync::OnceLock<Result<tempfile::TempDir, String>>,
}

static SECRETS: std::sync::OnceLock<std::sync::Mutex<Option<CiSecrets>>> =
    std::sync::OnceLock::new();

impl CiSecrets {
    /// Moves [`SECRET_VARS`] out of the environment into the process's keeping.
    ///
    /// # Safety
    /// Call while the process is single-threaded (first thing in `main`): it changes the
    /// environment.
    pub unsafe fn take_from_env() {
        let mut values = Vec::new();
        for var in SECRET_VARS {
            if let Ok(v) = std::env::var(var) {
                values.push((*var, v));
                // SAFETY: single-threaded, as the caller promises.
                unsafe { std::env::remove_var(var) };
            }
        }
        let _ = SECRETS.set(std::sync::Mutex::new(Some(CiSecrets {
            values,
            dir: std::sync::OnceLock::new(),
        })));
    }

    /// Removes the files written for the secrets (before the process exits).
    pub fn remove_files() {
        if let Some(m) = SECRETS.get() {
            let taken = m.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(taken);
        }
    }

    /// True when `var` (one of [`SECRET_VARS`]) was set when the process started.
    pub fn is_set(var: &str) -> bool {
        SECRETS.get().is_some_and(|m| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|s| s.values.iter().any(|(k, _)| *k == var))
        })
    }

    /// A 0600 file in a 0700 directory holding `var`'s value, if it was set.
    fn file(var: &str) -> Result<Option<PathBuf>, String> {
        let Some(m) = SECRETS.get() else {
            return Ok(None);
        };
        let guard = m.lock().unwrap_or_else(|e| e.into_inner());
        let Some(secrets) = guard.as_ref() else {
            return Ok(None);
        };
        let Some((_, value)) = secrets.values.iter().find(|(k, _)| *k == var) else {
            return Ok(None);
        };
        let dir = secrets
            .dir
            .get_or_init(|| {
                tempfile::Builder::new()
                    .prefix("blargh-ci-")
                    .tempdir()
                    .map_err(|e| format!("{var}: cannot make a private directory for it: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let path = dir.path().join(var.to_lowercase());
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            let text = if value.ends_with('\n') {
                value.clone()
            } else {
                format!("{value}\n")
            };
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| format!("{var}: cannot write it to a file: {e}"))?;
        }
        Ok(Some(path))
    }
}

impl ConnectArgs {
    /// Connection options for these flags. In CI, `BLARGH_SSH_KEY` (a private key) and
    /// `BLARGH_KNOWN_HOSTS` (known_hosts lines) come from the environment.
    pub fn options(&self) -> Result<ConnectOptions, String> {
        let mut identity_files = self.identity.clone();
        if let Some(key) = CiSecrets::file("BLARGH_SSH_KEY")? {
            identity_files.insert(0, key);
        }
        let known_hosts = match &self.known_hosts {
            Some(p) => Some(p.clone()),
            None => CiSecrets::file("BLARGH_KNOWN_HOSTS")?,
        };
        let mut o = ConnectOptions {
            identity_files,
            known_hosts,
            ..Default::default()
        };
        if let Some(p) = &self.ssh_config {
            o.ssh_config = blargh_ssh::SshConfigFile::Path(p.clone());
        }
        if self.password_stdin {
            o.password = Some(password_from_stdin()?);
        }
        o.host_key_policy = if self.accept_new_host_key {
            HostKeyPolicy::AcceptNew
        } else if std::io::stdin().is_terminal() && !self.password_stdin {
            o = o.with_ask(|h| {
                // Several hosts connect at once: one question on the terminal at a time.
                static ONE_QUESTION: std::sync::Mutex<()> = std::sync::Mutex::new(());
                let _turn = ONE_QUESTION.lock().unwrap_or_else(|e| e.into_inner());
                eprint!(
                    "The host {} is not in {}.\nIts {} key fingerprint is {}.\n\
                     Check it on the server with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`.\n\
                     Trust it and continue? [y/N] ",
                    h.host,
                    h.known_hosts.display(),
                    h.key_type,
                    h.fingerprint
                );
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                let _ = std::io::stdin().lock().read_line(&mut answer);
                matches!(answer.trim(), "y" | "Y" | "yes")
            });
            o.host_key_policy
        } else {
            HostKeyPolicy::Refuse
        };
        Ok(o)
    }
}

/// The password given with `--password-stdin`: stdin's first line, read once and used for
/// every host of the command.
fn password_from_stdin() -> Result<String, String> {
    static PASSWORD: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    PASSWORD
        .get_or_init(|| {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
            let pw = line.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err("--password-stdin: stdin's first line is empty".into());
            }
            Ok(pw)
        })
        .clone()
}

/// Connects to `dest` ("user@host[:port]" or an ssh config alias).
pub async fn connect(dest: &str, args: &ConnectArgs) -> Result<Session, String> {
    let d = Destination::parse(dest).map_err(|e| e.to_string())?;
    let opts = args.options()?;
    Session::connect(&d, &opts).await.map_err(|e| e.to_string())
}

/// Runs plan steps over an SSH session.
pub struct SshExecutor<'a> {
    /// The session.
    pub session: &'a Session,
    /// The remote user is root (no sudo needed).
    pub is_root: bool,
}

impl Executor for SshExecutor<'_> {
    async fn run(
        &mut self,
        script: &str,
        root: bool,
        stdin: Option<&[u8]>,
    ) -> std::io::Result<Output> {
        let cmd = if root && !self.is_root {
            format!("sudo -n sh -c {}", quote(script))
        } else {
            format!("sh -c {}", quote(script))
        };
        let out = self
            .session
            .exec(&cmd, stdin.unwrap_or(&[]))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Output {
            status: out.status.code().map(|c| c as i32).unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// Runs the platform probe on the host and parses it.
pub async fn probe(session: &Session) -> Result<Platform, String> {
    let out = session
        .exec("sh -s", blargh_platform::PROBE_SCRIPT.as_bytes())
        .await
        .map_err(|e| format!("cannot run the platform probe: {e}"))?;
    blargh_platform::parse_probe(&out.stdout_str()).map_err(|e| {
        format!(
            "the host's answer to the platform probe is not understood: {e}\n(stderr: {})",
            out.stderr_str().trim()
        )
    })
}
