//! An agent that fits a host older than this machine: when the running cargo-blargh needs a
//! newer glibc than a host has, seed builds cargo-blargh again for that host's glibc with
//! `cargo zigbuild`, from the source it was built from (the workspace whose path was baked
//! in at build time, or the crate's source that `cargo install` left in cargo's registry),
//! and keeps the result in a cache keyed by version, build and target, so the next seed of
//! such a host installs it without building.

use std::path::{Path, PathBuf};

use blargh_platform::{Libc, Platform};

use crate::build::{INSTALL_ZIGBUILD, Tools};

/// The package and binary of the agent.
const PACKAGE: &str = "cargo-blargh";

/// Where built agents are kept: `$BLARGH_AGENT_CACHE`, else `$XDG_CACHE_HOME/blargh/agents`,
/// else `~/.cache/blargh/agents`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BLARGH_AGENT_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("blargh").join("agents")
}

/// The zigbuild target for `platform`: its gnu triple with its glibc version
/// (`x86_64-unknown-linux-gnu.2.31`); `None` for a host without glibc.
pub fn zig_target(platform: &Platform) -> Option<String> {
    let Libc::Glibc { major, minor } = platform.libc else {
        return None;
    };
    Some(format!("{}.{major}.{minor}", platform.target_triple()?))
}

/// The cached agent for `target` built from the running executable's source: the
/// directory names the version and the first 12 hex digits of `self_sha256` (the running
/// executable's), so another build of the same version builds anew.
pub fn cached_path(cache: &Path, self_sha256: &str, target: &str) -> PathBuf {
    cache
        .join(format!(
            "{}-{}",
            env!("CARGO_PKG_VERSION"),
            &self_sha256[..12.min(self_sha256.len())]
        ))
        .join(target)
        .join(PACKAGE)
}

/// The Cargo.toml of the source this executable was built from, if it is still at hand:
/// the package directory baked in at build time, or the crate's source in cargo's registry
/// (what `cargo install cargo-blargh` built from).
pub fn source_manifest() -> Option<PathBuf> {
    let baked = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    if is_our_manifest(&baked) {
        return Some(baked);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let dir = format!("{PACKAGE}-{}", env!("CARGO_PKG_VERSION"));
    std::fs::read_dir(cargo_home.join("registry").join("src"))
        .ok()?
        .flatten()
        .map(|index| index.path().join(&dir).join("Cargo.toml"))
        .find(|m| is_our_manifest(m))
}

fn is_our_manifest(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(&format!("name = \"{PACKAGE}\"")))
}

/// How to get an agent for `target` when seed cannot build one: `--agent-binary` and the
/// commands that make one.
pub fn how_to_make_one(target: &str) -> String {
    let musl = target
        .split('.')
        .next()
        .unwrap_or(target)
        .replace("-gnu", "-musl");
    format!(
        "pass an agent that fits with `--agent-binary FILE`, made for example with\n    \
         {INSTALL_ZIGBUILD}\n    cargo zigbuild --release -p {PACKAGE} --target {target}\n\
         (in a checkout of cargo-blargh {version}), or a static one: `rustup target add \
         {musl}` and `cargo build --release -p {PACKAGE} --target {musl}`",
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// An agent that fits `platform`, from the cache or built now with `cargo zigbuild`;
/// `self_sha256` is the running executable's. Says on stderr what it does. The error says
/// why not, and how to get one otherwise.
pub fn fitting_agent(platform: &Platform, self_sha256: &str) -> Result<(PathBuf, Vec<u8>), String> {
    let target = zig_target(platform).ok_or("the host has no glibc to build for")?;
    let cache = cache_dir();
    let cached = cached_path(&cache, self_sha256, &target);
    if let Ok(bytes) = std::fs::read(&cached) {
        eprintln!(
            "using the agent built earlier for {target}: {}",
            cached.display()
        );
        return Ok((cached, bytes));
    }
    let Some(manifest) = source_manifest() else {
        return Err(format!(
            "the source of this cargo-blargh ({}) is not at hand to build one for {target}; {}",
            env!("CARGO_PKG_VERSION"),
            how_to_make_one(&target)
        ));
    };
    let tools = Tools::detect();
    if !tools.complete() {
        return Err(format!(
            "building one for {target} needs cargo-zigbuild and zig, and this machine lacks \
             {}; install them with\n    {INSTALL_ZIGBUILD}\nor {}",
            tools.missing(),
            how_to_make_one(&target)
        ));
    }
    eprintln!(
        "building an agent that fits: cargo zigbuild --release --target {target} \
         (from {}) …",
        manifest.display()
    );
    let t = std::time::Instant::now();
    let mut cmd = crate::build::cargo_command(true, Some(&target));
    cmd.arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", PACKAGE, "--bin", PACKAGE])
        .env("CARGO_TARGET_DIR", cache.join("target"));
    let built = crate::build::run_build(cmd, PACKAGE, true)
        .map_err(|e| format!("{e}; {}", how_to_make_one(&target)))?;
    let bytes =
        std::fs::read(&built).map_err(|e| format!("cannot read {}: {e}", built.display()))?;
    eprintln!(
        "built the agent for {target} in {:.1} s",
        t.elapsed().as_secs_f32()
    );
    // Into the cache under a temporary name, then renamed: never half a file there.
    let dir = cached.parent().expect("has a parent");
    let tmp = dir.join(format!(".{PACKAGE}.{}", std::process::id()));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, &bytes))
        .and_then(|()| std::fs::rename(&tmp, &cached))
        .map_err(|e| format!("cannot keep the agent in {}: {e}", dir.display()))?;
    Ok((cached, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_keyed_by_version_build_and_target() {
        let p = cached_path(
            Path::new("/c"),
            "0123456789abcdef",
            "x86_64-unknown-linux-gnu.2.31",
        );
        assert_eq!(
            p,
            PathBuf::from(format!(
                "/c/{}-0123456789ab/x86_64-unknown-linux-gnu.2.31/cargo-blargh",
                env!("CARGO_PKG_VERSION")
            ))
        );
    }

    #[test]
    fn the_workspace_source_is_found() {
        // Tests run from the workspace the binary was built from.
        let m = source_manifest().unwrap();
        assert!(m.ends_with("crates/cargo-blargh/Cargo.toml"), "{m:?}");
    }

    #[test]
    fn the_advice_names_agent_binary_and_both_ways() {
        let h = how_to_make_one("x86_64-unknown-linux-gnu.2.31");
        for want in [
            "--agent-binary FILE",
            "pip install ziglang",
            "cargo install --locked cargo-zigbuild",
            "cargo zigbuild --release -p cargo-blargh --target x86_64-unknown-linux-gnu.2.31",
            "--target x86_64-unknown-linux-musl",
        ] {
            assert!(h.contains(want), "{want:?} in {h}");
        }
    }
}
