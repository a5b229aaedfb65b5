//! The release store: receives executables (or a directory release's tar archive, which it
//! unpacks, see [`unpack`]) as streams, verifies them, and makes a release visible only when
//! it is complete; tracks `current` and `previous`; prunes old releases.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::SystemTime;

use blargh_proto::manifest::ReleaseMeta;
use blargh_proto::{ReleaseId, ReleaseManifest};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::durable;
use crate::layout::Layout;
use crate::time::release_id;

/// Why a stream was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// Fewer bytes arrived than announced.
    #[error(
        "the upload was cut short: {got} of {expected} bytes arrived; nothing was stored, send it again"
    )]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The bytes do not hash to the announced sha256.
    #[error(
        "the upload's sha256 is {actual} but {expected} was announced; nothing was stored (corrupted in transit, or the wrong file)"
    )]
    Mismatch {
        /// Announced.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The announced sha256 is not 64 hex digits.
    #[error("{0:?} is not a sha256 (64 lower-case hex digits)")]
    BadDigest(String),
    /// A tree release's archive or start command was refused (see [`unpack`]).
    #[error("the release archive was refused: {0}; nothing was stored")]
    BadTree(String),
    /// Disk trouble.
    #[error("cannot store the release: {0}")]
    Io(#[from] io::Error),
}

/// The releases of one app on disk.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
}

impl Store {
    /// The store under `layout`, creating its directories.
    pub fn open(layout: Layout) -> io::Result<Self> {
        for dir in [layout.releases(), layout.incoming()] {
            std::fs::create_dir_all(&dir)?;
        }
        // Releases are read by the app's user; uploads in progress by nobody else.
        std::fs::set_permissions(layout.releases(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(layout.incoming(), std::fs::Permissions::from_mode(0o700))?;
        // Uploads interrupted by an agent crash are garbage.
        for entry in std::fs::read_dir(layout.incoming())? {
            let _ = remove_any(&entry?.path());
        }
        Ok(Store { layout })
    }

    /// The layout this store lives in.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Reads exactly `size` bytes from `reader`, checks they hash to `sha256`, and stores
    /// them as a new release. When a release with that sha256 already exists the bytes are
    /// read and discarded, and the existing release is returned with `true`.
    pub async fn receive(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
        sha256: &str,
        size: u64,
        meta: ReleaseMeta,
    ) -> Result<(ReleaseManifest, bool), ReceiveError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReceiveError::BadDigest(sha256.to_string()));
        }
        let sha256 = sha256.to_ascii_lowercase();
        if let Some(tree) = &meta.tree {
            tree.check().map_err(ReceiveError::BadTree)?;
        }
        let existing = self.find_by_sha(&sha256)?;

