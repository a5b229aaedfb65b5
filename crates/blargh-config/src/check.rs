//! Checks on single values, apart from where they sit in the file: app and socket names,
//! SSH destinations, env variable names, target triples, known_hosts lines, durations.
//! Each failure is a [`Problem`]: what is wrong and what to write instead, which
//! [`crate::parse`] turns into an error naming the key and line.

use std::time::Duration;

use crate::config::{BIN_PLACEHOLDER, MAX_APP_LEN};

/// What is wrong with a value, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// What is wrong, like "not a duration".
    pub what: String,
    /// What to do, like `write it like "30s"`.
    pub fix: String,
}

pub(crate) fn problem(what: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        what: what.into(),
        fix: fix.into(),
    }
}

/// `s` as a TOML basic string, quoted and escaped.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An app name: it becomes a system user, a group, a directory and service names.
pub(crate) fn app_name(s: &str) -> Result<(), Problem> {
    // The rule is blargh_proto::AppName's; the words here name the config key.
    if s.parse::<blargh_proto::AppName>().is_ok() {
        return Ok(());
    }
    Err(problem(
        "not a valid app name",
        format!(
            "it names a user and services on the server, so use 1-{MAX_APP_LEN} lower-case \
             letters, digits, '-' or '_', starting with a letter, like app = {}",
            quote(&app_name_from(s))
        ),
    ))
}

/// A valid app name as close to `s` as possible (for suggestions and the skeleton).
pub(crate) fn app_name_from(s: &str) -> String {
    blargh_proto::names::lower_name_from(s, MAX_APP_LEN)
}

/// A socket name: it ends up in `LISTEN_FDNAMES` and in systemd unit names.
pub(crate) fn socket_name(s: &str) -> Result<(), Problem> {
    if s.parse::<blargh_proto::SocketName>().is_ok() {
        return Ok(());
    }
    Err(problem(
        "not a valid socket name",
        "use 1-24 lower-case letters, digits, '-' or '_', starting with a letter, like `web` \
         or `admin` (the app asks for it by this name: blargh::listen(\"web\", ...))",
    ))
}

/// A destination name, as typed after `-d`.
pub(crate) fn destination_name(s: &str) -> Result<(), Problem> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        return Ok(());
    }
    Err(problem(
        "not a valid destination name",
        "use letters, digits, '-' or '_', like `staging` or `production`",
    ))
}

/// A binary target name.
pub(crate) fn bin_name(s: &str) -> Result<(), Problem> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        return Ok(());
    }
    Err(problem(
        "not a binary target name",
        "write the name of a [[bin]] target of this package (letters, digits, '-', '_'), \
         like bin = \"shop\"",
    ))
}

/// A rustc target triple, checked for shape only (cargo knows the real list).
pub(crate) fn target_triple(s: &str) -> Result<(), Problem> {
    let ok = s.contains('-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        return Ok(());
    }
    Err(problem(
        "not a target triple",
        "write one like \"x86_64-unknown-linux-musl\" or \"aarch64-unknown-linux-gnu\" \
         (`rustc --print target-list` lists them)",
    ))
}

/// An SSH destination: `[ssh://][user@]host[:port]`, IPv6 in brackets when a port follows,
/// or a `Host` alias. Checked for shape, so that nothing reaches ssh as an option.
pub(crate) fn ssh_host(s: &str) -> Result<(), Problem> {
    const FIX: &str = "write user@host, user@host:port, user@[2001:db8::1]:port or a Host \
                       alias from ~/.ssh/config, like \"deploy@203.0.113.10\"";
    let bad = |what: &str| Err(problem(what, FIX));
    if s.is_empty() {
        return bad("an empty host");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("a host cannot contain spaces");
    }
    let rest = match s.strip_prefix("ssh://") {
        Some(r) => r.strip_suffix('/').unwrap_or(r),
        None if s.contains("://") => return bad("only ssh:// URLs are understood"),
        None => s,
    };
    let hostport = match rest.rsplit_once('@') {
        Some(("", _)) => return bad("the user before '@' is empty"),
        Some((user, _)) if user.starts_with('-') => return bad("a user cannot start with '-'"),
        Some((_, hostport)) => hostport,
        None => rest,
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return bad("'[' without a closing ']'");
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return bad("expected ':port' after ']'"),
            },
        }
    } else if hostport.matches(':').count() == 1 {
        let (h, p) = hostport.split_once(':').unwrap_or((hostport, ""));
        (h, Some(p))
    } else {
        (hostport, None)
    };
    if host.is_empty() {
        return bad("the host name is empty");
    }
    if host.starts_with('-') {
        return bad("a host cannot start with '-'");
    }
    if host.contains(['/', '@', '[', ']']) {
        return bad("a host name cannot contain '/', '@', '[' or ']'");
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return bad(&format!("{} is not a port (1-65535)", quote(p))),
        }
    }
    Ok(())
}

