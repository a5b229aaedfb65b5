//! The audit log: one JSON line per receive, activation, rollback, failure and restart,
//! appended and never rewritten.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use blargh_proto::control::AuditEvent;

use crate::time::now_rfc3339;

/// Appends events to `audit.log`.
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Audit {
    /// An audit log at `path` (created on first write).
    pub fn new(path: PathBuf) -> Self {
        Audit {
            path,
            lock: Mutex::new(()),
        }
    }

    /// Records an event stamped now. Failures to write are reported on the agent's stderr,
    /// never to the caller: an unwritable audit log must not stop a rollback.
    pub fn record(
        &self,
        event: &str,
        release: Option<&str>,
        previous: Option<&str>,
        by: Option<&str>,
        detail: Option<&str>,
    ) {
        let ev = AuditEvent {
            at: now_rfc3339(),
            event: event.to_string(),
            release: release.map(str::to_string),
            previous: previous.map(str::to_string),
            by: by.map(str::to_string),
            detail: detail.map(str::to_string),
        };
        let line = serde_json::to_string(&ev).expect("audit events serialize") + "\n";
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Flushed line by line: an event the agent reported is on disk.
        let res = crate::durable::append(&self.path, line.as_bytes());
        if let Err(e) = res {
            eprintln!("blargh-agent: cannot write {}: {e}", self.path.display());
        }
    }

    /// The last `n` events, oldest first. Lines that do not parse are skipped.
    pub fn tail(&self, n: usize) -> io::Result<Vec<AuditEvent>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let events: Vec<AuditEvent> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let skip = events.len().saturating_sub(n);
        Ok(events.into_iter().skip(skip).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_json_lines_and_tails() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::new(dir.path().join("audit.log"));
        assert!(audit.tail(5).unwrap().is_empty());
        for i in 0..4 {
            let id = format!("r{i}");
            audit.record("activate", Some(&id), None, Some("ana"), None);
        }
        let last = audit.tail(2).unwrap();
        assert_eq!(last.len(), 2);
        assert_eq!(last[0].release.as_deref(), Some("r2"));
        assert_eq!(last[1].event, "activate");
        let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn every_event_is_flushed() {
        use crate::durable::Op;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::new(path.clone());
        audit.record("deploy", Some("r1"), None, Some("ana"), None);
        audit.record("rollback", Some("r0"), None, Some("ana"), None);
        let flushes = crate::durable::journal::under(dir.path())
            .into_iter()
            .filter(|op| *op == Op::SyncFile(path.clone()))
            .count();
        assert_eq!(flushes, 2);
    }
}
