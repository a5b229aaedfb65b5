//! Attacks on a seeded test VM, as the tests in `cargo-blargh/tests/attacks_vm.rs` make
//! them: a secret canary looked for everywhere it must not be (without ever putting it in a
//! command line of our own), what another user or the app's user can do to the agent, and
//! snapshots of owners and contents to show a planted symlink changed nothing outside
//! `data/`.
//!
//! Every probe returns what *worked*, one line each, so an empty string means "refused",
//! and a test can print everything an attack achieved instead of stopping at the first.

use std::io::{self, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::vm::Vm;

/// Where the canary lives on the VM (root's, 0600). Every search reads it with
/// `grep -f`, so the value itself is never in a command line, not even ours.
pub const CANARY_FILE: &str = "/root/attack-canary";
const SAMPLER: &str = "/root/attack-sampler.sh";
const HITS: &str = "/root/attack-hits";
const STOP: &str = "/root/attack-stop";
const SAMPLES: &str = "/root/attack-samples";

/// Runs `cmd` as root on `vm` with `input` on its stdin; returns stdout, or an error with
/// stderr when it fails.
pub fn ssh_with_stdin(vm: &Vm, cmd: &str, input: &[u8]) -> io::Result<String> {
    let mut child = vm
        .ssh_command("root", cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(input)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{cmd}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Stores `canary` in [`CANARY_FILE`] (through stdin, never a command line).
pub fn place_canary(vm: &Vm, canary: &str) -> io::Result<()> {
    ssh_with_stdin(
        vm,
        &format!("umask 077 && cat > {CANARY_FILE}"),
        canary.as_bytes(),
    )
    .map(|_| ())
}

/// A loop on the VM that reads every process's command line as often as it can and
/// records each one holding the canary. Stop it with [`CmdlineSampler::stop`].
#[derive(Debug)]
pub struct CmdlineSampler<'a> {
    vm: &'a Vm,
}

/// What the sampler saw.
#[derive(Debug)]
pub struct Sampled {
    /// How many times every command line on the VM was read.
    pub rounds: u64,
    /// The command lines that held the canary (`/proc/PID/cmdline: words`).
    pub hits: String,
}

impl<'a> CmdlineSampler<'a> {
    /// Starts the loop (root, detached from the ssh session).
    pub fn start(vm: &'a Vm) -> io::Result<CmdlineSampler<'a>> {
        let script = format!(
            "n=0\n\
             while [ ! -e {STOP} ]; do\n\
               cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -aF -f {CANARY_FILE} >> {HITS}\n\
               n=$((n+1))\n\
             done\n\
             echo $n > {SAMPLES}.tmp && mv {SAMPLES}.tmp {SAMPLES}\n"
        );
        ssh_with_stdin(
            vm,
            &format!("rm -f {STOP} {SAMPLES} {HITS}; : > {HITS}; cat > {SAMPLER}"),
            script.as_bytes(),
        )?;
        vm.ssh_ok(&format!(
            "setsid nohup sh {SAMPLER} </dev/null >/dev/null 2>&1 &"
        ))?;
        Ok(CmdlineSampler { vm })
    }

    /// Ends the loop and returns what it saw.
    pub fn stop(self) -> io::Result<Sampled> {
        self.vm.ssh_ok(&format!("touch {STOP}"))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(n) = self.vm.ssh_ok(&format!("cat {SAMPLES}")) {
                let hits = self.vm.ssh_ok(&format!("cat {HITS}"))?;
                return Ok(Sampled {
                    rounds: n.trim().parse().unwrap_or(0),
                    hits,
                });
            }
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other("the command-line sampler did not stop"));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// Files under the places a leak would land (state, logs, runtime, temporary, configuration,
/// homes) whose content holds the canary, one path a line, sorted. The canary's own file
/// and the sampler's are left out.
pub fn files_holding_canary(vm: &Vm) -> io::Result<String> {
    vm.ssh_ok(&format!(
        "grep -rlaF -f {CANARY_FILE} --exclude='attack-*' \
         /var/lib/blargh /var/log /etc /tmp /var/tmp /run /home /root /srv /opt 2>/dev/null | sort; true"
    ))
}

/// Processes whose environment holds the canary, as `user comm` lines (one per process).
pub fn environs_holding_canary(vm: &Vm) -> io::Result<String> {
    vm.ssh_ok(&format!(
        "for p in /proc/[0-9]*; do \
           grep -qaF -f {CANARY_FILE} $p/environ 2>/dev/null && echo \"$(stat -c %U $p) $(cat $p/comm)\"; \
         done; true"
    ))
}

/// How many lines of the whole journal hold the canary.
pub fn journal_lines_holding_canary(vm: &Vm) -> io::Result<usize> {
    let n = vm.ssh_ok(&format!(
        "journalctl --no-pager -o cat | grep -caF -f {CANARY_FILE}; true"
    ))?;
    Ok(n.trim().parse().unwrap_or(0))
}

/// As `user`, against `pid`: read its environment, ptrace-attach to it (raw syscall from
/// perl, part of every Debian), then send it SIGTERM. Returns one line per attempt that
/// worked (`environ`, `ptrace`, `signal`); empty when all were refused.
pub fn reach_process_as(vm: &Vm, user: &str, pid: u32) -> io::Result<String> {
    // PTRACE_ATTACH = 16, SYS_ptrace = 101 on x86_64. A tracer that exits detaches.
    vm.ssh_ok(&format!(
        "runuser -u {user} -- sh -c '\
           cat /proc/{pid}/environ >/dev/null 2>&1 && echo environ; \
           perl -e \"exit(syscall(101, 16, {pid}, 0, 0) == 0 ? 0 : 1)\" && echo ptrace; \
           kill -TERM {pid} 2>/dev/null && echo signal; \
           true'"
    ))
}

/// Owner, group and mode of every file on the VM's root file system outside the places
/// that change by themselves (or by the agent: the app's root is checked apart), and the
/// sha256 of `watched` files: a snapshot to compare before and after an attack.
pub fn snapshot(vm: &Vm, watched: &[&str]) -> io::Result<String> {
    let prune = [
        "/proc",
        "/sys",
        "/dev",
        "/run",
        "/tmp",
        "/var/tmp",
        "/var/log",
        "/var/cache",
        "/var/lib/systemd",
        "/var/lib/private",
        "/var/lib/blargh/*/*",
        "/root/attack-*",
    ]
    .iter()
    .map(|p| format!("-path '{p}'"))
    .collect::<Vec<_>>()
    .join(" -o ");
    vm.ssh_ok(&format!(
        "find / -xdev \\( {prune} \\) -prune -o -printf '%p %u:%g %m\\n' | sort; sha256sum {} 2>&1; true",
        watched.join(" ")
    ))
}

/// Lines of `after` that are not in `before` (a changed owner, mode or digest shows as its
/// new line; a removed file is not listed).
pub fn changed_lines(before: &str, after: &str) -> String {
    let old: std::collections::HashSet<&str> = before.lines().collect();
    after
        .lines()
        .filter(|l| !old.contains(l))
        .map(|l| format!("{l}\n"))
        .collect()
}
