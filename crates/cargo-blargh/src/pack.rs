//! A release that is a directory tree, packed into one deterministic tar archive: the
//! built binary as `app` with the files `include` matches, or a whole `release_dir`.
//!
//! The archive is what ships, through the same frames as a single binary (nothing / a
//! delta against the host's current archive / the whole thing compressed), so it must be
//! the same bytes for the same tree: paths sorted, mtime 0, uid and gid 0, no user or group
//! names, modes reduced to 0755 (any execute bit) or 0644 and 0755 for directories. Only
//! regular files, directories and symlinks go in, and a symlink only when it resolves to
//! something else in the archive.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use blargh_proto::manifest::{BINARY_FILE, ReleaseTree};

/// A packed release.
#[derive(Clone)]
pub struct Packed {
    /// The tar archive.
    pub bytes: Vec<u8>,
    /// Its start command, for the manifest.
    pub tree: ReleaseTree,
    /// How many files, directories and links it holds.
    pub entries: usize,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("bytes", &self.bytes.len())
            .field("tree", &self.tree)
            .field("entries", &self.entries)
            .finish()
    }
}

/// One entry of the tree, by its path inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A file on this machine, and whether it is executable.
    File(PathBuf, bool),
    /// A file's bytes, executable (the built binary).
    Bytes(Vec<u8>),
    Dir,
    /// A symlink and its target, as written.
    Link(PathBuf),
}

/// The built `binary` as `app`, with every file the `include` patterns match (relative to
/// `package_dir`) at its path there. Errors name `include`.
pub fn include(package_dir: &Path, binary: &[u8], patterns: &[String]) -> Result<Packed, String> {
    let key = "include";
    let root = package_dir
        .canonicalize()
        .map_err(|e| format!("cannot read {}: {e}", package_dir.display()))?;
    let mut tree = BTreeMap::new();
    for pattern in patterns {
        let matched = matches(&root, pattern).map_err(|e| format!("{key}: {pattern:?}: {e}"))?;
        if matched.is_empty() {
            return Err(format!(
                "{key}: {pattern:?} matches no file in {} (patterns are relative to the \
                 package's directory, like \"static/**\")",
                root.display()
            ));
        }
        for rel in matched {
            if rel.starts_with(BINARY_FILE) {
                return Err(format!(
                    "{key}: {pattern:?} matches {}, but `{BINARY_FILE}` is where the binary goes; \
                     move or rename it",
                    rel.display()
                ));
            }
            add(&root, &rel, &mut tree, key)?;
        }
    }
    tree.insert(PathBuf::from(BINARY_FILE), Entry::Bytes(binary.to_vec()));
    finish(
        &root,
        tree,
        ReleaseTree {
            start: vec![BINARY_FILE.to_string()],
        },
        key,
    )
}

