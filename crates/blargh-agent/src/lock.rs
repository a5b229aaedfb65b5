//! The deploy lock: one deploy at a time per host, with who holds it, since when and why.
//! A lock left behind by a crashed deploy expires; `force` takes it anyway. Kept in
//! `<root>/lock.json` so it survives agent restarts, and written durably so it survives a
//! power cut. A lock held by a running command (a deploy or an activation: its holder
//! ends in `, pid N)`) is tied to the boot it was taken in: that command's connection to
//! this host cannot outlive a reboot, so after one its lock counts as free, and a power
//! cut mid-deploy does not refuse every deploy until the lock expires (15 minutes by
//! default). A lock taken by hand (`cargo blargh lock acquire`) holds across reboots.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use blargh_proto::control::{LockInfo, LockRequest};
use serde::{Deserialize, Serialize};

/// The lock file of one app.
#[derive(Debug)]
pub struct DeployLock {
    path: PathBuf,
    guard: Mutex<()>,
    clock: fn() -> SystemTime,
    boot: fn() -> Option<String>,
}

/// The lock as stored in its file: the lock, and the boot it was taken in.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    info: LockInfo,
    /// The kernel's boot id when the lock was written (absent in files from before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot: Option<String>,
}

/// The kernel's id of the running boot, new at every boot.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether `holder` names a running command (`… (deploy, pid N)`, `… (activate, pid N)`),
/// whose lock cannot outlive the boot it was taken in.
pub fn held_by_a_command(holder: &str) -> bool {
    holder
        .strip_suffix(')')
        .and_then(|h| h.rsplit_once(", pid "))
        .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    unix_secs(SystemTime::now())
}

/// Seconds from the Unix epoch to `t` (0 before it).
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `req` overrides whoever holds the lock (and so a lock file that cannot be read).
fn forced(req: &LockRequest) -> bool {
    match req {
        LockRequest::Acquire { force, .. } | LockRequest::Release { force, .. } => *force,
        LockRequest::Status => false,
    }
}

/// How far a lock's `since` may lie ahead of the clock before the clock counts as having
/// been set back since the lock was taken (small steps of NTP do not count).
pub const CLOCK_SLACK_S: u64 = 60;

/// A lock taken before the clock was set back would hold for as long as the clock went
/// back on top of its expiry (hours, after a server's wrong clock is corrected: a 60 s
/// lock taken at a clock 6 hours ahead held 6 hours). When `held.since` lies more than
/// [`CLOCK_SLACK_S`] ahead of `now`, the lock is re-anchored at `now` with its whole time
/// to live (`expires_unix - since`), so it holds at most that long from when the agent
/// notices. Any other lock (or one whose `since` does not parse) is returned unchanged.
pub fn reanchor(held: LockInfo, now: SystemTime) -> LockInfo {
    let Ok(since) = humantime::parse_rfc3339(&held.since) else {
        return held;
    };
    let (since_s, now_s) = (unix_secs(since), unix_secs(now));
    if since_s <= now_s + CLOCK_SLACK_S {
        return held;
    }
    LockInfo {
        since: humantime::format_rfc3339_millis(now).to_string(),
        expires_unix: now_s + held.expires_unix.saturating_sub(since_s),
        ..held
    }
}

/// Decides a lock request against the current holder. Pure: `Ok(new state)` or the refusal.
pub fn decide(
    held: Option<LockInfo>,
    req: &LockRequest,
    now: u64,
    now_rfc3339: &str,
) -> Result<Option<LockInfo>, String> {
    let held = held.filter(|h| h.expires_unix > now);
    match req {
        LockRequest::Status => Ok(held),
        LockRequest::Acquire {
            holder,
            message,
            ttl_s,
            force,
        } => {
            if let Some(h) = &held
                && h.holder != *holder
                && !force
            {
                return Err(format!(
                    "the deploy lock is held by {} since {}: \"{}\" (it expires in {} s). \
                     Wait, ask them, or take it with --force if their deploy is dead",
                    h.holder,
                    h.since,
                    h.message,
                    h.expires_unix.saturating_sub(now)
                ));
            }
            Ok(Some(LockInfo {
                holder: holder.clone(),
                message: message.clone(),
                since: now_rfc3339.to_string(),
                expires_unix: now + ttl_s,
            }))
        }
        LockRequest::Release { holder, force } => match held {
            Some(h) if h.holder != *holder && !force => Err(format!(
                "the deploy lock is held by {}, not {holder}; release it with --force if you are sure",
                h.holder
            )),
            _ => Ok(None),
        },
    }
}

