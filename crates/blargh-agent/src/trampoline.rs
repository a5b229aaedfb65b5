//! The exec trampoline: the agent starts its own executable in this mode with the sockets
//! already on fd 3…; it drops to the app's user, sets `LISTEN_PID` to its own pid (which
//! exec keeps), leaves it no capability ([`crate::privilege::become_app`]), and execs the
//! release. This is how `LISTEN_PID` can be right without running code between fork and
//! exec in the threaded agent.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// First argument that selects trampoline mode. Must be checked before anything else in
/// `main` runs (in particular before any thread starts).
pub const ARG: &str = "__blargh-exec-release";
/// Uid to switch to before exec (set by the agent when it runs as root).
pub const UID_VAR: &str = "BLARGH_TRAMPOLINE_UID";
/// Gid to switch to before exec.
pub const GID_VAR: &str = "BLARGH_TRAMPOLINE_GID";
/// Working directory to enter once running as the app's user: `data/` (the app's, 0700, so
/// the agent's user could not enter it before the switch) for a single binary, the
/// release's `tree/` (read-only to the app) for a directory release.
pub const DIR_VAR: &str = "BLARGH_TRAMPOLINE_DIR";

/// What the trampoline writes to the app's `/proc/self/oom_score_adj` before exec: the
/// kernel's OOM killer then picks the app before the agent (whose score stays 0) when
/// their cgroup (on systemd, the agent's service) or the host runs out of memory. Raising
/// one's own score needs no privilege; the app inherits it and cannot lower it again
/// without `CAP_SYS_RESOURCE`.
pub const APP_OOM_SCORE_ADJ: i32 = 500;

/// True when `args` (as from `std::env::args_os()`) select trampoline mode.
pub fn is_trampoline(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a == ARG)
}

/// Runs the trampoline: `<exe> __blargh-exec-release <binary> <argv0> [args…]`. Never returns;
/// on failure prints why and exits with status 127.
///
/// Call only from a single-threaded process (the top of `main`).
pub fn exec(args: &[OsString]) -> ! {
    let (Some(binary), Some(argv0)) = (args.get(2), args.get(3)) else {
        eprintln!("blargh trampoline: usage: {ARG} BINARY ARGV0");
        std::process::exit(127);
    };
    let ids = (std::env::var(UID_VAR).ok(), std::env::var(GID_VAR).ok());
    let dir = std::env::var_os(DIR_VAR);
    // SAFETY: the trampoline is single-threaded (checked by the caller contract: this runs
    // first thing in main), so changing the environment cannot race.
    unsafe {
        std::env::remove_var(UID_VAR);
        std::env::remove_var(GID_VAR);
        std::env::remove_var(DIR_VAR);
        std::env::set_var(
            blargh_proto::env::LISTEN_PID,
            std::process::id().to_string(),
        );
        if std::env::var_os(blargh_proto::env::WATCHDOG_USEC).is_some() {
            std::env::set_var(
                blargh_proto::env::WATCHDOG_PID,
                std::process::id().to_string(),
            );
        }
    }
    // Before the switch: once the credentials change the process is no longer dumpable
    // and its /proc files belong to root, so the app's user could not write this one.
    if let Err(e) = raise_oom_score_adj(APP_OOM_SCORE_ADJ) {
        eprintln!(
            "blargh trampoline: cannot set oom_score_adj to {APP_OOM_SCORE_ADJ} (the OOM \
             killer may pick the agent before the app): {e}"
        );
    }
    // The app gets its own user and no capability at all, whatever the agent holds (the
    // agent user's CAP_SETUID/CAP_SETGID/CAP_KILL are in its ambient set, which an exec
    // would otherwise hand on).
    let dropped = match ids {
        (Some(uid), Some(gid)) => parse_ids(&uid, &gid)
            .and_then(|(u, g)| crate::privilege::become_app(u, g))
            .map_err(|e| format!("cannot switch to uid {uid} gid {gid}: {e}")),
        _ => crate::privilege::clear_all(),
    };
    if let Err(e) = dropped {
        eprintln!("blargh trampoline: {e}");
        std::process::exit(127);
    }
    if let Some(dir) = dir
        && let Err(e) = std::env::set_current_dir(&dir)
    {
        eprintln!(
            "blargh trampoline: cannot enter {} as the app's user: {e}",
            std::path::Path::new(&dir).display()
        );
        std::process::exit(127);
    }
    // If the agent dies, the app must not outlive it holding the sockets: the next agent
    // could not bind them. Set after dropping privileges (a credential change clears it).
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM) {
        eprintln!("blargh trampoline: cannot set the parent-death signal: {e}");
    }
    let err = std::process::Command::new(binary)
        .arg0(argv0)
        .args(&args[4..])
        .exec();
    eprintln!(
        "blargh trampoline: cannot execute {}: {err}",
        std::path::Path::new(binary).display()
    );
    std::process::exit(127);
}

/// Writes `adj` to `/proc/self/oom_score_adj` unless the score is already higher (an agent
/// started with a higher score keeps it for its app).
fn raise_oom_score_adj(adj: i32) -> std::io::Result<()> {
    const PATH: &str = "/proc/self/oom_score_adj";
    let now: i32 = std::fs::read_to_string(PATH)?.trim().parse().unwrap_or(0);
    if now >= adj {
        return Ok(());
    }
    std::fs::write(PATH, adj.to_string())
}

fn parse_ids(uid: &str, gid: &str) -> Result<(u32, u32), String> {
    let uid: u32 = uid.parse().map_err(|_| format!("bad uid {uid:?}"))?;
    let gid: u32 = gid.parse().map_err(|_| format!("bad gid {gid:?}"))?;
    Ok((uid, gid))
}
