//! The app's captured stdout and stderr: one file (`logs/app.log`, rotated once at 16 MiB)
//! with each line tagged by time, release and stream, plus each process's last lines in
//! memory for error messages. A line is kept up to [`MAX_LINE`] bytes.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::time::now_rfc3339;

/// Size at which `app.log` is moved to `app.log.1`.
const ROTATE_AT: u64 = 16 * 1024 * 1024;
/// Longest line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines kept in memory per process.
const RECENT_LINES: usize = 40;

/// The app log file shared by every process of the app.
#[derive(Debug)]
pub struct AppLog {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl AppLog {
    /// The log in directory `dir` (created if missing).
    pub fn open(dir: &Path) -> io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        Ok(Arc::new(AppLog {
            path: dir.join("app.log"),
            file: Mutex::new(None),
        }))
    }

    /// Appends one line as `<time> <release> <stream>| <text>`.
    pub fn write(&self, release: &str, stream: &str, text: &str) {
        let line = format!("{} {release} {stream}| {text}\n", now_rfc3339());
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if guard
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.len() > ROTATE_AT)
        {
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
            *guard = None;
        }
        if guard.is_none() {
            *guard = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
        }
        if let Some(f) = guard.as_mut() {
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// The last `n` lines, oldest first; only those of `release` when given.
    pub fn tail(&self, release: Option<&str>, n: usize) -> io::Result<Vec<String>> {
        let mut text = String::new();
        for p in [self.path.with_extension("log.1"), self.path.clone()] {
            match std::fs::read_to_string(&p) {
                Ok(t) => text.push_str(&t),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| release.is_none_or(|r| l.split(' ').nth(1) == Some(r)))
            .collect();
        let skip = lines.len().saturating_sub(n);
        Ok(lines[skip..].iter().map(|s| s.to_string()).collect())
    }
}

/// The last lines one process wrote, for the error shown when it fails to start.
#[derive(Debug, Default)]
pub struct RecentLines(Mutex<VecDeque<String>>);

impl RecentLines {
    fn push(&self, line: String) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == RECENT_LINES {
            q.pop_front();
        }
        q.push_back(line);
    }
    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Copies `reader` line by line into the app log and `recent` until it closes. A line
/// longer than [`MAX_LINE`] is cut there and marked, and the rest of it is dropped, so an
/// app that never writes a newline cannot grow the agent.
pub fn capture(
    reader: impl AsyncRead + Unpin + Send + 'static,
    release: String,
    stream: &'static str,
    log: Arc<AppLog>,
    recent: Arc<RecentLines>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::with_capacity(256);
        let emit = |raw: &[u8], cut: bool| {
            let text = String::from_utf8_lossy(raw);
            let text = text.trim_end_matches('\r');
            let text = if cut {
                format!("{text} [line cut at {MAX_LINE} bytes; the rest of it is dropped]")
            } else {
                text.to_string()
            };
            log.write(&release, stream, &text);
            recent.push(format!("{stream}| {text}"));
        };
        // True while dropping the rest of a line already cut.
        let mut dropping = false;
        loop {
            let buf = match reader.fill_buf().await {
                Ok([]) | Err(_) => break,
                Ok(buf) => buf,
            };
            let (chunk, newline) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], true),
                None => (buf, false),
            };
            let used = chunk.len() + usize::from(newline);
            if !dropping {
                let room = MAX_LINE - line.len();
                if chunk.len() > room {
                    line.extend_from_slice(&chunk[..room]);
                    emit(&line, true);
                    line.clear();
                    dropping = !newline;
                } else {
                    line.extend_from_slice(chunk);
                    if newline {
                        emit(&line, false);
                        line.clear();
                    }
                }
            } else if newline {
                dropping = false;
            }
            reader.consume(used);
        }
        if !line.is_empty() {
            emit(&line, false);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_by_release() {
        let dir = tempfile::tempdir().unwrap();
        let log = AppLog::open(dir.path()).unwrap();
        log.write("r1", "out", "one");
        log.write("r2", "err", "two");
        log.write("r1", "out", "three");
        let all = log.tail(None, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[1].ends_with("r2 err| two"), "{}", all[1]);
        let r1 = log.tail(Some("r1"), 1).unwrap();
        assert_eq!(r1.len(), 1);
        assert!(r1[0].ends_with("r1 out| three"));
    }

    #[tokio::test]
    async fn captures_lines_and_keeps_the_last_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = AppLog::open(dir.path()).unwrap();
        let recent = Arc::new(RecentLines::default());
        let input: Vec<u8> = (0..50)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        capture(
            std::io::Cursor::new(input),
            "r".into(),
            "out",
            log.clone(),
            recent.clone(),
        )
        .await
        .unwrap();
        let kept = recent.lines();
        assert_eq!(kept.len(), RECENT_LINES);
        assert_eq!(kept.last().unwrap(), "out| line 49");
        assert_eq!(log.tail(None, 100).unwrap().len(), 50);
    }

    #[tokio::test]
    async fn a_long_line_is_cut_marked_and_the_next_line_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = AppLog::open(dir.path()).unwrap();
        let recent = Arc::new(RecentLines::default());
        let mut input = vec![b'x'; 3 * MAX_LINE + 17];
        input.extend_from_slice(b"\nnext\n");
        input.extend(std::iter::repeat_n(b'y', MAX_LINE));
        input.extend_from_slice(b"\nlast without newline");
        capture(
            std::io::Cursor::new(input),
            "r".into(),
            "out",
            log.clone(),
            recent.clone(),
        )
        .await
        .unwrap();
        let kept = recent.lines();
        assert_eq!(kept.len(), 4, "{kept:?}");
        assert!(kept[0].starts_with("out| xxx"));
        assert!(kept[0].ends_with("[line cut at 16384 bytes; the rest of it is dropped]"));
        assert_eq!(kept[0].matches('x').count(), MAX_LINE);
        assert_eq!(kept[1], "out| next");
        // Exactly MAX_LINE bytes is not cut.
        assert_eq!(kept[2].len(), "out| ".len() + MAX_LINE);
        assert_eq!(kept[3], "out| last without newline");
    }
}
