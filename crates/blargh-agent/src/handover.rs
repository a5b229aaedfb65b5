//! What a release inherits: the environment (socket-activation variables, blargh's own, the
//! app's env file) and which of the agent's sockets land on which fd. Pure functions.

use std::path::Path;
use std::time::Duration;

use blargh_proto::env;

/// Everything that decides a release's environment.
#[derive(Debug, Clone)]
pub struct HandoverInputs<'a> {
    /// Names of the listening sockets, in the order they are placed at fd 3, 4, …
    pub listener_names: &'a [String],
    /// The release's notify socket.
    pub notify_socket: &'a Path,
    /// Release id.
    pub release: &'a str,
    /// App name.
    pub app: &'a str,
    /// The app's root directory.
    pub root: &'a Path,
    /// The app's data directory.
    pub data_dir: &'a Path,
    /// Drain deadline the agent enforces.
    pub drain_timeout: Duration,
    /// The app's own settings from the env file (applied before blargh's, which win).
    pub app_env: &'a [(String, String)],
    /// `PATH` to give the app.
    pub path: &'a str,
    /// The watchdog timeout, when the watchdog is on: the app gets `WATCHDOG_USEC`.
    pub watchdog: Option<Duration>,
    /// Certificates from ACME: the app gets `BLARGH_TLS_DOMAINS`, `BLARGH_TLS_CONTACT` and
    /// `BLARGH_ACME_DIRECTORY` (absent ones removed, so the env file cannot contradict).
    pub tls: Option<&'a blargh_proto::control::TlsSettings>,
}

/// The full environment of a release, in order. `LISTEN_PID` and `WATCHDOG_PID` are absent
/// on purpose: only the exec trampoline knows the final pid, and sets them just before exec.
pub fn release_env(i: &HandoverInputs<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![("PATH".into(), i.path.into())];
    for (k, v) in i.app_env {
        out.push((k.clone(), v.clone()));
    }
    let mut set = |k: &str, v: String| {
        out.retain(|(key, _)| key != k);
        out.push((k.to_string(), v));
    };
    set(env::LISTEN_FDS, i.listener_names.len().to_string());
    set(env::LISTEN_FDNAMES, i.listener_names.join(":"));
    set(env::NOTIFY_SOCKET, i.notify_socket.display().to_string());
    set(env::RELEASE_ID, i.release.to_string());
    set(env::APP, i.app.to_string());
    set(env::ROOT, i.root.display().to_string());
    set(env::DATA_DIR, i.data_dir.display().to_string());
    set(
        env::DRAIN_TIMEOUT_MS,
        i.drain_timeout.as_millis().to_string(),
    );
    match i.watchdog {
        Some(w) => set(env::WATCHDOG_USEC, w.as_micros().to_string()),
        // Not the app's to set: without the agent's watchdog nobody listens for pings.
        None => out.retain(|(k, _)| k != env::WATCHDOG_USEC && k != env::WATCHDOG_PID),
    }
    let tls_vars = [
        env::TLS_DOMAINS,
        env::TLS_CONTACT,
        env::ACME_DIRECTORY,
        env::ACME_CA_FILE,
    ];
    out.retain(|(k, _)| !tls_vars.contains(&k.as_str()));
    if let Some(t) = i.tls {
        out.push((env::TLS_DOMAINS.into(), t.domains.join(",")));
        if let Some(c) = &t.contact {
            out.push((env::TLS_CONTACT.into(), c.clone()));
        }
        if let Some(d) = &t.directory {
            out.push((env::ACME_DIRECTORY.into(), d.clone()));
        }
        if let Some(f) = &t.ca_file {
            out.push((env::ACME_CA_FILE.into(), f.clone()));
        }
    }
    out
}