        let tmp = tempfile_in(&self.layout.incoming())?;
        let result = async {
            let mut file = tokio::fs::File::from_std(tmp.reopen()?);
            let mut hasher = Sha256::new();
            let mut got = 0u64;
            let mut buf = vec![0u8; 256 * 1024];
            while got < size {
                let want = buf.len().min((size - got) as usize);
                let n = reader.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(ReceiveError::Truncated {
                        got,
                        expected: size,
                    });
                }
                hasher.update(&buf[..n]);
                if existing.is_none() {
                    file.write_all(&buf[..n]).await?;
                }
                got += n as u64;
            }
            let actual = hex::encode(hasher.finalize());
            if actual != sha256 {
                return Err(ReceiveError::Mismatch {
                    expected: sha256.clone(),
                    actual,
                });
            }
            // The mode first, so that what is flushed is the executable as it will run (an
            // archive is only read).
            let mode = if meta.tree.is_some() { 0o644 } else { 0o755 };
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .await?;
            file.sync_all().await?;
            durable::synced(tmp.path());
            Ok(())
        }
        .await;
        if let Err(e) = result {
            drop(tmp); // removes the partial upload
            return Err(e);
        }
        if let Some(found) = existing {
            return Ok((found, true));
        }

        let now = SystemTime::now();
        let id = self.unique_id(now, &sha256)?;
        let manifest = ReleaseManifest {
            id: id.clone(),
            version: meta.version,
            git_sha: meta.git_sha,
            sha256,
            size,
            built_at: meta.built_at,
            deployed_at: humantime::format_rfc3339_seconds(now).to_string(),
            deployed_by: meta.deployed_by,
            message: meta.message,
            tree: meta.tree,
        };
        // Assemble the release in a hidden directory and rename it into place: a release
        // directory either does not exist or is complete, after a power cut too (each file
        // and the hidden directory are flushed before the rename, `releases/` after it).
        let staging = self.layout.releases().join(format!(".{id}.partial"));
        let _ = remove_any(&staging);
        std::fs::create_dir(&staging)?;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))?;
        // A single executable is `app`; a tree's archive is kept as `release.tar` (the
        // next delta's base) and unpacked beside it into `tree/`.
        let file = match manifest.tree {
            None => blargh_proto::manifest::BINARY_FILE,
            Some(_) => blargh_proto::manifest::ARCHIVE_FILE,
        };
        let bin = staging.join(file);
        let (_, upload) = tmp.keep().map_err(|e| e.error)?;
        if let Err(e) = durable::rename(&upload, &bin) {
            let _ = std::fs::remove_file(&upload);
            let _ = remove_any(&staging);
            return Err(e.into());
        }
        if let Some(tree) = &manifest.tree {
            let dir = staging.join(blargh_proto::manifest::TREE_DIR);
            let unpacked = tokio::task::block_in_place(|| {
                unpack(&bin, &dir).and_then(|()| check_start(&dir, &tree.start))
            });
            if let Err(e) = unpacked {
                let _ = remove_any(&staging);
                return Err(e);
            }
        }
        durable::write_new(
            &staging.join(blargh_proto::manifest::MANIFEST_FILE),
            manifest.to_json().as_bytes(),
            Some(0o644),
        )?;
        durable::sync_dir(&staging)?;
        durable::rename(&staging, &self.layout.release_dir(&id))?;
        durable::sync_dir(&self.layout.releases())?;
        Ok((manifest, false))
    }

    fn unique_id(&self, now: SystemTime, sha256: &str) -> io::Result<ReleaseId> {
        let base = release_id(now, sha256);
        let mut id = base.clone();
        let mut n = 1;
        loop {
            let candidate = ReleaseId::new(id.as_str())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if !self.layout.release_dir(&candidate).exists() {
                return Ok(candidate);
            }
            n += 1;
            id = format!("{base}.{n}");
        }
    }

    /// The release with this sha256, if stored.
    pub fn find_by_sha(&self, sha256: &str) -> io::Result<Option<ReleaseManifest>> {
        Ok(self.list()?.into_iter().find(|m| m.sha256 == sha256))
    }

    /// Every complete release, newest first.
    pub fn list(&self) -> io::Result<Vec<ReleaseManifest>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.layout.releases())? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            if let Ok(m) = self.get(name) {
                out.push(m);
            }
        }
        out.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(out)
    }

    /// The manifest of release `id`.
    pub fn get(&self, id: &str) -> io::Result<ReleaseManifest> {
        let id = ReleaseId::new(id)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let text = std::fs::read_to_string(self.layout.manifest(&id)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "there is no release {:?} on this host (see `releases`)",
                        id.as_str()
                    ),
                )
            } else {
                e
            }
        })?;
        ReleaseManifest::from_json(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The id `current` points at.
    pub fn current(&self) -> Option<ReleaseId> {
        link_target(&self.layout.current_link())
    }

    /// The id `previous` points at.
    pub fn previous(&self) -> Option<ReleaseId> {
        link_target(&self.layout.previous_link())
    }

    /// Points `current` at `id` and `previous` at what was current (when it differs).
    /// Each link is replaced atomically.
    pub fn set_current(&self, id: &ReleaseId) -> io::Result<()> {
        let old = self.current();
        if let Some(old) = old.filter(|o| o != id) {
            replace_link(&self.layout.previous_link(), &old)?;
        }
        replace_link(&self.layout.current_link(), id)?;
        // Both links live in the root: one flush makes both renames durable.
        durable::sync_dir(self.layout.root())
    }

    /// Deletes the oldest releases beyond `keep`, never `current`, `previous` or `protect`.
    /// Returns the ids removed.
    pub fn prune(&self, keep: usize, protect: &[&str]) -> io::Result<Vec<ReleaseId>> {
        let current = self.current();
        let previous = self.previous();
        let keep_ids: Vec<&str> = protect
            .iter()
            .copied()
            .chain(current.as_deref())
            .chain(previous.as_deref())
            .collect();
        let all = self.list()?;
        // The protected releases count toward `keep`; the newest others fill the rest.
        let protected = all
            .iter()
            .filter(|m| keep_ids.contains(&m.id.as_str()))
            .count();
        let mut budget = keep.saturating_sub(protected);
        let mut removed = Vec::new();
        for m in all {
            if keep_ids.contains(&m.id.as_str()) {
                continue;
            }
            if budget > 0 {
                budget -= 1;
                continue;
            }
            remove_any(&self.layout.release_dir(&m.id))?;
            removed.push(m.id);
        }
        Ok(removed)
    }
}