/// Why a change (`what`: "activate", "env set", …) asked for by `claim` is refused while
/// `held` is the deploy lock, or `None` when it may go ahead: the lock is free or expired,
/// or `claim` is its holder (a deploy's own steps pass its lock).
pub fn refusal(
    held: Option<&LockInfo>,
    claim: Option<&str>,
    now: u64,
    what: &str,
) -> Option<String> {
    let h = held.filter(|h| h.expires_unix > now)?;
    if claim == Some(h.holder.as_str()) {
        return None;
    }
    Some(format!(
        "{what} refused: the deploy lock is held by {} since {}: \"{}\" (it expires in {} s). \
         Wait until they release it, ask them, or, if their deploy is dead, release it with \
         `cargo blargh lock release --force`",
        h.holder,
        h.since,
        h.message,
        h.expires_unix.saturating_sub(now)
    ))
}

impl DeployLock {
    /// The lock stored at `path`, on the system clock.
    pub fn new(path: PathBuf) -> Self {
        DeployLock::with_clock(path, SystemTime::now)
    }

    /// The lock stored at `path`, reading the time from `clock` (tests step it past a
    /// lock's expiry).
    pub fn with_clock(path: PathBuf, clock: fn() -> SystemTime) -> Self {
        DeployLock {
            path,
            guard: Mutex::new(()),
            clock,
            boot: boot_id,
        }
    }

    /// This lock, with the boot id read from `boot` (tests pretend to reboot).
    pub fn with_boot(self, boot: fn() -> Option<String>) -> Self {
        DeployLock { boot, ..self }
    }

