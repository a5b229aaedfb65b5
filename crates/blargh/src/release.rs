//! Facts about the running release and the releases before it, read from the agent's
//! release store (`$BLARGH_ROOT/releases/<id>/release.json`).

use std::io;
use std::path::PathBuf;

pub use blargh_proto::ReleaseManifest;
use blargh_proto::env;
use blargh_proto::manifest::MANIFEST_FILE;
use blargh_proto::paths::Layout;

/// The app's root directory on the server, when running under blargh.
pub fn root() -> Option<PathBuf> {
    std::env::var_os(env::ROOT).map(PathBuf::from)
}

/// The directory that persists across releases, when running under blargh.
pub fn data_dir() -> Option<PathBuf> {
    std::env::var_os(env::DATA_DIR).map(PathBuf::from)
}

/// Id of the running release, when running under blargh.
pub fn current_id() -> Option<String> {
    std::env::var(env::RELEASE_ID).ok()
}

/// The running release's manifest: id, version, git sha, when and by whom it was deployed,
/// and the deploy message. `None` outside blargh or when the manifest cannot be read.
pub fn current() -> Option<ReleaseManifest> {
    let id = current_id()?.parse().ok()?;
    read_manifest(&Layout::new(root()?).manifest(&id)).ok()
}

/// Every release on the server, newest first (the current one included), as a deployment
/// dashboard shows them. Empty outside blargh.
pub fn history() -> io::Result<Vec<ReleaseManifest>> {
    let Some(root) = root() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(Layout::new(root).releases())? {
        let path = entry?.path().join(MANIFEST_FILE);
        // A directory without a readable manifest is not a release (yet): skip it.
        if let Ok(m) = read_manifest(&path) {
            out.push(m);
        }
    }
    out.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(out)
}

fn read_manifest(path: &std::path::Path) -> io::Result<ReleaseManifest> {
    let text = std::fs::read_to_string(path)?;
    ReleaseManifest::from_json(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
