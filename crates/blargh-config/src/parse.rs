//! Reading `[package.metadata.blargh]` out of a Cargo.toml's text.
//!
//! The text is parsed with `toml`'s spanned document tree ([`DeTable`]), which keeps the
//! byte range of every key and value, so each error points at a line. The section is read in
//! layers: the top level, then each `destinations.NAME` table (all of them are checked,
//! whichever is chosen, so a typo in `production` fails the staging deploy too). The chosen
//! layer is merged over the top one, tables (`env`, `listen`, `auto_rollback`) key by key and
//! everything else whole, and only then are defaults filled in and `hosts` required.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::check::{self, Problem, quote};
use crate::config::{
    AutoRollback, BIN_PLACEHOLDER, DEFAULT_AUTO_ROLLBACK, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_KEEP_RELEASES, DEFAULT_LISTEN_ADDRESS, DEFAULT_LISTEN_NAME, DEFAULT_LOCK_EXPIRY,
    DEFAULT_MAX_RELEASE_SIZE, DEFAULT_READY_TIMEOUT, DEFAULT_WATCHDOG_TIMEOUT, DeployConfig,
    MAX_RELEASE_SIZE, MIN_KEEP_RELEASES, MIN_WATCHDOG_TIMEOUT, ReleaseContent,
};
use crate::error::{ConfigError, ErrorKind};
use blargh_proto::control::{Readiness, TlsSettings};

/// The section's dotted path.
pub(crate) const SECTION: &str = "package.metadata.blargh";

/// Every key of the section (a destination takes all but `destinations`).
pub const KEYS: &[&str] = &[
    "hosts",
    "app",
    "bin",
    "target",
    "listen",
    "env",
    "ready_timeout",
    "drain_timeout",
    "keep_releases",
    "watchdog_timeout",
    "ready",
    "tls",
    "before_activate",
    "auto_rollback",
    "lock_expiry",
    "parallel",
    "known_hosts",
    "include",
    "release_dir",
    "start",
    "max_release_size",
    "destinations",
];

/// The keys of a `ready` table.
const READY_KEYS: &[&str] = &["http", "exec"];

/// The keys of a `tls` table.
const TLS_KEYS: &[&str] = &["domains", "contact", "directory", "ca_file"];

/// The keys of an `auto_rollback` table.
const ROLLBACK_KEYS: &[&str] = &["window", "crashes"];

type Key<'i> = Spanned<DeString<'i>>;
type Value<'i> = Spanned<DeValue<'i>>;
/// A key and its value, borrowed from the document.
type Entry<'a, 'i> = (&'a Key<'i>, &'a Value<'i>);

/// The file being read, for errors.
pub(crate) struct Cx<'t> {
    pub text: &'t str,
    pub file: &'t Path,
}

impl Cx<'_> {
    /// An error of `kind` at `span`, about `key` (a full dotted path).
    fn error(
        &self,
        kind: ErrorKind,
        span: Range<usize>,
        key: &str,
        message: String,
    ) -> ConfigError {
        ConfigError::new(kind, self.file, message)
            .at(self.text, span)
            .key(key)
    }

    /// `path = <value>: <what>; <fix>`, at the value.
    fn bad(&self, path: &str, value: &Value<'_>, p: Problem) -> ConfigError {
        self.error(
            ErrorKind::InvalidValue,
            value.span(),
            path,
            format!("{path} = {}: {}; {}", show(value.get_ref()), p.what, p.fix),
        )
    }

    /// `path: <what>; <fix>`, at the key (for a bad name rather than a bad value).
    fn bad_key(&self, path: &str, key: &Key<'_>, p: Problem) -> ConfigError {
        self.error(
            ErrorKind::InvalidValue,
            key.span(),
            path,
            format!("{path}: {}; {}", p.what, p.fix),
        )
    }

    /// A TOML syntax error.
    pub(crate) fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let err = ConfigError::new(
            ErrorKind::Syntax,
            self.file,
            format!("not valid TOML: {}", e.message().trim_end()),
        );
        match e.span() {
            Some(span) => err.at(self.text, span),
            None => err,
        }
    }
}

/// A value with the place it was written, for checks made after merging.
#[derive(Debug, Clone)]
struct At<T> {
    value: T,
    path: String,
    span: Range<usize>,
}

/// `auto_rollback` as one layer writes it.
#[derive(Debug, Clone)]
enum Rollback {
    Off,
    On {
        window: Option<Duration>,
        crashes: Option<u32>,
    },
}

/// One layer: what the top level or one destination sets, each value checked on its own.
#[derive(Debug, Clone, Default)]
struct Layer {
    hosts: Option<At<Vec<String>>>,
    app: Option<At<String>>,
    bin: Option<String>,
    target: Option<String>,
    listen: Option<BTreeMap<String, At<SocketAddr>>>,
    env: Option<BTreeMap<String, String>>,
    ready_timeout: Option<At<Duration>>,
    drain_timeout: Option<At<Duration>>,
    keep_releases: Option<u32>,
    /// `Some(None)`: `watchdog_timeout = false`.
    watchdog_timeout: Option<Option<Duration>>,
    ready: Option<Readiness>,
    tls: Option<TlsSettings>,
    before_activate: Option<Vec<String>>,
    auto_rollback: Option<Rollback>,
    lock_expiry: Option<At<Duration>>,
    parallel: Option<bool>,
    known_hosts: Option<Vec<String>>,
    include: Option<At<Vec<String>>>,
    release_dir: Option<At<String>>,
    start: Option<At<Vec<String>>>,
    max_release_size: Option<u64>,
}

