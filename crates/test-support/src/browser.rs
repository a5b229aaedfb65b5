//! A real browser for page tests: Debian's headless Chromium, driven from its command line
//! (`--dump-dom` for what a page ends up showing, `--screenshot` for how it looks).
//!
//! Each run gets a fresh profile directory, its own process group (killed on timeout, and
//! swept after each run so no helper process outlives it) and no network access other than
//! the page: background networking, component updates, sync and QUIC are off.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium.
#[derive(Debug, Clone)]
pub struct Chromium {
    bin: PathBuf,
    timeout: Duration,
}

impl Chromium {
    /// The browser at [`CHROMIUM`]; panics, saying how to install it, when it is missing.
    /// Page tests must not pass silently on a machine without a browser.
    pub fn find() -> Chromium {
        let bin = PathBuf::from(CHROMIUM);
        assert!(
            bin.is_file(),
            "Chromium not found at {CHROMIUM}: this test loads the page in a real browser. \
             Install it with `apt-get install chromium` (Debian; \
             `apt-get install -y --no-install-recommends chromium` is enough)"
        );
        Chromium {
            bin,
            timeout: Duration::from_secs(90),
        }
    }

    /// The DOM of `url` once loaded, serialized as HTML (`--dump-dom`).
    pub fn dump_dom(&self, url: &str) -> io::Result<String> {
        let out = self.run(&["--dump-dom", url])?;
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if !dom.contains("<html") {
            return Err(io::Error::other(format!(
                "chromium printed no DOM for {url}; its stderr:\n{}",
                out.stderr
            )));
        }
        Ok(dom)
    }

    /// A PNG screenshot of `url` in a `width`×`height` window, written to `path`.
    pub fn screenshot(&self, url: &str, path: &Path, width: u32, height: u32) -> io::Result<()> {
        let _ = std::fs::remove_file(path);
        let shot = format!("--screenshot={}", path.display());
        let size = format!("--window-size={width},{height}");
        let out = self.run(&[&shot, &size, "--hide-scrollbars", url])?;
        let head = std::fs::read(path).map(|b| b.get(..8).map(<[u8]>::to_vec));
        match head {
            Ok(Some(magic)) if magic == b"\x89PNG\r\n\x1a\n" => Ok(()),
            _ => Err(io::Error::other(format!(
                "chromium wrote no PNG to {}; its stderr:\n{}",
                path.display(),
                out.stderr
            ))),
        }
    }

    /// Runs Chromium with the common flags and `args`, with a fresh profile.
    fn run(&self, args: &[&str]) -> io::Result<RunOutput> {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir()?;
        let profile = dir.path().join("profile");
        let stdout_path = dir.path().join("stdout");
        let stderr_path = dir.path().join("stderr");
        let mut child = Command::new(&self.bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path)?)
            .stderr(std::fs::File::create(&stderr_path)?)
            .process_group(0)
            .spawn()?;
        let pgid = child.id();
        let t0 = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if t0.elapsed() > self.timeout {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Whatever is left of this run's process group (renderers, crash handler) goes.
        kill_group(pgid);
        if status.is_none() {
            let _ = child.wait();
        }
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let Some(status) = status else {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "chromium {args:?} did not finish within {:?}; its stderr:\n{stderr}",
                    self.timeout
                ),
            ));
        };
        if !status.success() {
            return Err(io::Error::other(format!(
                "chromium {args:?} failed ({status}); its stderr:\n{stderr}"
            )));
        }
        Ok(RunOutput {
            stdout: std::fs::read(&stdout_path)?,
            stderr,
        })
    }
}

struct RunOutput {
    stdout: Vec<u8>,
    stderr: String,
}

/// SIGKILL to the process group `pgid` (which this module created for one run).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
