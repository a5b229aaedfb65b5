//! A self-signed certificate for `localhost` and 127.0.0.1 (P-256, one day), made with the
//! `openssl` command, for tests and benchmarks that serve HTTPS.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes `cert.pem` and `key.pem` into `dir`, readable by every user (the app may run as
/// another user than the test), and makes `dir` traversable; returns (cert, key).
pub fn self_signed(dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run openssl ({e}); apt-get install openssl"),
            )
        })?;
    if !st.success() {
        return Err(io::Error::other("openssl req failed"));
    }
    for p in [&cert, &key] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok((cert, key))
}
