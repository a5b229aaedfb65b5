//! The release manifest: `releases/<id>/release.json`, written by the agent when a release
//! is received and read by the app library to tell the app what it runs.

use serde::{Deserialize, Serialize};

use crate::names::ReleaseId;

/// File name of the manifest inside a release directory.
pub const MANIFEST_FILE: &str = "release.json";
/// File name of the executable inside a release directory (a single-binary release), and
/// inside the tree of an `include` release.
pub const BINARY_FILE: &str = "app";
/// File name of the archive a tree release arrived as, kept in its release directory: what
/// the manifest's sha256 covers, and the base of the next deploy's delta.
pub const ARCHIVE_FILE: &str = "release.tar";
/// Directory, inside a release directory, that a tree release is unpacked into: its
/// working directory.
pub const TREE_DIR: &str = "tree";
/// The most arguments a tree's start command may have.
pub const MAX_START_ARGS: usize = 64;

/// A release that is a directory tree rather than one executable: it travels as a tar
/// archive (the manifest's sha256 and size are the archive's), is unpacked into
/// `releases/<id>/tree/`, and runs `start` there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseTree {
    /// The command that starts it: `start[0]` a relative path inside the tree (`app` for a
    /// binary shipped with `include`), then its arguments.
    pub start: Vec<String>,
}

impl ReleaseTree {
    /// Checks `start` as a peer sends it: 1 to [`MAX_START_ARGS`] arguments, the program a
    /// relative path inside the tree (no `..`, not absolute, not empty), no NUL anywhere.
    pub fn check(&self) -> Result<(), String> {
        let Some(program) = self.start.first() else {
            return Err("the start command is empty".into());
        };
        if self.start.len() > MAX_START_ARGS {
            return Err(format!(
                "the start command has {} arguments; at most {MAX_START_ARGS}",
                self.start.len()
            ));
        }
        if self.start.iter().any(|a| a.contains('\0')) {
            return Err("the start command contains a NUL byte".into());
        }
        if !is_inside_path(program) {
            return Err(format!(
                "the start program {program:?} is not a relative path inside the release \
                 (no leading /, no ..)"
            ));
        }
        Ok(())
    }
}

/// True when `path` is relative, non-empty and has no `..` component: a path that stays
/// inside the directory it is taken from (as long as no symlink on the way leads out).
pub fn is_inside_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|c| c != ".." && !c.contains('\0'))
        && path.split('/').any(|c| !c.is_empty() && c != ".")
}

/// What is known about one release. Times are RFC 3339 strings in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// Directory name under `releases/`; sorts by receive time.
    pub id: ReleaseId,
    /// The app's version, as the developer's build reported it.
    #[serde(default)]
    pub version: Option<String>,
    /// Git commit the release was built from.
    #[serde(default)]
    pub git_sha: Option<String>,
    /// Lower-case hex sha256 of the executable (of the archive, for a tree release).
    pub sha256: String,
    /// Size of the executable (of the archive, for a tree release) in bytes.
    pub size: u64,
    /// When the binary was built, if the sender knew.
    #[serde(default)]
    pub built_at: Option<String>,
    /// When the agent received it.
    pub deployed_at: String,
    /// Who sent it (`user@host` of the developer, or the CI's identity).
    #[serde(default)]
    pub deployed_by: Option<String>,
    /// Free text given with the deploy (`--message`).
    #[serde(default)]
    pub message: Option<String>,
    /// Set when the release is a directory tree (see [`ReleaseTree`]); absent for a single
    /// executable, and in every manifest written before trees existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<ReleaseTree>,
}

/// Metadata a sender supplies with a binary; the agent adds id, sha256, size and times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseMeta {
    /// The app's version.
    #[serde(default)]
    pub version: Option<String>,
    /// Git commit the release was built from.
    #[serde(default)]
    pub git_sha: Option<String>,
    /// When the binary was built.
    #[serde(default)]
    pub built_at: Option<String>,
    /// Who sends it.
    #[serde(default)]
    pub deployed_by: Option<String>,
    /// Free text (`--message`).
    #[serde(default)]
    pub message: Option<String>,
    /// The bytes are a tar archive of a directory tree that starts with this command. An
    /// agent too old to know this field stores the archive as an executable; the sender
    /// sees `tree` missing from the manifest it gets back and refuses to go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<ReleaseTree>,
}

impl ReleaseManifest {
    /// Parses a manifest from JSON text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Renders the manifest as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serializes")
    }
}

/// True when `s` is a sha256 as the manifest carries it: 64 lower-case hex digits. Anything
/// else from a peer is refused before it names a file (a "sha256" of `/dev/zero` or
/// `../x` must never become a path).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_tolerates_missing_optionals() {
        let m = ReleaseManifest {
            id: "20261128T153210Z-0badcafe".parse().unwrap(),
            version: Some("1.2.3".into()),
            git_sha: None,
            sha256: "ab".repeat(32),
            size: 42,
            built_at: None,
            deployed_at: "2026-11-28T15:32:10Z".into(),
            deployed_by: Some("ana@laptop".into()),
            message: None,
            tree: None,
        };
        assert_eq!(ReleaseManifest::from_json(&m.to_json()).unwrap(), m);
        assert!(
            !m.to_json().contains("tree"),
            "a binary release writes no tree"
        );
        let minimal = r#"{"id":"x","sha256":"00","size":1,"deployed_at":"t"}"#;
        let parsed = ReleaseManifest::from_json(minimal).unwrap();
        assert_eq!(parsed.version, None);
        assert_eq!(parsed.tree, None, "old manifests are single binaries");
        let tree = ReleaseManifest {
            tree: Some(ReleaseTree {
                start: vec!["bin/shop".into(), "start".into()],
            }),
            ..m
        };
        assert_eq!(ReleaseManifest::from_json(&tree.to_json()).unwrap(), tree);
    }

    #[test]
    fn a_start_command_stays_inside_the_tree() {
        let tree = |s: &[&str]| ReleaseTree {
            start: s.iter().map(|s| s.to_string()).collect(),
        };
        assert!(tree(&["app"]).check().is_ok());
        assert!(tree(&["bin/shop", "start"]).check().is_ok());
        assert!(tree(&["./bin/shop"]).check().is_ok());
        for bad in [
            &[][..],
            &["/bin/sh"],
            &["../x"],
            &["bin/../../x"],
            &[""],
            &["."],
            &["a\0b"],
        ] {
            assert!(tree(bad).check().is_err(), "{bad:?}");
        }
        assert!(tree(&["x"; MAX_START_ARGS + 1]).check().is_err());
    }

    #[test]
    fn only_64_lower_case_hex_digits_are_a_sha256() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)), "upper case");
        assert!(!is_sha256_hex(&"a".repeat(63)));
        assert!(!is_sha256_hex(&"a".repeat(65)));
        assert!(!is_sha256_hex("/dev/zero"));
        assert!(!is_sha256_hex(&format!("../{}", "a".repeat(61))));
        assert!(!is_sha256_hex(&"g".repeat(64)));
    }
}
