//! Writes that survive a power cut. A rename replaces a file atomically for every process
//! that is running, but after a power cut only what reached the disk counts: the new
//! file's data must be on disk before the rename (fsync the file), and the rename itself
//! is only on disk once its directory is (fsync the directory). Without the first, a
//! renamed file can come back empty; without the second, the old name can come back.
//!
//! Every replacement the agent makes goes through here: the env file, the deploy lock,
//! the audit log's appends, and the release store's commit and `current` link
//! ([`crate::store`]). (The settings file has its own `write_atomic` in the supervisor,
//! which follows the same order.)
//!
//! Tests see the order of the calls: under `cfg(test)` each fsync and rename is recorded
//! in a process-wide journal ([`journal`]), which a test filters by its own directory.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One step towards the disk, as the test journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A file's data and metadata were flushed (`fsync`).
    SyncFile(PathBuf),
    /// A directory was flushed: the entries created, renamed or removed in it are on disk.
    SyncDir(PathBuf),
    /// `from` was renamed to `to`.
    Rename(PathBuf, PathBuf),
}

#[cfg(test)]
fn record(op: Op) {
    journal::push(op);
}

#[cfg(not(test))]
fn record(_op: Op) {}

/// Flushes `file` (opened at `path`) to disk.
pub fn sync_file(file: &File, path: &Path) -> io::Result<()> {
    file.sync_all()?;
    synced(path);
    Ok(())
}

/// Notes that the file at `path` was flushed by other means (an async file's `sync_all`).
pub fn synced(path: &Path) {
    record(Op::SyncFile(path.to_path_buf()));
}

/// Flushes the directory `dir`: what was created, renamed or removed in it is on disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()?;
    record(Op::SyncDir(dir.to_path_buf()));
    Ok(())
}

/// Renames `from` to `to` (not flushed: sync `to`'s directory afterwards).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    record(Op::Rename(from.to_path_buf(), to.to_path_buf()));
    Ok(())
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates (or truncates) `path` with `bytes`, sets `mode` when given, and flushes it. The
/// mode is set before the flush, so the flushed file has it.
pub fn write_new(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    if let Some(mode) = mode {
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    sync_file(&f, path)
}

/// Replaces `path` with `bytes` so that after a power cut it holds either the old or the
/// new content, never a mix or nothing: written to `tmp` (in the same directory) with
/// `mode`, owned like the file it replaces when `keep_owner` (as root; otherwise the
/// owner is whoever writes), flushed, renamed over `path`, and the directory flushed.
pub fn replace(
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
    mode: Option<u32>,
    keep_owner: bool,
) -> io::Result<()> {
    let mut f = File::create(tmp)?;
    let written = (|| {
        f.write_all(bytes)?;
        if let Some(mode) = mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        if keep_owner && let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
        }
        sync_file(&f, tmp)?;
        rename(tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written?;
    sync_dir(parent(path))
}

/// Appends `bytes` to `path` (created when missing) and flushes it; a file it created is
/// made durable by flushing its directory too.
pub fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let existed = std::fs::symlink_metadata(path).is_ok();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    synced(path);
    if !existed {
        sync_dir(parent(path))?;
    }
    Ok(())
}

/// Removes the file `path` (fine when it is missing) and flushes its directory, so the
/// removal survives a power cut.
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(()) => sync_dir(parent(path)),
    }
}

/// The calls made under `cfg(test)`, in order, for tests to check.
#[cfg(test)]
pub mod journal {
    use super::Op;
    use std::path::Path;
    use std::sync::Mutex;

    static OPS: Mutex<Vec<Op>> = Mutex::new(Vec::new());

    pub(super) fn push(op: Op) {
        OPS.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// The ops recorded so far whose paths lie under `dir` (tests run in parallel, each in
    /// its own temporary directory).
    pub fn under(dir: &Path) -> Vec<Op> {
        OPS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|op| match op {
                Op::SyncFile(p) | Op::SyncDir(p) => p.starts_with(dir),
                Op::Rename(a, b) => a.starts_with(dir) || b.starts_with(dir),
            })
            .cloned()
            .collect()
    }

