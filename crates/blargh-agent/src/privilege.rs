//! Who runs with which privileges: the root agent's drop to its own user keeping exactly
//! `CAP_SETUID`, `CAP_SETGID` and `CAP_KILL` (OpenRC: bind first, then drop), and the
//! trampoline's drop to the app's user with no capability at all.
//!
//! Capabilities are per thread: everything here runs before any other thread exists (the
//! agent calls [`drop_to_agent_user`] before it builds its runtime; the trampoline is
//! single-threaded).

use std::io;

/// `CAP_KILL`: signal the app, which runs under another uid.
pub const CAP_KILL: u32 = 5;
/// `CAP_SETGID`: start the app under its group (in the trampoline).
pub const CAP_SETGID: u32 = 6;
/// `CAP_SETUID`: start the app under its user (in the trampoline).
pub const CAP_SETUID: u32 = 7;
/// Everything the agent keeps; systemd's unit grants the same set
/// (`AmbientCapabilities=`, `CapabilityBoundingSet=`).
pub const AGENT_CAPS: [u32; 3] = [CAP_SETUID, CAP_SETGID, CAP_KILL];

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// A thread's capability sets, as 64-bit masks (bit n is capability n).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    /// What it may use now.
    pub effective: u64,
    /// What it may make effective.
    pub permitted: u64,
    /// What survives an exec of a file granting it.
    pub inheritable: u64,
}

impl CapSets {
    /// The mask of `caps`.
    pub fn mask(caps: &[u32]) -> u64 {
        caps.iter().fold(0, |m, c| m | (1u64 << c))
    }
}

/// The calling thread's capability sets.
pub fn current() -> io::Result<CapSets> {
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData words for version 3, which `data` holds.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok(CapSets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

fn set(sets: CapSets) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let split = |m: u64| (m as u32, (m >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset reads two CapData words for version 3.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these prctl options take integer arguments only.
    let r = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True when this process may start the app under another user: it is root, or holds
/// `CAP_SETUID` and `CAP_SETGID` (the agent user under its unit, or after
/// [`drop_to_agent_user`]).
pub fn can_switch_users() -> bool {
    nix::unistd::geteuid().is_root()
        || current().is_ok_and(|c| {
            let need = CapSets::mask(&[CAP_SETUID, CAP_SETGID]);
            c.effective & need == need
        })
}

/// The supplementary groups of user `name` with primary group `gid`, as `initgroups` would
/// set them (the agent user is a member of the app's group, for the notify sockets).
pub fn groups_of(name: &str, gid: u32) -> io::Result<Vec<nix::unistd::Gid>> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::other("user name has a NUL"))?;
    nix::unistd::getgrouplist(&c, nix::unistd::Gid::from_raw(gid)).map_err(io::Error::from)
}

/// From root to `uid`/`gid`/`groups`, keeping exactly [`AGENT_CAPS`] (effective,
/// permitted, inheritable and ambient, so that the trampoline it starts holds them too) and
/// nothing else, not even in the bounding set. Call before any other thread starts.
pub fn drop_to_agent_user(uid: u32, gid: u32, groups: &[nix::unistd::Gid]) -> Result<(), String> {
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    if uid == 0 {
        return Err("the agent user may not be root".into());
    }
    let keep = CapSets::mask(&AGENT_CAPS);
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if keep & (1 << cap) == 0 {
            prctl(libc::PR_CAPBSET_DROP, cap.into(), 0)
                .map_err(|e| format!("cannot drop capability {cap} from the bounding set: {e}"))?;
        }
    }
    prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
    setgroups(groups).map_err(|e| format!("setgroups: {e}"))?;
    let g = Gid::from_raw(gid);
    setresgid(g, g, g).map_err(|e| format!("setresgid {gid}: {e}"))?;
    let u = Uid::from_raw(uid);
    setresuid(u, u, u).map_err(|e| format!("setresuid {uid}: {e}"))?;
    set(CapSets {
        effective: keep,
        permitted: keep,
        inheritable: keep,
    })
    .map_err(|e| format!("capset: {e}"))?;
    for cap in AGENT_CAPS {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap.into(),
        )
        .map_err(|e| format!("cannot raise capability {cap} into the ambient set: {e}"))?;
    }
    prctl(libc::PR_SET_KEEPCAPS, 0, 0).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
    // (No "can it become root again" probe here: CAP_SETUID can, by definition. What it
    // holds is checked instead.)
    let ids = nix::unistd::getresuid().map_err(|e| format!("getresuid: {e}"))?;
    let caps = current().map_err(|e| format!("capget: {e}"))?;
    if [ids.real, ids.effective, ids.saved] != [u; 3]
        || caps.effective != keep
        || caps.permitted != keep
    {
        return Err(format!(
            "after dropping to uid {uid}: uids {ids:?}, capabilities {caps:?}"
        ));
    }
    Ok(())
}

