//! Real test servers: Debian 12 virtual machines booted under QEMU, one image with systemd
//! and one with OpenRC, and a Debian 11 one with systemd (glibc 2.31, a server older than
//! the machine that builds), as `testbed/README.md` describes.
//!
//! The images are built once by `testbed/build-image.sh` and cached under
//! `target/testbed/<hash>/`; [`ensure_image`] builds them on first use (that needs root,
//! `debootstrap` and network access to the Debian mirror in the machine's apt config, and
//! takes a minute or two). Every [`Vm::boot`] starts from a fresh copy-on-write overlay of the
//! cached disk, so each test gets a bare server and nothing it does survives it.
//!
//! A booted [`Vm`] has a real sshd (as `root`, and as `admin`, a user with passwordless sudo,
//! both logging in with the image's test key), a real init system and real reboots. Its ssh
//! port and a few guest TCP ports (80 and 8080 by default) are forwarded to `127.0.0.1` on
//! free host ports. The guest's network is otherwise closed: it reaches nothing outside the
//! VM unless [`VmOptions::restrict`] is turned off. QEMU runs without KVM (TCG), so a boot
//! takes tens of seconds; tests in one binary should take [`one_at_a_time`] so that they boot
//! one VM after another on a small machine.
//!
//! ```no_run
//! use test_support::vm::{Init, Vm};
//! let vm = Vm::boot(Init::Systemd)?;
//! let out = vm.ssh_ok("systemctl is-system-running --wait")?;
//! assert_eq!(out.trim(), "running");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Build the tests with `BLARGH_SKIP_VM_TESTS=1` to skip the tests that boot VMs: the build
//! scripts of test-support and cargo-blargh then set `cfg(blargh_skip_vm_tests)`, and each
//! VM test carries
//! `#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]`, so
//! it shows as `ignored` in the test summary, never as passed (`--include-ignored` still runs
//! it). A new VM test in another package needs that attribute and a `build.rs` that
//! `include!`s `crates/test-support/vm_skip_cfg.rs`.
//! `BLARGH_VM_BOOT_TIMEOUT=<seconds>` changes how long a boot may take (default 420).

use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The init system a test server boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Init {
    /// Debian 12 with systemd as PID 1, systemd-networkd, and sshd as a systemd service.
    Systemd,
    /// Debian 12 with sysvinit as PID 1 (`/proc/1/comm` is `init`) and OpenRC running the
    /// services; ifupdown networking.
    OpenRc,
    /// Debian 11 (bullseye, glibc 2.31) with systemd as PID 1, built like [`Init::Systemd`]:
    /// a server whose glibc is older than the one the tests build on.
    BullseyeSystemd,
}

impl Init {
    /// Both init systems of Debian 12, for tests that run against each.
    pub const ALL: [Init; 2] = [Init::Systemd, Init::OpenRc];

    /// The image's directory name under its suite's cache directory: `systemd` or `openrc`.
    pub fn name(self) -> &'static str {
        match self {
            Init::Systemd | Init::BullseyeSystemd => "systemd",
            Init::OpenRc => "openrc",
        }
    }

    /// The Debian release of the image, the argument of `testbed/build-image.sh`.
    pub fn suite(self) -> &'static str {
        match self {
            Init::Systemd | Init::OpenRc => "bookworm",
            Init::BullseyeSystemd => "bullseye",
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::BullseyeSystemd => f.write_str("bullseye systemd"),
            _ => f.write_str(self.name()),
        }
    }
}

/// The files of one cached image, as written by `testbed/build-image.sh`.
#[derive(Clone, Debug)]
pub struct ImagePaths {
    /// The image's directory, `target/testbed/<hash>/<init>/`.
    pub dir: PathBuf,
    /// Raw ext4 root filesystem; never written to (each VM boots an overlay of it).
    pub disk: PathBuf,
    /// Kernel for QEMU's `-kernel`.
    pub kernel: PathBuf,
    /// Initramfs for QEMU's `-initrd`.
    pub initrd: PathBuf,
    /// Kernel command line for QEMU's `-append`.
    pub cmdline: String,
    /// Private test key; `root` and `admin` accept it.
    pub key: PathBuf,
    /// Public half of [`ImagePaths::key`].
    pub public_key: PathBuf,
    /// The guest's ed25519 host public key (`ssh-ed25519 AAAA… comment`).
    pub host_key: PathBuf,
}