/// How to start a release: what to execute with which arguments, where, and which file
/// must still hash to the manifest's sha256 before it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The program: `releases/<id>/app`, or `releases/<id>/tree/<start[0]>`.
    pub program: std::path::PathBuf,
    /// Its arguments (a tree's `start[1..]`).
    pub args: Vec<String>,
    /// Its working directory: `data/` for a single executable, the tree for a tree.
    pub workdir: std::path::PathBuf,
    /// The file the manifest's sha256 covers: the executable, or the tree's archive.
    pub verify: std::path::PathBuf,
}

impl Launch {
    /// How release `m` of `layout` starts.
    pub fn of(layout: &Layout, m: &ReleaseManifest) -> Launch {
        match &m.tree {
            None => Launch {
                program: layout.binary(&m.id),
                args: Vec::new(),
                workdir: layout.data(),
                verify: layout.binary(&m.id),
            },
            Some(tree) => {
                let (program, args) = tree.start.split_first().expect("checked when received");
                Launch {
                    program: layout.tree(&m.id).join(program),
                    args: args.to_vec(),
                    workdir: layout.tree(&m.id),
                    verify: layout.archive(&m.id),
                }
            }
        }
    }
}

/// Unpacks the tar archive at `archive` into the new directory `dest`, refusing anything
/// that could reach outside it or run with more rights than the app: an absolute path or
/// `..`, an entry listed twice or below a non-directory, a hard link, a device, a fifo or
/// any other kind than file, directory and symlink, and a symlink that does not resolve to
/// something inside the tree. Files become 0755 when any execute bit was set, else 0644
/// (no setuid, setgid or sticky bit, writable by the agent's user only); directories 0755.
/// The app runs under another uid, so it can write nothing of what it will later run.
/// Every file and directory is flushed.
pub fn unpack(archive: &Path, dest: &Path) -> Result<(), ReceiveError> {
    use std::collections::HashMap;
    use std::path::{Component, PathBuf};
    let bad = ReceiveError::BadTree;
    std::fs::create_dir(dest)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))?;
    // true: a directory; false: anything else. The root is a directory.
    let mut made: HashMap<PathBuf, bool> = HashMap::from([(PathBuf::new(), true)]);
    let mut dirs = vec![dest.to_path_buf()];
    let mut links = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(archive)?);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        if raw.starts_with(b"/") {
            return Err(bad(format!("{name:?} is an absolute path")));
        }
        let mut rel = PathBuf::new();
        for c in Path::new(std::ffi::OsStr::from_bytes(&raw)).components() {
            match c {
                Component::Normal(c) => rel.push(c),
                Component::CurDir => {}
                _ => return Err(bad(format!("{name:?} leads outside the release (..)"))),
            }
        }
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                continue;
            }
            return Err(bad(format!("{name:?} names no file")));
        }
        // Each parent must be a directory made by this archive (created when not listed),
        // never a symlink, so nothing is written through a link.
        let mut parent = PathBuf::new();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(c);
            match made.get(&parent) {
                Some(true) => {}
                Some(false) => {
                    return Err(bad(format!(
                        "{name:?} is below {}, which is not a directory",
                        parent.display()
                    )));
                }
                None => {
                    let p = dest.join(&parent);
                    std::fs::create_dir(&p)?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
                    made.insert(parent.clone(), true);
                    dirs.push(p);
                }
            }
        }
        match made.get(&rel) {
            // A directory made for an earlier entry below it, listed after it.
            Some(true) if kind.is_dir() => continue,
            Some(_) => return Err(bad(format!("{name:?} is in the archive twice"))),
            None => {}
        }
        let path = dest.join(&rel);
        if kind.is_file() {
            let mode = if entry.header().mode()? & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(mode)
                .open(&path)?;
            io::copy(&mut entry, &mut f)?;
            // The umask may have narrowed the mode given at creation.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            durable::sync_file(&f, &path)?;
            made.insert(rel, false);
        } else if kind.is_dir() {
            std::fs::create_dir(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            made.insert(rel, true);
            dirs.push(path);
        } else if kind.is_symlink() {
            let Some(target) = entry.link_name_bytes() else {
                return Err(bad(format!("the symlink {name:?} has no target")));
            };
            let target = std::ffi::OsStr::from_bytes(&target).to_os_string();
            symlink(&target, &path)?;
            made.insert(rel.clone(), false);
            links.push((rel, target));
        } else {
            return Err(bad(format!(
                "{name:?} is a {}: a release holds only files, directories and symlinks",
                kind_name(kind)
            )));
        }
    }
    // Links are judged once the whole tree exists, as the kernel will resolve them.
    let root = dest.canonicalize()?;
    for (rel, target) in links {
        let shown = Path::new(&target).display();
        match dest.join(&rel).canonicalize() {
            Ok(p) if p.starts_with(&root) => {}
            Ok(_) => {
                return Err(bad(format!(
                    "the symlink {} -> {shown} points outside the release",
                    rel.display()
                )));
            }
            Err(_) => {
                return Err(bad(format!(
                    "the symlink {} -> {shown} points to nothing inside the release",
                    rel.display()
                )));
            }
        }
    }
    for dir in dirs.iter().rev() {
        durable::sync_dir(dir)?;
    }
    Ok(())
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "kind of entry blargh does not ship",
    }
}

