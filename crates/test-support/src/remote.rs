//! Running `cargo-blargh` against a test VM: the SSH flags (its test key, a known_hosts file
//! that vouches for its host key, no personal ssh config), and shipping a release to the
//! agent over ssh as the deploy user.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::vm::Vm;

/// The CLI pointed at one VM.
#[derive(Debug)]
pub struct Cli {
    bin: PathBuf,
    dir: tempfile::TempDir,
    key: PathBuf,
    port: u16,
}

impl Cli {
    /// `bin` (the cargo-blargh executable) for `vm`, with a known_hosts file holding the
    /// VM's real host key.
    pub fn for_vm(bin: impl AsRef<Path>, vm: &Vm) -> io::Result<Cli> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("known_hosts"),
            vm.known_hosts_line()? + "\n",
        )?;
        std::fs::write(dir.path().join("ssh_config"), "")?;
        Ok(Cli {
            bin: bin.as_ref().to_path_buf(),
            dir,
            key: vm.key_path().to_path_buf(),
            port: vm.ssh_port(),
        })
    }

    /// `user@127.0.0.1:PORT`.
    pub fn destination(&self, user: &str) -> String {
        format!("{user}@127.0.0.1:{}", self.port)
    }

    /// The flags every remote command takes.
    pub fn connect_flags(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.key.display().to_string(),
            "--known-hosts".into(),
            self.dir.path().join("known_hosts").display().to_string(),
            "--ssh-config".into(),
            self.dir.path().join("ssh_config").display().to_string(),
        ]
    }

    /// `cargo-blargh ARGS… <connect flags>`, to adjust (cwd, stdin) and run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .args(self.connect_flags())
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        c
    }

    /// Runs `cargo-blargh SUBCOMMAND DEST ARGS… <connect flags>` as SSH user `user`.
    pub fn run(&self, subcommand: &str, user: &str, args: &[&str]) -> io::Result<Output> {
        Command::new(&self.bin)
            .arg(subcommand)
            .arg(self.destination(user))
            .args(args)
            .args(self.connect_flags())
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
    }
}

/// Text of an output, stdout then stderr, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Sends `binary` to the app's agent on `vm` as `user` (over ssh, through the agent's
/// control socket, no sudo) and activates it. Returns the agent's answer to the activation.
pub fn ship_release(
    vm: &Vm,
    user: &str,
    app: &str,
    binary: &Path,
    version: &str,
) -> io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(binary)?.read_to_end(&mut bytes)?;
    let sha = sha256_hex(binary)?;
    let agent = format!("/var/lib/blargh/{app}/agent/blargh");
    let root = format!("/var/lib/blargh/{app}");
    let mut child = vm
        .ssh_command(
            user,
            &format!(
                "{agent} agent ctl --root {root} --json receive - --sha256 {sha} --size {} --app-version {version}",
                bytes.len()
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(&bytes)?;
    let out = child.wait_with_output()?;
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| io::Error::other(format!("receive: {e}: {}", text(&out))))?;
    let id = reply["release"]["id"]
        .as_str()
        .ok_or_else(|| io::Error::other(format!("receive failed: {}", text(&out))))?
        .to_string();
    vm.ssh_ok_as(
        user,
        &format!("{agent} agent ctl --root {root} activate {id}"),
    )
}

fn sha256_hex(path: &Path) -> io::Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}
