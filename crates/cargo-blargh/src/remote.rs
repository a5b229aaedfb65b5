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

/// A file holding the contents of an environment variable (CI secrets), 0600, kept for
/// the life of the process.
fn env_file(var: &str) -> Result<Option<PathBuf>, String> {
    use std::sync::{Mutex, OnceLock};
    static FILES: OnceLock<Mutex<Vec<tempfile::NamedTempFile>>> = OnceLock::new();
    let Ok(value) = std::env::var(var) else {
        return Ok(None);
    };
    let mut f = tempfile::NamedTempFile::new()
        .map_err(|e| format!("{var}: cannot write it to a file: {e}"))?;
    let text = if value.ends_with('\n') {
        value
    } else {
        value + "\n"
    };
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{var}: cannot write it to a file: {e}"))?;
    let path = f.path().to_path_buf();
    FILES
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(f);
    Ok(Some(path))
}

impl ConnectArgs {
    /// Connection options for these flags. In CI, `BLARGH_SSH_KEY` (a private key) and
    /// `BLARGH_KNOWN_HOSTS` (known_hosts lines) come from the environment.
    pub fn options(&self) -> Result<ConnectOptions, String> {
        let mut identity_files = self.identity.clone();
        if let Some(key) = env_file("BLARGH_SSH_KEY")? {
            identity_files.insert(0, key);
        }
        let known_hosts = match &self.known_hosts {
            Some(p) => Some(p.clone()),
            None => env_file("BLARGH_KNOWN_HOSTS")?,
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
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
            let pw = line.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err("--password-stdin: stdin's first line is empty".into());
            }
            o.password = Some(pw);
        }
        o.host_key_policy = if self.accept_new_host_key {
            HostKeyPolicy::AcceptNew
        } else if std::io::stdin().is_terminal() && !self.password_stdin {
            o = o.with_ask(|h| {
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
