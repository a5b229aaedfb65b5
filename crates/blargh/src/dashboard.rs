//! A ready-made deployment dashboard (feature `dashboard`): which release runs, the
//! releases before it, how long the process has been up, on which host.
//!
//! ```no_run
//! # fn app() -> axum::Router {
//! axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hi" }))
//!     .nest_service("/_blargh", blargh::dashboard::router())
//! # }
//! ```
//!
//! - `GET /_blargh/` (or `/_blargh`): an HTML page, inline CSS, no JavaScript, no external
//!   assets.
//! - `GET /_blargh/json`: the same facts as JSON:
//!
//! ```json
//! {
//!   "app": "shop",                    // BLARGH_APP, or null
//!   "host": "web-1",                  // the host name, or null
//!   "uptime_seconds": 5025,           // since the process started, or null
//!   "under_blargh": true,             // false under `cargo run` (BLARGH_RELEASE_ID unset)
//!   "release_id": "20261128T153210Z-0badcafe",
//!   "current": { "id": "…", "version": "1.4.0", "git_sha": "…", "sha256": "…", "size": 1,
//!                "built_at": null, "deployed_at": "…", "deployed_by": "…", "message": "…" },
//!   "previous": [ /* the other releases on the host, newest first, same shape */ ],
//!   "store_error": null               // why the release store could not be read, if so
//! }
//! ```
//!
//! Mount it with `nest_service`, which answers both `/_blargh` and `/_blargh/` and works
//! whatever the app's router state. `.nest("/_blargh", router())` works too (on a router
//! without state), but then axum serves the page at `/_blargh` only, not `/_blargh/`.
//!
//! The dashboard shows no environment values other than the app name and release id. It
//! does tell whoever reaches it which version runs and the deploy messages: put it behind
//! the app's own authentication (an axum middleware) if that matters.

use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{NestedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::calendar;
use crate::release::{self, ReleaseManifest};

/// The dashboard: `GET /` (HTML) and `GET /json`. Mount it with
/// `.nest_service("/_blargh", blargh::dashboard::router())`.
pub fn router() -> Router {
    // Fallback start time for systems without /proc.
    STARTED.get_or_init(Instant::now);
    Router::new()
        .route("/", get(page))
        .route("/json", get(json_facts))
}

async fn page(req: Request) -> Response {
    let base = req
        .extensions()
        .get::<NestedPath>()
        .map(|p| p.as_str().trim_end_matches('/').to_string())
        .unwrap_or_default();
    let html = render_html(&gather().await, &format!("{base}/json"));
    respond("text/html; charset=utf-8", html)
}

async fn json_facts() -> Response {
    let mut text =
        serde_json::to_string_pretty(&render_json(&gather().await)).expect("JSON serializes");
    text.push('\n');
    respond("application/json", text)
}

/// The facts, read off the async threads (the release store is a few small files, but it
/// is still disk I/O).
async fn gather() -> Facts {
    tokio::task::spawn_blocking(Facts::gather)
        .await
        .expect("reading the release store does not panic")
}

fn respond(content_type: &'static str, body: String) -> Response {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ),
        (
            HeaderName::from_static("x-robots-tag"),
            HeaderValue::from_static("noindex"),
        ),
    ];
    (headers, body).into_response()
}

/// Everything the dashboard shows; rendering is a pure function of it.
#[derive(Debug, Clone, PartialEq)]
struct Facts {
    /// `BLARGH_APP`.
    app: Option<String>,
    host: Option<String>,
    /// Since the process started.
    uptime: Option<Duration>,
    /// `BLARGH_RELEASE_ID`; `None` outside blargh.
    release_id: Option<String>,
    /// The running release's manifest (`None` outside blargh, or when it cannot be read).
    current: Option<ReleaseManifest>,
    /// The other releases on the host, newest first.
    previous: Vec<ReleaseManifest>,
    /// Why the release store could not be listed.
    store_error: Option<String>,
    /// When the facts were gathered (for "5 min ago").
    now: SystemTime,
}

impl Facts {
    /// Reads the facts from the process's environment and the release store.
    fn gather() -> Facts {
        Facts::assemble(
            std::env::var(blargh_proto::env::APP).ok(),
            host_name(),
            process_uptime(),
            release::current_id(),
            release::current(),
            release::history(),
            SystemTime::now(),
        )
    }