impl ImagePaths {
    fn in_dir(dir: PathBuf) -> io::Result<ImagePaths> {
        let cmdline = fs::read_to_string(dir.join("cmdline"))
            .map_err(|e| annotate(e, &format!("reading {}/cmdline", dir.display())))?
            .trim()
            .to_string();
        Ok(ImagePaths {
            disk: dir.join("disk.img"),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            key: dir.join("id_ed25519"),
            public_key: dir.join("id_ed25519.pub"),
            host_key: dir.join("host_ed25519.pub"),
            cmdline,
            dir,
        })
    }
}

/// The repository's root directory (where `testbed/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Returns the cached image for `init`, running `testbed/build-image.sh SUITE` first if the
/// image for the script's current version is not built yet. The script's progress goes to
/// this process's stderr. Within one process the script runs at most once per suite.
pub fn ensure_image(init: Init) -> io::Result<ImagePaths> {
    static CACHE_DIRS: OnceLock<Mutex<Vec<(&'static str, PathBuf)>>> = OnceLock::new();
    let mut dirs = lock(CACHE_DIRS.get_or_init(|| Mutex::new(Vec::new())));
    let suite = init.suite();
    if !dirs.iter().any(|(s, _)| *s == suite) {
        let script = repo_root().join("testbed/build-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(suite)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| annotate(e, &format!("running {}", script.display())))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{} failed ({}); its output is above",
                script.display(),
                out.status
            )));
        }
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if dir.is_empty() {
            return Err(io::Error::other(format!(
                "{} printed no cache directory",
                script.display()
            )));
        }
        dirs.push((suite, PathBuf::from(dir)));
    }
    let (_, dir) = dirs
        .iter()
        .find(|(s, _)| *s == suite)
        .expect("pushed above");
    ImagePaths::in_dir(dir.join(init.name()))
}

/// A process-wide lock for tests that boot VMs: hold the guard while your VM runs, and the
/// tests of one test binary boot one VM at a time instead of all at once. (Tests that need
/// two VMs together simply boot both while holding it.)
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    lock(&ONE)
}

/// How to boot a [`Vm`]; [`VmOptions::default`] is what [`Vm::boot`] uses.
#[derive(Clone, Debug)]
pub struct VmOptions {
    /// Guest TCP ports to forward to free ports on the host's `127.0.0.1` (besides 22, which
    /// always is). Default: 80 and 8080.
    pub forward: Vec<u16>,
    /// Guest memory in MiB. Default: 1024.
    pub memory_mib: u32,
    /// How long a boot (or reboot) may take before it is an error. Default: 420 s, or
    /// `BLARGH_VM_BOOT_TIMEOUT` seconds.
    pub boot_timeout: Duration,
    /// When true (the default), the guest can reach nothing outside itself: only the
    /// forwarded ports connect it to the host. When false, the guest can also open
    /// connections to the host's loopback as `10.0.2.2`, and to anything else the host can
    /// reach, so keep tests to loopback services.
    pub restrict: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        let secs = std::env::var("BLARGH_VM_BOOT_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(420);
        VmOptions {
            forward: vec![80, 8080],
            memory_mib: 1024,
            boot_timeout: Duration::from_secs(secs),
            restrict: true,
        }
    }
}