/// The paths below `root` that `pattern` matches, sorted. Patterns follow gitignore's
/// habits: `*` stays within one component, `static/**` is everything below `static`, and a
/// pattern naming a directory (`static`) takes all of it. Only the part of the tree below
/// the pattern's literal prefix is walked (not `target/` for `static/**`), and no further
/// down than the pattern can reach without `**`. Symlinks are not followed.
fn matches(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let pat = glob::Pattern::new(pattern).map_err(|e| format!("not a glob pattern: {}", e.msg))?;
    let parts: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let magic = |c: &&str| c.contains(['*', '?', '[']);
    let literal: PathBuf = parts.iter().take_while(|c| !magic(c)).collect();
    let rest = &parts[literal.components().count()..];
    if rest.is_empty() {
        return Ok(match std::fs::symlink_metadata(root.join(&literal)) {
            Ok(_) => vec![literal],
            Err(_) => Vec::new(),
        });
    }
    let depth = if rest.iter().any(|c| c.contains("**")) {
        usize::MAX
    } else {
        rest.len()
    };
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut out = Vec::new();
    let mut todo = vec![(literal, 0usize)];
    while let Some((dir, level)) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let rel = dir.join(entry.file_name());
            if pat.matches_path_with(&rel, options) {
                out.push(rel.clone());
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) && level + 1 < depth {
                todo.push((rel, level + 1));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The whole directory `dir`, started with `start` (`start[0]` a path inside it that must
/// be an executable file). Errors name `release_dir` or `start`.
pub fn release_dir(dir: &Path, start: &[String]) -> Result<Packed, String> {
    let root = dir.canonicalize().map_err(|e| {
        format!(
            "release_dir: cannot read {}: {e} (build it first: a pre-build hook, or by hand)",
            dir.display()
        )
    })?;
    if !root.is_dir() {
        return Err(format!("release_dir: {} is not a directory", dir.display()));
    }
    let program = start.first().ok_or("start: is empty")?;
    if !blargh_proto::manifest::is_inside_path(program) {
        return Err(format!(
            "start: {program:?} leads outside release_dir (start[0] is a relative path inside it)"
        ));
    }
    let path = root.join(program);
    let executable = match path.canonicalize() {
        Ok(p) if !p.starts_with(&root) => Err("leads outside release_dir"),
        Ok(p) => match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
            Ok(m) if m.is_file() => Err("is not executable (chmod +x it)"),
            _ => Err("is not a file"),
        },
        Err(_) => Err("does not exist"),
    };
    if let Err(why) = executable {
        return Err(format!(
            "start: {program:?} {why} in {} (start[0] is a path inside release_dir)",
            root.display()
        ));
    }
    let mut tree = BTreeMap::new();
    for entry in std::fs::read_dir(&root).map_err(|e| format!("release_dir: {e}"))? {
        let entry = entry.map_err(|e| format!("release_dir: {e}"))?;
        add(
            &root,
            Path::new(&entry.file_name()),
            &mut tree,
            "release_dir",
        )?;
    }
    finish(
        &root,
        tree,
        ReleaseTree {
            start: start.to_vec(),
        },
        "release_dir",
    )
}

/// Adds `rel` (below `root`) to `tree`: a file, a link, or a directory with all it holds,
/// and the directories above it.
fn add(
    root: &Path,
    rel: &Path,
    tree: &mut BTreeMap<PathBuf, Entry>,
    key: &str,
) -> Result<(), String> {
    let mut parent = PathBuf::new();
    for c in rel.parent().into_iter().flat_map(Path::components) {
        parent.push(c);
        // A glob walks into linked directories: what lies behind a link ships as the link.
        if std::fs::symlink_metadata(root.join(&parent)).is_ok_and(|m| m.is_symlink()) {
            return Ok(());
        }
    }
    let mut parent = PathBuf::new();
    for c in rel.parent().into_iter().flat_map(Path::components) {
        parent.push(c);
        tree.insert(parent.clone(), Entry::Dir);
    }
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(&path).map_err(|e| format!("{key}: {e}"))?;
        tree.insert(rel.to_path_buf(), Entry::Link(target));
    } else if kind.is_file() {
        let exec = meta.permissions().mode() & 0o111 != 0;
        tree.insert(rel.to_path_buf(), Entry::File(path, exec));
    } else if kind.is_dir() {
        tree.insert(rel.to_path_buf(), Entry::Dir);
        let mut names: Vec<_> = std::fs::read_dir(&path)
            .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{key}: {e}"))?;
        names.sort();
        for name in names {
            add(root, &rel.join(name), tree, key)?;
        }
    } else {
        return Err(format!(
            "{key}: {} is neither a file, a directory nor a symlink (a socket, fifo or \
             device); a release holds only those three",
            rel.display()
        ));
    }
    Ok(())
}

/// Checks the links and writes the archive.
fn finish(
    root: &Path,
    tree: BTreeMap<PathBuf, Entry>,
    start: ReleaseTree,
    key: &str,
) -> Result<Packed, String> {
    // A link must resolve, here, to something the archive holds: the agent refuses any
    // other, and a link that works only on this machine would not work on the server.
    for (rel, entry) in &tree {
        let Entry::Link(target) = entry else { continue };
        let shown = format!("{} -> {}", rel.display(), target.display());
        let resolved = root.join(rel).canonicalize().map_err(|_| {
            format!("{key}: the symlink {shown} points to nothing; remove it or ship its target")
        })?;
        let inside = resolved
            .strip_prefix(root)
            .ok()
            .filter(|r| r.as_os_str().is_empty() || tree.contains_key(*r));
        if inside.is_none() {
            return Err(format!(
                "{key}: the symlink {shown} points outside the release ({}); ship the file \
                 itself, or include what it points to",
                resolved.display()
            ));
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let io = |e: std::io::Error| format!("{key}: cannot pack the release: {e}");
    for (rel, entry) in &tree {
        match entry {
            Entry::Dir => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                b.append_data(&mut h, rel, std::io::empty()).map_err(io)?;
            }
            Entry::Link(target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, rel, target).map_err(io)?;
            }
            Entry::Bytes(bytes) => {
                let mut h = header(tar::EntryType::Regular, 0o755, bytes.len() as u64);
                b.append_data(&mut h, rel, &bytes[..]).map_err(io)?;
            }
            Entry::File(path, exec) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
                let mode = if *exec { 0o755 } else { 0o644 };
                let mut h = header(tar::EntryType::Regular, mode, bytes.len() as u64);
                b.append_data(&mut h, rel, &bytes[..]).map_err(io)?;
            }
        }
    }
    let bytes = b.into_inner().map_err(io)?;
    Ok(Packed {
        bytes,
        tree: start,
        entries: tree.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, bytes: &[u8], mode: u32) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn listing(bytes: &[u8]) -> Vec<(String, u32, u64, String)> {
        let mut ar = tar::Archive::new(bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                assert_eq!(
                    (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
                    (0, 0, 0)
                );
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.size().unwrap(),
                    link,
                )
            })
            .collect()
    }

    #[test]
    fn include_packs_the_binary_and_the_matches_the_same_way_every_time() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("static/b.css"), b"b{}", 0o600);
        write(&d.path().join("static/a.txt"), b"aa", 0o664);
        write(&d.path().join("static/run.sh"), b"#!/bin/sh\n", 0o700);
        write(&d.path().join("templates/x/page.html"), b"<p>", 0o644);
        write(&d.path().join("secret.env"), b"no", 0o644);
        symlink("a.txt", d.path().join("static/latest")).unwrap();
        let patterns = vec!["static/**".to_string(), "templates/x/*.html".to_string()];
        let p = include(d.path(), b"ELF", &patterns).unwrap();
        assert_eq!(p.tree.start, ["app"]);
        let l = listing(&p.bytes);
        let names: Vec<&str> = l.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "app",
                "static",
                "static/a.txt",
                "static/b.css",
                "static/latest",
                "static/run.sh",
                "templates",
                "templates/x",
                "templates/x/page.html"
            ]
        );
        assert_eq!(l[0], ("app".into(), 0o755, 3, String::new()));
        assert_eq!(l[2].1, 0o644, "group write dropped");
        assert_eq!(l[3].1, 0o644, "readable by all");
        assert_eq!(l[4].3, "a.txt", "the link is kept as written");
        assert_eq!(l[5].1, 0o755, "executable kept");
        // Same tree, same bytes, whatever the times.
        let later = d.path().join("static/a.txt");
        std::fs::write(&later, b"aa").unwrap();
        assert_eq!(include(d.path(), b"ELF", &patterns).unwrap().bytes, p.bytes);
    }

    #[test]
    fn include_refuses_what_cannot_ship_naming_the_key() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("static/a.txt"), b"aa", 0o644);
        write(&d.path().join("other/b.txt"), b"bb", 0o644);
        let err = |patterns: &[&str]| {
            let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
            include(d.path(), b"ELF", &p).unwrap_err()
        };
        let e = err(&["static/**", "nothing/*"]);
        assert!(
            e.starts_with("include: \"nothing/*\" matches no file"),
            "{e}"
        );
        symlink("/etc/passwd", d.path().join("static/pw")).unwrap();
        let e = err(&["static/**"]);
        assert!(
            e.contains("include: the symlink static/pw -> /etc/passwd points outside"),
            "{e}"
        );
        std::fs::remove_file(d.path().join("static/pw")).unwrap();
        // Inside the package, but not shipped: outside the release too.
        symlink("../other/b.txt", d.path().join("static/b")).unwrap();
        let e = err(&["static/**"]);
        assert!(
            e.contains("the symlink static/b -> ../other/b.txt points outside"),
            "{e}"
        );
        assert!(include(d.path(), b"ELF", &["static/**".into(), "other/*".into()]).is_ok());
        std::fs::remove_file(d.path().join("static/b")).unwrap();
        symlink("gone", d.path().join("static/dangling")).unwrap();
        assert!(err(&["static/**"]).contains("points to nothing"));
        std::fs::remove_file(d.path().join("static/dangling")).unwrap();
        write(&d.path().join("app"), b"x", 0o644);
        assert!(err(&["*"]).contains("`app` is where the binary goes"));
    }

    #[test]
    fn release_dir_needs_an_executable_start_inside_it() {
        let d = tempfile::tempdir().unwrap();
        let rel = d.path().join("rel");
        write(&rel.join("bin/shop"), b"#!/bin/sh\n", 0o755);
        write(&rel.join("lib/x.beam"), b"beam", 0o644);
        symlink("../lib/x.beam", rel.join("bin/x")).unwrap();
        let start = |s: &[&str]| -> Vec<String> { s.iter().map(|s| s.to_string()).collect() };
        let p = release_dir(&rel, &start(&["bin/shop", "start"])).unwrap();
        assert_eq!(p.tree.start, ["bin/shop", "start"]);
        let names: Vec<String> = listing(&p.bytes).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["bin", "bin/shop", "bin/x", "lib", "lib/x.beam"]);
        for (s, why) in [
            ("bin/nope", "does not exist"),
            ("lib/x.beam", "is not executable"),
            ("lib", "is not a file"),
            ("../rel/bin/shop", "leads outside"),
        ] {
            let e = release_dir(&rel, &start(&[s])).unwrap_err();
            assert!(e.starts_with("start: ") && e.contains(why), "{s}: {e}");
        }
        let e = release_dir(&d.path().join("missing"), &start(&["x"])).unwrap_err();
        assert!(e.starts_with("release_dir: cannot read"), "{e}");
        symlink("/etc", rel.join("etc")).unwrap();
        let e = release_dir(&rel, &start(&["bin/shop"])).unwrap_err();
        assert!(
            e.contains("release_dir: the symlink etc -> /etc points outside"),
            "{e}"
        );
    }
}