impl Layer {
    /// `over` written over `self`: tables merge key by key, everything else is replaced.
    fn merged(mut self, over: Layer) -> Layer {
        fn table<T>(
            under: Option<BTreeMap<String, T>>,
            over: Option<BTreeMap<String, T>>,
        ) -> Option<BTreeMap<String, T>> {
            match (under, over) {
                (Some(mut u), Some(o)) => {
                    u.extend(o);
                    Some(u)
                }
                (u, o) => o.or(u),
            }
        }
        self.auto_rollback = match (self.auto_rollback, over.auto_rollback) {
            (
                Some(Rollback::On { window, crashes }),
                Some(Rollback::On {
                    window: w,
                    crashes: c,
                }),
            ) => Some(Rollback::On {
                window: w.or(window),
                crashes: c.or(crashes),
            }),
            (u, o) => o.or(u),
        };
        Layer {
            hosts: over.hosts.or(self.hosts),
            app: over.app.or(self.app),
            bin: over.bin.or(self.bin),
            target: over.target.or(self.target),
            listen: table(self.listen, over.listen),
            env: table(self.env, over.env),
            ready_timeout: over.ready_timeout.or(self.ready_timeout),
            drain_timeout: over.drain_timeout.or(self.drain_timeout),
            keep_releases: over.keep_releases.or(self.keep_releases),
            watchdog_timeout: over.watchdog_timeout.or(self.watchdog_timeout),
            ready: over.ready.or(self.ready),
            tls: over.tls.or(self.tls),
            before_activate: over.before_activate.or(self.before_activate),
            auto_rollback: self.auto_rollback,
            lock_expiry: over.lock_expiry.or(self.lock_expiry),
            parallel: over.parallel.or(self.parallel),
            known_hosts: over.known_hosts.or(self.known_hosts),
            include: over.include.or(self.include),
            release_dir: over.release_dir.or(self.release_dir),
            start: over.start.or(self.start),
            max_release_size: over.max_release_size.or(self.max_release_size),
        }
    }
}

/// A configured destination.
struct Destination {
    name: String,
    path: String,
    key_span: Range<usize>,
    layer: Layer,
}

/// `key` appended to the dotted `path`, quoted when it is not a bare TOML key.
fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        format!("{path}.{key}")
    } else {
        format!("{path}.{}", quote(key))
    }
}

/// The table's entries in the order they are written.
fn entries<'a, 'i>(table: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut all: Vec<_> = table.iter().collect();
    all.sort_by_key(|(k, _)| k.span().start);
    all
}

/// The entry for `key` in `table`.
fn find<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<Entry<'a, 'i>> {
    table.iter().find(|(k, _)| k.get_ref() == key)
}

/// A value as TOML would write it, shortened when long.
fn show(value: &DeValue<'_>) -> String {
    let full = match value {
        DeValue::String(s) => quote(s),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| show(v.get_ref())).collect();
            format!("[{}]", items.join(", "))
        }
        DeValue::Table(t) => {
            let items: Vec<String> = entries(t)
                .into_iter()
                .map(|(k, v)| format!("{} = {}", k.get_ref(), show(v.get_ref())))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    };
    if full.chars().count() > 60 {
        let cut: String = full.chars().take(57).collect();
        format!("{cut}...")
    } else {
        full
    }
}

/// How a value's type is named in errors.
fn kind_of(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "a number",
        DeValue::Float(_) => "a number",
        DeValue::Boolean(_) => "true/false",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// The last key of a dotted path (the paths here are made of checked names).
fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// `expected <what>, found <kind>; write it like <leaf> = <example>`.
fn wrong_type(path: &str, value: &DeValue<'_>, what: &str, example: &str) -> Problem {
    check::problem(
        format!("expected {what}, found {}", kind_of(value)),
        format!("write it like {} = {example}", leaf(path)),
    )
}

fn string<'a>(
    cx: &Cx<'_>,
    path: &str,
    v: &'a Value<'_>,
    example: &str,
) -> Result<&'a str, ConfigError> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s),
        other => Err(cx.bad(path, v, wrong_type(path, other, "a string", example))),
    }
}

/// A string checked by `check`.
fn checked_string(
    cx: &Cx<'_>,
    path: &str,
    v: &Value<'_>,
    example: &str,
    check: fn(&str) -> Result<(), Problem>,
) -> Result<String, ConfigError> {
    let s = string(cx, path, v, example)?;
    check(s).map_err(|p| cx.bad(path, v, p))?;
    Ok(s.to_string())
}

/// The longest `ready_timeout` and `drain_timeout`: what the agent accepts.
const MAX_TIMEOUT: Duration = Duration::from_millis(blargh_proto::control::MAX_TIMEOUT_MS);
/// The longest `lock_expiry`: what the agent accepts.
const MAX_LOCK_EXPIRY: Duration = Duration::from_secs(blargh_proto::control::MAX_LOCK_TTL_S);
/// The longest `auto_rollback.window`: what the agent accepts.
const MAX_WINDOW: Duration = Duration::from_secs(blargh_proto::control::MAX_WINDOW_S);

/// A duration of at most `max` (`max_text` says it in words: "1 hour").
fn duration(
    cx: &Cx<'_>,
    path: &str,
    v: &Value<'_>,
    max: Duration,
    max_text: &str,
) -> Result<At<Duration>, ConfigError> {
    let s = match v.get_ref() {
        DeValue::String(s) => s,
        DeValue::Integer(n) => {
            let p = check::problem(
                "a duration is a string with a unit",
                format!("write it like {} = \"{n}s\"", leaf(path)),
            );
            return Err(cx.bad(path, v, p));
        }
        other => {
            return Err(cx.bad(path, v, wrong_type(path, other, "a duration", "\"30s\"")));
        }
    };
    let d = check::duration(s).map_err(|p| cx.bad(path, v, p))?;
    if d > max {
        let p = check::problem(
            format!("too long; the agent accepts at most {max_text}"),
            format!(
                "write it like {} = \"{}\"",
                leaf(path),
                humantime::format_duration(max)
            ),
        );
        return Err(cx.bad(path, v, p));
    }
    Ok(At {
        value: d,
        path: path.to_string(),
        span: v.span(),
    })
}