/// A running test server. Dropping it kills QEMU and deletes its overlay.
pub struct Vm {
    init: Init,
    image: ImagePaths,
    options: VmOptions,
    qemu: Mutex<Child>,
    watchdog: Option<Child>,
    ssh_port: u16,
    forwards: Vec<(u16, u16)>,
    boot_duration: Duration,
    dir: TempDir,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("init", &self.init)
            .field("ssh_port", &self.ssh_port)
            .field("forwards", &self.forwards)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Vm {
    /// Boots a fresh server with `init` and waits until root can log in over ssh. Builds
    /// the image first if needed (see [`ensure_image`]).
    pub fn boot(init: Init) -> io::Result<Vm> {
        Vm::boot_with(init, VmOptions::default())
    }

    /// [`Vm::boot`] with other options.
    pub fn boot_with(init: Init, options: VmOptions) -> io::Result<Vm> {
        let image = ensure_image(init)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("blargh-vm-{}-", init.name()))
            .tempdir()?;
        let overlay = dir.path().join("overlay.qcow2");
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&image.disk)
            .arg(&overlay)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| annotate(e, "running qemu-img (apt-get install qemu-utils)"))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "qemu-img create failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }

        let started = Instant::now();
        // Free ports are picked before QEMU binds them, so another process may take one in
        // between; QEMU then exits at once, and we try again with new ports.
        let mut attempt = 0;
        let (qemu, watchdog, ssh_port, forwards) = loop {
            attempt += 1;
            let ports = free_ports(1 + options.forward.len())?;
            let forwards: Vec<(u16, u16)> = options
                .forward
                .iter()
                .copied()
                .zip(ports[1..].iter().copied())
                .collect();
            let mut qemu = start_qemu(&image, &options, dir.path(), &overlay, ports[0], &forwards)?;
            let mut watchdog = watchdog(&qemu, dir.path());
            let settle = Instant::now() + Duration::from_secs(2);
            let exited = loop {
                if let Some(status) = qemu.try_wait()? {
                    break Some(status);
                }
                if Instant::now() >= settle {
                    break None;
                }
                thread::sleep(Duration::from_millis(50));
            };
            let log = fs::read_to_string(dir.path().join("qemu.log")).unwrap_or_default();
            if exited.is_some()
                && let Some(w) = watchdog.as_mut()
            {
                let _ = w.kill();
                let _ = w.wait();
            }
            match exited {
                None => break (qemu, watchdog, ports[0], forwards),
                Some(_) if attempt < 5 && log.contains("host forwarding") => {
                    eprintln!("vm: a picked port was taken, trying others: {}", log.trim());
                }
                Some(status) => {
                    return Err(io::Error::other(format!(
                        "qemu-system-x86_64 exited at once ({status}): {}",
                        log.trim()
                    )));
                }
            }
        };
        let mut vm = Vm {
            init,
            image,
            options,
            qemu: Mutex::new(qemu),
            watchdog,
            ssh_port,
            forwards,
            boot_duration: Duration::ZERO,
            dir,
        };
        vm.wait_for_ssh(started, None)?;
        vm.boot_duration = started.elapsed();
        Ok(vm)
    }

    /// Which init system this server runs.
    pub fn init(&self) -> Init {
        self.init
    }

    /// The cached image this server booted from.
    pub fn image(&self) -> &ImagePaths {
        &self.image
    }

    /// The host port on `127.0.0.1` that reaches the guest's sshd.
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// The host port on `127.0.0.1` that reaches `guest_port` in the guest.
    ///
    /// # Panics
    /// If `guest_port` is not in [`VmOptions::forward`].
    pub fn http_port(&self, guest_port: u16) -> u16 {
        match self.forwards.iter().find(|(g, _)| *g == guest_port) {
            Some((_, host)) => *host,
            None => panic!(
                "guest port {guest_port} is not forwarded (forwarded: {:?}); add it to VmOptions::forward",
                self.forwards.iter().map(|(g, _)| g).collect::<Vec<_>>()
            ),
        }
    }

    /// The private key that logs in as `root` and `admin`.
    pub fn key_path(&self) -> &Path {
        &self.image.key
    }

    /// The guest's ed25519 host public key line (`ssh-ed25519 AAAA… comment`), read from
    /// the image, not over the connection, so it can vouch for the connection.
    pub fn host_key(&self) -> io::Result<String> {
        Ok(fs::read_to_string(&self.image.host_key)?.trim().to_string())
    }

    /// A `known_hosts` line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> io::Result<String> {
        let key = self.host_key()?;
        let mut fields = key.split_whitespace();
        let (kind, blob) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        Ok(format!("[127.0.0.1]:{} {kind} {blob}", self.ssh_port))
    }

    /// The options ssh needs to reach this server as `user`, with the test key and without
    /// reading any ssh config, agent or known_hosts: everything but the command.
    pub fn ssh_args(&self, user: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "-F",
            "none",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=6",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("-i".into());
        args.push(self.image.key.display().to_string());
        args.push("-p".into());
        args.push(self.ssh_port.to_string());
        args.push(format!("{user}@127.0.0.1"));
        args
    }

    /// An `ssh` command that runs `cmd` (a shell command line) in the guest as `user`, with
    /// stdin from /dev/null; change what you need and run it.
    pub fn ssh_command(&self, user: &str, cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_args(user))
            .arg("--")
            .arg(cmd)
            .stdin(Stdio::null());
        c
    }

    /// Runs `cmd` in the guest as root and returns its output, whatever its exit status.
    pub fn ssh(&self, cmd: &str) -> io::Result<Output> {
        self.ssh_as("root", cmd)
    }

    /// Runs `cmd` in the guest as `user` and returns its output, whatever its exit status.
    pub fn ssh_as(&self, user: &str, cmd: &str) -> io::Result<Output> {
        self.ssh_command(user, cmd).output()
    }

    /// Runs `cmd` in the guest as root and returns its stdout; a non-zero exit is an error
    /// that carries the command's stderr.
    pub fn ssh_ok(&self, cmd: &str) -> io::Result<String> {
        self.ssh_ok_as("root", cmd)
    }

    /// [`Vm::ssh_ok`] as `user`.
    pub fn ssh_ok_as(&self, user: &str, cmd: &str) -> io::Result<String> {
        let out = self.ssh_as(user, cmd)?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "`{cmd}` as {user} on the {} VM failed ({}): {}{}",
                self.init,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Reboots the guest (`reboot` inside it) and waits until ssh answers from the new
    /// boot, same disk. Returns how long that took.
    pub fn reboot_and_wait(&self) -> io::Result<Duration> {
        let before = self.boot_id()?;
        let started = Instant::now();
        // The connection may die with the guest before ssh returns: its status is no news.
        self.ssh("reboot")?;
        self.wait_for_ssh(started, Some(&before))?;
        Ok(started.elapsed())
    }

    /// Cuts the power and turns it on again: SIGKILLs QEMU (no shutdown: nothing in the
    /// guest is told, nothing more is written) and boots the SAME disk (this VM's overlay)
    /// with the same forwarded ports, then waits until ssh answers from the new boot.
    /// Returns how long that took.
    ///
    /// What survives is what the guest had written to its virtual disk: its page cache is
    /// lost, and so are writes to the overlay's newly allocated clusters that the guest
    /// never flushed (QEMU keeps the qcow2 metadata for them in its own memory until a
    /// flush). Writes the guest flushed (fsync) survive, as on a disk that honours flushes.
    /// Callable from another thread while something else uses the VM (a deploy in
    /// progress): that work just sees the connection die.
    pub fn power_cycle(&self) -> io::Result<Duration> {
        let started = Instant::now();
        {
            let mut qemu = lock(&self.qemu);
            let _ = qemu.kill();
            qemu.wait()?;
            // Keep the console of the boot that lost power beside the new one.
            let console = self.console_log_path();
            let mut n = 1;
            while self.dir.path().join(format!("console.{n}.log")).exists() {
                n += 1;
            }
            let _ = fs::rename(&console, self.dir.path().join(format!("console.{n}.log")));
            let overlay = self.dir.path().join("overlay.qcow2");
            // The host ports were QEMU's: they are free again once it is gone, though the
            // kernel may take a moment to let go of them.
            let mut attempt = 0;
            let next = loop {
                attempt += 1;
                let mut next = start_qemu(
                    &self.image,
                    &self.options,
                    self.dir.path(),
                    &overlay,
                    self.ssh_port,
                    &self.forwards,
                )?;
                let settle = Instant::now() + Duration::from_secs(2);
                let exited = loop {
                    if let Some(status) = next.try_wait()? {
                        break Some(status);
                    }
                    if Instant::now() >= settle {
                        break None;
                    }
                    thread::sleep(Duration::from_millis(50));
                };
                match exited {
                    None => break next,
                    Some(status) if attempt >= 20 => {
                        return Err(io::Error::other(format!(
                            "qemu-system-x86_64 did not start again after the power cut \
                             ({status}): {}",
                            self.qemu_log().trim()
                        )));
                    }
                    Some(_) => thread::sleep(Duration::from_millis(500)),
                }
            };
            // The first watchdog ended with the first QEMU; this one ends with the second
            // (or kills it if this process dies first). Nobody waits for it: it is reaped
            // when the test process ends.
            drop(watchdog(&next, self.dir.path()));
            *qemu = next;
        }
        self.wait_for_ssh(started, None)?;
        Ok(started.elapsed())
    }

    /// The guest kernel's boot id (`/proc/sys/kernel/random/boot_id`), new on every boot.
    pub fn boot_id(&self) -> io::Result<String> {
        Ok(self
            .ssh_ok("cat /proc/sys/kernel/random/boot_id")?
            .trim()
            .to_string())
    }

    /// How long [`Vm::boot`] took from starting QEMU until ssh answered.
    pub fn boot_duration(&self) -> Duration {
        self.boot_duration
    }

    /// The guest's serial console, as logged so far.
    pub fn console_log_path(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// The last `lines` lines of the serial console.
    pub fn console_tail(&self, lines: usize) -> String {
        tail(&self.console_log_path(), lines)
    }

    /// The temporary directory holding the overlay and logs; deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until ssh answers with a boot id other than `not`, checking that QEMU lives.
    fn wait_for_ssh(&self, started: Instant, not: Option<&str>) -> io::Result<String> {
        let deadline = started + self.options.boot_timeout;
        loop {
            if let Some(status) = lock(&self.qemu).try_wait()? {
                return Err(self.failure(&format!("qemu exited ({status})")));
            }
            let probe = self.ssh_command("root", "cat /proc/sys/kernel/random/boot_id");
            if let Some(out) = run_with_timeout(probe, Duration::from_secs(30))? {
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if out.status.success() && !id.is_empty() && Some(id.as_str()) != not {
                    return Ok(id);
                }
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!(
                    "ssh did not answer within {:?}",
                    self.options.boot_timeout
                )));
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    fn failure(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{} VM (ssh port {}, dir {}): {what}\n--- qemu output ---\n{}\n--- last console lines ---\n{}",
                self.init,
                self.ssh_port,
                self.dir.path().display(),
                self.qemu_log().trim(),
                self.console_tail(40)
            ),
        )
    }

    fn qemu_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        let qemu = self.qemu.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = qemu.kill();
        let _ = qemu.wait();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// Starts a shell that kills QEMU if this process dies without dropping the [`Vm`] (killed
/// by a timeout, say), so no VM keeps eating the CPU. It checks QEMU's command line names
/// `dir` before killing, in case the pid was reused.
fn watchdog(qemu: &Child, dir: &Path) -> Option<Child> {
    let script = r#"while kill -0 "$1" 2>/dev/null && [ -e "/proc/$2" ]; do sleep 2; done
grep -qF "$3" "/proc/$2/cmdline" 2>/dev/null && kill -9 "$2""#;
    Command::new("sh")
        .args(["-c", script, "blargh-vm-watchdog"])
        .arg(std::process::id().to_string())
        .arg(qemu.id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_qemu(
    image: &ImagePaths,
    options: &VmOptions,
    dir: &Path,
    overlay: &Path,
    ssh_port: u16,
    forwards: &[(u16, u16)],
) -> io::Result<Child> {
    let mut netdev = String::from("user,id=n0");
    if options.restrict {
        netdev.push_str(",restrict=on");
    }
    netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{ssh_port}-:22"));
    for (guest, host) in forwards {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    let log = fs::File::create(dir.join("qemu.log"))?;
    Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2"])
        .args(["-m", &options.memory_mib.to_string()])
        .args([
            "-nographic",
            "-nodefaults",
            "-no-user-config",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", dir.join("console.log").display()))
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", &image.cmdline])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
        .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| {
            annotate(
                e,
                "starting qemu-system-x86_64 (apt-get install qemu-system-x86)",
            )
        })
}

/// Distinct free TCP ports on 127.0.0.1 (free when asked; see the retry in `boot_with`).
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Runs `cmd` with its output captured; `None` if it had to be killed after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> io::Result<Option<Output>> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output().map(Some);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).replace('\r', "");
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