/// An environment variable name in `env`.
pub(crate) fn env_name(s: &str) -> Result<(), Problem> {
    // The rule is blargh_proto::EnvKey's; the words here name the config key.
    if s.parse::<blargh_proto::EnvKey>().is_ok() {
        return Ok(());
    }
    let shape = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    if !shape(s) {
        let upper = s.to_ascii_uppercase().replace('-', "_");
        let fix = if shape(&upper) {
            format!("environment names here are upper-case: write {upper}")
        } else {
            "use upper-case letters, digits and '_', not starting with a digit, like RUST_LOG"
                .to_string()
        };
        return Err(problem("not a valid environment variable name", fix));
    }
    if s.starts_with("LISTEN_") || s == "NOTIFY_SOCKET" {
        return Err(problem(
            "set by the agent for socket activation and readiness",
            "remove it: the sockets are configured with `listen`",
        ));
    }
    if s.starts_with("BLARGH_") {
        return Err(problem(
            "names starting with BLARGH_ are set by the agent",
            "choose another name",
        ));
    }
    Ok(())
}

/// An environment variable's value: one line of the server's env file.
pub(crate) fn env_value(s: &str) -> Result<(), Problem> {
    if s.contains(['\n', '\r', '\0']) {
        return Err(problem(
            "a value cannot contain line breaks or NUL",
            "put it on one line (the app gets it as a single environment variable)",
        ));
    }
    Ok(())
}

/// One `known_hosts` line: `[@marker] hosts keytype base64-key [comment]`.
pub(crate) fn known_hosts_line(s: &str) -> Result<(), Problem> {
    const FIX: &str = "paste whole lines from `ssh-keyscan HOST` or ~/.ssh/known_hosts, like \
                       \"203.0.113.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA...\"";
    if s.contains(['\n', '\r']) {
        return Err(problem("one line per list item", FIX));
    }
    let mut fields: Vec<&str> = s.split_whitespace().collect();
    if fields.first().is_some_and(|f| f.starts_with('@')) {
        if !matches!(fields[0], "@cert-authority" | "@revoked") {
            return Err(problem(
                format!("unknown marker {}", fields[0]),
                "the markers are @cert-authority and @revoked",
            ));
        }
        fields.remove(0);
    }
    if fields.len() < 3 {
        return Err(problem(
            "not a known_hosts line (host names, key type, key)",
            FIX,
        ));
    }
    let key_type = fields[1];
    let known_type = ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| key_type.starts_with(p));
    let base64 = fields[2]
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
    if !known_type || !base64 {
        return Err(problem(
            format!("{} is not a key type followed by a key", quote(key_type)),
            FIX,
        ));
    }
    Ok(())
}

/// A duration like "30s", "500ms", "2m" or "1h 30m" (humantime), longer than zero.
pub(crate) fn duration(s: &str) -> Result<Duration, Problem> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return Err(problem(
            "a duration needs a unit",
            format!("write it like \"{t}s\" or \"{t}ms\""),
        ));
    }
    match humantime::parse_duration(t) {
        Ok(d) if d.is_zero() => Err(problem(
            "must be longer than zero",
            "write it like \"30s\" or \"500ms\"",
        )),
        Ok(d) => Ok(d),
        Err(_) => Err(problem(
            "not a duration",
            "write it like \"30s\", \"500ms\" or \"2m\"",
        )),
    }
}

/// Placeholders like `{binary}` in a `before_activate` argument that are not `{bin}`
/// (`${VAR}` is left to the shell).
pub(crate) fn unknown_placeholder(arg: &str) -> Option<&str> {
    let bytes = arg.as_bytes();
    let mut i = 0;
    while let Some(open) = arg[i..].find('{').map(|o| o + i) {
        let close = arg[open..].find('}').map(|c| c + open)?;
        let inner = &arg[open + 1..close];
        let shell = open > 0 && bytes[open - 1] == b'$';
        let word = !inner.is_empty() && inner.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if word && !shell && &arg[open..=close] != BIN_PLACEHOLDER {
            return Some(&arg[open..=close]);
        }
        i = open + 1;
    }
    None
}

