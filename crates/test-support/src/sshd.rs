//! A throwaway OpenSSH `sshd` on a loopback port, keys made with `ssh-keygen`, an
//! `ssh-agent` with keys added by `ssh-add`, and a local user with a password.
//!
//! Everything lives in a temporary directory that is removed (and every process
//! killed) when the fixture is dropped. The daemon runs with `UsePAM no`,
//! `StrictModes no` and `PidFile none`, so it needs root only for privilege
//! separation (`/run/sshd`) and for logging in as other users; the tests that use it
//! run as root. Only std and tempfile are used.
//!
//! ```no_run
//! use test_support::sshd::{Keygen, Sshd};
//!
//! let sshd = Sshd::builder().start();
//! let key = Keygen::ed25519(sshd.dir(), "id_ed25519").generate();
//! sshd.authorize(&key);
//! println!("ssh -p {} -i {} root@127.0.0.1", sshd.port(), key.private.display());
//! ```

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's OpenSSH server lives.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A key pair on disk, made by `ssh-keygen`.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// The private key file.
    pub private: PathBuf,
    /// The public key file (`<private>.pub`).
    pub public: PathBuf,
    /// The public key as one `authorized_keys` / `known_hosts` line: `type base64 comment`.
    pub public_line: String,
}

impl KeyPair {
    /// The key type and base64 blob, without the comment: `ssh-ed25519 AAAA…`.
    pub fn type_and_blob(&self) -> String {
        self.public_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Options for `ssh-keygen`; finish with [`Keygen::generate`].
#[derive(Debug, Clone)]
pub struct Keygen {
    dir: PathBuf,
    name: String,
    key_type: String,
    bits: Option<u32>,
    passphrase: String,
    pem: bool,
}

impl Keygen {
    /// A key of `key_type` (`ed25519`, `ecdsa`, `rsa`) at `dir/name`.
    pub fn new(dir: &Path, name: &str, key_type: &str) -> Keygen {
        Keygen {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            key_type: key_type.to_string(),
            bits: None,
            passphrase: String::new(),
            pem: false,
        }
    }

    /// An ed25519 key at `dir/name`.
    pub fn ed25519(dir: &Path, name: &str) -> Keygen {
        Keygen::new(dir, name, "ed25519")
    }

    /// Key size in bits (`-b`), for RSA and ECDSA.
    pub fn bits(mut self, bits: u32) -> Keygen {
        self.bits = Some(bits);
        self
    }

    /// Encrypt the private key with this passphrase.
    pub fn passphrase(mut self, passphrase: &str) -> Keygen {
        self.passphrase = passphrase.to_string();
        self
    }

    /// Write the private key in the old PEM format (`-m PEM`) instead of OpenSSH's.
    pub fn pem(mut self) -> Keygen {
        self.pem = true;
        self
    }

    /// Run `ssh-keygen`; panics with its output if it fails.
    pub fn generate(self) -> KeyPair {
        fs::create_dir_all(&self.dir).expect("create key directory");
        let private = self.dir.join(&self.name);
        let _ = fs::remove_file(&private);
        let _ = fs::remove_file(private.with_extension("pub"));
        let mut cmd = Command::new("ssh-keygen");
        cmd.arg("-q")
            .args(["-t", &self.key_type])
            .args(["-N", &self.passphrase])
            .args(["-C", &format!("blargh-test-{}", self.name)])
            .arg("-f")
            .arg(&private);
        if let Some(bits) = self.bits {
            cmd.args(["-b", &bits.to_string()]);
        }
        if self.pem {
            cmd.args(["-m", "PEM"]);
        }
        run(&mut cmd, "ssh-keygen");
        let public = PathBuf::from(format!("{}.pub", private.display()));
        let public_line = fs::read_to_string(&public)
            .expect("read generated public key")
            .trim()
            .to_string();
        KeyPair {
            private,
            public,
            public_line,
        }
    }
}

/// Options for the daemon; finish with [`SshdBuilder::start`].
#[derive(Debug, Clone, Default)]
pub struct SshdBuilder {
    password_authentication: bool,
    host_key_type: Option<String>,
    extra_config: Vec<String>,
}

impl SshdBuilder {
    /// Allow `PasswordAuthentication` (off by default).
    pub fn password_authentication(mut self, yes: bool) -> SshdBuilder {
        self.password_authentication = yes;
        self
    }

    /// Host key type (`ed25519` by default; `ecdsa` or `rsa` for other tests).
    pub fn host_key_type(mut self, key_type: &str) -> SshdBuilder {
        self.host_key_type = Some(key_type.to_string());
        self
    }

    /// One more `sshd_config` line, e.g. `"MaxAuthTries 3"`.
    pub fn config_line(mut self, line: &str) -> SshdBuilder {
        self.extra_config.push(line.to_string());
        self
    }

    /// Start the daemon on a free loopback port and wait until it accepts connections.
    ///
    /// Panics (with the daemon's log) if it does not come up within 10 seconds.
    pub fn start(self) -> Sshd {
        fs::create_dir_all("/run/sshd").expect("mkdir -p /run/sshd (needs root)");
        let dir = tempfile::Builder::new()
            .prefix("blargh-sshd-")
            .tempdir()
            .expect("temporary directory for sshd");
        let host_key_type = self.host_key_type.as_deref().unwrap_or("ed25519");
        let host_key = Keygen::new(
            dir.path(),
            &format!("ssh_host_{host_key_type}_key"),
            host_key_type,
        )
        .generate();
        let authorized_keys = dir.path().join("authorized_keys");
        fs::write(&authorized_keys, "").expect("create authorized_keys");
        let log = dir.path().join("sshd.log");
        let config = dir.path().join("sshd_config");

        // A port picked by the kernel can be taken by someone else before sshd binds
        // it; try a few times.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut text = format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host_key}\n\
                 PidFile none\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 AuthorizedKeysFile {authorized_keys}\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication {password}\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin yes\n\
                 AllowAgentForwarding yes\n\
                 AllowTcpForwarding yes\n\
                 LogLevel VERBOSE\n",
                host_key = host_key.private.display(),
                authorized_keys = authorized_keys.display(),
                password = if self.password_authentication {
                    "yes"
                } else {
                    "no"
                },
            );
            for line in &self.extra_config {
                text.push_str(line);
                text.push('\n');
            }
            fs::write(&config, text).expect("write sshd_config");
            let _ = fs::remove_file(&log);
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-f")
                .arg(&config)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start /usr/sbin/sshd (is openssh-server installed?)");
            if wait_ready(&mut child, port, Duration::from_secs(10)) {
                return Sshd {
                    dir,
                    child,
                    port,
                    host_key,
                    authorized_keys,
                    log,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("sshd did not start:\n{last_log}");
    }
}

/// Wait until the daemon on `port` greets with `SSH-`; false if it exits or times out.
fn wait_ready(child: &mut Child, port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            // sshd speaks first; make sure it is really sshd and not another listener.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut banner = [0u8; 4];
            if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A running `sshd` listening on `127.0.0.1:port()`; killed on drop.
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    host_key: KeyPair,
    authorized_keys: PathBuf,
    log: PathBuf,
}

impl Sshd {
    /// Options for a new daemon.
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    /// A daemon with the defaults: ed25519 host key, public keys only.
    pub fn start() -> Sshd {
        SshdBuilder::default().start()
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its temporary directory, also a handy place for client keys and files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The host key pair.
    pub fn host_key(&self) -> &KeyPair {
        &self.host_key
    }

    /// A plain known_hosts line for this daemon: `[127.0.0.1]:PORT type base64`.
    pub fn known_hosts_line(&self) -> String {
        format!(
            "[127.0.0.1]:{} {}",
            self.port,
            self.host_key.type_and_blob()
        )
    }

    /// Allow `key` to log in (as any user: one `AuthorizedKeysFile` serves all).
    pub fn authorize(&self, key: &KeyPair) {
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .expect("open authorized_keys");
        writeln!(file, "{}", key.public_line).expect("append to authorized_keys");
    }

    /// What the daemon logged so far (LogLevel VERBOSE), for failure messages.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private `ssh-agent` (`ssh-agent -D -a SOCKET`); killed on drop.
#[derive(Debug)]
pub struct Agent {
    dir: tempfile::TempDir,
    child: Child,
    socket: PathBuf,
}

impl Agent {
    /// Start an agent with its socket in a fresh temporary directory.
    pub fn start() -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("blargh-agent-")
            .tempdir()
            .expect("temporary directory for ssh-agent");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ssh-agent (is openssh-client installed?)");
        let mut agent = Agent { dir, child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            if Instant::now() > deadline {
                panic!("ssh-agent did not create {}", agent.socket.display());
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("ssh-agent exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// The socket to use as `SSH_AUTH_SOCK`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The agent's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ssh-add KEY` (the key must not be passphrase-protected).
    pub fn add(&self, key: &KeyPair) {
        run(
            Command::new("ssh-add")
                .env("SSH_AUTH_SOCK", &self.socket)
                .arg("-q")
                .arg(&key.private)
                .stdin(Stdio::null()),
            "ssh-add",
        );
    }

    /// `ssh-add -L`: the public keys the agent holds, one per line.
    pub fn list(&self) -> String {
        let out = Command::new("ssh-add")
            .env("SSH_AUTH_SOCK", &self.socket)
            .arg("-L")
            .output()
            .expect("run ssh-add -L");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Make sure local user `name` exists (created with a home and `/bin/sh` if missing)
/// and has `password`, set with `chpasswd`. Needs root.
pub fn ensure_password_user(name: &str, password: &str) {
    let exists = Command::new("id")
        .arg("-u")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !exists {
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", name])
            .output()
            .expect("run useradd");
        // Another test may have created it at the same moment: 9 = name already in use.
        if !out.status.success() && out.status.code() != Some(9) {
            panic!(
                "useradd {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chpasswd");
    child
        .stdin
        .take()
        .expect("chpasswd stdin")
        .write_all(format!("{name}:{password}\n").as_bytes())
        .expect("write to chpasswd");
    let out = child.wait_with_output().expect("wait for chpasswd");
    assert!(
        out.status.success(),
        "chpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// `ssh-keygen -H`-style hashing is easiest to get from ssh-keygen itself: hash every
/// entry of `known_hosts` in place (`ssh-keygen -H -f FILE`) and remove the backup.
pub fn hash_known_hosts(known_hosts: &Path) {
    run(
        Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(known_hosts),
        "ssh-keygen -H",
    );
    let _ = fs::remove_file(format!("{}.old", known_hosts.display()));
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
