//! Wall-clock timestamps as the agent writes them: RFC 3339 in UTC, and release ids.

use std::time::SystemTime;

/// Now, as `2026-11-28T15:32:10.123Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A release id for a binary received now: `20261128T153210.123Z-<first 8 hex of sha256>`.
/// Ids sort by receive time (to the millisecond).
pub fn release_id(at: SystemTime, sha256: &str) -> String {
    let stamp: String = humantime::format_rfc3339_millis(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("{stamp}-{}", &sha256[..8.min(sha256.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn release_ids_sort_by_time() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let id = release_id(t, "0badcafe00");
        assert_eq!(id, "20261118T110640.000Z-0badcafe");
        let later = release_id(t + Duration::from_millis(1), "00000000");
        assert!(later > id);
    }
}