    /// Puts the facts together from explicit inputs: the release store's history (newest
    /// first, current one included) minus the current release gives the previous ones.
    fn assemble(
        app: Option<String>,
        host: Option<String>,
        uptime: Option<Duration>,
        release_id: Option<String>,
        current: Option<ReleaseManifest>,
        history: io::Result<Vec<ReleaseManifest>>,
        now: SystemTime,
    ) -> Facts {
        let (previous, store_error) = match history {
            Ok(all) => (
                all.into_iter()
                    .filter(|m| Some(m.id.as_str()) != release_id.as_deref())
                    .collect(),
                None,
            ),
            // Outside blargh there is no store; nothing to complain about.
            Err(_) if release_id.is_none() => (Vec::new(), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        Facts {
            app: app.filter(|a| !a.is_empty()),
            host,
            uptime,
            release_id,
            current,
            previous,
            store_error,
            now,
        }
    }

    fn under_blargh(&self) -> bool {
        self.release_id.is_some()
    }
}

/// The facts as JSON (see the module documentation for the shape).
fn render_json(f: &Facts) -> Value {
    json!({
        "app": f.app,
        "host": f.host,
        "uptime_seconds": f.uptime.map(|u| u.as_secs()),
        "under_blargh": f.under_blargh(),
        "release_id": f.release_id,
        "current": f.current,
        "previous": f.previous,
        "store_error": f.store_error,
    })
}

const STYLE: &str = r#"
:root { color-scheme: light; --fg: #1f2328; --muted: #656d76; --line: #d8dee4;
  --bg: #f6f8fa; --card: #fff; --accent: #1a7f37; --accent-bg: #dafbe1; --warn: #9a6700;
  --warn-bg: #fff8c5; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 24px 40px; }
header { display: flex; justify-content: space-between; align-items: flex-end; gap: 24px;
  flex-wrap: wrap; margin-bottom: 20px; }
h1 { margin: 0; font-size: 26px; font-weight: 650; letter-spacing: -0.01em; }
.sub { margin: 2px 0 0; color: var(--muted); font-size: 13px; }
.meta { display: flex; gap: 28px; margin: 0; }
.meta dt { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .06em; }
.meta dd { margin: 0; font-weight: 600; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 22px; margin-bottom: 24px; }
.card.now { border-left: 5px solid var(--accent); }
.card.outside { border-left: 5px solid var(--warn); background: var(--warn-bg); }
.label { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .06em;
  color: var(--accent); }
.outside .label { color: var(--warn); }
.headline { font-size: 24px; font-weight: 650; margin: 2px 0 6px; }
.message { margin: 0 0 12px; font-size: 16px; white-space: pre-wrap; overflow-wrap: anywhere; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; }
h2 { font-size: 15px; font-weight: 600; margin: 0 0 10px; }
.tablewrap { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px;
  text-transform: uppercase; letter-spacing: .05em; background: #f6f8fa; }
th, td { padding: 10px 14px; border-bottom: 1px solid var(--line); vertical-align: top;
  white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
tr.current td { background: var(--accent-bg); }
tr.current td:first-child { box-shadow: inset 4px 0 0 var(--accent); }
td.msg { white-space: normal; width: 100%; min-width: 200px; overflow-wrap: anywhere; }
.ver { font-weight: 600; }
code.id, .ago { font-size: 12px; color: var(--muted); }
code { font: 13px/1.4 ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", monospace; }
.badge { display: inline-block; margin-left: 6px; padding: 0 7px; border-radius: 999px;
  background: var(--accent); color: #fff; font-size: 11px; font-weight: 600;
  vertical-align: 1px; }
.muted { color: var(--muted); }
.error { color: #cf222e; }
footer { margin-top: 22px; color: var(--muted); font-size: 13px; }
a { color: #0969da; }
"#;

/// The facts as an HTML page; `json_href` is where the JSON lives.
fn render_html(f: &Facts, json_href: &str) -> String {
    let app = f.app.as_deref().unwrap_or("this app");
    let mut h = String::with_capacity(8 * 1024);
    h.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str("<meta name=\"robots\" content=\"noindex\">\n");
    h.push_str(&format!("<title>{} · blargh</title>\n", esc(app)));
    h.push_str(&format!(
        "<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
    ));

    // Header: app, host, uptime.
    h.push_str("<header>\n<div>\n");
    h.push_str(&format!("<h1 id=\"app\">{}</h1>\n", esc(app)));
    h.push_str("<p class=\"sub\">deployment dashboard · blargh</p>\n</div>\n");
    h.push_str("<dl class=\"meta\">\n");
    h.push_str(&format!(
        "<div><dt>Host</dt><dd id=\"host\">{}</dd></div>\n",
        opt(f.host.as_deref())
    ));
    h.push_str(&format!(
        "<div><dt>Up</dt><dd id=\"uptime\">{}</dd></div>\n",
        f.uptime.map(duration).unwrap_or_else(|| dash().into())
    ));
    h.push_str("</dl>\n</header>\n");

    // The current release, or why there is none.
    match (&f.release_id, &f.current) {
        (None, _) => {
            h.push_str("<section class=\"card outside\" id=\"current\">\n");
            h.push_str("<div class=\"label\">Not deployed</div>\n");
            h.push_str("<div class=\"headline\">Running outside blargh (cargo run)</div>\n");
            h.push_str(
                "<p class=\"message\">BLARGH_RELEASE_ID is not set: this process was not \
                 started by a blargh agent, so it has no release. Deploy it with \
                 <code>cargo blargh deploy</code>.</p>\n",
            );
            h.push_str("</section>\n");
        }
        (Some(id), None) => {
            h.push_str("<section class=\"card now\" id=\"current\">\n");
            h.push_str("<div class=\"label\">Current release</div>\n");
            h.push_str(&format!(
                "<div class=\"headline\"><code>{}</code></div>\n",
                esc(id)
            ));
            h.push_str(
                "<p class=\"message error\">Its manifest (release.json) could not be read.</p>\n",
            );
            h.push_str("</section>\n");
        }
        (Some(_), Some(m)) => {
            h.push_str("<section class=\"card now\" id=\"current\">\n");
            h.push_str("<div class=\"label\">Current release</div>\n");
            h.push_str(&format!(
                "<div class=\"headline\">{}</div>\n",
                m.version
                    .as_deref()
                    .map(esc)
                    .unwrap_or_else(|| "unversioned".into())
            ));
            if let Some(msg) = m.message.as_deref().filter(|s| !s.is_empty()) {
                h.push_str(&format!("<p class=\"message\">{}</p>\n", esc(msg)));
            }
            h.push_str("<dl class=\"facts\">\n");
            h.push_str(&format!(
                "<dt>Release</dt><dd><code>{}</code></dd>\n",
                esc(&m.id)
            ));
            h.push_str(&format!("<dt>Git sha</dt><dd>{}</dd>\n", sha(m)));
            h.push_str(&format!(
                "<dt>Deployed</dt><dd>{}</dd>\n",
                when(&m.deployed_at, f.now, false)
            ));
            h.push_str(&format!(
                "<dt>Deployed by</dt><dd>{}</dd>\n",
                opt(m.deployed_by.as_deref())
            ));
            h.push_str("</dl>\n</section>\n");
        }
    }

    // Every release on the host, newest first, the current one highlighted.
    let mut rows: Vec<(&ReleaseManifest, bool)> = f.previous.iter().map(|m| (m, false)).collect();
    if let Some(m) = &f.current {
        rows.push((m, true));
    }
    rows.sort_by(|a, b| b.0.id.cmp(&a.0.id));
    if f.under_blargh() || !rows.is_empty() {
        h.push_str("<section id=\"releases\">\n<h2>Releases on this host, newest first</h2>\n");
        h.push_str("<div class=\"tablewrap\">\n<table>\n<thead><tr>");
        for col in ["Release", "Git sha", "Deployed", "By", "Message"] {
            h.push_str(&format!("<th>{col}</th>"));
        }
        h.push_str("</tr></thead>\n<tbody>\n");
        for (m, current) in &rows {
            h.push_str(if *current {
                "<tr class=\"current\">"
            } else {
                "<tr>"
            });
            h.push_str(&format!(
                "<td><div class=\"ver\">{}{}</div><code class=\"id\">{}</code></td>",
                opt(m.version.as_deref()),
                if *current {
                    " <span class=\"badge\">current</span>"
                } else {
                    ""
                },
                esc(&m.id)
            ));
            h.push_str(&format!("<td>{}</td>", sha(m)));
            h.push_str(&format!("<td>{}</td>", when(&m.deployed_at, f.now, true)));
            h.push_str(&format!("<td>{}</td>", opt(m.deployed_by.as_deref())));
            h.push_str(&format!(
                "<td class=\"msg\">{}</td>",
                opt(m.message.as_deref().filter(|s| !s.is_empty()))
            ));
            h.push_str("</tr>\n");
        }
        if f.previous.is_empty() {
            h.push_str(
                "<tr><td colspan=\"5\" class=\"muted\">\
                 No other release on this host.</td></tr>\n",
            );
        }
        h.push_str("</tbody>\n</table>\n</div>\n");
        if let Some(e) = &f.store_error {
            h.push_str(&format!(
                "<p class=\"error\">The release store could not be read: {}.</p>\n",
                esc(e)
            ));
        }
        h.push_str("</section>\n");
    }

    h.push_str(&format!(
        "<footer>The same facts as JSON: <a href=\"{0}\">{0}</a> · generated {1}</footer>\n",
        esc(json_href),
        rfc3339(f.now)
    ));
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn dash() -> &'static str {
    "<span class=\"muted\">—</span>"
}

fn opt(s: Option<&str>) -> String {
    s.map(esc).unwrap_or_else(|| dash().into())
}

/// The git sha, shortened, with the whole one on hover.
fn sha(m: &ReleaseManifest) -> String {
    match m.git_sha.as_deref() {
        Some(s) if !s.is_empty() => {
            let short: String = s.chars().take(10).collect();
            format!("<code title=\"{}\">{}</code>", esc(s), esc(&short))
        }
        _ => dash().into(),
    }
}

/// A manifest time, readable, and how long ago (beside it, or `stacked` below it).
fn when(at: &str, now: SystemTime, stacked: bool) -> String {
    let Some(t) = calendar::parse_rfc3339(at) else {
        return esc(at);
    };
    let time = format!("<time datetime=\"{}\">{}</time>", esc(at), rfc3339(t));
    match now.duration_since(t) {
        Ok(ago) if stacked => format!("{time}<div class=\"ago\">{}</div>", ago_text(ago)),
        Ok(ago) => format!("{time} <span class=\"muted\">({})</span>", ago_text(ago)),
        Err(_) => time,
    }
}

fn ago_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..10 => "just now".into(),
        10..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        86400..172800 => "1 day ago".into(),
        _ => format!("{} days ago", s / 86400),
    }
}

/// "3d 4h", "2h 5m", "4m 10s", "12s".
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn rfc3339(t: SystemTime) -> String {
    let (y, m, d, h, mi, se) = calendar::utc(t);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{se:02} UTC")
}

static STARTED: OnceLock<Instant> = OnceLock::new();

/// How long this process has run: from the kernel where it says (Linux), else since the
/// dashboard was first built.
fn process_uptime() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    if let Some(d) = linux_process_uptime() {
        return Some(d);
    }
    STARTED.get().map(Instant::elapsed)
}

#[cfg(target_os = "linux")]
fn linux_process_uptime() -> Option<Duration> {
    // Field 22 of /proc/self/stat is the start time in clock ticks after boot; the fields
    // after the command name (which may hold spaces) start at field 3.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let start_ticks: u64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let started = start_ticks as f64 / hz as f64;
    Some(Duration::from_secs_f64((boot - started).max(0.0)))
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(id: &str, version: &str, message: Option<&str>) -> ReleaseManifest {
        ReleaseManifest {
            id: id.parse().expect("a valid release id"),
            version: Some(version.into()),
            git_sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
            sha256: "ab".repeat(32),
            size: 1234,
            built_at: None,
            deployed_at: "2026-11-28T15:32:10Z".into(),
            deployed_by: Some("ana@laptop".into()),
            message: message.map(Into::into),
            tree: None,
        }
    }

    /// A release store as the agent leaves it: `releases/<id>/release.json`, plus a
    /// directory still without a manifest.
    fn fake_store(dir: &Path, releases: &[ReleaseManifest]) {
        for m in releases {
            let d = dir.join("releases").join(m.id.as_str());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("release.json"), m.to_json()).unwrap();
        }
        std::fs::create_dir_all(dir.join("releases/20990101T000000Z-halfsent")).unwrap();
    }

    /// Reads a fake store the way `release::current` and `release::history` read the real
    /// one (they take their root from the environment, which tests must not change).
    fn facts_from_store(root: &Path, id: Option<&str>) -> Facts {
        let read = |p: &Path| {
            ReleaseManifest::from_json(&std::fs::read_to_string(p.join("release.json")).ok()?).ok()
        };
        let current = id.and_then(|id| read(&root.join("releases").join(id)));
        let history = std::fs::read_dir(root.join("releases")).map(|rd| {
            let mut all: Vec<_> = rd.filter_map(|e| read(&e.ok()?.path())).collect();
            all.sort_by(|a, b| b.id.cmp(&a.id));
            all
        });
        Facts::assemble(
            Some("shop".into()),
            Some("web-1".into()),
            Some(Duration::from_secs(3 * 3600 + 125)),
            id.map(Into::into),
            current,
            history,
            calendar::parse_rfc3339("2026-11-28T15:37:10Z").unwrap(),
        )
    }

    fn two_releases() -> (tempfile::TempDir, Facts) {
        let dir = tempfile::tempdir().unwrap();
        fake_store(
            dir.path(),
            &[
                manifest("20261128T150000Z-11111111", "v1", Some("first")),
                manifest(
                    "20261128T153210Z-22222222",
                    "v2",
                    Some("fix <script>alert(\"x\")</script> & more"),
                ),
            ],
        );
        let facts = facts_from_store(dir.path(), Some("20261128T153210Z-22222222"));
        (dir, facts)
    }

    #[test]
    fn a_deploy_message_is_shown_escaped() {
        let (_dir, facts) = two_releases();
        let html = render_html(&facts, "/_blargh/json");
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("fix &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more"),
            "{html}"
        );
        assert!(!html.contains("<script"));
        assert_eq!(
            esc("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_page_shows_current_and_previous_releases() {
        let (_dir, facts) = two_releases();
        assert_eq!(
            facts.previous.len(),
            1,
            "the half-sent directory is no release"
        );
        let html = render_html(&facts, "/_blargh/json");
        assert!(html.contains("<h1 id=\"app\">shop</h1>"));
        assert!(html.contains("<dd id=\"host\">web-1</dd>"));
        assert!(html.contains("<dd id=\"uptime\">3h 2m</dd>"));
        assert!(html.contains("<div class=\"headline\">v2</div>"));
        assert!(html.contains("2026-11-28 15:32:10 UTC"));
        assert!(html.contains("(5 min ago)"));
        assert!(html.contains(
            "<code title=\"0123456789abcdef0123456789abcdef01234567\">0123456789</code>"
        ));
        // One highlighted row (v2), then v1.
        assert_eq!(html.matches("<tr class=\"current\">").count(), 1);
        let v2 = html
            .find(concat!(
                "<tr class=\"current\"><td><div class=\"ver\">v2 ",
                "<span class=\"badge\">current</span></div>",
                "<code class=\"id\">20261128T153210Z-22222222</code>"
            ))
            .expect("v2 row highlighted");
        let v1 = html
            .find(concat!(
                "<tr><td><div class=\"ver\">v1</div>",
                "<code class=\"id\">20261128T150000Z-11111111</code>"
            ))
            .expect("v1 row");
        assert!(v2 < v1, "newest first");
        assert!(html.contains("<a href=\"/_blargh/json\">"));
        assert!(!html.contains("Running outside blargh"));
    }

    #[test]
    fn json_has_the_same_facts() {
        let (_dir, facts) = two_releases();
        let v = render_json(&facts);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "app",
            "host",
            "uptime_seconds",
            "under_blargh",
            "release_id",
            "current",
            "previous",
            "store_error",
        ];
        want.sort();
        let mut got = keys.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(v["app"], "shop");
        assert_eq!(v["host"], "web-1");
        assert_eq!(v["uptime_seconds"], 3 * 3600 + 125);
        assert_eq!(v["under_blargh"], true);
        assert_eq!(v["release_id"], "20261128T153210Z-22222222");
        assert_eq!(v["current"]["version"], "v2");
        assert_eq!(v["current"]["deployed_by"], "ana@laptop");
        assert!(
            v["current"]["message"]
                .as_str()
                .unwrap()
                .contains("<script>")
        );
        let prev = v["previous"].as_array().unwrap();
        assert_eq!(prev.len(), 1);
        assert_eq!(prev[0]["version"], "v1");
        assert_eq!(prev[0]["id"], "20261128T150000Z-11111111");
        assert_eq!(v["store_error"], Value::Null);
        // A manifest in the JSON reads back as one.
        let back: ReleaseManifest = serde_json::from_value(v["current"].clone()).unwrap();
        assert_eq!(back, facts.current.unwrap());
    }

    #[test]
    fn outside_blargh_says_so() {
        // No BLARGH_RELEASE_ID and no store at all, as under `cargo run`.
        let dir = tempfile::tempdir().unwrap();
        let mut facts = facts_from_store(dir.path(), None);
        facts.app = None;
        assert_eq!(
            facts.store_error, None,
            "no store is expected outside blargh"
        );
        let html = render_html(&facts, "/json");
        assert!(
            html.contains("Running outside blargh (cargo run)"),
            "{html}"
        );
        assert!(html.contains("BLARGH_RELEASE_ID is not set"));
        assert!(!html.contains("<table"), "no release table outside blargh");
        assert!(!html.contains("could not be read"));
        assert!(html.contains("<h1 id=\"app\">this app</h1>"));
        let v = render_json(&facts);
        assert_eq!(v["under_blargh"], false);
        assert_eq!(v["app"], Value::Null);
        assert_eq!(v["current"], Value::Null);
        assert_eq!(v["release_id"], Value::Null);
        assert_eq!(v["previous"], json!([]));
        assert_eq!(v["store_error"], Value::Null);
    }

    #[test]
    fn an_unreadable_manifest_or_store_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let facts = facts_from_store(dir.path(), Some("20261128T153210Z-22222222"));
        assert_eq!(facts.current, None);
        let err = facts.store_error.clone().expect("a store error");
        assert!(err.contains("os error"), "{err}");
        let html = render_html(&facts, "/json");
        assert!(html.contains("<code>20261128T153210Z-22222222</code>"));
        assert!(html.contains("manifest (release.json) could not be read"));
        assert!(html.contains(&format!(
            "The release store could not be read: {}.",
            esc(&err)
        )));
        assert!(!html.contains("Running outside blargh"));
    }

    #[test]
    fn times_read_and_print() {
        let t = calendar::parse_rfc3339("2026-11-28T15:32:10Z").unwrap();
        assert_eq!(rfc3339(t), "2026-11-28 15:32:10 UTC");
        let t = calendar::parse_rfc3339("2024-02-29T23:59:59.123Z").unwrap();
        assert_eq!(rfc3339(t), "2024-02-29 23:59:59 UTC");
        assert_eq!(calendar::parse_rfc3339("yesterday"), None);
        assert_eq!(when("<b>", SystemTime::now(), false), "&lt;b&gt;");
        assert_eq!(
            duration(Duration::from_secs(2 * 86400 + 5 * 3600 + 7)),
            "2d 5h"
        );
        assert_eq!(duration(Duration::from_secs(250)), "4m 10s");
        assert_eq!(ago_text(Duration::from_secs(3)), "just now");
        assert_eq!(ago_text(Duration::from_secs(7200)), "2 h ago");
    }

    #[test]
    fn uptime_and_host_come_from_the_process() {
        let _ = router();
        let up = process_uptime().expect("uptime");
        assert!(up < Duration::from_secs(24 * 3600), "{up:?}");
        assert!(host_name().is_some());
    }

    async fn get(app: Router, path: &str) -> (u16, String, String) {
        use tower::ServiceExt;
        let req = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = body_text(res.into_body()).await;
        (status, ctype, body)
    }

    async fn body_text(body: axum::body::Body) -> String {
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn mounted_under_a_prefix_it_serves_the_page_and_the_json() {
        let app = Router::new().nest_service("/_blargh", router());
        for path in ["/_blargh", "/_blargh/"] {
            let (status, ctype, body) = get(app.clone(), path).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(ctype, "text/html; charset=utf-8");
            assert!(body.contains("<a href=\"/_blargh/json\">"), "{body}");
        }
        let (status, ctype, body) = get(app.clone(), "/_blargh/json").await;
        assert_eq!((status, ctype.as_str()), (200, "application/json"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["under_blargh"].is_boolean());
        assert_eq!(get(app, "/_blargh/nope").await.0, 404);

        // `nest` serves the prefix without the trailing slash.
        let nested = Router::new().nest("/_blargh", router());
        assert_eq!(get(nested.clone(), "/_blargh").await.0, 200);
        assert_eq!(get(nested, "/_blargh/json").await.0, 200);
    }
}
