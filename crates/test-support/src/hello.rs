//! Builds of examples/hello with a given version baked in, cached under
//! `target/test-releases/`, so tests can switch between two real releases.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/test-support is two levels down")
        .to_path_buf()
}

/// Cargo profile of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `dev`: fast to build, used by tests.
    Debug,
    /// `release`: used by benchmarks.
    Release,
}

/// Path of examples/hello built with `HELLO_VERSION=version`, building it if needed.
/// Builds go to their own target directory (`target/test-releases/target`), so they never
/// wait for the lock of the build that runs the tests.
///
/// A cached copy is reused only when its [`fingerprint`] (every file cargo reads to build
/// hello, the version, the profile, the toolchain) is the one it was built with; otherwise
/// cargo builds, and cargo's own freshness check decides what to recompile.
pub fn build(version: &str, profile: Profile) -> io::Result<PathBuf> {
    let dir = workspace_root().join("target/test-releases");
    std::fs::create_dir_all(&dir)?;
    let suffix = match profile {
        Profile::Debug => "debug",
        Profile::Release => "release",
    };
    let out = dir.join(format!("hello-{version}-{suffix}"));
    let stamp = dir.join(format!("hello-{version}-{suffix}.fingerprint"));
    // One builder at a time; the others find the result.
    let lock = std::fs::File::create(dir.join(".lock"))?;
    lock.lock()?;
    let fp = fingerprint(version, profile)?;
    if out.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == fp) {
        return Ok(out);
    }
    let mut cmd = Command::new(cargo());
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "-p", "hello"])
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("HELLO_VERSION", version);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "building examples/hello {version} failed ({status})"
        )));
    }
    let built = dir.join("target").join(suffix).join("hello");
    let tmp = out.with_extension("tmp");
    std::fs::copy(&built, &tmp)?;
    std::fs::rename(&tmp, &out)?;
    std::fs::write(&stamp, &fp)?;
    Ok(out)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// A digest of everything a build of hello depends on: the content of every file under
/// examples/hello and under each path crate it depends on (transitively, build
/// dependencies too; from `cargo metadata`), the workspace's Cargo.toml and Cargo.lock,
/// `.cargo/config.toml`, `RUSTFLAGS`, the cargo version, and `version` and `profile`.
pub fn fingerprint(version: &str, profile: Profile) -> io::Result<String> {
    let root = workspace_root();
    let toolchain = Command::new(cargo()).arg("-V").output()?.stdout;
    let salt = format!(
        "{version}\n{profile:?}\n{}\n{}\n",
        String::from_utf8_lossy(&toolchain).trim(),
        std::env::var("RUSTFLAGS").unwrap_or_default()
    );
    digest(&root, &inputs()?, &salt)
}

/// Every file whose content goes into [`fingerprint`], sorted.
pub fn inputs() -> io::Result<Vec<PathBuf>> {
    let root = workspace_root();
    let mut files: Vec<PathBuf> = ["Cargo.toml", "Cargo.lock", ".cargo/config.toml"]
        .iter()
        .map(|f| root.join(f))
        .filter(|p| p.is_file())
        .collect();
    for dir in package_dirs("hello")? {
        files.extend(files_under(&dir)?);
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Directories of workspace package `name` and of the path packages it depends on
/// (normal and build dependencies, transitively), from `cargo metadata --no-deps`.
fn package_dirs(name: &str) -> io::Result<Vec<PathBuf>> {
    let out = Command::new(cargo())
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "cargo metadata failed ({}); its error is above",
            out.status
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| io::Error::other(format!("cargo metadata printed no JSON: {e}")))?;
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let dir_of = |p: &serde_json::Value| {
        p["manifest_path"]
            .as_str()
            .and_then(|m| Path::new(m).parent())
            .map(Path::to_path_buf)
    };
    let start = packages
        .iter()
        .find(|p| p["name"] == name)
        .and_then(dir_of)
        .ok_or_else(|| io::Error::other(format!("cargo metadata lists no package {name}")))?;
    let mut dirs = vec![start];
    let mut i = 0;
    while i < dirs.len() {
        let here = dirs[i].clone();
        i += 1;
        let Some(pkg) = packages.iter().find(|p| dir_of(p).as_ref() == Some(&here)) else {
            continue; // a path dependency outside the workspace: its files count, no deeper
        };
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            if dep["kind"] == "dev" {
                continue;
            }
            if let Some(path) = dep["path"].as_str().map(PathBuf::from)
                && !dirs.contains(&path)
            {
                dirs.push(path);
            }
        }
    }
    Ok(dirs)
}