    /// Applies `req`; returns the lock afterwards, or why it was refused.
    ///
    /// A lock file that exists but cannot be parsed is not taken for "no lock": only a
    /// forced request may replace it.
    pub fn apply(&self, req: &LockRequest) -> Result<Option<LockInfo>, String> {
        let _g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        let mut corrupt = false;
        let held = match self.read() {
            Ok(held) => held,
            Err(e) if e.kind() == io::ErrorKind::InvalidData && forced(req) => {
                corrupt = true;
                None
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(format!(
                    "the deploy lock file {} is corrupt ({e}); nobody can tell who holds it. \
                     Take it with --force, or release it with --force, once you know no \
                     deploy is running",
                    self.path.display()
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let now = (self.clock)();
        let stored = held.clone();
        let held = held.map(|h| reanchor(h, now));
        // Kept re-anchored even when the request is refused: the lock's time runs from
        // the first look after the clock went back, not from every look.
        if held != stored && !corrupt {
            self.write(held.as_ref())
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        }
        let next = decide(
            held.clone(),
            req,
            unix_secs(now),
            &humantime::format_rfc3339_millis(now).to_string(),
        )?;
        if next != held || corrupt {
            self.write(next.as_ref())
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        }
        Ok(next)
    }

    /// The lock in the file: `None` when there is no file; an `InvalidData` error when its
    /// content is not a lock.
    ///
    /// A lock held by a command ([`held_by_a_command`]) that was taken in another boot
    /// than this one reads as `None`: its holder is gone.
    fn read(&self) -> io::Result<Option<LockInfo>> {
        let stored: Stored = match std::fs::read_to_string(&self.path) {
            Ok(t) => serde_json::from_str(&t)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let stale = held_by_a_command(&stored.info.holder)
            && stored.boot.is_some()
            && stored.boot != (self.boot)();
        Ok((!stale).then_some(stored.info))
    }

    /// Stores the lock durably (see [`crate::durable`]): a lock the agent granted is still
    /// held after a power cut, and one it released stays released.
    fn write(&self, info: Option<&LockInfo>) -> io::Result<()> {
        match info {
            None => crate::durable::remove(&self.path),
            Some(info) => {
                let stored = Stored {
                    info: info.clone(),
                    boot: (self.boot)(),
                };
                crate::durable::replace(
                    &self.path,
                    &self.path.with_extension("json.new"),
                    &serde_json::to_vec(&stored).expect("lock serializes"),
                    None,
                    false,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquire(holder: &str, force: bool) -> LockRequest {
        LockRequest::Acquire {
            holder: holder.into(),
            message: format!("deploy by {holder}"),
            ttl_s: 60,
            force,
        }
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_name_and_message() {
        let held = decide(None, &acquire("ana@laptop", false), 100, "t0").unwrap();
        let err = decide(held.clone(), &acquire("bo@ci", false), 110, "t1").unwrap_err();
        assert!(err.contains("held by ana@laptop since t0"), "{err}");
        assert!(err.contains("\"deploy by ana@laptop\""), "{err}");
        assert!(err.contains("expires in 50 s"), "{err}");
        // The holder may re-take it (refresh), force takes it from anyone.
        assert!(decide(held.clone(), &acquire("ana@laptop", false), 110, "t1").is_ok());
        let forced = decide(held, &acquire("bo@ci", true), 110, "t1")
            .unwrap()
            .unwrap();
        assert_eq!(forced.holder, "bo@ci");
    }

    #[test]
    fn changes_by_anyone_but_the_holder_are_refused_while_the_lock_holds() {
        let held = decide(
            None,
            &acquire("ana@laptop (deploy, pid 7)", false),
            100,
            "t0",
        )
        .unwrap()
        .unwrap();
        let why = refusal(Some(&held), Some("bo@ci"), 110, "activate").unwrap();
        assert!(why.starts_with("activate refused"), "{why}");
        assert!(
            why.contains("held by ana@laptop (deploy, pid 7) since t0") && why.contains("50 s"),
            "{why}"
        );
        assert!(
            refusal(Some(&held), None, 110, "rollback").is_some(),
            "no claim"
        );
        assert_eq!(
            refusal(
                Some(&held),
                Some("ana@laptop (deploy, pid 7)"),
                110,
                "activate"
            ),
            None,
            "the holder passes"
        );
        assert_eq!(
            refusal(Some(&held), Some("bo@ci"), 160, "activate"),
            None,
            "expired"
        );
        assert_eq!(refusal(None, Some("bo@ci"), 110, "activate"), None, "free");
    }

    #[test]
    fn an_expired_lock_counts_as_free() {
        let held = decide(None, &acquire("ana@laptop", false), 100, "t0").unwrap();
        assert!(decide(held.clone(), &acquire("bo@ci", false), 161, "t1").is_ok());
        assert_eq!(decide(held, &LockRequest::Status, 161, "t1").unwrap(), None);
    }

    #[test]
    fn only_the_holder_releases_unless_forced() {
        let held = decide(None, &acquire("ana@laptop", false), 100, "t0").unwrap();
        let other = LockRequest::Release {
            holder: "bo@ci".into(),
            force: false,
        };
        assert!(decide(held.clone(), &other, 101, "t").is_err());
        let own = LockRequest::Release {
            holder: "ana@laptop".into(),
            force: false,
        };
        assert_eq!(decide(held, &own, 101, "t").unwrap(), None);
    }

    thread_local! {
        static NOW: std::cell::Cell<u64> = const { std::cell::Cell::new(1_795_000_000) };
    }

    /// A clock the test moves by hand (per test thread).
    fn test_clock() -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(NOW.with(|n| n.get()))
    }

    fn set_now(secs: u64) {
        NOW.with(|n| n.set(secs));
    }

    #[test]
    fn unix_now_is_the_system_clock() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let now = unix_now();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
        assert_eq!(unix_secs(UNIX_EPOCH - std::time::Duration::from_secs(5)), 0);
    }

    #[test]
    fn a_stored_lock_expires_by_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DeployLock::with_clock(dir.path().join("lock.json"), test_clock);
        set_now(1_795_000_000);
        let held = lock.apply(&acquire("ana@laptop", false)).unwrap().unwrap();
        assert_eq!(held.expires_unix, 1_795_000_060);
        assert_eq!(held.since, "2026-11-18T11:06:40.000Z");
        set_now(1_795_000_059);
        let err = lock.apply(&acquire("bo@ci", false)).unwrap_err();
        assert!(err.contains("expires in 1 s"), "{err}");
        set_now(1_795_000_060);
        assert_eq!(lock.apply(&LockRequest::Status).unwrap(), None);
        let taken = lock.apply(&acquire("bo@ci", false)).unwrap().unwrap();
        assert_eq!(taken.holder, "bo@ci");
    }

    #[test]
    fn a_lock_taken_before_the_clock_went_back_holds_no_longer_than_its_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DeployLock::with_clock(dir.path().join("lock.json"), test_clock);
        // Taken for 60 s at a clock 6 hours ahead; then the clock is corrected.
        set_now(1_795_000_000 + 6 * 3600);
        lock.apply(&acquire("ana@laptop", false)).unwrap();
        set_now(1_795_000_000);
        let err = lock.apply(&acquire("bo@ci", false)).unwrap_err();
        assert!(err.contains("expires in 60 s"), "{err}");
        // Re-anchored in the file: it does not start over at every look.
        set_now(1_795_000_030);
        let err = lock.apply(&acquire("bo@ci", false)).unwrap_err();
        assert!(err.contains("expires in 30 s"), "{err}");
        set_now(1_795_000_060);
        assert_eq!(lock.apply(&LockRequest::Status).unwrap(), None);
        assert!(lock.apply(&acquire("bo@ci", false)).is_ok());
        // A clock a little behind the lock's start (NTP) changes nothing.
        let held = decide(None, &acquire("ana@laptop", false), 100, "t0").unwrap();
        let mut info = held.unwrap();
        info.since = "2026-11-18T11:06:40.000Z".into();
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000 - CLOCK_SLACK_S);
        assert_eq!(reanchor(info.clone(), at), info);
    }

    #[test]
    fn the_system_clock_expires_locks_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.json");
        // A lock that expired a minute ago, and one that expires in an hour.
        let stale = LockInfo {
            holder: "ana@laptop".into(),
            message: "crashed deploy".into(),
            since: "earlier".into(),
            expires_unix: unix_now() - 60,
        };
        std::fs::write(&path, serde_json::to_vec(&stale).unwrap()).unwrap();
        let lock = DeployLock::new(path.clone());
        assert_eq!(lock.apply(&LockRequest::Status).unwrap(), None);
        let fresh = LockInfo {
            expires_unix: unix_now() + 3600,
            ..stale
        };
        std::fs::write(&path, serde_json::to_vec(&fresh).unwrap()).unwrap();
        assert_eq!(lock.apply(&LockRequest::Status).unwrap(), Some(fresh));
    }

    #[test]
    fn a_corrupt_lock_file_is_not_a_free_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.json");
        std::fs::write(&path, "{\"holder\": \"ana@lap").unwrap();
        let lock = DeployLock::new(path.clone());
        let err = lock.apply(&acquire("bo@ci", false)).unwrap_err();
        assert!(
            err.contains("is corrupt") && err.contains("--force"),
            "{err}"
        );
        assert!(lock.apply(&LockRequest::Status).is_err());
        let not_forced = LockRequest::Release {
            holder: "bo@ci".into(),
            force: false,
        };
        assert!(lock.apply(&not_forced).is_err());
        // Forcing replaces it.
        let taken = lock.apply(&acquire("bo@ci", true)).unwrap().unwrap();
        assert_eq!(taken.holder, "bo@ci");
        std::fs::write(&path, "garbage").unwrap();
        let forced = LockRequest::Release {
            holder: "bo@ci".into(),
            force: true,
        };
        assert_eq!(lock.apply(&forced).unwrap(), None);
        assert!(!path.exists());
    }

    #[test]
    fn an_unreadable_lock_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading it fails with something other
        // than "not found".
        let path = dir.path().join("lock.json");
        std::fs::create_dir(&path).unwrap();
        let lock = DeployLock::new(path);
        let err = lock.apply(&acquire("bo@ci", true)).unwrap_err();
        assert!(err.starts_with("cannot read "), "{err}");
    }

    #[test]
    fn a_lock_that_cannot_be_removed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: removing it as a file fails.
        let path = dir.path().join("lock.json");
        std::fs::create_dir(&path).unwrap();
        let lock = DeployLock::new(path.clone());
        assert!(lock.write(None).is_err());
        assert!(path.exists());
    }

    #[test]
    fn releasing_a_free_lock_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DeployLock::new(dir.path().join("lock.json"));
        let own = LockRequest::Release {
            holder: "ana@laptop".into(),
            force: false,
        };
        assert_eq!(lock.apply(&own).unwrap(), None);
        assert!(lock.write(None).is_ok(), "removing a missing file");
    }

