//! What [`Tls`](super::Tls) keeps on disk, under `<data dir>/tls/`:
//!
//! - `account-<directory>.json`: the ACME account's key and id, one per directory URL;
//! - `<domain>[+<domain>…].pem`: the certificate's private key followed by its chain;
//! - `challenges/`: pending challenge answers, so whichever release accepts the CA's
//!   validation connection can answer it (old and new releases share the listening socket);
//! - `order.lock`: `flock`ed by the one process that is ordering;
//! - `failures`: failed orders in a row and the earliest next attempt (the shared backoff).
//!
//! Directories are 0700, files 0600. Every file is written atomically: a temporary file in
//! the same directory, `fsync`, `rename`, `fsync` of the directory. A reader sees the old
//! content or the new, never half of it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `tls/` directory of one app's data dir.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub(crate) dir: PathBuf,
}

impl Store {
    /// Creates `<data_dir>/tls/` and `tls/challenges/` (0700) if needed.
    pub(crate) fn open(data_dir: &Path) -> io::Result<Store> {
        let dir = data_dir.join("tls");
        mkdir_private(&dir)?;
        mkdir_private(&dir.join("challenges"))?;
        Ok(Store { dir })
    }

    /// Where the key and chain for exactly this list of domains live.
    pub(crate) fn cert_path(&self, domains: &[String]) -> PathBuf {
        self.dir.join(format!("{}.pem", domains.join("+")))
    }

    /// Where the account for this directory URL lives.
    pub(crate) fn account_path(&self, directory: &str) -> PathBuf {
        self.dir
            .join(format!("account-{}.json", sanitize(directory)))
    }

    /// A pending challenge answer: `kind` is `http` (named by token) or `alpn` (by domain).
    /// `None` for names that could escape the directory.
    pub(crate) fn challenge_path(&self, kind: &str, name: &str) -> Option<PathBuf> {
        let ok = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        ok.then(|| self.dir.join("challenges").join(format!("{kind}-{name}")))
    }

    /// Takes the order lock without waiting: `Ok(None)` when another process holds it.
    /// The lock is an `flock` on `order.lock`, released when the returned file is dropped
    /// (or the process dies, so a crashed orderer never blocks the others).
    pub(crate) fn try_lock(&self) -> io::Result<Option<File>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.dir.join("order.lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

impl Store {
    /// The failed orders in a row and when the next attempt may start, shared by every
    /// process on this data dir (so restarts and new releases respect the backoff too).
    pub(crate) fn failures(&self) -> (u32, Option<SystemTime>) {
        let text = fs::read_to_string(self.dir.join("failures")).unwrap_or_default();
        let mut words = text.split_whitespace();
        let count = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let next = words
            .next()
            .and_then(|w| w.parse().ok())
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        (count, next)
    }

    /// Records `count` failures in a row, next attempt at `next` (hold the order lock).
    pub(crate) fn set_failures(&self, count: u32, next: SystemTime) -> io::Result<()> {
        let secs = next
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            .ceil() as u64;
        write_atomic(
            &self.dir.join("failures"),
            format!("{count} {secs}\n").as_bytes(),
        )
    }

    /// Forgets the failures after a success.
    pub(crate) fn clear_failures(&self) {
        let _ = fs::remove_file(self.dir.join("failures"));
    }
}

/// Creates a directory (and parents) with mode 0700, and tightens it if it existed.
pub(crate) fn mkdir_private(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` atomically with mode 0600: temporary file, fsync, rename, fsync
/// of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A file-name-safe version of a URL.
fn sanitize(s: &str) -> String {
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_replaced_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.dir), 0o700);
        let p = store.cert_path(&["a.example".into(), "b.example".into()]);
        assert!(p.ends_with("a.example+b.example.pem"));
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&store.dir).unwrap().count(), 2);
    }

    #[test]
    fn challenge_names_cannot_escape() {
        let store = Store {
            dir: "/d/tls".into(),
        };
        assert!(store.challenge_path("http", "../x").is_none());
        assert!(store.challenge_path("http", "a/b").is_none());
        assert!(store.challenge_path("http", "").is_none());
        assert_eq!(
            store.challenge_path("http", "Ab-9_x").unwrap(),
            Path::new("/d/tls/challenges/http-Ab-9_x")
        );
    }

    #[test]
    fn one_lock_holder_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let held = store.try_lock().unwrap().expect("free");
        assert!(store.try_lock().unwrap().is_none());
        drop(held);
        assert!(store.try_lock().unwrap().is_some());
    }
}
