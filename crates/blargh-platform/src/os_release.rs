//! Parsing `/etc/os-release` (see `os-release(5)`) into a [`Distribution`].
//!
//! The file is a list of `KEY=VALUE` lines in shell syntax: values may be unquoted,
//! double-quoted (with `\"`, `\\`, `\$` and `` \` `` escapes) or single-quoted; `#` starts a
//! comment line. Unknown keys are ignored.

use crate::platform::Distribution;

/// Parse os-release text into `(key, value)` pairs, in file order.
pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            Some((key.to_string(), unquote(value.trim())))
        })
        .collect()
}

/// Build a [`Distribution`] from os-release text; `None` if the text has no keys at all.
pub fn parse_distribution(text: &str) -> Option<Distribution> {
    let pairs = parse_pairs(text);
    if pairs.is_empty() {
        return None;
    }
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    Some(Distribution {
        id: get("ID").unwrap_or_else(|| "linux".to_string()),
        id_like: get("ID_LIKE")
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        name: get("NAME"),
        version_id: get("VERSION_ID"),
        version_codename: get("VERSION_CODENAME"),
        pretty_name: get("PRETTY_NAME"),
    })
}

/// Remove shell quoting from an os-release value.
fn unquote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            (None, '#') if out.is_empty() => break,
            (_, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            unquote(r#""Debian GNU/Linux 12 (bookworm)""#),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(unquote("fedora"), "fedora");
        assert_eq!(unquote("'single $quoted'"), "single $quoted");
        assert_eq!(unquote(r#""say \"hi\" \$HOME""#), r#"say "hi" $HOME"#);
        assert_eq!(unquote(r#""""#), "");
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let text = "# VERSION=\"20241229\"\nID=\"opensuse-tumbleweed\"\n\n#CPE_NAME=x\nVERSION_ID=\"20241229\"\n";
        let d = parse_distribution(text).unwrap();
        assert_eq!(d.id, "opensuse-tumbleweed");
        assert_eq!(d.version_id.as_deref(), Some("20241229"));
        assert_eq!(d.name, None);
    }

    #[test]
    fn missing_id_defaults_to_linux() {
        let d = parse_distribution("NAME=Thing\n").unwrap();
        assert_eq!(d.id, "linux");
        assert!(parse_distribution("\n\n").is_none());
    }

    #[test]
    fn keys_must_be_names() {
        let pairs = parse_pairs("=orphan\nID=a#b\nBAD KEY=x\nVERSION_ID=#nothing\nNAME=\"x#y\"\n");
        let want = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            pairs,
            [
                want("ID", "a#b"),
                want("VERSION_ID", ""),
                want("NAME", "x#y")
            ]
        );
    }
}
