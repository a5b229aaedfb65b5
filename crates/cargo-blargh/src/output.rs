//! How the agent's answers look to a person.

use std::fmt::Write;

use blargh_proto::control::{AppState, Reply};

/// `text` safe to print on a terminal: control characters (ESC sequences that could
/// rewrite the screen or the title, carriage returns that hide a line, bells, C1 controls)
/// become visible escapes like `\x1b`; tabs stay. Server-supplied text (app log lines,
/// deploy messages, error texts) goes through this before it is printed.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The first `n` characters of `text` (all of it when shorter): a server's hash or commit
/// shortened for display, whatever it holds.
fn head(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Prints `text` line by line to stdout (`ok`) or stderr, each line after `prefix` and
/// made [`printable`].
pub fn print_lines(prefix: &str, text: &str, ok: bool) {
    for line in text.lines() {
        if ok {
            println!("{prefix}  {}", printable(line));
        } else {
            eprintln!("{prefix}  {}", printable(line));
        }
    }
}

/// Text for a reply: `Ok` for stdout, `Err` for stderr (a failed request).
pub fn render(reply: &Reply) -> Result<String, String> {
    let mut s = String::new();
    match reply {
        Reply::Status(st) => {
            let state = match st.state {
                AppState::Empty => "no release activated yet",
                AppState::Starting => "starting",
                AppState::Running => "running",
                AppState::CrashLoop => "CRASH LOOP",
            };
            let state = match (st.state, st.retry_every_ms) {
                (AppState::CrashLoop, Some(ms)) => format!(
                    "{state} (retrying every {} s; deploy a fix or roll back)",
                    ms.div_ceil(1000)
                ),
                (AppState::CrashLoop, None) => format!("{state} (deploy a fix or roll back)"),
                _ => state.to_string(),
            };
            let _ = writeln!(s, "app {}: {state}", st.app);
            if let Some(m) = &st.current {
                let _ = writeln!(
                    s,
                    "  release   {} (version {}, git {})",
                    m.id,
                    m.version.as_deref().unwrap_or("?"),
                    m.git_sha.as_deref().unwrap_or("?")
                );
                let _ = writeln!(
                    s,
                    "  deployed  {} by {}",
                    m.deployed_at,
                    m.deployed_by.as_deref().unwrap_or("?")
                );
            }
            if let Some(pid) = st.pid {
                let up = st
                    .uptime_ms
                    .map(|ms| {
                        humantime::format_duration(std::time::Duration::from_secs(ms / 1000))
                            .to_string()
                    })
                    .unwrap_or_default();
                let rss = st
                    .rss_bytes
                    .map(|b| format!(", {:.1} MB", b as f64 / 1e6))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  pid       {pid}, up {up}{rss}, {} restarts, {} hung and replaced",
                    st.restarts, st.watchdog_restarts
                );
            }
            if let Some(p) = &st.previous {
                let _ = writeln!(s, "  previous  {p}");
            }
            for l in &st.listeners {
                let _ = writeln!(s, "  listen    {} {}", l.name, l.address);
            }
            for c in &st.certificates {
                let left = humantime::parse_rfc3339_weak(&c.not_after)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
                    .map(|d| format!("in {} days", d.as_secs() / 86_400))
                    .unwrap_or_else(|| "EXPIRED or unreadable".to_string());
                let _ = writeln!(
                    s,
                    "  tls       {} expires {} ({left}), issuer {}",
                    c.domain, c.not_after, c.issuer
                );
            }
            let _ = writeln!(s, "  settings  {}", st.settings);
            let _ = writeln!(
                s,
                "  agent     pid {}, version {}",
                st.agent_pid, st.agent_version
            );
        }
        Reply::Releases { releases } => {
            if releases.is_empty() {
                s.push_str("no releases on this host yet\n");
            }
            for r in releases {
                let m = &r.manifest;
                let mark = if r.current {
                    "* "
                } else if r.previous {
                    "- "
                } else {
                    "  "
                };
                let _ = writeln!(
                    s,
                    "{mark}{}  {:<10} {:<10} {}  {}{}",
                    m.id,
                    m.version.as_deref().unwrap_or("-"),
                    m.git_sha.as_deref().map(|g| head(g, 10)).unwrap_or("-"),
                    m.deployed_at,
                    m.deployed_by.as_deref().unwrap_or("-"),
                    m.message
                        .as_deref()
                        .map(|t| format!("  \"{t}\""))
                        .unwrap_or_default()
                );
            }
        }
        Reply::Received {
            release,
            already_present,
        } => {
            let _ = writeln!(
                s,
                "{} {} ({} bytes, sha256 {})",
                if *already_present {
                    "already stored:"
                } else {
                    "stored:"
                },
                release.id,
                release.size,
                head(&release.sha256, 16)
            );
        }
        Reply::Activated(a) => {
            let _ = write!(
                s,
                "{} is serving (pid {}, ready in {} ms",
                a.release, a.pid, a.ready_ms
            );
            match &a.previous {
                Some(p) => {
                    let _ = writeln!(s, "); {p} drained");
                }
                None => s.push_str(")\n"),
            }
        }
        Reply::Logs { lines } => {
            for l in lines {
                let _ = writeln!(s, "{l}");
            }
        }
        Reply::Audit { events } => {
            for e in events {
                let _ = writeln!(
                    s,
                    "{} {:<10} {} {}{}",
                    e.at,
                    e.event,
                    e.release.as_deref().unwrap_or("-"),
                    e.by.as_deref()
                        .map(|b| format!("by {b} "))
                        .unwrap_or_default(),
                    e.detail.as_deref().unwrap_or("")
                );
            }
        }
        Reply::Lock { held } => match held {
            Some(h) => {
                let _ = writeln!(s, "locked by {} since {}: {}", h.holder, h.since, h.message);
            }
            None => s.push_str("not locked\n"),
        },
        Reply::Env { names, restarted } => {
            for n in names {
                let _ = writeln!(s, "{n}=********");
            }
            if let Some(a) = restarted {
                let _ = writeln!(s, "restarted: {} serving (pid {})", a.release, a.pid);
            }
        }
        Reply::Configured { settings } => {
            let _ = writeln!(s, "settings in effect: {settings}");
        }
        Reply::Upgraded(u) => {
            let _ = writeln!(
                s,
                "agent upgraded in place: {} -> {} (pid {}, {} ms); {}",
                u.from_version,
                u.to_version,
                u.agent_pid,
                u.took_ms,
                match &u.kept {
                    Some(k) => format!("release {} (pid {}) kept serving", k.release, k.pid),
                    None => "no release was serving".to_string(),
                }
            );
        }
        Reply::Exec {
            status,
            stdout,
            stderr,
        } => {
            s.push_str(stdout);
            s.push_str(stderr);
            if *status != Some(0) {
                return Err(format!(
                    "{s}error: exited with {}\n",
                    status
                        .map(|c| c.to_string())
                        .unwrap_or("a signal or the timeout".into())
                ));
            }
        }
        Reply::Error(e) => {
            let _ = writeln!(s, "error: {}", e.message);
            if !e.release_log.is_empty() {
                let _ = writeln!(s, "\nits last output:");
                for l in &e.release_log {
                    let _ = writeln!(s, "  {l}");
                }
            }
            return Err(s);
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_not_obeyed() {
        use super::printable;
        assert_eq!(printable("plain\ttext"), "plain\ttext");
        assert_eq!(printable("\x1b]0;pwned\x07x"), "\\x1b]0;pwned\\x07x");
        assert_eq!(printable("ok\rFAKE"), "ok\\x0dFAKE");
        assert_eq!(printable("c1\u{9b}31m"), "c1\\x9b31m");
    }

    use super::*;
    use blargh_proto::control::ControlError;

    #[test]
    fn errors_show_the_release_output() {
        let text = render(&Reply::Error(ControlError {
            message:
                "release r2 exited with status 3 before it was ready; release r1 keeps serving"
                    .into(),
            release_log: vec!["err| cannot open database".into()],
        }))
        .unwrap_err();
        assert!(text.starts_with("error: release r2 exited with status 3"));
        assert!(text.contains("its last output:\n  err| cannot open database"));
    }

    mod props {
        use super::*;
        use blargh_proto::ReleaseManifest;
        use proptest::prelude::*;

        fn manifest(sha256: String, git_sha: Option<String>) -> ReleaseManifest {
            ReleaseManifest {
                id: "r1".parse().unwrap(),
                version: Some("1.0.0".into()),
                git_sha,
                sha256,
                size: 1,
                built_at: None,
                deployed_at: "now".into(),
                deployed_by: None,
                message: None,
                tree: None,
            }
        }

        proptest! {
            /// Whatever a server sends in a manifest's text fields (short, empty or
            /// non-ASCII), rendering it does not panic.
            #[test]
            fn server_text_never_panics_the_output(
                sha in prop_oneof![any::<String>(), "\\PC{0,20}", "[a-f0-9é]{0,20}"],
                git in proptest::option::of(prop_oneof![any::<String>(), "[0-9a-fé]{0,12}"]),
            ) {
                let m = manifest(sha, git);
                let _ = render(&Reply::Received { release: m.clone(), already_present: false });
                let _ = render(&Reply::Releases {
                    releases: vec![blargh_proto::control::ReleaseEntry {
                        manifest: m,
                        current: true,
                        previous: false,
                    }],
                });
            }
        }
    }
}
