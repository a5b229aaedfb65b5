//! Validated names: an app, a socket, an env variable, a release. Each is checked once, where
//! it enters (a flag, the config, a control request), and is then safe to put into a shell
//! command, a unit file or a path: no `/`, no whitespace, no quote, no `..`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest app name: it becomes a system user (`useradd` caps those at 32 bytes on some
/// systems) and `blargh-<app>-<socket>` unit names.
pub const MAX_APP_LEN: usize = 24;
/// The longest socket name.
pub const MAX_SOCKET_LEN: usize = 24;
/// The longest env variable name.
pub const MAX_ENV_KEY_LEN: usize = 128;
/// The longest release id (a directory name).
pub const MAX_RELEASE_ID_LEN: usize = 128;

/// A name that broke its rule: which kind, the value, the rule and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// What the name is for: "app name", "socket name", ….
    pub kind: &'static str,
    /// The value refused.
    pub value: String,
    /// The rule it broke.
    pub rule: String,
    /// What to do instead.
    pub fix: String,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a valid {}: {}; {}",
            self.value, self.kind, self.rule, self.fix
        )
    }
}

impl std::error::Error for NameError {}

/// `[a-z][a-z0-9_-]*`, 1 to `max` bytes.
fn lower_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `[A-Z_][A-Z0-9_]*`, 1 to `max` bytes.
fn upper_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The suggestion closest to `s` for a lower-case name (lower-cased, other characters to
/// `-`, a leading letter, truncated).
pub fn lower_name_from(s: &str, max: usize) -> String {
    let mut name: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "app-");
    }
    name.truncate(max);
    let trimmed = name.trim_end_matches(['-', '_']).len();
    name.truncate(trimmed);
    name
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                $check(&s)?;
                Ok($name(s))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name as an owned `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $name::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type!(
    /// An app's name on a server: its system user and group, its directory
    /// `/var/lib/blargh/<app>` and its service names. 1-24 bytes `[a-z][a-z0-9_-]*`.
    AppName,
    check_app
);

name_type!(
    /// A listening socket's name: handed to the app in `LISTEN_FDNAMES` and part of the
    /// unit name `blargh-<app>-<socket>.socket`. 1-24 bytes `[a-z][a-z0-9_-]*`.
    SocketName,
    check_socket
);

name_type!(
    /// An environment variable the app's env file may set: `[A-Z_][A-Z0-9_]*`, never
    /// `LISTEN_*`, `NOTIFY_SOCKET` or `BLARGH_*` (the agent sets those).
    EnvKey,
    check_env_key
);

name_type!(
    /// A release's id: its directory name under `releases/`, like
    /// `20261128T153210.123Z-0badcafe` (the agent makes them; they sort by receive time).
    /// Letters, digits, `.`, `-`, `_`; no leading `.` or `-`, no `..`; at most 128 bytes.
    ReleaseId,
    check_release_id
);

/// The prefix of every agent user's name: `_` can never start an [`AppName`], so an agent
/// user is never mistaken for (or created as) an app's user.
pub const AGENT_USER_PREFIX: &str = "_blargh-";

impl AppName {
    /// The system user (and group) the app's agent runs as: `_blargh-<app>`. It owns the
    /// app's state (releases, links, logs, env, audit, control socket) so that the app's own
    /// user can write nothing but `data/`. At most 32 bytes (`useradd`'s limit): 8 + 24.
    pub fn agent_user(&self) -> String {
        format!("{AGENT_USER_PREFIX}{}", self.as_str())
    }
}

fn check_app(s: &str) -> Result<(), NameError> {
    if lower_name(s, MAX_APP_LEN) {
        return Ok(());
    }
    Err(NameError {
        kind: "app name",
        value: s.to_string(),
        rule: format!(
            "it names a user, a directory and services on the server, so it is 1-{MAX_APP_LEN} \
             lower-case letters, digits, '-' or '_', starting with a letter"
        ),
        fix: format!("write one like {:?}", lower_name_from(s, MAX_APP_LEN)),
    })
}

fn check_socket(s: &str) -> Result<(), NameError> {
    // No '-': unit names are `blargh-<app>-<socket>` and apps may contain '-', so app
    // `shop` with socket `admin-web` and app `shop-admin` with socket `web` would share one.
    if lower_name(s, MAX_SOCKET_LEN) && !s.contains('-') {
        return Ok(());
    }
    Err(NameError {
        kind: "socket name",
        value: s.to_string(),
        rule: format!(
            "it names a systemd socket unit (blargh-<app>-<socket>) and the app asks for it by \
             name, so it is 1-{MAX_SOCKET_LEN} lower-case letters, digits or '_', starting with \
             a letter (no '-', which separates it from the app's name)"
        ),
        fix: "write one like `web` or `admin` (blargh::listen(\"web\", ...))".to_string(),
    })
}

fn check_env_key(s: &str) -> Result<(), NameError> {
    let err = |rule: &str, fix: String| NameError {
        kind: "environment variable name",
        value: s.to_string(),
        rule: rule.to_string(),
        fix,
    };
    if !upper_name(s, MAX_ENV_KEY_LEN) {
        let upper = s.to_ascii_uppercase().replace(['-', '.'], "_");
        let fix = if upper_name(&upper, MAX_ENV_KEY_LEN) {
            format!("environment names here are upper-case: write {upper}")
        } else {
            "write one like RUST_LOG".to_string()
        };
        return Err(err(
            "it is upper-case letters, digits and '_', not starting with a digit",
            fix,
        ));
    }
    if s.starts_with("LISTEN_") || s == crate::env::NOTIFY_SOCKET {
        return Err(err(
            "it is set by the agent for socket activation and readiness",
            "remove it: the sockets are configured with `listen`".to_string(),
        ));
    }
    if s.starts_with("BLARGH_") {
        return Err(err(
            "names starting with BLARGH_ are set by the agent",
            "choose another name".to_string(),
        ));
    }
    Ok(())
}

fn check_release_id(s: &str) -> Result<(), NameError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_RELEASE_ID_LEN
        && !s.starts_with(['.', '-'])
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        return Ok(());
    }
    Err(NameError {
        kind: "release id",
        value: s.to_string(),
        rule: format!(
            "a release id is a directory name of 1-{MAX_RELEASE_ID_LEN} letters, digits, '.', \
             '-' or '_', not starting with '.' or '-' and without '..'"
        ),
        fix: "copy one from `cargo blargh releases`".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn app_names() {
        for ok in ["shop", "a", "my-app_2", &"a".repeat(24)] {
            assert_eq!(ok.parse::<AppName>().unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "Shop",
            "2shop",
            "-shop",
            "my app",
            "a/b",
            "..",
            &"a".repeat(25),
        ] {
            let e = bad.parse::<AppName>().unwrap_err();
            assert_eq!(e.kind, "app name");
        }
        let e = "My Shop".parse::<AppName>().unwrap_err().to_string();
        assert!(e.contains("\"My Shop\" is not a valid app name"), "{e}");
        assert!(e.contains("1-24 lower-case letters"), "{e}");
        assert!(e.contains("\"my-shop\""), "{e}");
    }

    #[test]
    fn agent_users_are_never_app_names_and_fit_useradd() {
        let app: AppName = "shop".parse().unwrap();
        assert_eq!(app.agent_user(), "_blargh-shop");
        let longest: AppName = "a".repeat(MAX_APP_LEN).parse().unwrap();
        assert_eq!(longest.agent_user().len(), 32);
        assert!(app.agent_user().parse::<AppName>().is_err());
    }

    #[test]
    fn socket_names() {
        assert!("web".parse::<SocketName>().is_ok());
        assert!("admin_2".parse::<SocketName>().is_ok());
        assert!(
            "admin-web".parse::<SocketName>().is_err(),
            "blargh-shop-admin-web.socket would also be app shop-admin's socket web"
        );
        for bad in ["", "Web", "a:b", "we b", &"w".repeat(25)] {
            assert!(bad.parse::<SocketName>().is_err(), "{bad}");
        }
        let e = "a:b".parse::<SocketName>().unwrap_err().to_string();
        assert!(e.contains("socket name") && e.contains("`web`"), "{e}");
    }

    #[test]
    fn env_keys() {
        for ok in ["RUST_LOG", "_X", "A1", "DATABASE_URL"] {
            assert!(ok.parse::<EnvKey>().is_ok(), "{ok}");
        }
        let e = "rust_log".parse::<EnvKey>().unwrap_err().to_string();
        assert!(e.contains("write RUST_LOG"), "{e}");
        for reserved in [
            "LISTEN_FDS",
            "LISTEN_ANYTHING",
            "NOTIFY_SOCKET",
            "BLARGH_APP",
        ] {
            let e = reserved.parse::<EnvKey>().unwrap_err().to_string();
            assert!(e.contains("set by the agent"), "{e}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(bad.parse::<EnvKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn release_ids() {
        for ok in [
            "20261128T153210.123Z-0badcafe",
            "20261128T153210.123Z-0badcafe.2",
            "r1",
        ] {
            assert!(ok.parse::<ReleaseId>().is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a..b", "a b", "a\nb"] {
            assert!(bad.parse::<ReleaseId>().is_err(), "{bad:?}");
        }
        let e = "../etc".parse::<ReleaseId>().unwrap_err().to_string();
        assert!(e.contains("release id") && e.contains("cargo blargh releases"));
    }

    #[test]
    fn serde_validates_and_stays_a_plain_string() {
        let app: AppName = serde_json::from_str("\"shop\"").unwrap();
        assert_eq!(serde_json::to_string(&app).unwrap(), "\"shop\"");
        let err = serde_json::from_str::<AppName>("\"../root\"").unwrap_err();
        assert!(err.to_string().contains("not a valid app name"), "{err}");
        assert!(serde_json::from_str::<ReleaseId>("\"../x\"").is_err());
        assert!(serde_json::from_str::<EnvKey>("\"BLARGH_ROOT\"").is_err());
        assert!(serde_json::from_str::<SocketName>("\"a b\"").is_err());
    }

    /// Nothing in an accepted name can break out of a shell word, a unit file line or a
    /// path component.
    fn assert_safe(s: &str) {
        assert!(!s.is_empty());
        assert!(!s.contains('/'), "{s:?} has '/'");
        assert!(!s.contains(".."), "{s:?} has '..'");
        assert!(s != ".", "{s:?} is '.'");
        assert!(
            !s.chars().any(|c| c.is_whitespace()
                || c.is_control()
                || "'\"`$\\;&|<>(){}*?!#~=%".contains(c)),
            "{s:?} has a shell or unit-file special character"
        );
        assert!(!s.starts_with('-'), "{s:?} could be taken for an option");
    }

    proptest! {
        #[test]
        fn accepted_names_are_safe(s in "\\PC{0,30}|[a-zA-Z0-9._/ -]{0,30}") {
            if let Ok(n) = s.parse::<AppName>() { assert_safe(n.as_str()); }
            if let Ok(n) = s.parse::<SocketName>() { assert_safe(n.as_str()); }
            if let Ok(n) = s.parse::<EnvKey>() { assert_safe(n.as_str()); }
            if let Ok(n) = s.parse::<ReleaseId>() { assert_safe(n.as_str()); }
        }

        #[test]
        fn suggestions_are_valid_app_names(s in "\\PC{1,40}") {
            prop_assert!(lower_name_from(&s, MAX_APP_LEN).parse::<AppName>().is_ok());
        }

        #[test]
        fn valid_names_round_trip(s in "[a-z][a-z0-9_-]{0,23}") {
            let n: AppName = s.parse().unwrap();
            let json = serde_json::to_string(&n).unwrap();
            prop_assert_eq!(serde_json::from_str::<AppName>(&json).unwrap(), n);
        }
    }
}
