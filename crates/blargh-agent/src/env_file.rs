//! Changes to the app's env file (`<root>/env`): set and unset one variable, list names.
//! Comments and other lines are kept; the file is replaced atomically and stays 0600.

use std::io;
use std::os::unix::fs::PermissionsExt;
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

/// Replaces the env file atomically, mode 0600, keeping its owner.
pub fn write(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()));
    }
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