/// Checks that a tree's start program exists inside the unpacked tree `dir` and is an
/// executable file (a symlink to one inside the tree is fine).
fn check_start(dir: &Path, start: &[String]) -> Result<(), ReceiveError> {
    let program = &start[0];
    let path = dir.join(program);
    let root = dir.canonicalize()?;
    let resolved = path.canonicalize().map_err(|_| {
        ReceiveError::BadTree(format!(
            "the start program {program:?} is not in the release"
        ))
    })?;
    let meta = std::fs::metadata(&resolved)?;
    if !resolved.starts_with(&root) || !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(ReceiveError::BadTree(format!(
            "the start program {program:?} is not an executable file inside the release"
        )));
    }
    Ok(())
}

/// Checks that the executable `binary` of release `release` still hashes to the sha256 in
/// the manifest beside it (`release.json`), before it is started: at every activation,
/// rollback, restart and agent start. A changed file (tampered with, or corrupted on disk) is
/// refused with an error naming the release and both digests.
pub fn verify_binary(binary: &Path, release: &str) -> io::Result<()> {
    use std::io::Read;
    let manifest_path = binary.with_file_name(blargh_proto::manifest::MANIFEST_FILE);
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "release {release}: cannot read its manifest {}: {e}",
                    manifest_path.display()
                ),
            )
        })
        .and_then(|t| {
            ReleaseManifest::from_json(&t).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("release {release}: its manifest does not parse: {e}"),
                )
            })
        })?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(binary)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("release {release}: cannot open {}: {e}", binary.display()),
            )
        })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual = hex::encode(hasher.finalize());
    let what = match manifest.tree {
        None => "executable",
        Some(_) => "archive",
    };
    if actual != manifest.sha256 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "release {release} was changed after it was uploaded: its {what}'s sha256 is {actual} \
                 but {} was received; refusing to start it (deploy it again, and find out who could write {})",
                manifest.sha256,
                binary.display()
            ),
        ));
    }
    Ok(())
}

fn link_target(link: &Path) -> Option<ReleaseId> {
    let target = std::fs::read_link(link).ok()?;
    target.file_name()?.to_str()?.parse().ok()
}

fn replace_link(link: &Path, id: &ReleaseId) -> io::Result<()> {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    symlink(Path::new("releases").join(id.as_str()), &tmp)?;
    durable::rename(&tmp, link)
}

