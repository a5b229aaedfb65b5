//! The deploy lock: one deploy at a time per host, with who holds it, since when and why.
//! A lock left behind by a crashed deploy expires; `force` takes it anyway. Kept in
//! `<root>/lock.json` so it survives agent restarts.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use blargh_proto::control::{LockInfo, LockRequest};

/// The lock file of one app.
#[derive(Debug)]
pub struct DeployLock {
    path: PathBuf,
    guard: Mutex<()>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

impl DeployLock {
    /// The lock stored at `path`.
    pub fn new(path: PathBuf) -> Self {
        DeployLock {
            path,
            guard: Mutex::new(()),
        }
    }

    /// Applies `req`; returns the lock afterwards, or why it was refused.
    pub fn apply(&self, req: &LockRequest) -> Result<Option<LockInfo>, String> {
        let _g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        let held = self
            .read()
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let next = decide(held.clone(), req, unix_now(), &crate::time::now_rfc3339())?;
        if next != held {
            self.write(next.as_ref())
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        }
        Ok(next)
    }

    fn read(&self) -> io::Result<Option<LockInfo>> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(serde_json::from_str(&t).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, info: Option<&LockInfo>) -> io::Result<()> {
        match info {
            None => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Some(info) => {
                let tmp = self.path.with_extension("json.new");
                std::fs::write(&tmp, serde_json::to_vec(info).expect("lock serializes"))?;
                std::fs::rename(tmp, &self.path)
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
}