/// A line of the env file that is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("env file line {line}: {problem}; write it as KEY=VALUE (KEY: letters, digits, _)")]
pub struct EnvFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// Parses the app's env file: `KEY=VALUE` lines, `#` comments and blank lines ignored.
/// Values are taken literally (no quotes removed, no expansion).
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(EnvFileError {
                line: n + 1,
                problem: "no '=' on it".into(),
            });
        };
        let k = k.trim_end();
        // One rule for names everywhere: the config, `env set` and this file.
        if let Err(e) = k.parse::<blargh_proto::EnvKey>() {
            return Err(EnvFileError {
                line: n + 1,
                problem: format!("{}: {}; {}", e.value, e.rule, e.fix),
            });
        }
        out.retain(|(key, _): &(String, String)| key != k);
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_carries_the_socket_activation_protocol() {
        let names = vec!["web".to_string(), "admin".to_string()];
        let app_env = vec![
            ("DATABASE_URL".to_string(), "postgres://x".to_string()),
            ("PATH".to_string(), "/opt/bin".to_string()),
        ];
        let env = release_env(&HandoverInputs {
            listener_names: &names,
            notify_socket: Path::new("/srv/app/run/n.sock"),
            release: "r1",
            app: "shop",
            root: Path::new("/srv/app"),
            data_dir: Path::new("/srv/app/data"),
            drain_timeout: Duration::from_secs(30),
            app_env: &app_env,
            path: "/usr/bin:/bin",
            watchdog: Some(Duration::from_millis(1500)),
            tls: Some(&blargh_proto::control::TlsSettings {
                domains: vec!["shop.example".into(), "www.shop.example".into()],
                contact: None,
                directory: Some("https://ca.example/dir".into()),
                ca_file: Some("/etc/ssl/ca.pem".into()),
            }),
        });
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("LISTEN_FDS"), Some("2"));
        assert_eq!(get("LISTEN_FDNAMES"), Some("web:admin"));
        assert_eq!(get("LISTEN_PID"), None, "set by the trampoline, not here");
        assert_eq!(get("NOTIFY_SOCKET"), Some("/srv/app/run/n.sock"));
        assert_eq!(get("BLARGH_RELEASE_ID"), Some("r1"));
        assert_eq!(get("BLARGH_DRAIN_TIMEOUT_MS"), Some("30000"));
        assert_eq!(get("WATCHDOG_USEC"), Some("1500000"));
        assert_eq!(get("WATCHDOG_PID"), None, "set by the trampoline, not here");
        assert_eq!(get("DATABASE_URL"), Some("postgres://x"));
        assert_eq!(
            get("BLARGH_TLS_DOMAINS"),
            Some("shop.example,www.shop.example")
        );
        assert_eq!(get("BLARGH_TLS_CONTACT"), None);
        assert_eq!(get("BLARGH_ACME_DIRECTORY"), Some("https://ca.example/dir"));
        assert_eq!(get("BLARGH_ACME_CA_FILE"), Some("/etc/ssl/ca.pem"));
        // The app's env file may override PATH (it comes later), once.
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 2);
        assert_eq!(
            env.iter().rev().find(|(k, _)| k == "PATH").unwrap().1,
            "/opt/bin"
        );
    }

    #[test]
    fn without_the_watchdog_no_watchdog_variables_reach_the_app() {
        let app_env = vec![("WATCHDOG_USEC".to_string(), "5".to_string())];
        let env = release_env(&HandoverInputs {
            listener_names: &[],
            notify_socket: Path::new("/n.sock"),
            release: "r1",
            app: "shop",
            root: Path::new("/srv/app"),
            data_dir: Path::new("/srv/app/data"),
            drain_timeout: Duration::from_secs(30),
            app_env: &app_env,
            path: "/usr/bin:/bin",
            watchdog: None,
            tls: None,
        });
        assert!(
            !env.iter().any(|(k, _)| k.starts_with("WATCHDOG_")),
            "{env:?}"
        );
    }

    #[test]
    fn env_file_parsing_names_the_bad_line() {
        let ok = parse_env_file("# comment\n\nA=1\nB = x=y\nA=2\n").unwrap();
        assert_eq!(
            ok,
            vec![("B".into(), " x=y".into()), ("A".into(), "2".into())]
        );
        let err = parse_env_file("A=1\nnot a pair\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("KEY=VALUE"));
        assert!(parse_env_file("LISTEN_FDS=9").is_err());
        assert!(parse_env_file("9X=1").is_err());
    }
}