/// `tls`: `{ domains = ["shop.example"], contact = "ops@shop.example", directory = "https://…" }`.
fn tls(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<TlsSettings, ConfigError> {
    let DeValue::Table(t) = v.get_ref() else {
        return Err(cx.bad(
            path,
            v,
            wrong_type(
                path,
                v.get_ref(),
                "a table",
                "{ domains = [\"shop.example\"] }",
            ),
        ));
    };
    let mut out = TlsSettings {
        domains: Vec::new(),
        contact: None,
        directory: None,
        ca_file: None,
    };
    let mut saw_domains = false;
    for (k, v) in entries(t) {
        let name = k.get_ref().as_ref();
        let p = join(path, name);
        match name {
            "domains" => {
                out.domains = string_list(cx, &p, v, "[\"shop.example\"]", |_| Ok(()))?;
                saw_domains = true;
                let only = TlsSettings {
                    domains: out.domains.clone(),
                    contact: None,
                    directory: None,
                    ca_file: None,
                };
                only.check().map_err(|e| {
                    cx.bad(&p, v, check::problem(e, "list the names the certificate covers, like [\"shop.example\", \"www.shop.example\"]"))
                })?;
            }
            "contact" => out.contact = Some(string(cx, &p, v, "\"ops@shop.example\"")?.to_string()),
            "ca_file" => {
                out.ca_file = Some(string(cx, &p, v, "\"/etc/ssl/my-ca.pem\"")?.to_string())
            }
            "directory" => {
                out.directory = Some(
                    string(
                        cx,
                        &p,
                        v,
                        "\"https://acme-v02.api.letsencrypt.org/directory\"",
                    )?
                    .to_string(),
                )
            }
            _ => return Err(unknown_key(cx, &p, k, TLS_KEYS)),
        }
        if name != "domains" {
            let only = TlsSettings {
                domains: vec!["shop.example".into()],
                ..out.clone()
            };
            only.check()
                .map_err(|e| cx.bad(&p, v, check::problem(e, "see docs/config.md, tls")))?;
        }
    }
    if !saw_domains {
        return Err(cx.bad(
            path,
            v,
            check::problem(
                "the table has no domains",
                format!("write {} = {{ domains = [\"shop.example\"] }}", leaf(path)),
            ),
        ));
    }
    Ok(out)
}

/// `ready`: `"notify"` (the default: `READY=1`), or `{ http = "/up" }` (a path the agent
/// asks on a listener of the new process's own).
fn ready(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<Readiness, ConfigError> {
    let fix = || {
        format!(
            "write {} = \"notify\" or {} = {{ http = \"/up\" }}",
            leaf(path),
            leaf(path)
        )
    };
    match v.get_ref() {
        DeValue::String(s) if s.as_ref() == "notify" => Ok(Readiness::Notify),
        DeValue::Table(t) => {
            let mut http = None;
            for (k, v) in entries(t) {
                let name = k.get_ref().as_ref();
                let p = join(path, name);
                if http.is_some() {
                    return Err(cx.bad(
                        &p,
                        v,
                        check::problem(
                            "ready takes one way to check",
                            "keep http or exec, not both",
                        ),
                    ));
                }
                match name {
                    "http" => {
                        let s = string(cx, &p, v, "\"/up\"")?;
                        let r = Readiness::Http(s.to_string());
                        r.check().map_err(|e| {
                            cx.bad(&p, v, check::problem(e, "write a path like \"/up\""))
                        })?;
                        http = Some(r);
                    }
                    "exec" => {
                        let ex = "[\"{bin}\", \"check-ready\"]";
                        let r = Readiness::Exec(string_list(cx, &p, v, ex, |_| Ok(()))?);
                        r.check().map_err(|e| {
                            cx.bad(
                                &p,
                                v,
                                check::problem(e, format!("write a command like {ex}")),
                            )
                        })?;
                        http = Some(r);
                    }
                    _ => return Err(unknown_key(cx, &p, k, READY_KEYS)),
                }
            }
            http.ok_or_else(|| cx.bad(path, v, check::problem("the table says nothing", fix())))
        }
        other => Err(cx.bad(
            path,
            v,
            check::problem(
                format!("expected \"notify\" or a table, found {}", kind_of(other)),
                fix(),
            ),
        )),
    }
}

/// `watchdog_timeout`: a duration of at least [`MIN_WATCHDOG_TIMEOUT`], or `false` (off).
fn watchdog(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<Option<Duration>, ConfigError> {
    if let DeValue::Boolean(b) = v.get_ref() {
        if *b {
            let p = check::problem(
                "true is the default already",
                format!(
                    "write a duration like {} = \"30s\", or false to turn it off",
                    leaf(path)
                ),
            );
            return Err(cx.bad(path, v, p));
        }
        return Ok(None);
    }
    let d = duration(cx, path, v, MAX_TIMEOUT, "1 hour")?.value;
    if d < MIN_WATCHDOG_TIMEOUT {
        let p = check::problem(
            "shorter than 100ms",
            format!(
                "write {} = \"100ms\" or more, or false to turn it off",
                leaf(path)
            ),
        );
        return Err(cx.bad(path, v, p));
    }
    Ok(Some(d))
}

fn boolean(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<bool, ConfigError> {
    match v.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        DeValue::String(s) if s.as_ref() == "true" || s.as_ref() == "false" => {
            let p = check::problem(
                "expected true or false, found a string",
                format!("write it without quotes: {} = {s}", leaf(path)),
            );
            Err(cx.bad(path, v, p))
        }
        other => Err(cx.bad(path, v, wrong_type(path, other, "true or false", "true"))),
    }
}

/// A whole number at least `min`.
fn number(
    cx: &Cx<'_>,
    path: &str,
    v: &Value<'_>,
    min: u32,
    why: &str,
    example: &str,
) -> Result<u32, ConfigError> {
    let DeValue::Integer(i) = v.get_ref() else {
        return Err(cx.bad(
            path,
            v,
            wrong_type(path, v.get_ref(), "a whole number", example),
        ));
    };
    let n = i64::from_str_radix(i.as_str(), i.radix()).unwrap_or(i64::MAX);
    if n < i64::from(min) {
        let p = check::problem(
            format!("must be at least {min}"),
            format!("write it like {} = {example} ({why})", leaf(path)),
        );
        return Err(cx.bad(path, v, p));
    }
    u32::try_from(n).map_err(|_| {
        let p = check::problem(
            "too large",
            format!("write it like {} = {example}", leaf(path)),
        );
        cx.bad(path, v, p)
    })
}

/// A list of strings, each checked by `check`.
fn string_list(
    cx: &Cx<'_>,
    path: &str,
    v: &Value<'_>,
    example: &str,
    check: fn(&str) -> Result<(), Problem>,
) -> Result<Vec<String>, ConfigError> {
    let items = match v.get_ref() {
        DeValue::Array(items) => items,
        DeValue::String(s) => {
            let p = check::problem(
                "expected a list, found a string",
                format!("write it in brackets: {} = [{}]", leaf(path), quote(s)),
            );
            return Err(cx.bad(path, v, p));
        }
        other => return Err(cx.bad(path, v, wrong_type(path, other, "a list", example))),
    };
    let mut out = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{n}]");
        let s = match item.get_ref() {
            DeValue::String(s) => s,
            other => {
                let p = check::problem(
                    format!("expected a string, found {}", kind_of(other)),
                    format!(
                        "write every item in quotes, like {} = {example}",
                        leaf(path)
                    ),
                );
                return Err(cx.bad(&item_path, item, p));
            }
        };
        check(s).map_err(|p| cx.bad(&item_path, item, p))?;
        out.push(s.to_string());
    }
    Ok(out)
}

fn hosts(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<At<Vec<String>>, ConfigError> {
    let hosts = string_list(cx, path, v, "[\"deploy@203.0.113.10\"]", check::ssh_host)?;
    for (n, h) in hosts.iter().enumerate() {
        if hosts[..n].contains(h) {
            let p = check::problem(
                format!("{} is listed twice", quote(h)),
                "list each host once",
            );
            return Err(cx.bad(path, v, p));
        }
    }
    Ok(At {
        value: hosts,
        path: path.to_string(),
        span: v.span(),
    })
}

/// A table's entries, or an error saying a table was expected.
fn table<'a, 'i>(
    cx: &Cx<'_>,
    path: &str,
    v: &'a Value<'i>,
    example: &str,
) -> Result<Vec<Entry<'a, 'i>>, ConfigError> {
    match v.get_ref() {
        DeValue::Table(t) => Ok(entries(t)),
        other => Err(cx.bad(path, v, wrong_type(path, other, "a table", example))),
    }
}

fn listen(
    cx: &Cx<'_>,
    path: &str,
    v: &Value<'_>,
) -> Result<BTreeMap<String, At<SocketAddr>>, ConfigError> {
    let mut out = BTreeMap::new();
    for (k, v) in table(cx, path, v, "{ web = \"0.0.0.0:80\" }")? {
        let name = k.get_ref().as_ref();
        let p = join(path, name);
        check::socket_name(name).map_err(|e| cx.bad_key(&p, k, e))?;
        let s = string(cx, &p, v, "\"0.0.0.0:80\"")?;
        let fix = "write an IP address and port, like \"0.0.0.0:80\", \"127.0.0.1:8080\" or \
                   \"[::]:443\"";
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| cx.bad(&p, v, check::problem("not an IP address and port", fix)))?;
        if addr.port() == 0 {
            return Err(cx.bad(
                &p,
                v,
                check::problem("port 0 is not a port to listen on", fix),
            ));
        }
        out.insert(
            name.to_string(),
            At {
                value: addr,
                path: p,
                span: v.span(),
            },
        );
    }
    Ok(out)
}

fn env(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (k, v) in table(cx, path, v, "{ RUST_LOG = \"info\" }")? {
        let name = k.get_ref().as_ref();
        let p = join(path, name);
        check::env_name(name).map_err(|e| cx.bad_key(&p, k, e))?;
        let value = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                let p2 = check::problem(
                    format!("values are strings, found {}", kind_of(v.get_ref())),
                    format!("write it in quotes: {name} = \"{}\"", show(v.get_ref())),
                );
                return Err(cx.bad(&p, v, p2));
            }
            other => {
                let p2 = check::problem(
                    format!("values are strings, found {}", kind_of(other)),
                    format!("write it like {name} = \"value\""),
                );
                return Err(cx.bad(&p, v, p2));
            }
        };
        check::env_value(&value).map_err(|e| cx.bad(&p, v, e))?;
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

fn before_activate(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<Vec<String>, ConfigError> {
    if let DeValue::String(s) = v.get_ref() {
        let words: Vec<String> = s.split_whitespace().map(quote).collect();
        let p = check::problem(
            "expected a list of arguments (argv), found a string",
            format!(
                "write one string per argument, like before_activate = [{}]; `{{bin}}` is the \
                 new release's binary",
                words.join(", ")
            ),
        );
        return Err(cx.bad(path, v, p));
    }
    let argv =
        string_list(
            cx,
            path,
            v,
            "[\"{bin}\", \"migrate\"]",
            |arg| match check::unknown_placeholder(arg) {
                Some(other) => Err(check::problem(
                    format!("{other} is not a placeholder"),
                    "only {bin} is replaced (by the new release's binary)",
                )),
                None => Ok(()),
            },
        )?;
    if argv.first().is_some_and(|a| a.is_empty()) {
        let p = check::problem(
            "the program to run is empty",
            "start with the program, like [\"{bin}\", \"migrate\"]",
        );
        return Err(cx.bad(path, v, p));
    }
    // Nothing of the app but its binary is on the server, so a command that does not run it
    // is a mistake: most likely the arguments were written without the program.
    if !argv.is_empty() && !argv.iter().any(|a| a.contains(BIN_PLACEHOLDER)) {
        let with_bin: Vec<String> = std::iter::once(BIN_PLACEHOLDER)
            .chain(argv.iter().map(String::as_str))
            .map(quote)
            .collect();
        let p = check::problem(
            "does not run the new release",
            format!(
                "name it with {BIN_PLACEHOLDER}, which stands for the new binary's path: \
                 before_activate = [{}]",
                with_bin.join(", ")
            ),
        );
        return Err(cx.bad(path, v, p));
    }
    Ok(argv)
}

fn auto_rollback(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<Rollback, ConfigError> {
    let example = "{ window = \"60s\", crashes = 3 }";
    let DeValue::Table(t) = v.get_ref() else {
        return match v.get_ref() {
            DeValue::Boolean(false) => Ok(Rollback::Off),
            DeValue::Boolean(true) => Ok(Rollback::On {
                window: None,
                crashes: None,
            }),
            other => Err(cx.bad(
                path,
                v,
                check::problem(
                    format!("expected a table or false, found {}", kind_of(other)),
                    format!("write auto_rollback = {example}, or false to turn it off"),
                ),
            )),
        };
    };
    let (mut window, mut crashes) = (None, None);
    for (k, v) in entries(t) {
        let name = k.get_ref().as_ref();
        let p = join(path, name);
        match name {
            "window" => window = Some(duration(cx, &p, v, MAX_WINDOW, "one day")?.value),
            "crashes" => {
                crashes = Some(number(
                    cx,
                    &p,
                    v,
                    1,
                    "it counts crashes of the new release",
                    "3",
                )?)
            }
            _ => return Err(unknown_key(cx, &p, k, ROLLBACK_KEYS)),
        }
    }
    Ok(Rollback::On { window, crashes })
}

/// `start = ["bin/shop", "start"]`: the program, a relative path inside `release_dir`,
/// then its arguments.
fn start(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<Vec<String>, ConfigError> {
    let example = "[\"bin/shop\", \"start\"]";
    if let DeValue::String(s) = v.get_ref() {
        let words: Vec<String> = s.split_whitespace().map(quote).collect();
        let p = check::problem(
            "expected a list of arguments (argv), found a string",
            format!(
                "write one string per argument, like start = [{}]",
                words.join(", ")
            ),
        );
        return Err(cx.bad(path, v, p));
    }
    let argv = string_list(cx, path, v, example, |_| Ok(()))?;
    let max = blargh_proto::manifest::MAX_START_ARGS;
    let problem = match argv.first() {
        None => Some(check::problem(
            "is empty",
            format!(
                "name the program inside release_dir and its arguments, like start = {example}"
            ),
        )),
        Some(_) if argv.len() > max => Some(check::problem(
            format!("has {} arguments", argv.len()),
            format!("at most {max}"),
        )),
        Some(program) => check::start_program(program).err(),
    };
    match problem {
        Some(p) => Err(cx.bad(path, v, p)),
        None => Ok(argv),
    }
}

/// A size like `"500 MB"`, more than zero and at most [`MAX_RELEASE_SIZE`].
fn size(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<u64, ConfigError> {
    let s = match v.get_ref() {
        DeValue::String(s) => s,
        DeValue::Integer(n) => {
            let p = check::problem(
                "a size is a string with a unit",
                format!("write it like {} = \"{n} B\" or \"500 MB\"", leaf(path)),
            );
            return Err(cx.bad(path, v, p));
        }
        other => return Err(cx.bad(path, v, wrong_type(path, other, "a size", "\"500 MB\""))),
    };
    let n = check::size(s).map_err(|p| cx.bad(path, v, p))?;
    if n > MAX_RELEASE_SIZE {
        let p = check::problem(
            "too large; the agent accepts releases of at most 1 GiB",
            format!("write it like {} = \"1 GiB\" or less", leaf(path)),
        );
        return Err(cx.bad(path, v, p));
    }
    Ok(n)
}

/// `unknown key <path>; did you mean <x>?` at the key.
fn unknown_key(cx: &Cx<'_>, path: &str, key: &Key<'_>, known: &[&str]) -> ConfigError {
    let name = key.get_ref().as_ref();
    let fix = match check::suggest(name, known) {
        Some(k) => format!("did you mean `{k}`?"),
        None => format!("the keys here are {}", known.join(", ")),
    };
    cx.error(
        ErrorKind::UnknownKey,
        key.span(),
        path,
        format!("unknown key `{path}`; {fix}"),
    )
}

/// Reads one layer: the top level (`top`, which may hold `destinations`) or a destination.
fn layer<'a, 'i>(
    cx: &Cx<'_>,
    path: &str,
    t: &'a DeTable<'i>,
    top: bool,
) -> Result<(Layer, Option<Entry<'a, 'i>>), ConfigError> {
    let mut l = Layer::default();
    let mut destinations = None;
    for (k, v) in entries(t) {
        let key = k.get_ref().as_ref();
        let p = join(path, key);
        let p = p.as_str();
        let at = |value| At {
            value,
            path: p.to_string(),
            span: v.span(),
        };
        match key {
            "hosts" => l.hosts = Some(hosts(cx, p, v)?),
            "app" => {
                let ex = "\"shop\"";
                l.app = Some(at(checked_string(cx, p, v, ex, check::app_name)?));
            }
            "bin" => l.bin = Some(checked_string(cx, p, v, "\"shop\"", check::bin_name)?),
            "target" => {
                let ex = "\"x86_64-unknown-linux-musl\"";
                l.target = Some(checked_string(cx, p, v, ex, check::target_triple)?);
            }
            "listen" => l.listen = Some(listen(cx, p, v)?),
            "env" => l.env = Some(env(cx, p, v)?),
            "ready_timeout" => l.ready_timeout = Some(duration(cx, p, v, MAX_TIMEOUT, "1 hour")?),
            "drain_timeout" => l.drain_timeout = Some(duration(cx, p, v, MAX_TIMEOUT, "1 hour")?),
            "lock_expiry" => l.lock_expiry = Some(duration(cx, p, v, MAX_LOCK_EXPIRY, "one week")?),
            "watchdog_timeout" => l.watchdog_timeout = Some(watchdog(cx, p, v)?),
            "ready" => l.ready = Some(ready(cx, p, v)?),
            "tls" => l.tls = Some(tls(cx, p, v)?),
            "keep_releases" => {
                let why = "each host keeps the current release and one to roll back to";
                l.keep_releases = Some(number(cx, p, v, MIN_KEEP_RELEASES, why, "5")?);
            }
            "before_activate" => l.before_activate = Some(before_activate(cx, p, v)?),
            "auto_rollback" => l.auto_rollback = Some(auto_rollback(cx, p, v)?),
            "parallel" => l.parallel = Some(boolean(cx, p, v)?),
            "known_hosts" => {
                let ex = "[\"203.0.113.10 ssh-ed25519 AAAA...\"]";
                l.known_hosts = Some(string_list(cx, p, v, ex, check::known_hosts_line)?);
            }
            "include" => {
                let ex = "[\"static/**\", \"templates/**\"]";
                let value = string_list(cx, p, v, ex, check::include_pattern)?;
                l.include = Some(At {
                    value,
                    path: p.to_string(),
                    span: v.span(),
                });
            }
            "release_dir" => {
                let ex = "\"_build/prod/rel/shop\"";
                l.release_dir = Some(at(checked_string(cx, p, v, ex, check::release_dir)?));
            }
            "start" => {
                l.start = Some(At {
                    value: start(cx, p, v)?,
                    path: p.to_string(),
                    span: v.span(),
                })
            }
            "max_release_size" => l.max_release_size = Some(size(cx, p, v)?),
            "destinations" if top => destinations = Some((k, v)),
            "destinations" => {
                return Err(cx.error(
                    ErrorKind::UnknownKey,
                    k.span(),
                    p,
                    format!(
                        "unknown key `{p}`: destinations do not nest; define each one as \
                         [{SECTION}.destinations.NAME]"
                    ),
                ));
            }
            _ => {
                let known = if top { KEYS } else { &KEYS[..KEYS.len() - 1] };
                return Err(unknown_key(cx, p, k, known));
            }
        }
    }
    Ok((l, destinations))
}

/// Reads every `destinations.NAME` table.
fn destinations(cx: &Cx<'_>, path: &str, v: &Value<'_>) -> Result<Vec<Destination>, ConfigError> {
    let example = format!("tables like [{path}.staging]");
    let items = match v.get_ref() {
        DeValue::Table(_) => table(cx, path, v, "")?,
        other => {
            let p = check::problem(
                format!("expected tables, found {}", kind_of(other)),
                example,
            );
            return Err(cx.bad(path, v, p));
        }
    };
    let mut out = Vec::new();
    for (k, v) in items {
        let name = k.get_ref().as_ref();
        let p = join(path, name);
        check::destination_name(name).map_err(|e| cx.bad_key(&p, k, e))?;
        let DeValue::Table(t) = v.get_ref() else {
            let e = check::problem(
                format!("expected a table, found {}", kind_of(v.get_ref())),
                format!("write [{p}] with the keys that differ for {name}"),
            );
            return Err(cx.bad(&p, v, e));
        };
        let (layer, _) = layer(cx, &p, t, false)?;
        out.push(Destination {
            name: name.to_string(),
            path: p,
            key_span: k.span(),
            layer,
        });
    }
    Ok(out)
}

/// The `[package]` table's `name`, and the `[package.metadata.blargh]` entry if any.
pub(crate) fn package<'a, 'i>(
    cx: &Cx<'_>,
    root: &'a DeTable<'i>,
) -> Result<(String, Option<Entry<'a, 'i>>), ConfigError> {
    let no_package = || {
        ConfigError::new(
            ErrorKind::NoPackage,
            cx.file,
            "no [package] with a name here (a workspace's root manifest?): use the Cargo.toml \
             of the app's package",
        )
    };
    let Some((_, pkg)) = find(root, "package") else {
        return Err(no_package());
    };
    let DeValue::Table(pkg) = pkg.get_ref() else {
        return Err(no_package());
    };
    let name = match find(pkg, "name") {
        Some((_, v)) => string(cx, "package.name", v, "\"shop\"")?.to_string(),
        None => return Err(no_package()),
    };
    let section = find(pkg, "metadata").and_then(|(_, m)| match m.get_ref() {
        DeValue::Table(m) => find(m, "blargh"),
        _ => None,
    });
    Ok((name, section))
}

/// See [`crate::parse`].
pub(crate) fn parse(
    text: &str,
    file: &Path,
    destination: Option<&str>,
) -> Result<DeployConfig, ConfigError> {
    let cx = Cx { text, file };
    let doc = DeTable::parse(text).map_err(|e| cx.syntax(&e))?;
    let (package, section) = package(&cx, doc.get_ref())?;
    let Some((section_key, section)) = section else {
        return Err(ConfigError::new(
            ErrorKind::NoSection,
            file,
            format!("no [{SECTION}] section: run `cargo blargh init` to add one, then set `hosts`"),
        ));
    };
    let DeValue::Table(t) = section.get_ref() else {
        let p = check::problem(
            format!("expected a table, found {}", kind_of(section.get_ref())),
            format!("write a [{SECTION}] section (`cargo blargh init` adds one)"),
        );
        return Err(cx.bad(SECTION, section, p));
    };
    let (top, dests) = layer(&cx, SECTION, t, true)?;
    let dests = match dests {
        Some((_, v)) => destinations(&cx, &join(SECTION, "destinations"), v)?,
        None => Vec::new(),
    };
    let mut names: Vec<String> = dests.iter().map(|d| d.name.clone()).collect();
    names.sort();

    if let Some(wanted) = destination
        && !names.iter().any(|n| n == wanted)
    {
        return Err(unknown_destination(file, wanted, &names));
    }

    // The chosen destination (or the top level) first; then every other one too, so that a
    // mistake that spans keys (a lock shorter than an activation, say) in any of them fails
    // every deploy. Only they may lack hosts.
    let candidates = std::iter::once(None).chain(dests.iter().map(Some));
    let (chosen, others): (Vec<_>, Vec<_>) =
        candidates.partition(|d| d.map(|d| d.name.as_str()) == destination);
    let mut config = None;
    for d in chosen.into_iter().chain(others) {
        let (merged, scope, scope_span) = match d {
            None => (top.clone(), SECTION.to_string(), section_key.span()),
            Some(d) => (
                top.clone().merged(d.layer.clone()),
                d.path.clone(),
                d.key_span.clone(),
            ),
        };
        let name = d.map(|d| d.name.as_str());
        match resolve(&cx, &package, merged, name, &names, &scope, scope_span) {
            Ok(c) if config.is_none() => config = Some(c),
            Ok(_) => {}
            Err(e) if config.is_some() && e.kind() == ErrorKind::MissingHosts => {}
            Err(e) => return Err(e),
        }
    }
    Ok(config.expect("the chosen layer resolves first"))
}

fn unknown_destination(file: &Path, wanted: &str, names: &[String]) -> ConfigError {
    let section = format!("[{SECTION}.destinations.{wanted}]");
    let message = if names.is_empty() {
        format!(
            "no destination `{wanted}`: none is configured; add {section} with the keys that \
             differ there (like hosts), or deploy without -d"
        )
    } else {
        let known: Vec<&str> = names.iter().map(String::as_str).collect();
        let hint = match check::suggest(wanted, &known) {
            Some(near) => format!(" (did you mean `{near}`?)"),
            None => String::new(),
        };
        format!(
            "no destination `{wanted}`: the configured ones are {}{hint}; to add it, write \
             {section}",
            known.join(", ")
        )
    };
    ConfigError::new(ErrorKind::UnknownDestination, file, message)
}

/// Fills in defaults and makes the checks that span keys.
fn resolve(
    cx: &Cx<'_>,
    package: &str,
    l: Layer,
    destination: Option<&str>,
    destinations: &[String],
    scope: &str,
    scope_span: Range<usize>,
) -> Result<DeployConfig, ConfigError> {
    let hosts = match l.hosts {
        Some(h) if !h.value.is_empty() => h.value,
        empty => {
            let (span, key) = match &empty {
                Some(h) => (h.span.clone(), h.path.clone()),
                None => (scope_span.clone(), join(scope, "hosts")),
            };
            let message = missing_hosts(scope, destination, destinations);
            return Err(cx.error(ErrorKind::MissingHosts, span, &key, message));
        }
    };

    let app = match l.app {
        Some(a) => a.value,
        None => {
            let lower = package.to_lowercase();
            if check::app_name(&lower).is_err() {
                let message = format!(
                    "{SECTION}.app is not set and the package name `{package}` cannot be an app \
                     name (1-24 lower-case letters, digits, '-' or '_', starting with a letter); \
                     add app = {} to [{SECTION}]",
                    quote(&check::app_name_from(package))
                );
                let key = join(SECTION, "app");
                return Err(cx.error(ErrorKind::InvalidValue, scope_span, &key, message));
            }
            lower
        }
    };

    let listen_at = l.listen.unwrap_or_else(|| {
        let default = At {
            value: DEFAULT_LISTEN_ADDRESS.parse().expect("default address"),
            path: String::new(),
            span: 0..0,
        };
        BTreeMap::from([(DEFAULT_LISTEN_NAME.to_string(), default)])
    });
    let mut listen = BTreeMap::new();
    let mut by_address: BTreeMap<SocketAddr, &str> = BTreeMap::new();
    for (name, at) in &listen_at {
        if let Some(other) = by_address.insert(at.value, name) {
            let message = format!(
                "{} = \"{}\": the same address as socket `{other}`; give each socket its own \
                 address or port",
                at.path, at.value
            );
            let span = at.span.clone();
            return Err(cx.error(ErrorKind::InvalidValue, span, &at.path, message));
        }
        let name = named(cx, name, &at.path, at.span.clone())?;
        listen.insert(name, at.value);
    }

    let ready_timeout = l.ready_timeout.map_or(DEFAULT_READY_TIMEOUT, |d| d.value);
    let drain_timeout = l.drain_timeout.map_or(DEFAULT_DRAIN_TIMEOUT, |d| d.value);
    let lock_expiry = l
        .lock_expiry
        .clone()
        .map_or(DEFAULT_LOCK_EXPIRY, |d| d.value);
    let activation = ready_timeout + drain_timeout;
    if lock_expiry <= activation {
        let minutes = (activation.as_secs() * 2).div_ceil(60).max(1);
        let fix = format!(
            "a lock must outlive one activation (ready_timeout + drain_timeout = {}); set \
             lock_expiry = \"{minutes}m\" or more",
            humantime::format_duration(activation)
        );
        let (span, key, shown) = match &l.lock_expiry {
            Some(at) => (
                at.span.clone(),
                at.path.clone(),
                format!("{} = {}", at.path, &cx.text[at.span.clone()]),
            ),
            None => (
                scope_span,
                join(SECTION, "lock_expiry"),
                format!(
                    "lock_expiry (default {})",
                    humantime::format_duration(lock_expiry)
                ),
            ),
        };
        let message = format!("{shown}: too short; {fix}");
        return Err(cx.error(ErrorKind::InvalidValue, span, &key, message));
    }

    let auto_rollback = match l.auto_rollback {
        None => Some(DEFAULT_AUTO_ROLLBACK),
        Some(Rollback::Off) => None,
        Some(Rollback::On { window, crashes }) => Some(AutoRollback {
            window: window.unwrap_or(DEFAULT_AUTO_ROLLBACK.window),
            crashes: crashes.unwrap_or(DEFAULT_AUTO_ROLLBACK.crashes),
        }),
    };

    // `include = []` is no include (a destination's way to turn off the top level's).
    let include = l.include.filter(|i| !i.value.is_empty());
    let release = match (l.release_dir, include, l.start) {
        (Some(dir), Some(include), _) => {
            let message = format!(
                "{} and {} cannot be used together: release_dir ships a directory built by \
                 other tools, include adds files to the binary cargo builds; remove one",
                include.path, dir.path
            );
            return Err(cx.error(
                ErrorKind::InvalidValue,
                include.span,
                &include.path,
                message,
            ));
        }
        (Some(dir), None, Some(start)) => ReleaseContent::Dir {
            dir: dir.value.into(),
            start: start.value,
        },
        (Some(dir), None, None) => {
            let message = format!(
                "{} = {}: needs start, the command that starts the release inside it; add \
                 start = [\"bin/shop\", \"start\"] (a path inside release_dir, then its \
                 arguments)",
                dir.path,
                quote(&dir.value)
            );
            let key = join(scope, "start");
            return Err(cx.error(ErrorKind::InvalidValue, dir.span, &key, message));
        }
        (None, _, Some(start)) => {
            let message = format!(
                "{}: start is the command of a release_dir (a release built by other tools); \
                 the binary cargo builds starts by itself: remove start, or add release_dir = \
                 \"_build/prod/rel/shop\"",
                start.path
            );
            return Err(cx.error(ErrorKind::InvalidValue, start.span, &start.path, message));
        }
        (None, include, None) => ReleaseContent::Binary {
            include: include.map(|i| i.value).unwrap_or_default(),
        },
    };

    let app = named(cx, &app, &join(SECTION, "app"), scope_span.clone())?;
    let mut env = BTreeMap::new();
    for (k, v) in l.env.unwrap_or_default() {
        env.insert(named(cx, &k, &join(SECTION, "env"), scope_span.clone())?, v);
    }

    Ok(DeployConfig {
        file: cx.file.to_path_buf(),
        package: package.to_string(),
        destination: destination.map(str::to_string),
        destinations: destinations.to_vec(),
        hosts,
        app,
        bin: l.bin,
        target: l.target,
        listen,
        env,
        ready_timeout,
        drain_timeout,
        keep_releases: l.keep_releases.unwrap_or(DEFAULT_KEEP_RELEASES),
        watchdog_timeout: l.watchdog_timeout.unwrap_or(Some(DEFAULT_WATCHDOG_TIMEOUT)),
        ready: l.ready.unwrap_or_default(),
        tls: l.tls,
        before_activate: l.before_activate.filter(|argv| !argv.is_empty()),
        auto_rollback,
        lock_expiry,
        parallel: l.parallel.unwrap_or(false),
        known_hosts: l.known_hosts.unwrap_or_default(),
        release,
        max_release_size: l.max_release_size.unwrap_or(DEFAULT_MAX_RELEASE_SIZE),
    })
}

/// A name already checked by its key's rule, as its newtype (the rules are the same, so
/// this fails only if they drift apart, and then says so with the key).
fn named<T: std::str::FromStr<Err = blargh_proto::NameError>>(
    cx: &Cx<'_>,
    name: &str,
    key: &str,
    span: Range<usize>,
) -> Result<T, ConfigError> {
    name.parse().map_err(|e: blargh_proto::NameError| {
        cx.error(ErrorKind::InvalidValue, span, key, e.to_string())
    })
}

/// The message for a destination without hosts, saying where to add them.
fn missing_hosts(scope: &str, destination: Option<&str>, destinations: &[String]) -> String {
    let example = "hosts = [\"deploy@203.0.113.10\"] (user@host, user@host:port or a Host alias \
                   from ~/.ssh/config)";
    match destination {
        Some(d) => format!(
            "no hosts for destination `{d}`: add {example} to [{scope}], or to [{SECTION}] to \
             share them"
        ),
        None if !destinations.is_empty() => format!(
            "no hosts in [{SECTION}]: choose a destination with -d ({}), or add {example} to \
             [{SECTION}]",
            destinations.join(", ")
        ),
        None => format!("no hosts to deploy to: add {example} to [{SECTION}]"),
    }
}
