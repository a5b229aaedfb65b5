//! Releases from stacks without a blargh library, for what the agent offers them: a
//! Python app that takes its sockets from `LISTEN_FDS` but cannot send `READY=1`
//! (`assets/no_notify_app.py`); and `mix release`s of examples/elixir-hello.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How the Python app behaves.
#[derive(Debug, Clone, Copy)]
pub struct NoNotifyApp<'a> {
    /// What `GET /` says it is (`hello from VERSION pid N`).
    pub version: &'a str,
    /// Seconds before `GET /up` on its private listener says 200 (503 until then).
    pub warmup_s: f64,
    /// `GET /up` says 503 forever.
    pub never_up: bool,
}

/// Writes the app as an executable `dir/name` (each version a different file, so a
/// different sha256).
pub fn no_notify_app(dir: &Path, name: &str, app: NoNotifyApp<'_>) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let source = include_str!("../assets/no_notify_app.py")
        .replace("@VERSION@", app.version)
        .replace("@WARMUP_S@", &app.warmup_s.to_string())
        .replace("@UP_NEVER@", if app.never_up { "1" } else { "0" });
    let path = dir.join(name);
    std::fs::write(&path, source)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// True when `mix` (Debian's `elixir`) is on PATH.
pub fn have_mix() -> bool {
    Command::new("mix")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `mix release` of examples/elixir-hello at `version` (e.g. `1.0.0`) into `out`, built in
/// a temporary copy of its sources so nothing lands in the repository's tree.
pub fn elixir_hello_release(version: &str, out: &Path) -> io::Result<()> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/elixir-hello");
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    for file in [
        "mix.exs",
        "rel/env.sh.eex",
        "lib/elixir_hello/application.ex",
        "lib/elixir_hello/server.ex",
    ] {
        std::fs::create_dir_all(src.join(file).parent().unwrap_or(&src))?;
        std::fs::copy(example.join(file), src.join(file))?;
    }
    let built = Command::new("mix")
        .args(["release", "--overwrite", "--path"])
        .arg(out)
        .current_dir(&src)
        .env("MIX_ENV", "prod")
        .env("HELLO_VERSION", version)
        .env("MIX_BUILD_PATH", work.path().join("build"))
        .stdin(Stdio::null())
        .output()?;
    if !built.status.success() {
        return Err(io::Error::other(format!(
            "mix release {version}: {}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        )));
    }
    Ok(())
}
