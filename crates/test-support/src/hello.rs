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
pub fn build(version: &str, profile: Profile) -> io::Result<PathBuf> {
    let dir = workspace_root().join("target/test-releases");
    std::fs::create_dir_all(&dir)?;
    let suffix = match profile {
        Profile::Debug => "debug",
        Profile::Release => "release",
    };
    let out = dir.join(format!("hello-{version}-{suffix}"));
    // One builder at a time; the others find the result.
    let lock = std::fs::File::create(dir.join(".lock"))?;
    lock.lock()?;
    if out.exists() && !stale(&out)? {
        return Ok(out);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
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
    Ok(out)
}

/// True when a cached build is older than a source file of hello or of the library.
fn stale(out: &Path) -> io::Result<bool> {
    let built = std::fs::metadata(out)?.modified()?;
    let root = workspace_root();
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for dir in [
        "examples/hello/src",
        "crates/blargh/src",
        "crates/blargh-proto/src",
    ] {
        for entry in std::fs::read_dir(root.join(dir))? {
            newest = newest.max(entry?.metadata()?.modified()?);
        }
    }
    Ok(newest > built)
}

/// Writes an executable shell script release (for releases that misbehave on purpose).
pub fn script(dir: &Path, name: &str, body: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}