/// Leaves the calling process with no capability in any set (ambient included) and with
/// `no_new_privs`, so that nothing it execs gains one either.
pub fn clear_all() -> Result<(), String> {
    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    ) {
        // Kernels before 4.3 have no ambient set, so there is nothing to clear.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
            return Err(format!("cannot clear the ambient capabilities: {e}"));
        }
        _ => {}
    }
    set(CapSets::default()).map_err(|e| format!("cannot clear the capabilities: {e}"))?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))?;
    let left = current().map_err(|e| format!("capget: {e}"))?;
    if left != CapSets::default() {
        return Err(format!("capabilities left after clearing them: {left:?}"));
    }
    Ok(())
}

/// The trampoline's drop: to `uid`, `gid` (and no other group), then [`clear_all`]. From a
/// root agent the uid change clears the capabilities itself; from the agent user (non-zero
/// uid to non-zero uid) it does not, which is why they are cleared explicitly.
pub fn become_app(uid: u32, gid: u32) -> Result<(), String> {
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    if uid == 0 {
        return Err("the app never runs as root".into());
    }
    let g = Gid::from_raw(gid);
    setgroups(&[g]).map_err(|e| format!("setgroups: {e}"))?;
    setresgid(g, g, g).map_err(|e| format!("setresgid: {e}"))?;
    let u = Uid::from_raw(uid);
    setresuid(u, u, u).map_err(|e| format!("setresuid: {e}"))?;
    clear_all()?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err("could regain root after dropping it".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_put_each_capability_on_its_bit() {
        assert_eq!(CapSets::mask(&AGENT_CAPS), 0xe0);
        assert_eq!(CapSets::mask(&[]), 0);
    }

    /// Runs `f` in a forked child (capabilities and uids are per process), and returns
    /// what it wrote to the pipe.
    fn in_child(f: impl FnOnce() -> String) -> String {
        use std::io::{Read, Write};
        let (mut r, w) = std::io::pipe().unwrap();
        // SAFETY: the child only calls async-signal-tolerant code in practice (syscalls and
        // a formatted write) and exits without returning into the test harness.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let out = f();
                let mut w = w;
                let _ = w.write_all(out.as_bytes());
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let mut s = String::new();
                r.read_to_string(&mut s).unwrap();
                nix::sys::wait::waitpid(child, None).unwrap();
                s
            }
        }
    }

    fn nobody() -> Option<(u32, u32)> {
        let u = nix::unistd::User::from_name("nobody").ok()??;
        Some((u.uid.as_raw(), u.gid.as_raw()))
    }

    #[test]
    fn the_agent_user_keeps_exactly_setuid_setgid_kill_and_the_app_nothing() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to change users");
            return;
        }
        let (uid, gid) = nobody().expect("a nobody user");
        let out = in_child(|| {
            if let Err(e) = drop_to_agent_user(uid, gid, &[nix::unistd::Gid::from_raw(gid)]) {
                return format!("drop: {e}");
            }
            let agent = current().unwrap();
            let ambient: Vec<u32> = AGENT_CAPS
                .iter()
                .copied()
                .filter(|c| {
                    // SAFETY: integer-only prctl.
                    let set = unsafe {
                        libc::prctl(
                            libc::PR_CAP_AMBIENT,
                            libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                            *c as libc::c_ulong,
                            0 as libc::c_ulong,
                            0 as libc::c_ulong,
                        )
                    };
                    set == 1
                })
                .collect();
            let switch = can_switch_users();
            // The agent user may become another unprivileged user (the app) and then has
            // nothing left.
            let app = become_app(uid, gid);
            format!(
                "agent {:x} {:x} {:x} ambient {ambient:?} switch {switch}; app {app:?} {:?} uid {}",
                agent.effective,
                agent.permitted,
                agent.inheritable,
                current().unwrap(),
                nix::unistd::getuid()
            )
        });
        assert_eq!(
            out,
            format!(
                "agent e0 e0 e0 ambient [7, 6, 5] switch true; app Ok(()) {:?} uid {uid}",
                CapSets::default()
            )
        );
    }
}