/// The edit distance between `a` and `b` (Levenshtein, on characters).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Words people reach for instead of blargh's key names.
const ALIASES: &[(&str, &str)] = &[
    ("host", "hosts"),
    ("server", "hosts"),
    ("servers", "hosts"),
    ("name", "app"),
    ("app_name", "app"),
    ("binary", "bin"),
    ("triple", "target"),
    ("listeners", "listen"),
    ("sockets", "listen"),
    ("bind", "listen"),
    ("port", "listen"),
    ("environment", "env"),
    ("vars", "env"),
    ("keep", "keep_releases"),
    ("releases", "keep_releases"),
    ("rollback", "auto_rollback"),
    ("migrate", "before_activate"),
    ("migrations", "before_activate"),
    ("before_deploy", "before_activate"),
    ("release_command", "before_activate"),
    ("lock_timeout", "lock_expiry"),
    ("host_keys", "known_hosts"),
    ("stages", "destinations"),
    ("environments", "destinations"),
    ("window_secs", "window"),
    ("max_crashes", "crashes"),
];

/// The known key nearest to `word`, if one is near enough to be what was meant.
pub(crate) fn suggest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let w = word.to_ascii_lowercase().replace('-', "_");
    if let Some(k) = known.iter().find(|k| **k == w) {
        return Some(k);
    }
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == w)
        && let Some(k) = known.iter().find(|k| *k == to)
    {
        return Some(k);
    }
    let limit = (w.chars().count() / 3).clamp(1, 3);
    let near = known
        .iter()
        .map(|k| (distance(&w, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min();
    if let Some((_, k)) = near {
        return Some(k);
    }
    // "ready" for "ready_timeout", "drain_timeouts" for "drain_timeout".
    known
        .iter()
        .find(|k| w.len() >= 4 && (k.starts_with(&w) || w.starts_with(**k)))
        .copied()
}

/// An `include` pattern: a glob relative to the package's directory, never leaving it.
pub(crate) fn include_pattern(s: &str) -> Result<(), Problem> {
    let fix = "write a pattern relative to the package's directory, like \"static/**\" or \
               \"templates/*.html\"";
    if s.is_empty() {
        return Err(problem("an empty pattern matches nothing", fix));
    }
    if s.starts_with('/') {
        return Err(problem("an absolute pattern", fix));
    }
    if s.split('/').any(|c| c == "..") {
        return Err(problem(
            "leaves the package's directory (..)",
            format!("{fix}; a release holds only files from inside it"),
        ));
    }
    glob::Pattern::new(s)
        .map(|_| ())
        .map_err(|e| problem(format!("not a glob pattern: {}", e.msg), fix))
}

/// `release_dir`: a directory path, relative to the package's directory or absolute.
pub(crate) fn release_dir(s: &str) -> Result<(), Problem> {
    if s.trim().is_empty() {
        return Err(problem(
            "empty",
            "name the directory your build makes, like release_dir = \"_build/prod/rel/shop\"",
        ));
    }
    Ok(())
}

/// `start[0]`: a relative path inside the release.
pub(crate) fn start_program(s: &str) -> Result<(), Problem> {
    if blargh_proto::manifest::is_inside_path(s) {
        return Ok(());
    }
    let what = if s.starts_with('/') {
        format!("the program {} is an absolute path", quote(s))
    } else if s.split('/').any(|c| c == "..") {
        format!("the program {} leaves the release (..)", quote(s))
    } else {
        format!("the program {} is not a path", quote(s))
    };
    Err(problem(
        what,
        "name a file inside release_dir by its path there, like start = [\"bin/shop\", \"start\"]; \
         it runs with the release as its working directory",
    ))
}

/// A size: a whole number and a unit (`B`, `kB`/`KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB`),
/// more than zero.
pub(crate) fn size(s: &str) -> Result<u64, Problem> {
    let fix = "write a number and a unit, like \"500 MB\", \"2 GiB\" or \"800 kB\"";
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit {
        "B" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "" => return Err(problem("a size needs a unit", fix)),
        _ => {
            return Err(problem(
                format!("{} is not a unit of size", quote(unit)),
                fix,
            ));
        }
    };
    let n: u64 = num.parse().map_err(|_| problem("not a size", fix))?;
    match n.checked_mul(mult) {
        Some(0) => Err(problem("zero", fix)),
        Some(b) => Ok(b),
        None => Err(problem("too large", fix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_follow_the_server_rules() {
        for ok in ["shop", "shop-2", "a", "my_app", "abcdefghijklmnopqrstuvwx"] {
            assert!(app_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Shop",
            "2shop",
            "-x",
            "a b",
            "abcdefghijklmnopqrstuvwxy",
            "ü",
        ] {
            assert!(app_name(bad).is_err(), "{bad}");
        }
        assert_eq!(app_name_from("My.Shop"), "my-shop");
        assert_eq!(app_name_from("2fast"), "app-2fast");
        assert_eq!(
            app_name_from("a-very-long-package-name-indeed"),
            "a-very-long-package-name"
        );
        assert!(app_name(&app_name_from("x_______________________________y")).is_ok());
    }

    #[test]
    fn ssh_hosts_are_checked_for_shape() {
        for ok in [
            "deploy@203.0.113.10",
            "deploy@host:2222",
            "deploy@[2001:db8::1]:22",
            "2001:db8::1",
            "prod-web-1",
            "ssh://deploy@host:22/",
        ] {
            assert!(ssh_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "deploy@-x",
            "@host",
            "a b",
            "host:0",
            "host:ssh",
            "host:70000",
            "[::1",
            "http://host",
        ] {
            assert!(ssh_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names_are_upper_case_and_not_the_agents() {
        assert!(env_name("RUST_LOG").is_ok());
        assert!(env_name("_X1").is_ok());
        assert!(
            env_name("rust_log")
                .unwrap_err()
                .fix
                .contains("write RUST_LOG")
        );
        assert!(env_name("1X").is_err());
        for reserved in [
            "LISTEN_FDS",
            "LISTEN_ANYTHING",
            "NOTIFY_SOCKET",
            "BLARGH_APP",
        ] {
            assert!(env_name(reserved).is_err(), "{reserved}");
        }
        assert!(env_value("a\nb").is_err());
        assert!(env_value("postgres://db/shop").is_ok());
    }

    #[test]
    fn known_hosts_lines_need_host_type_and_key() {
        assert!(known_hosts_line("h ssh-ed25519 AAAAC3Nza= comment here").is_ok());
        assert!(known_hosts_line("@cert-authority *.example.com ssh-rsa AAAAB3").is_ok());
        assert!(known_hosts_line("|1|abc=|def= ecdsa-sha2-nistp256 AAAAE2").is_ok());
        assert!(known_hosts_line("SHA256:abcdef").is_err());
        assert!(known_hosts_line("h ed25519 AAAA").is_err());
        assert!(known_hosts_line("@bogus h ssh-ed25519 AAAA").is_err());
    }

    #[test]
    fn durations_need_units_and_length() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(duration("30").unwrap_err().fix.contains("\"30s\""));
        assert_eq!(duration("0s").unwrap_err().what, "must be longer than zero");
        assert_eq!(duration("soon").unwrap_err().what, "not a duration");
    }

    #[test]
    fn placeholders_other_than_bin_are_caught() {
        assert_eq!(unknown_placeholder("{bin}"), None);
        assert_eq!(unknown_placeholder("--db=${DATABASE_URL}"), None);
        assert_eq!(unknown_placeholder("${bin}"), None);
        assert_eq!(unknown_placeholder("{binary} x"), Some("{binary}"));
        assert_eq!(unknown_placeholder("{bin}/{release}"), Some("{release}"));
        assert_eq!(unknown_placeholder("{\"json\": 1}"), None);
    }

    #[test]
    fn suggestions_catch_typos_cases_and_synonyms() {
        let known = [
            "hosts",
            "drain_timeout",
            "ready_timeout",
            "keep_releases",
            "env",
        ];
        assert_eq!(suggest("hostz", &known), Some("hosts"));
        assert_eq!(suggest("Hosts", &known), Some("hosts"));
        assert_eq!(suggest("drain-timeout", &known), Some("drain_timeout"));
        assert_eq!(suggest("drain_timout", &known), Some("drain_timeout"));
        assert_eq!(suggest("servers", &known), Some("hosts"));
        assert_eq!(suggest("ready", &known), Some("ready_timeout"));
        assert_eq!(suggest("keep", &known), Some("keep_releases"));
        assert_eq!(suggest("colour", &known), None);
        assert_eq!(suggest("x", &known), None);
    }

    #[test]
    fn quoting_escapes_like_toml() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
