//! Releases from stacks without a blargh library, for what the agent offers them: a
//! Python app that takes its sockets from `LISTEN_FDS` but cannot send `READY=1`
//! (`assets/no_notify_app.py`).

use std::io;
use std::path::{Path, PathBuf};

/// How the Python app behaves.
#[derive(Debug, Clone, Copy)]
pub struct NoNotifyApp<'a> {
    /// What `GET /` says it is (`hello from VERSION pid N`).
    pub version: &'a str,
    /// Seconds before `GET /up` on its private listener says 200 (503 until then).
    pub warmup_s: f64,
    /// `GET /up` says 503 forever.
    pub never_up: bool,
}

/// Writes the app as an executable `dir/name` (each version a different file, so a
/// different sha256).
pub fn no_notify_app(dir: &Path, name: &str, app: NoNotifyApp<'_>) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let source = include_str!("../assets/no_notify_app.py")
        .replace("@VERSION@", app.version)
        .replace("@WARMUP_S@", &app.warmup_s.to_string())
        .replace("@UP_NEVER@", if app.never_up { "1" } else { "0" });
    let path = dir.join(name);
    std::fs::write(&path, source)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}