fn tempfile_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix("upload-")
        .suffix(".part")
        .tempfile_in(dir)
}

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Layout::new(dir.path())).unwrap();
        (dir, store)
    }

    /// A power cut at any moment leaves a release either absent or complete, and `current`
    /// either old or new: the order of flushes and renames (the VM test `power_vm` cuts
    /// the power for real, but only sees the orderings that timing happens to hit).
    #[tokio::test]
    async fn the_commit_and_the_switch_are_flushed_in_order() {
        use crate::durable::Op;
        use crate::durable::journal::{Source, assert_durable_rename, under};
        let (d, store) = store();
        let body = b"#!/bin/sh\necho durable\n".to_vec();
        let (m, _) = store
            .receive(
                &mut &body[..],
                &sha(&body),
                body.len() as u64,
                Default::default(),
            )
            .await
            .unwrap();
        let (m2, _) = store
            .receive(&mut &b"two"[..], &sha(b"two"), 3, Default::default())
            .await
            .unwrap();
        store.set_current(&m.id).unwrap();
        store.set_current(&m2.id).unwrap();
        let ops = under(d.path());
        let releases = store.layout().releases();
        let staging = releases.join(format!(".{}.partial", m.id));
        let manifest = staging.join(blargh_proto::manifest::MANIFEST_FILE);
        // The executable: flushed in incoming/, renamed into the hidden directory.
        assert_durable_rename(
            &ops,
            &staging.join(blargh_proto::manifest::BINARY_FILE),
            Source::File,
        );
        // The manifest flushed, then the hidden directory, before it becomes the release.
        let at = |op: &Op| ops.iter().position(|o| o == op).unwrap();
        assert!(at(&Op::SyncFile(manifest)) < at(&Op::SyncDir(staging.clone())));
        assert_durable_rename(&ops, &store.layout().release_dir(&m.id), Source::Dir);
        // The links: `previous` and `current` renamed, then the root flushed.
        assert_durable_rename(&ops, &store.layout().current_link(), Source::Symlink);
        assert_durable_rename(&ops, &store.layout().previous_link(), Source::Symlink);
    }

    #[tokio::test]
    async fn stores_a_verified_stream_as_a_release() {
        let (_d, store) = store();
        let body = b"#!/bin/sh\necho hi\n".to_vec();
        let meta = ReleaseMeta {
            version: Some("1.0".into()),
            ..Default::default()
        };
        let (m, again) = store
            .receive(&mut &body[..], &sha(&body), body.len() as u64, meta)
            .await
            .unwrap();
        assert!(!again);
        assert_eq!(m.version.as_deref(), Some("1.0"));
        assert_eq!(std::fs::read(store.layout().binary(&m.id)).unwrap(), body);
        let mode = std::fs::metadata(store.layout().binary(&m.id))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(store.list().unwrap(), vec![m.clone()]);

        // The same bytes again: nothing new stored.
        let (m2, again) = store
            .receive(
                &mut &body[..],
                &sha(&body),
                body.len() as u64,
                Default::default(),
            )
            .await
            .unwrap();
        assert!(again);
        assert_eq!(m2.id, m.id);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_release_changed_after_upload_is_refused_naming_both_digests() {
        let (_d, store) = store();
        let body = b"#!/bin/sh\necho v1\n".to_vec();
        let (m, _) = store
            .receive(
                &mut &body[..],
                &sha(&body),
                body.len() as u64,
                Default::default(),
            )
            .await
            .unwrap();
        let bin = store.layout().binary(&m.id);
        verify_binary(&bin, &m.id).unwrap();
        std::fs::write(&bin, b"#!/bin/sh\necho evil\n").unwrap();
        let err = verify_binary(&bin, &m.id).unwrap_err().to_string();
        assert!(
            err.contains(&format!("release {} was changed", m.id)),
            "{err}"
        );
        assert!(
            err.contains(&sha(&body)),
            "names the uploaded digest: {err}"
        );
        assert!(
            err.contains(&sha(b"#!/bin/sh\necho evil\n")),
            "names the digest found: {err}"
        );
        // A symlink in its place is not followed.
        let elsewhere = store.layout().root().join("elsewhere");
        std::fs::write(&elsewhere, &body).unwrap();
        std::fs::remove_file(&bin).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &bin).unwrap();
        let err = verify_binary(&bin, &m.id).unwrap_err().to_string();
        assert!(err.contains("cannot open"), "{err}");
    }

    #[tokio::test]
    async fn refuses_a_mismatched_digest_and_leaves_nothing() {
        let (_d, store) = store();
        let body = b"real bytes".to_vec();
        let err = store
            .receive(
                &mut &body[..],
                &sha(b"other"),
                body.len() as u64,
                Default::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiveError::Mismatch { .. }), "{err}");
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(store.layout().incoming())
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(store.layout().releases())
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn a_truncated_stream_leaves_no_release() {
        let (_d, store) = store();
        let body = vec![7u8; 1000];
        let err = store
            .receive(&mut &body[..600], &sha(&body), 1000, Default::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("600 of 1000 bytes"),
            "message names the sizes: {err}"
        );
        assert_eq!(
            std::fs::read_dir(store.layout().incoming())
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(store.layout().releases())
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn current_previous_and_pruning() {
        let (_d, store) = store();
        let mut ids = Vec::new();
        for i in 0..6u8 {
            let body = vec![i; 10];
            let (m, _) = store
                .receive(&mut &body[..], &sha(&body), 10, Default::default())
                .await
                .unwrap();
            ids.push(m.id);
        }
        // Activate the oldest two: they must survive pruning although they are old.
        store.set_current(&ids[1]).unwrap();
        store.set_current(&ids[0]).unwrap();
        assert_eq!(store.current().as_deref(), Some(ids[0].as_str()));
        assert_eq!(store.previous().as_deref(), Some(ids[1].as_str()));
        // Re-activating the current release keeps `previous`.
        store.set_current(&ids[0]).unwrap();
        assert_eq!(store.previous().as_deref(), Some(ids[1].as_str()));

        let removed = store.prune(3, &[]).unwrap();
        let left: Vec<ReleaseId> = store.list().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(left.len(), 3, "kept 3: {left:?}");
        assert!(left.contains(&ids[0]) && left.contains(&ids[1]));
        assert!(left.contains(&ids[5]), "newest kept");
        assert_eq!(removed.len(), 3);
    }

    /// Writes a valid manifest at `dir/release.json`, outside any release the store made.
    fn plant_manifest(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let m = ReleaseManifest {
            id: "planted".parse().unwrap(),
            version: None,
            git_sha: None,
            sha256: "00".repeat(32),
            size: 1,
            built_at: None,
            deployed_at: "2026-01-01T00:00:00Z".into(),
            deployed_by: None,
            message: None,
            tree: None,
        };
        std::fs::write(dir.join(blargh_proto::manifest::MANIFEST_FILE), m.to_json()).unwrap();
    }

    #[test]
    fn ids_cannot_escape_the_store() {
        let (d, store) = store();
        // Each bad id names a readable manifest, so only the id check can refuse it.
        plant_manifest(&d.path().join("outside"));
        plant_manifest(&store.layout().releases().join("a/b"));
        plant_manifest(&store.layout().releases().join(".hidden"));
        plant_manifest(&store.layout().releases());
        for bad in ["../outside", "a/b", ".hidden", ""] {
            let err = store.get(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}: {err}");
            assert!(
                err.to_string().contains("is not a valid release id"),
                "{err}"
            );
        }
    }

    #[test]
    fn ids_with_dots_dashes_and_underscores_are_looked_up() {
        let (_d, store) = store();
        for good in ["20261128T153210.123Z-0badcafe", "a_b", "x.2"] {
            let err = store.get(good).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{good}: {err}");
            assert!(err.to_string().contains("there is no release"), "{err}");
        }
        plant_manifest(&store.layout().releases().join("a_b"));
        assert_eq!(store.get("a_b").unwrap().id, "planted");
    }

    #[test]
    fn a_corrupt_manifest_is_invalid_data() {
        let (_d, store) = store();
        let dir = store.layout().release_dir(&"r1".parse().unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(blargh_proto::manifest::MANIFEST_FILE), "{not json").unwrap();
        assert_eq!(
            store.get("r1").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // Such a directory is not listed as a release.
        assert!(store.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn digests_must_be_64_hex_digits() {
        let (_d, store) = store();
        let body = b"bytes".to_vec();
        let good = sha(&body);
        for bad in [
            "z".repeat(64),
            format!("{}g", &good[..63]),
            good[..63].to_string(),
            format!("{good}0"),
            String::new(),
        ] {
            let err = store
                .receive(&mut &body[..], &bad, 5, Default::default())
                .await
                .unwrap_err();
            assert!(matches!(err, ReceiveError::BadDigest(_)), "{bad}: {err}");
        }
        // Upper-case hex is the same digest.
        let (m, _) = store
            .receive(
                &mut &body[..],
                &good.to_ascii_uppercase(),
                5,
                Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(m.sha256, good);
    }

    #[tokio::test]
    async fn reads_exactly_size_bytes_and_leaves_the_rest() {
        let (_d, store) = store();
        // Larger than the 256 KiB buffer, so the last read must stop at `size`.
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let size = body.len() as u64;
        let mut stream = body.clone();
        stream.extend_from_slice(b"next request\n");
        let mut reader = &stream[..];
        let (m, again) = store
            .receive(&mut reader, &sha(&body), size, Default::default())
            .await
            .unwrap();
        assert!(!again);
        assert_eq!(m.size, size);
        assert_eq!(reader, b"next request\n", "bytes past `size` were consumed");
        assert_eq!(std::fs::read(store.layout().binary(&m.id)).unwrap(), body);
        // Also when the release exists already and the bytes are discarded.
        let mut reader = &stream[..];
        let (_, again) = store
            .receive(&mut reader, &sha(&body), size, Default::default())
            .await
            .unwrap();
        assert!(again);
        assert_eq!(reader, b"next request\n");
    }

    #[test]
    fn ids_taken_get_a_numbered_suffix() {
        let (_d, store) = store();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let sha = "0badcafe".repeat(8);
        let base = release_id(now, &sha);
        assert_eq!(store.unique_id(now, &sha).unwrap(), base);
        std::fs::create_dir(store.layout().release_dir(&base.parse().unwrap())).unwrap();
        assert_eq!(store.unique_id(now, &sha).unwrap(), format!("{base}.2"));
        std::fs::create_dir(
            store
                .layout()
                .release_dir(&format!("{base}.2").parse().unwrap()),
        )
        .unwrap();
        assert_eq!(store.unique_id(now, &sha).unwrap(), format!("{base}.3"));
    }

    #[test]
    fn opening_clears_interrupted_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.incoming().join("half-dir")).unwrap();
        std::fs::write(layout.incoming().join("half-dir/x"), b"x").unwrap();
        std::fs::write(layout.incoming().join("upload-1.part"), b"half").unwrap();
        let store = Store::open(layout).unwrap();
        assert_eq!(
            std::fs::read_dir(store.layout().incoming())
                .unwrap()
                .count(),
            0
        );
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.layout().incoming()), 0o700);
        assert_eq!(mode(store.layout().releases()), 0o755);
    }

    #[tokio::test]
    async fn pruning_keeps_the_newest_and_the_protected() {
        let (_d, store) = store();
        let mut ids = Vec::new();
        for i in 0..5u8 {
            let body = vec![i; 3];
            let (m, _) = store
                .receive(&mut &body[..], &sha(&body), 3, Default::default())
                .await
                .unwrap();
            ids.push(m.id);
        }
        // Nothing current: keep 2 keeps the two newest, unless one is protected.
        let removed = store.prune(2, &[&ids[0]]).unwrap();
        let left: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|m| m.id.into_string())
            .collect();
        assert_eq!(left, vec![ids[4].clone(), ids[0].clone()]);
        assert_eq!(
            removed,
            vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]
        );
        // keep 0 still keeps the protected ones.
        store.set_current(&ids[4]).unwrap();
        assert!(store.prune(0, &[]).unwrap() == vec![ids[0].clone()]);
        assert_eq!(store.list().unwrap().len(), 1);
        // Removing what is gone already is fine; a path that cannot be looked at is not.
        assert!(remove_any(&store.layout().release_dir(&ids[1])).is_ok());
        let file = store.layout().root().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        assert!(remove_any(&file.join("below-a-file")).is_err());
    }
}