    /// Panics unless `ops` rename something to `to` and that rename is durable: its
    /// source was flushed before it (as a file, or as a directory when `source_is_dir`;
    /// nothing is asked of a symlink, whose target is in its directory entry) and `to`'s
    /// directory was flushed after it.
    pub fn assert_durable_rename(ops: &[Op], to: &Path, source: Source) {
        let at = ops
            .iter()
            .rposition(|op| matches!(op, Op::Rename(_, b) if b == to))
            .unwrap_or_else(|| panic!("no rename to {}: {ops:#?}", to.display()));
        let Op::Rename(from, _) = &ops[at] else {
            unreachable!()
        };
        let flushed_before = match source {
            Source::File => ops[..at].contains(&Op::SyncFile(from.clone())),
            Source::Dir => ops[..at].contains(&Op::SyncDir(from.clone())),
            Source::Symlink => true,
        };
        assert!(
            flushed_before,
            "{} was not flushed before it was renamed to {}: {ops:#?}",
            from.display(),
            to.display()
        );
        let dir = super::parent(to).to_path_buf();
        assert!(
            ops[at + 1..].contains(&Op::SyncDir(dir.clone())),
            "{} was not flushed after the rename to {}: {ops:#?}",
            dir.display(),
            to.display()
        );
    }

    /// What was renamed into place, for [`assert_durable_rename`].
    #[derive(Debug, Clone, Copy)]
    pub enum Source {
        /// A regular file: its data must be flushed first.
        File,
        /// A directory: its entries must be flushed first.
        Dir,
        /// A symbolic link: nothing to flush but the directory it lands in.
        Symlink,
    }
}

#[cfg(test)]
mod tests {
    use super::journal::{Source, assert_durable_rename, under};
    use super::*;

    #[test]
    fn a_replacement_is_flushed_renamed_and_its_directory_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        let tmp = dir.path().join("env.new");
        replace(&path, &tmp, b"A=1\n", Some(0o600), true).unwrap();
        replace(&path, &tmp, b"A=2\n", Some(0o600), true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=2\n");
        assert!(!tmp.exists());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let ops = under(dir.path());
        assert_durable_rename(&ops, &path, Source::File);
        let once = [
            Op::SyncFile(tmp.clone()),
            Op::Rename(tmp.clone(), path.clone()),
            Op::SyncDir(dir.path().to_path_buf()),
        ];
        assert_eq!(ops, [once.clone(), once].concat());
    }

    #[test]
    #[should_panic(expected = "was not flushed after the rename")]
    fn the_check_catches_a_missing_directory_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, path) = (dir.path().join("x.new"), dir.path().join("x"));
        let f = File::create(&tmp).unwrap();
        sync_file(&f, &tmp).unwrap();
        rename(&tmp, &path).unwrap();
        assert_durable_rename(&under(dir.path()), &path, Source::File);
    }

    #[test]
    #[should_panic(expected = "was not flushed before it was renamed")]
    fn the_check_catches_a_missing_file_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, path) = (dir.path().join("x.new"), dir.path().join("x"));
        std::fs::write(&tmp, "x").unwrap();
        rename(&tmp, &path).unwrap();
        sync_dir(dir.path()).unwrap();
        assert_durable_rename(&under(dir.path()), &path, Source::File);
    }

    #[test]
    fn appends_are_flushed_and_a_new_file_s_directory_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        append(&path, b"one\n").unwrap();
        append(&path, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert_eq!(
            under(dir.path()),
            [
                Op::SyncFile(path.clone()),
                Op::SyncDir(dir.path().to_path_buf()),
                Op::SyncFile(path.clone()),
            ]
        );
    }

    #[test]
    fn a_removal_is_flushed_and_a_missing_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.json");
        remove(&path).unwrap();
        std::fs::write(&path, "{}").unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(under(dir.path()), [Op::SyncDir(dir.path().to_path_buf())]);
    }
}
