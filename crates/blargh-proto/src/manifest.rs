//! The release manifest: `releases/<id>/release.json`, written by the agent when a release
//! is received and read by the app library to tell the app what it runs.

use serde::{Deserialize, Serialize};

use crate::names::ReleaseId;

/// File name of the manifest inside a release directory.
pub const MANIFEST_FILE: &str = "release.json";
/// File name of the executable inside a release directory.
pub const BINARY_FILE: &str = "app";

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
    /// Lower-case hex sha256 of the executable.
    pub sha256: String,
    /// Size of the executable in bytes.
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
        };
        assert_eq!(ReleaseManifest::from_json(&m.to_json()).unwrap(), m);
        let minimal = r#"{"id":"x","sha256":"00","size":1,"deployed_at":"t"}"#;
        let parsed = ReleaseManifest::from_json(minimal).unwrap();
        assert_eq!(parsed.version, None);
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
