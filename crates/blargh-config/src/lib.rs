//! The deploy configuration a developer writes in their app's Cargo.toml under
//! `[package.metadata.blargh]`, parsed, checked and resolved for one destination.
//!
//! ```toml
//! [package.metadata.blargh]
//! hosts = ["deploy@203.0.113.10"]
//! env = { RUST_LOG = "info" }
//! before_activate = ["{bin}", "migrate"]
//!
//! [package.metadata.blargh.destinations.staging]
//! hosts = ["deploy@staging.example.com"]
//! env = { RUST_LOG = "debug" }
//! ```
//!
//! [`load`] reads a Cargo.toml, [`parse`] takes its text; both return a [`DeployConfig`]
//! with every default filled in, or a [`ConfigError`] that names the file and line, the key
//! by its full dotted path, what was found and what to write instead:
//!
//! ```
//! let text = "[package]\nname = \"shop\"\n\n[package.metadata.blargh]\nhostz = [\"a@b\"]\n";
//! let err = blargh_config::parse(text, "Cargo.toml".as_ref(), None).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "Cargo.toml:5:1: unknown key `package.metadata.blargh.hostz`; did you mean `hosts`?"
//! );
//! ```
//!
//! [`skeleton`] and [`add_skeleton`] write the commented section `cargo blargh init` adds.
//! Every key and rule is described in `docs/config.md`. Nothing here touches the network or
//! writes files.

mod check;
mod config;
mod error;
mod parse;
mod skeleton;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use config::{
    AutoRollback, BIN_PLACEHOLDER, DEFAULT_AUTO_ROLLBACK, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_KEEP_RELEASES, DEFAULT_LISTEN_ADDRESS, DEFAULT_LISTEN_NAME, DEFAULT_LOCK_EXPIRY,
    DEFAULT_MAX_RELEASE_SIZE, DEFAULT_READY_TIMEOUT, DEFAULT_WATCHDOG_TIMEOUT, DeployConfig,
    MAX_APP_LEN, MAX_RELEASE_SIZE, MIN_KEEP_RELEASES, MIN_WATCHDOG_TIMEOUT, ReleaseContent,
};
pub use error::{ConfigError, ErrorKind, Location};
pub use parse::KEYS;
pub use skeleton::{add_skeleton, skeleton};

/// Reads the Cargo.toml at `cargo_toml` (or `cargo_toml/Cargo.toml` when it is a
/// directory) and resolves its `[package.metadata.blargh]` for `destination` (`-d NAME`),
/// or for the top level when `None`.
pub fn load(cargo_toml: &Path, destination: Option<&str>) -> Result<DeployConfig, ConfigError> {
    let file: PathBuf = if cargo_toml.is_dir() {
        cargo_toml.join("Cargo.toml")
    } else {
        cargo_toml.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "; run cargo blargh in the app's package directory"
        } else {
            ""
        };
        ConfigError::new(ErrorKind::Io, &file, format!("cannot read it: {e}{hint}"))
    })?;
    parse(&text, &file, destination)
}

/// Resolves the `[package.metadata.blargh]` section of `text`, the contents of the
/// Cargo.toml at `file` (used in error messages and kept in [`DeployConfig::file`]), for
/// `destination` (`-d NAME`), or for the top level when `None`.
///
/// Every destination is checked, not only the chosen one. The chosen one is merged over the
/// top level: `env`, `listen` and `auto_rollback` key by key, every other key replaced whole.
pub fn parse(
    text: &str,
    file: &Path,
    destination: Option<&str>,
) -> Result<DeployConfig, ConfigError> {
    parse::parse(text, file, destination)
}
