//! Building the release binary with cargo, and finding the file it produced.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `cargo build --release -p PACKAGE --bin BIN [--target T]` in `dir` and returns the
/// path of the executable (read from cargo's JSON messages, so custom target dirs work).
/// Cargo's own progress and errors go to stderr.
pub fn build(
    dir: &Path,
    package: &str,
    bin: &str,
    target: Option<&str>,
) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir).args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
        "-p",
        package,
        "--bin",
        bin,
    ]);
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build failed ({}); see its errors above",
            out.status
        ));
    }
    executable_from_messages(&String::from_utf8_lossy(&out.stdout), bin).ok_or_else(|| {
        format!("cargo built no executable named {bin:?}; set `bin` in [package.metadata.blargh]")
    })
}

/// The executable of binary target `bin` in cargo's `--message-format=json` output.
pub fn executable_from_messages(stdout: &str, bin: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let msgs = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"shop","kind":["lib"]},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"shop","kind":["bin"]},"executable":"/t/release/shop"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n",
        );
        assert_eq!(
            executable_from_messages(msgs, "shop"),
            Some(PathBuf::from("/t/release/shop"))
        );
        assert_eq!(executable_from_messages(msgs, "other"), None);
    }
}
