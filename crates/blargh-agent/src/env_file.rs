//! Changes to the app's env file (`<root>/env`): set and unset one variable, list names.
//! Comments and other lines are kept; the file is replaced atomically and stays 0600.

use std::io;
use std::path::Path;

use blargh_proto::EnvKey;

use crate::handover::parse_env_file;

/// Checks a value the way the env file parser will read it back (the name is an
/// [`EnvKey`], checked where it entered).
fn check(key: &EnvKey, value: Option<&str>) -> Result<(), String> {
    if let Some(v) = value
        && (v.contains('\n') || v.contains('\r'))
    {
        return Err(format!(
            "the value of {key} contains a line break; env values are one line"
        ));
    }
    parse_env_file(&format!("{key}={}", value.unwrap_or("")))
        .map(|_| ())
        .map_err(|e| e.problem)
}

/// The file's text with `key` set to `value` (replacing earlier lines for `key`).
pub fn with_set(text: &str, key: &EnvKey, value: &str) -> Result<String, String> {
    check(key, Some(value))?;
    let mut out = without(text, key);
    out.push_str(&format!("{key}={value}\n"));
    Ok(out)
}

/// The file's text without lines setting `key`.
pub fn without(text: &str, key: &EnvKey) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let is_key = line
            .trim_start()
            .split_once('=')
            .is_some_and(|(k, _)| k.trim_end() == key.as_str());
        if !is_key {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The names set in the file, sorted.
pub fn names(text: &str) -> Vec<EnvKey> {
    let mut names: Vec<EnvKey> = parse_env_file(text)
        .map(|pairs| {
            pairs
                .into_iter()
                .filter_map(|(k, _)| k.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Reads the env file (empty when missing).
pub fn read(path: &Path) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Replaces the env file atomically and durably (flushed before the rename, its directory
/// after: see [`crate::durable`]), mode 0600, keeping its owner.
pub fn write(path: &Path, text: &str) -> io::Result<()> {
    crate::durable::replace(
        path,
        &path.with_extension("new"),
        text.as_bytes(),
        Some(0o600),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key(s: &str) -> EnvKey {
        s.parse().unwrap()
    }

    #[test]
    fn set_replaces_and_keeps_comments() {
        let text = "# database\nDATABASE_URL=old\nRUST_LOG=info\n";
        let t = with_set(text, &key("DATABASE_URL"), "postgres://new").unwrap();
        assert_eq!(
            t,
            "# database\nRUST_LOG=info\nDATABASE_URL=postgres://new\n"
        );
        assert_eq!(names(&t), vec!["DATABASE_URL", "RUST_LOG"]);
        assert_eq!(
            without(&t, &key("RUST_LOG")),
            "# database\nDATABASE_URL=postgres://new\n"
        );
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        assert!("9X".parse::<EnvKey>().is_err());
        assert!("LISTEN_FDS".parse::<EnvKey>().is_err());
        assert!(with_set("", &key("A"), "two\nlines").is_err());
        assert!(with_set("", &key("A"), "x=y z").is_ok());
    }

    #[test]
    fn carriage_returns_are_line_breaks_too() {
        let err = with_set("", &key("A"), "one\rtwo").unwrap_err();
        assert!(err.contains("A contains a line break"), "{err}");
        assert!(with_set("", &key("A"), "").is_ok());
    }

    #[test]
    fn only_the_named_key_goes() {
        let text = "  KEY = spaced\nKEY_2=other\nXKEY=x\n# KEY=commented\nKEY=last\n";
        assert_eq!(
            without(text, &key("KEY")),
            "KEY_2=other\nXKEY=x\n# KEY=commented\n"
        );
        assert_eq!(without("no equals sign\n", &key("NO")), "no equals sign\n");
        assert_eq!(
            with_set(text, &key("KEY"), "new").unwrap(),
            "KEY_2=other\nXKEY=x\n# KEY=commented\nKEY=new\n"
        );
    }

    #[test]
    fn names_are_sorted_and_a_broken_file_has_none() {
        assert_eq!(names("Z=1\nA=2\nM=3\nA=4\n"), vec!["A", "M", "Z"]);
        assert!(names("not a line\n").is_empty());
    }

    #[test]
    fn read_and_write_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        assert_eq!(read(&path).unwrap(), "");
        write(&path, "A=1\n").unwrap();
        assert_eq!(read(&path).unwrap(), "A=1\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write(&path, "B=2\n").unwrap();
        assert_eq!(read(&path).unwrap(), "B=2\n");
        assert!(!path.with_extension("new").exists(), "temporary file left");
        // A directory in its place is an error, not an empty file.
        let err = read(dir.path()).unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn writing_keeps_the_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(&path, "A=1\n").unwrap();
        // Only root may give a file away (and so see it kept); others check it is unchanged.
        if running_as_root() {
            std::os::unix::fs::chown(&path, Some(4242), Some(4343)).unwrap();
        }
        let before = std::fs::metadata(&path).unwrap();
        write(&path, "A=2\n").unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    }

    /// Whether the tests run as root, from /proc (no libc call needed).
    fn running_as_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .map(|u| u.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
    }

    #[test]
    fn the_file_is_replaced_durably() {
        use crate::durable::journal::{Source, assert_durable_rename, under};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        write(&path, "A=1\n").unwrap();
        write(&path, "A=2\n").unwrap();
        assert_eq!(read(&path).unwrap(), "A=2\n");
        assert_durable_rename(&under(dir.path()), &path, Source::File);
    }
}
