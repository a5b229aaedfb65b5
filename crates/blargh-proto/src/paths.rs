//! The server's paths, in one place: where an app's root and agent live, and the
//! [`Layout`] of what the agent keeps under that root.
//!
//! ```text
//! <root>/
//!   releases/<id>/app            the release's executable (0755)
//!   releases/<id>/release.json   its manifest
//!   releases/<id>/release.tar    a tree release: the archive it arrived as (no `app`)
//!   releases/<id>/tree/          a tree release, unpacked: its working directory
//!   current -> releases/<id>     what runs (and what starts at boot)
//!   previous -> releases/<id>    what `rollback` goes back to
//!   data/                        persists across releases; handed to the app
//!   env                          KEY=VALUE lines for the app (0600)
//!   lock.json                    the deploy lock, when held
//!   audit.log                    one JSON line per receive / activate / rollback / failure
//!   logs/app.log                 the app's stdout and stderr, each line tagged with its release
//!   agent/blargh                 the agent executable (installed by seed)
//!   settings.json                settings set by `configure` (override the agent's flags)
//!   agent.sock                   control socket (0600, or 0660 with a group)
//!   run/                         notify sockets; incoming/ holds uploads in progress
//! ```

use std::path::{Path, PathBuf};

use crate::control::SOCKET_FILE;
use crate::manifest::{ARCHIVE_FILE, BINARY_FILE, MANIFEST_FILE, TREE_DIR};
use crate::names::{AppName, ReleaseId};

/// Where every app's root directory lives on a server.
pub const APPS_DIR: &str = "/var/lib/blargh";

/// The app's root directory on a server: `/var/lib/blargh/<app>`.
pub fn app_root(app: &AppName) -> PathBuf {
    Path::new(APPS_DIR).join(app.as_str())
}

/// Where seed installs the app's agent executable: `/var/lib/blargh/<app>/agent/blargh`.
pub fn agent_path(app: &AppName) -> PathBuf {
    Layout::new(app_root(app)).agent()
}

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
    pub fn release_dir(&self, id: &ReleaseId) -> PathBuf {
        self.releases().join(id.as_str())
    }
    /// Executable of release `id`.
    pub fn binary(&self, id: &ReleaseId) -> PathBuf {
        self.release_dir(id).join(BINARY_FILE)
    }
    /// Archive a tree release arrived as (its manifest's sha256; the next delta's base).
    pub fn archive(&self, id: &ReleaseId) -> PathBuf {
        self.release_dir(id).join(ARCHIVE_FILE)
    }
    /// Directory a tree release is unpacked into (its working directory).
    pub fn tree(&self, id: &ReleaseId) -> PathBuf {
        self.release_dir(id).join(TREE_DIR)
    }
    /// Manifest of release `id`.
    pub fn manifest(&self, id: &ReleaseId) -> PathBuf {
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
    /// Directory of the agent executable that seed installs.
    pub fn agent_dir(&self) -> PathBuf {
        self.root.join("agent")
    }
    /// The agent executable that seed installs.
    pub fn agent(&self) -> PathBuf {
        self.agent_dir().join("blargh")
    }
    /// The agent's persisted settings (see `Request::Configure`).
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings.json")
    }
    /// Uploads in progress; never visible as releases.
    pub fn incoming(&self) -> PathBuf {
        self.root.join("incoming")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_an_app() {
        let app: AppName = "shop".parse().unwrap();
        assert_eq!(app_root(&app), Path::new("/var/lib/blargh/shop"));
        assert_eq!(
            agent_path(&app),
            Path::new("/var/lib/blargh/shop/agent/blargh")
        );
        let l = Layout::new(app_root(&app));
        let id: ReleaseId = "20261128T153210.123Z-0badcafe".parse().unwrap();
        assert_eq!(
            l.binary(&id),
            Path::new("/var/lib/blargh/shop/releases/20261128T153210.123Z-0badcafe/app")
        );
        assert_eq!(l.socket(), Path::new("/var/lib/blargh/shop/agent.sock"));
        assert_eq!(
            l.settings(),
            Path::new("/var/lib/blargh/shop/settings.json")
        );
    }
}