#[cfg(test)]
mod tree_tests {
    use super::*;
    use blargh_proto::manifest::ReleaseTree;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// One archive entry, written with raw names so that hostile ones can be made too (the
    /// tar crate's own setters refuse `..` and absolute paths).
    enum E<'a> {
        File(&'a str, u32, &'a [u8]),
        Dir(&'a str),
        Link(&'a str, &'a str),
        Other(&'a str, tar::EntryType),
    }

    fn archive(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_old();
            let (name, kind, mode, data, link): (&str, _, u32, &[u8], &str) = match e {
                E::File(n, m, d) => (n, tar::EntryType::Regular, *m, d, ""),
                E::Dir(n) => (n, tar::EntryType::Directory, 0o755, b"", ""),
                E::Link(n, t) => (n, tar::EntryType::Symlink, 0o777, b"", t),
                E::Other(n, k) => (n, *k, 0o644, b"", ""),
            };
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn tree(start: &[&str]) -> ReleaseMeta {
        ReleaseMeta {
            tree: Some(ReleaseTree {
                start: start.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Layout::new(dir.path())).unwrap();
        (dir, store)
    }

    async fn put(
        store: &Store,
        bytes: &[u8],
        meta: ReleaseMeta,
    ) -> Result<ReleaseManifest, ReceiveError> {
        store
            .receive(&mut &bytes[..], &sha(bytes), bytes.len() as u64, meta)
            .await
            .map(|(m, _)| m)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_tree_is_unpacked_beside_its_archive_and_starts_inside_it() {
        let (_d, store) = store();
        let bytes = archive(&[
            E::File("app", 0o755, b"#!/bin/sh\n"),
            E::Dir("static"),
            E::File("static/index.html", 0o666, b"<h1>hi</h1>"),
            E::File("static/sbin", 0o6777, b"setuid"),
            E::Link("static/home.html", "index.html"),
            E::Link("top", "static"),
            // A parent the archive does not list is made, and may be listed later.
            E::File("templates/a/b.txt", 0o600, b"deep"),
            E::Dir("templates/a"),
        ]);
        let m = put(&store, &bytes, tree(&["app", "serve"])).await.unwrap();
        let layout = store.layout();
        let t = layout.tree(&m.id);
        assert_eq!(std::fs::read(layout.archive(&m.id)).unwrap(), bytes);
        assert!(!layout.binary(&m.id).exists(), "no app beside the tree");
        assert_eq!(m.sha256, sha(&bytes));
        assert_eq!(store.get(&m.id).unwrap().tree, tree(&["app", "serve"]).tree);
        assert_eq!(
            std::fs::read(t.join("static/home.html")).unwrap(),
            b"<h1>hi</h1>"
        );
        assert_eq!(
            std::fs::read(t.join("top/index.html")).unwrap(),
            b"<h1>hi</h1>"
        );
        assert_eq!(std::fs::read(t.join("templates/a/b.txt")).unwrap(), b"deep");
        // Nothing writable but by the agent's user, no setuid; executables stay so.
        assert_eq!(mode(&t.join("app")), 0o755);
        assert_eq!(mode(&t.join("static/index.html")), 0o644);
        assert_eq!(mode(&t.join("static/sbin")), 0o755);
        assert_eq!(mode(&t.join("templates/a/b.txt")), 0o644);
        assert_eq!(mode(&t.join("templates/a")), 0o755);
        assert_eq!(mode(&t), 0o755);
        let launch = Launch::of(layout, &m);
        assert_eq!(launch.program, t.join("app"));
        assert_eq!(launch.args, vec!["serve".to_string()]);
        assert_eq!(launch.workdir, t);
        assert_eq!(launch.verify, layout.archive(&m.id));
        verify_binary(&launch.verify, &m.id).unwrap();
        // A changed archive is refused by its name.
        std::fs::write(layout.archive(&m.id), b"changed").unwrap();
        let err = verify_binary(&launch.verify, &m.id)
            .unwrap_err()
            .to_string();
        assert!(err.contains("its archive's sha256 is"), "{err}");
        // Pruned like any release.
        store.prune(0, &[]).unwrap();
        assert!(!layout.release_dir(&m.id).exists());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_hostile_archive_is_refused_and_leaves_nothing() {
        let cases: Vec<(Vec<E<'_>>, &str)> = vec![
            (vec![E::File("../evil", 0o644, b"x")], "leads outside"),
            (vec![E::File("a/../../evil", 0o644, b"x")], "leads outside"),
            (vec![E::File("/etc/evil", 0o644, b"x")], "absolute"),
            (vec![E::Link("out", "/etc")], "points outside"),
            (vec![E::Link("out", "../../..")], "points outside"),
            (
                vec![E::Link("dangling", "nothing-here")],
                "points to nothing",
            ),
            // Through a link: the kernel resolves `l` to the root, then `..` leaves it,
            // although `a/b/l/..` reads as inside.
            (
                vec![
                    E::Dir("a"),
                    E::Dir("a/b"),
                    E::Link("a/b/l", "../.."),
                    E::Link("e", "a/b/l/.."),
                ],
                "points outside",
            ),
            // Writing through a symlink to a directory.
            (
                vec![E::Link("d", "."), E::File("d/x", 0o644, b"x")],
                "not a directory",
            ),
            (
                vec![E::File("x", 0o644, b"1"), E::File("x", 0o644, b"2")],
                "twice",
            ),
            (
                vec![E::Other("dev", tar::EntryType::Char)],
                "character device",
            ),
            (vec![E::Other("fifo", tar::EntryType::Fifo)], "fifo"),
            (vec![E::Other("hard", tar::EntryType::Link)], "hard link"),
        ];
        for (entries, why) in cases {
            let (d, store) = store();
            let mut all = vec![E::File("app", 0o755, b"#!/bin/sh\n")];
            all.extend(entries);
            let bytes = archive(&all);
            let err = put(&store, &bytes, tree(&["app"])).await.unwrap_err();
            assert!(matches!(err, ReceiveError::BadTree(_)), "{why}: {err}");
            assert!(err.to_string().contains(why), "{why}: {err}");
            assert!(store.list().unwrap().is_empty());
            assert_eq!(
                std::fs::read_dir(store.layout().releases())
                    .unwrap()
                    .count(),
                0,
                "{why}"
            );
            assert!(!d.path().join("evil").exists() && !Path::new("/etc/evil").exists());
        }
        // The start program must be in the tree and executable.
        for (start, why) in [
            (&["missing"][..], "not in the release"),
            (&["data.txt"][..], "not an executable"),
            (&["/bin/sh"][..], "not a relative path"),
            (&["../app"][..], "not a relative path"),
        ] {
            let (_d, store) = store();
            let bytes = archive(&[E::File("data.txt", 0o644, b"x"), E::File("app", 0o755, b"")]);
            let err = put(&store, &bytes, tree(start)).await.unwrap_err();
            assert!(err.to_string().contains(why), "{start:?}: {err}");
            assert!(store.list().unwrap().is_empty());
        }
    }

    /// The unpacked tree is flushed before the release directory is renamed into place.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_tree_is_flushed_before_it_becomes_visible() {
        use crate::durable::Op;
        use crate::durable::journal::under;
        let (d, store) = store();
        let bytes = archive(&[
            E::File("app", 0o755, b"#!/bin/sh\n"),
            E::File("s/x", 0o644, b"x"),
        ]);
        let m = put(&store, &bytes, tree(&["app"])).await.unwrap();
        let ops = under(d.path());
        let staging = store.layout().releases().join(format!(".{}.partial", m.id));
        let at = |op: &Op| {
            ops.iter()
                .position(|o| o == op)
                .unwrap_or_else(|| panic!("{op:?} in {ops:?}"))
        };
        let renamed = at(&Op::Rename(
            staging.clone(),
            store.layout().release_dir(&m.id),
        ));
        assert!(at(&Op::SyncFile(staging.join("tree/s/x"))) < renamed);
        assert!(at(&Op::SyncDir(staging.join("tree/s"))) < renamed);
        assert!(at(&Op::SyncDir(staging.join("tree"))) < renamed);
    }
}