    #[test]
    fn the_lock_survives_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DeployLock::new(dir.path().join("lock.json"));
        lock.apply(&acquire("ana@laptop", false)).unwrap();
        let again = DeployLock::new(dir.path().join("lock.json"));
        assert!(again.apply(&acquire("bo@ci", false)).is_err());
        again
            .apply(&LockRequest::Release {
                holder: "ana@laptop".into(),
                force: false,
            })
            .unwrap();
        assert!(!dir.path().join("lock.json").exists());
    }

    fn boot_one() -> Option<String> {
        Some("boot-one".into())
    }

    fn boot_two() -> Option<String> {
        Some("boot-two".into())
    }

    #[test]
    fn a_command_s_lock_does_not_outlive_the_boot_it_was_taken_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.json");
        let deploy = "ana@laptop (deploy, pid 4242)";
        DeployLock::new(path.clone())
            .with_boot(boot_one)
            .apply(&acquire(deploy, false))
            .unwrap();
        // The same boot: held, refusing others.
        let same = DeployLock::new(path.clone()).with_boot(boot_one);
        assert!(same.apply(&acquire("bo@ci", false)).is_err());
        // After a reboot (a power cut mid-deploy): that deploy is gone, its lock is free.
        let next = DeployLock::new(path.clone()).with_boot(boot_two);
        assert_eq!(next.apply(&LockRequest::Status).unwrap(), None);
        let taken = next
            .apply(&acquire("bo@ci (deploy, pid 7)", false))
            .unwrap();
        assert_eq!(taken.unwrap().holder, "bo@ci (deploy, pid 7)");
    }

    #[test]
    fn a_lock_taken_by_hand_or_before_boots_were_recorded_survives_a_reboot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.json");
        DeployLock::new(path.clone())
            .with_boot(boot_one)
            .apply(&acquire("ana@laptop", false))
            .unwrap();
        let next = DeployLock::new(path.clone()).with_boot(boot_two);
        assert!(
            next.apply(&acquire("bo@ci", false)).is_err(),
            "a person's lock holds"
        );
        // A file from an agent that recorded no boot: nobody can tell, so it holds.
        std::fs::write(
            &path,
            r#"{"holder":"ana@laptop (deploy, pid 1)","message":"m","since":"2026-12-01T00:00:00Z","expires_unix":99999999999}"#,
        )
        .unwrap();
        assert!(next.apply(&acquire("bo@ci", false)).is_err());
    }

    #[test]
    fn commands_are_told_from_people_by_their_pid() {
        assert!(held_by_a_command("ana@laptop (deploy, pid 4242)"));
        assert!(held_by_a_command("ci (activate, pid 7)"));
        assert!(!held_by_a_command("ana@laptop"));
        assert!(!held_by_a_command("ana (pid )"));
        assert!(!held_by_a_command("ana (deploy, pid 12x)"));
    }

    #[test]
    fn the_lock_is_written_and_removed_durably() {
        use crate::durable::Op;
        use crate::durable::journal::{Source, assert_durable_rename, under};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.json");
        let lock = DeployLock::new(path.clone());
        lock.apply(&acquire("ana@laptop", false)).unwrap();
        assert_durable_rename(&under(dir.path()), &path, Source::File);
        lock.apply(&LockRequest::Release {
            holder: "ana@laptop".into(),
            force: false,
        })
        .unwrap();
        assert_eq!(
            under(dir.path()).last(),
            Some(&Op::SyncDir(dir.path().to_path_buf())),
            "the removal is flushed"
        );
    }
}
