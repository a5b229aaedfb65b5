//! Where the agent keeps things under the app's root directory.
//!
//! ```text
//! <root>/
//!   releases/<id>/app            the release's executable (0755)
//!   releases/<id>/release.json   its manifest
//!   current -> releases/<id>     what runs (and what starts at boot)
//!   previous -> releases/<id>    what `rollback` goes back to
//!   data/                        persists across releases; handed to the app
//!   env                          KEY=VALUE lines for the app (0600)
//!   lock.json                    the deploy lock, when held
//!   audit.log                    one JSON line per receive / activate / rollback / failure
//!   logs/app.log                 the app's stdout and stderr, each line tagged with its release
//!   agent.sock                   control socket (0600, or 0660 with a group)
//!   run/                         notify sockets; incoming/ holds uploads in progress
//! ```

use std::path::{Path, PathBuf};

use blargh_proto::control::SOCKET_FILE;
use blargh_proto::manifest::{BINARY_FILE, MANIFEST_FILE};

/// Paths under one app's root directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Directory holding one directory per release.
    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }
    /// Directory of release `id`.
    pub fn release_dir(&self, id: &str) -> PathBuf {
        self.releases().join(id)
    }
    /// Executable of release `id`.
    pub fn binary(&self, id: &str) -> PathBuf {
        self.release_dir(id).join(BINARY_FILE)
    }
    /// Manifest of release `id`.
    pub fn manifest(&self, id: &str) -> PathBuf {
        self.release_dir(id).join(MANIFEST_FILE)
    }
    /// Symlink to the current release.
    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }
    /// Symlink to the previous release.
    pub fn previous_link(&self) -> PathBuf {
        self.root.join("previous")
    }
    /// The app's persistent data directory.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    /// The app's environment file.
    pub fn env_file(&self) -> PathBuf {
        self.root.join("env")
    }
    /// The audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.log")
    }
    /// Directory of the app's captured output.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join(SOCKET_FILE)
    }
    /// The deploy lock.
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock.json")
    }
    /// Runtime files (notify sockets).
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    /// Uploads in progress; never visible as releases.
    pub fn incoming(&self) -> PathBuf {
        self.root.join("incoming")
    }
}