/// Files under `dir`, recursively, leaving out `target` directories and `.git`.
fn files_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", d.display())))?
        {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !matches!(entry.file_name().to_str(), Some("target" | ".git")) {
                    todo.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// FNV-1a (64 bit) over `salt` and each file's path relative to `root` and content, as
/// hex. Stable across Rust releases, unlike `DefaultHasher`.
fn digest(root: &Path, files: &[PathBuf], salt: &str) -> io::Result<String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(salt.as_bytes());
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(f);
        eat(rel.to_string_lossy().as_bytes());
        eat(&std::fs::read(f)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.display())))?);
    }
    Ok(format!("{h:016x}"))
}

/// Writes an executable shell script release (for releases that misbehave on purpose).
pub fn script(dir: &Path, name: &str, body: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inputs_are_hello_its_path_dependencies_and_the_lock_file() {
        let root = workspace_root();
        let files = inputs().unwrap();
        let rel: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        for must in [
            "Cargo.toml",
            "Cargo.lock",
            "examples/hello/Cargo.toml",
            "examples/hello/src/main.rs",
            "crates/blargh/Cargo.toml",
            "crates/blargh/src/lib.rs",
            "crates/blargh-proto/Cargo.toml",
            "crates/blargh-proto/src/lib.rs",
        ] {
            assert!(
                rel.iter().any(|r| r == must),
                "{must} missing from {rel:#?}"
            );
        }
        // Crates hello does not depend on do not.
        assert!(!rel.iter().any(|r| r.starts_with("crates/cargo-blargh/")));
        assert!(!rel.iter().any(|r| r.starts_with("target/")));
    }

    #[test]
    fn the_digest_changes_with_any_input_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/deep/er")).unwrap();
        std::fs::create_dir_all(root.join("target/debug")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[package]\n").unwrap();
        std::fs::write(root.join("src/deep/er/mod.rs"), "fn a() {}").unwrap();
        std::fs::write(root.join("target/debug/junk"), "1").unwrap();
        let fp = || digest(root, &files_under(root).unwrap_or_default(), "v1").unwrap();
        let sorted = |mut v: Vec<PathBuf>| {
            v.sort();
            v
        };
        let before = fp();
        assert_eq!(fp(), before, "deterministic");
        assert_eq!(
            sorted(files_under(root).unwrap()),
            vec![root.join("Cargo.toml"), root.join("src/deep/er/mod.rs")]
        );

        std::fs::write(root.join("target/debug/junk"), "2").unwrap();
        assert_eq!(fp(), before, "build output does not count");

        std::fs::write(root.join("src/deep/er/mod.rs"), "fn b() {}").unwrap();
        let edited = fp();
        assert_ne!(edited, before, "a nested source edit counts");

        std::fs::write(root.join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        let manifest = fp();
        assert_ne!(manifest, edited, "a manifest edit counts");

        std::fs::write(root.join("src/new.rs"), "").unwrap();
        assert_ne!(fp(), manifest, "a new file counts");

        let files = files_under(root).unwrap();
        assert_ne!(
            digest(root, &files, "v1").unwrap(),
            digest(root, &files, "v2").unwrap(),
            "the version counts"
        );
    }
}
