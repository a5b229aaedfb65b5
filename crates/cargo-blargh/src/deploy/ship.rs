//! Getting the release (an executable, or a tree's archive) onto a host with as few bytes
//! as possible: nothing when the host has that sha256, a delta against its current release
//! when this machine still has that release's bytes (cached by earlier deploys), else the
//! whole file compressed.

use std::path::Path;

use blargh_proto::ReleaseId;
use blargh_proto::control::Encoding;
use blargh_proto::manifest::ReleaseMeta;
use sha2::{Digest, Sha256};

use super::{DeploySettings, Payload};
use crate::remote_agent::RemoteAgent;

/// What was shipped to a host.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// The release id on the host.
    pub release: ReleaseId,
    /// `nothing`, `delta` or `whole`.
    pub method: &'static str,
    /// Bytes sent.
    pub bytes: u64,
    /// The host's current release before this deploy.
    pub current: Option<ReleaseId>,
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Keeps a copy of a shipped binary as a future delta base (the newest few only).
pub fn cache_put(dir: &Path, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(sha256);
    if !path.exists() {
        let tmp = dir.join(format!(".{sha256}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, &path)?;
    }
    // Keep the 4 newest.
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    entries.sort();
    let n = entries.len();
    for (_, p) in entries.into_iter().take(n.saturating_sub(4)) {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// Ships `payload` to the agent `ra` (see the module doc). A tree's archive travels the
/// same way as an executable: its delta base is the host's current archive.
pub async fn ship(
    ra: &mut RemoteAgent,
    s: &DeploySettings,
    payload: &Payload,
    sha256: &str,
    by: &str,
) -> Result<Shipped, String> {
    let binary = &payload.bytes[..];
    let status = ra.status().await.map_err(|e| e.to_string())?;
    let current = status.current.as_ref().map(|m| m.id.clone());
    let releases = ra.releases().await.map_err(|e| e.to_string())?;
    if let Some(r) = releases.iter().find(|r| r.manifest.sha256 == sha256) {
        // The same archive with another start command is another release, which the
        // host would not store beside the first (it goes by sha256).
        if r.manifest.tree != payload.tree {
            return Err(format!(
                "the host has these exact bytes as release {} with another start command \
                 ({:?}); change a file of the release too, or activate that one",
                r.manifest.id,
                r.manifest.tree.as_ref().map(|t| &t.start)
            ));
        }
        return Ok(Shipped {
            release: r.manifest.id.clone(),
            method: "nothing",
            bytes: 0,
            current,
        });
    }
    // The server's word is not a path: only a well-formed sha256 names a cache file.
    let base = status
        .current
        .as_ref()
        .filter(|m| blargh_proto::manifest::is_sha256_hex(&m.sha256))
        .and_then(|m| std::fs::read(s.cache_dir.join(&m.sha256)).ok())
        .filter(|b| {
            sha256_hex(b)
                == status
                    .current
                    .as_ref()
                    .map(|m| m.sha256.as_str())
                    .unwrap_or("")
        });
    let (frame, method) = match &base {
        Some(b) => (blargh_delta::encode_delta(b, binary), "delta"),
        None => (blargh_delta::encode_whole(binary), "whole"),
    };
    let meta = ReleaseMeta {
        version: s.version.clone(),
        git_sha: s.git_sha.clone(),
        built_at: None,
        deployed_by: Some(by.to_string()),
        message: s.message.clone(),
        tree: payload.tree.clone(),
    };
    let (release, _) = ra
        .receive(sha256, meta, Encoding::Frame, &frame)
        .await
        .map_err(|e| e.to_string())?;
    // An agent older than trees stores the archive as an executable and says nothing of
    // a tree: it must not be started.
    if release.tree != payload.tree {
        return Err(format!(
            "the agent stored release {} without its tree (it is older than this \
             cargo-blargh); run `cargo blargh seed` to upgrade it, then deploy again",
            release.id
        ));
    }
    Ok(Shipped {
        release: release.id,
        method,
        bytes: frame.len() as u64,
        current,
    })
}
