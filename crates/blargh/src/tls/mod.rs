//! HTTPS without a proxy: certificates from an ACME CA (Let's Encrypt by default) obtained,
//! stored and renewed inside the app (feature `tls`).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! // Settings from the agent's environment (BLARGH_TLS_DOMAINS, …), or Settings::new(…).
//! let tls = blargh::tls::Tls::start(blargh::tls::Settings::from_env()?).await?;
//! let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
//! # let _ = acceptor; Ok(()) }
//! ```
//!
//! [`Tls::start`] returns at once, serving the certificate on disk or, when there is none
//! yet, a self-signed one (logged). A background task orders a certificate when there is
//! none, renews it when less than a third of its lifetime is left, and swaps it into the
//! running [`rustls::ServerConfig`] without a restart.
//!
//! - **TLS-ALPN-01** (default) is answered on the HTTPS listener itself: the config's cert
//!   resolver answers `acme-tls/1` handshakes. Connections that negotiated `acme-tls/1`
//!   carry no HTTP: the serving loop should close them after the handshake.
//! - **HTTP-01** is answered by [`Tls::http01`] on the app's plain HTTP listener.
//! - Old and new releases overlap during a deploy: exactly one process orders (an `flock`
//!   on `<data dir>/tls/order.lock`); the others poll the files and load what it wrote.
//!   Challenge answers are written to disk too, so whichever release accepts the CA's
//!   validation connection answers it.
//! - A failed order keeps the current certificate, logs why, and retries with capped
//!   exponential backoff.
//!
//! Everything is logged to stderr (the app log) with the prefix `blargh tls:`.

mod acme;
mod cert;
pub mod http;
mod self_signed;
mod store;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use cert::CertInfo;
use store::Store;

/// Comma-separated domains the certificate covers, e.g. `example.com,www.example.com`.
pub const ENV_DOMAINS: &str = blargh_proto::env::TLS_DOMAINS;
/// Contact email given to the CA (expiry warnings, policy changes). Optional.
pub const ENV_CONTACT: &str = blargh_proto::env::TLS_CONTACT;
/// ACME directory URL; default [`LETS_ENCRYPT`] (production).
pub const ENV_DIRECTORY: &str = blargh_proto::env::ACME_DIRECTORY;
/// A PEM file with a root certificate the ACME client trusts for the directory's HTTPS
/// (instead of the system's roots), e.g. Pebble's test CA.
pub const ENV_CA_FILE: &str = blargh_proto::env::ACME_CA_FILE;
/// `tls-alpn-01` (default) or `http-01`.
pub const ENV_CHALLENGE: &str = "BLARGH_TLS_CHALLENGE";
/// `1`: treat the certificate on disk as near expiry once at start, so it is renewed.
pub const ENV_RENEW_NOW: &str = "BLARGH_TLS_RENEW_NOW";
/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The ALPN protocols [`Tls::server_config`] offers, in order of preference.
/// `acme-tls/1` is only ever chosen by a CA validating a TLS-ALPN-01 challenge.
pub const ALPN: [&[u8]; 3] = [b"h2", b"http/1.1", b"acme-tls/1"];

/// How the CA checks that we control the domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01 (RFC 8737) on the HTTPS listener (port 443 for a real CA).
    TlsAlpn01,
    /// HTTP-01 on the plain HTTP listener (port 80 for a real CA), answered by
    /// [`Tls::http01`].
    Http01,
}

/// What [`Tls::start`] needs: from the environment ([`Settings::from_env`]) or built in
/// code ([`Settings::new`] and the setters).
#[derive(Debug, Clone)]
pub struct Settings {
    domains: Vec<String>,
    contact: Option<String>,
    directory: String,
    ca_file: Option<PathBuf>,
    data_dir: PathBuf,
    challenge: Challenge,
    renew_now: bool,
    retry_initial: Duration,
    retry_max: Duration,
    poll: Duration,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Settings {
    /// Settings for `domains`, with defaults: Let's Encrypt production, no contact,
    /// TLS-ALPN-01, storage in `$BLARGH_DATA_DIR/tls` (or `./data/tls` outside blargh),
    /// retries after 5 minutes doubling up to 6 hours, files polled every 30 s.
    pub fn new<S: Into<String>>(domains: impl IntoIterator<Item = S>) -> Settings {
        Settings {
            domains: domains
                .into_iter()
                .map(|d| d.into().trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            contact: None,
            directory: LETS_ENCRYPT.to_string(),
            ca_file: None,
            data_dir: crate::release::data_dir().unwrap_or_else(|| PathBuf::from("data")),
            challenge: Challenge::TlsAlpn01,
            renew_now: false,
            retry_initial: Duration::from_secs(5 * 60),
            retry_max: Duration::from_secs(6 * 60 * 60),
            poll: Duration::from_secs(30),
        }
    }

    /// Settings from the environment the agent gives the app:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `BLARGH_TLS_DOMAINS` | comma-separated domains (required) |
    /// | `BLARGH_TLS_CONTACT` | contact email for the CA (optional) |
    /// | `BLARGH_ACME_DIRECTORY` | ACME directory URL (default Let's Encrypt production) |
    /// | `BLARGH_ACME_CA_FILE` | PEM root the ACME client trusts (e.g. Pebble's) |
    /// | `BLARGH_TLS_CHALLENGE` | `tls-alpn-01` (default) or `http-01` |
    /// | `BLARGH_TLS_RENEW_NOW` | `1`: renew the certificate on disk once at start |
    /// | `BLARGH_DATA_DIR` | storage: `<dir>/tls/` (default `./data`) |
    pub fn from_env() -> io::Result<Settings> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> io::Result<Settings> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let domains = var(ENV_DOMAINS)
            .ok_or_else(|| invalid(format!("{ENV_DOMAINS} is not set: no domains for TLS")))?;
        let mut s = Settings::new(domains.split(','));
        s.contact = var(ENV_CONTACT);
        if let Some(d) = var(ENV_DIRECTORY) {
            s.directory = d;
        }
        s.ca_file = var(ENV_CA_FILE).map(PathBuf::from);
        if let Some(c) = var(ENV_CHALLENGE) {
            s.challenge = match c.trim() {
                "tls-alpn-01" => Challenge::TlsAlpn01,
                "http-01" => Challenge::Http01,
                other => {
                    return Err(invalid(format!(
                        "{ENV_CHALLENGE}={other}: expected tls-alpn-01 or http-01"
                    )));
                }
            };
        }
        s.renew_now = var(ENV_RENEW_NOW).is_some_and(|v| v == "1" || v == "true");
        if let Some(dir) = var(blargh_proto::env::DATA_DIR) {
            s.data_dir = PathBuf::from(dir);
        }
        Ok(s)
    }

    /// Contact email (or `mailto:` URL) for the CA.
    pub fn contact(mut self, email: impl Into<String>) -> Self {
        self.contact = Some(email.into());
        self
    }

    /// ACME directory URL (default [`LETS_ENCRYPT`]).
    pub fn directory(mut self, url: impl Into<String>) -> Self {
        self.directory = url.into();
        self
    }

    /// A PEM root certificate the ACME client trusts for the directory's HTTPS.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The persistent data dir; certificates and the account go to `<dir>/tls/`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// The challenge type (default [`Challenge::TlsAlpn01`]).
    pub fn challenge(mut self, challenge: Challenge) -> Self {
        self.challenge = challenge;
        self
    }

    /// Treat the certificate on disk as near expiry once, so it is renewed at start.
    pub fn renew_now(mut self, yes: bool) -> Self {
        self.renew_now = yes;
        self
    }

    /// Retry delay after a failed order: `initial`, doubling per failure, at most `max`.
    /// Keep `initial` at minutes for a real CA (Let's Encrypt allows 5 failed validations
    /// per hostname per hour).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial;
        self.retry_max = max.max(initial);
        self
    }

    /// How often the files are checked for a certificate another release wrote, and
    /// expiry re-checked (default 30 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    fn check(&self) -> io::Result<()> {
        if self.domains.is_empty() {
            return Err(invalid("no domains for TLS".into()));
        }
        for d in &self.domains {
            let ok = !d.starts_with('.')
                && !d.ends_with('.')
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(invalid(format!(
                    "TLS domain {d:?}: only letters, digits, '-' and '.' (no wildcards)"
                )));
            }
        }
        Ok(())
    }
}

/// A running certificate manager: a cheap handle (clone it freely). The background task
/// stops when the last clone is dropped.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
    _task: Arc<TaskGuard>,
}

struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct Inner {
    settings: Settings,
    store: Store,
    resolver: Arc<Resolver>,
    config: Arc<rustls::ServerConfig>,
    http01: Mutex<HashMap<String, String>>,
    orders: AtomicU64,
    renew: tokio::sync::Notify,
}

/// The cert resolver inside [`Tls::server_config`]: the current certificate, swapped on
/// renewal, and TLS-ALPN-01 challenge certificates for `acme-tls/1` handshakes.
#[derive(Debug)]
struct Resolver {
    current: RwLock<cert::Loaded>,
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    store: Store,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == b"acme-tls/1"));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            if let Some(key) = self.alpn.lock().unwrap().get(&name) {
                return Some(key.clone());
            }
            // Another release may be the one ordering: its answer is on disk.
            let path = self.store.challenge_path("alpn", &name)?;
            let pem = std::fs::read(path).ok()?;
            return cert::load(&pem, true).ok().map(|l| l.key);
        }
        Some(self.current.read().unwrap().key.clone())
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("domains", &self.inner.settings.domains)
            .field("certificates", &self.certificates())
            .finish()
    }
}

impl Tls {
    /// Starts managing the certificate: returns at once, serving the certificate on disk
    /// or a self-signed one, and orders / renews in the background (needs a tokio runtime).
    ///
    /// Errors only for bad settings or an unusable data dir; an unreachable CA is not an
    /// error (it is logged and retried).
    pub async fn start(settings: Settings) -> io::Result<Tls> {
        settings.check()?;
        let store = Store::open(&settings.data_dir)?;
        let domains = settings.domains.join(",");
        let initial = match load_disk(&store, &settings.domains) {
            Some(l) => {
                eprintln!(
                    "blargh tls: serving the certificate for {domains} from {} (expires {})",
                    store.cert_path(&settings.domains).display(),
                    humantime(l.info.not_after)
                );
                l
            }
            None => {
                eprintln!(
                    "blargh tls: no certificate for {domains} on disk yet: serving a SELF-SIGNED \
                     certificate (browsers will warn) until {} issues one",
                    settings.directory
                );
                cert::load(
                    self_signed::development(&settings.domains)?.as_bytes(),
                    true,
                )?
            }
        };
        report(&initial.info);
        let resolver = Arc::new(Resolver {
            current: RwLock::new(initial),
            alpn: Mutex::new(HashMap::new()),
            store: store.clone(),
        });
        // ring, for the whole tree (no aws-lc); rustls 0.23.48 deprecates ring's provider
        // only because it lacks post-quantum key exchange.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        let inner = Arc::new(Inner {
            settings,
            store,
            resolver,
            config: Arc::new(config),
            http01: Mutex::new(HashMap::new()),
            orders: AtomicU64::new(0),
            renew: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(run(inner.clone()));
        Ok(Tls {
            inner,
            _task: Arc::new(TaskGuard(task.abort_handle())),
        })
    }

    /// The rustls server config: ALPN `h2`, `http/1.1` (and `acme-tls/1` for the CA's
    /// TLS-ALPN-01 validation). Its cert resolver swaps in renewed certificates, so build a
    /// `tokio_rustls::TlsAcceptor` from it once and keep it.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.inner.config.clone()
    }

    /// The HTTP-01 answer: for a request path `/.well-known/acme-challenge/TOKEN` with a
    /// pending challenge, the key authorization to send as the `text/plain` body (status
    /// 200); `None` for every other path (let the app route it).
    pub fn http01(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix("/.well-known/acme-challenge/")?;
        if let Some(answer) = self.inner.http01.lock().unwrap().get(token) {
            return Some(answer.clone());
        }
        let file = self.inner.store.challenge_path("http", token)?;
        std::fs::read_to_string(file).ok()
    }

    /// The certificates being served now (one, covering all the domains).
    pub fn certificates(&self) -> Vec<CertInfo> {
        vec![self.inner.resolver.current.read().unwrap().info.clone()]
    }

    /// Renew now, as if the current certificate were near expiry (tests, or after a key
    /// compromise). The new certificate is swapped in when issued.
    pub fn renew_now(&self) {
        self.inner.renew.notify_one();
    }

    /// How many ACME orders this handle's process-side task has started (tests, metrics).
    pub fn orders_started(&self) -> u64 {
        self.inner.orders.load(Ordering::Relaxed)
    }
}

/// HTTPS in one line: [`Tls::start`] with [`Settings::from_env`] (the `tls` key of
/// `[package.metadata.blargh]`, handed over by the agent), then [`serve_tls`](crate::serve_tls)
/// with its config until the agent drains this release. TLS-ALPN-01 is answered on this
/// listener itself.
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// blargh::tls::serve(blargh::listen("web", "0.0.0.0:443")?, app).await
/// # }
/// ```
pub async fn serve<S, B>(listener: std::net::TcpListener, service: S) -> io::Result<()>
where
    S: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = Tls::start(Settings::from_env()?).await?;
    let served = crate::serve_tls(listener, service, tls.server_config()).await;
    drop(tls);
    served
}

impl Inner {
    /// Publishes a challenge answer in memory and on disk (for other releases).
    fn answer_challenge(
        &self,
        kind: &'static str,
        name: &str,
        content: &[u8],
        alpn: Option<cert::Loaded>,
    ) -> Result<(), String> {
        let path = self
            .store
            .challenge_path(kind, name)
            .ok_or_else(|| format!("unusable challenge name {name:?}"))?;
        store::write_atomic(&path, content)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        match alpn {
            Some(l) => {
                self.resolver
                    .alpn
                    .lock()
                    .unwrap()
                    .insert(name.to_string(), l.key);
            }
            None => {
                let text = String::from_utf8_lossy(content).into_owned();
                self.http01.lock().unwrap().insert(name.to_string(), text);
            }
        }
        Ok(())
    }

    fn forget_challenge(&self, kind: &str, name: &str) {
        if let Some(path) = self.store.challenge_path(kind, name) {
            let _ = std::fs::remove_file(path);
        }
        self.resolver.alpn.lock().unwrap().remove(name);
        self.http01.lock().unwrap().remove(name);
    }

    fn current(&self) -> CertInfo {
        self.resolver.current.read().unwrap().info.clone()
    }

    fn install(&self, loaded: cert::Loaded) {
        report(&loaded.info);
        *self.resolver.current.write().unwrap() = loaded;
    }
}

/// Tells the agent (when there is one) what is served now, so `cargo blargh status` shows
/// each domain's expiry; outside blargh there is no notify socket and nothing is sent.
fn report(info: &CertInfo) {
    let not_after = crate::calendar::rfc3339(info.not_after);
    let issuer = if info.self_signed {
        "self-signed"
    } else {
        info.issuer.as_str()
    };
    for domain in &info.domains {
        if let Err(e) = crate::notify::certificate(domain, &not_after, issuer) {
            eprintln!("blargh tls: cannot report the certificate for {domain} to the agent: {e}");
        }
    }
}

/// The CA-issued certificate on disk for exactly these domains, if readable and covering
/// them all.
fn load_disk(store: &Store, domains: &[String]) -> Option<cert::Loaded> {
    let path = store.cert_path(domains);
    let pem = std::fs::read(&path).ok()?;
    match cert::load(&pem, false) {
        Ok(l) if domains.iter().all(|d| l.info.domains.contains(d)) => Some(l),
        Ok(_) => None,
        Err(e) => {
            eprintln!("blargh tls: ignoring {}: {e}", path.display());
            None
        }
    }
}

fn humantime(t: SystemTime) -> String {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => format!("in {} days", d.as_secs() / 86_400),
        Err(e) => format!("{} days ago", e.duration().as_secs() / 86_400),
    }
}

/// The background task: keep a CA-issued, not-near-expiry certificate in the resolver.
async fn run(inner: Arc<Inner>) {
    let s = &inner.settings;
    let domains = s.domains.join(",");
    let cert_path = inner.store.cert_path(&s.domains);
    // Renewal was requested while the certificate with this serial was served.
    let mut forced: Option<String> = s.renew_now.then(|| inner.current().serial);
    // `renew_now()` was called: the next attempt ignores the shared backoff.
    let mut bypass = false;
    let mut waiting_logged = false;
    let mut backoff_logged = false;
    loop {
        // Pick up a newer certificate another release (or an earlier order) wrote.
        if let Some(disk) = load_disk(&inner.store, &s.domains) {
            let cur = inner.current();
            if disk.info.serial != cur.serial
                && (cur.self_signed || disk.info.not_after >= cur.not_after)
            {
                eprintln!(
                    "blargh tls: now serving the certificate for {domains} from {} (expires {})",
                    cert_path.display(),
                    humantime(disk.info.not_after)
                );
                inner.install(disk);
            }
        }
        let cur = inner.current();
        if forced.as_ref().is_some_and(|serial| *serial != cur.serial) {
            forced = None; // someone renewed it
        }
        let due = cur.self_signed || cur.near_expiry(SystemTime::now()) || forced.is_some();
        if !due {
            tokio::select! {
                _ = tokio::time::sleep(s.poll) => {}
                _ = inner.renew.notified() => {
                    eprintln!("blargh tls: renewal of the certificate for {domains} requested");
                    forced = Some(cur.serial.clone());
                    bypass = true;
                }
            }
            continue;
        }
        let lock = match inner.store.try_lock() {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                if !waiting_logged {
                    eprintln!(
                        "blargh tls: another process (release) is ordering the certificate for \
                         {domains}: waiting for it to write {}",
                        cert_path.display()
                    );
                    waiting_logged = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => {
                eprintln!(
                    "blargh tls: cannot take the order lock in {}: {e}",
                    inner.store.dir.display()
                );
                tokio::time::sleep(s.retry_initial).await;
                continue;
            }
        };
        waiting_logged = false;
        // Holding the lock: the previous holder may have just written a certificate.
        if let Some(disk) = load_disk(&inner.store, &s.domains)
            && disk.info.serial != cur.serial
            && !disk.info.near_expiry(SystemTime::now())
        {
            drop(lock);
            continue;
        }
        // A failed order (by this process, an earlier run or another release) set when the
        // next one may start: no retry storm from restarts or overlapping releases.
        let (failures_before, next) = inner.store.failures();
        if !bypass
            && let Some(next) = next
            && let Ok(wait) = next.duration_since(SystemTime::now())
        {
            drop(lock);
            if !backoff_logged {
                eprintln!(
                    "blargh tls: ordering for {domains} failed {failures_before} times in a row \
                     (in this or another release): next attempt in {}s",
                    wait.as_secs()
                );
                backoff_logged = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.min(s.poll)) => {}
                _ = inner.renew.notified() => { bypass = true; }
            }
            continue;
        }
        bypass = false;
        backoff_logged = false;
        inner.orders.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "blargh tls: ordering a certificate for {domains} from {} ({:?})",
            s.directory, s.challenge
        );
        let result = match acme::order(&inner).await {
            Ok(pem) => match cert::load(pem.as_bytes(), false) {
                Ok(loaded) => store::write_atomic(&cert_path, pem.as_bytes())
                    .map(|()| loaded)
                    .map_err(|e| format!("saving {}: {e}", cert_path.display())),
                Err(e) => Err(format!("the CA's certificate is unusable: {e}")),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(loaded) => {
                eprintln!(
                    "blargh tls: obtained a certificate for {domains} (issuer {}, expires {}), \
                     saved to {}",
                    loaded.info.issuer,
                    humantime(loaded.info.not_after),
                    cert_path.display()
                );
                inner.install(loaded);
                inner.store.clear_failures();
                drop(lock);
                forced = None;
            }
            Err(e) => {
                let failures = failures_before + 1;
                let delay = backoff(s.retry_initial, s.retry_max, failures);
                if let Err(e) = inner
                    .store
                    .set_failures(failures, SystemTime::now() + delay)
                {
                    eprintln!("blargh tls: cannot record the failure: {e}");
                }
                drop(lock);
                let serving = if cur.self_signed {
                    "still serving the SELF-SIGNED certificate".to_string()
                } else {
                    format!(
                        "still serving the current certificate (expires {})",
                        humantime(cur.not_after)
                    )
                };
                eprintln!(
                    "blargh tls: ordering a certificate for {domains} failed ({failures} in a \
                     row): {e}; {serving}; next attempt in {}s",
                    delay.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = inner.renew.notified() => { bypass = true; }
                }
            }
        }
    }
}

/// `initial * 2^(failures-1)`, at most `max`.
fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(20);
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let m = Duration::from_secs(60);
        let h = Duration::from_secs(3600);
        assert_eq!(backoff(m, h, 1), m);
        assert_eq!(backoff(m, h, 2), 2 * m);
        assert_eq!(backoff(m, h, 4), 8 * m);
        assert_eq!(backoff(m, h, 10), h);
        assert_eq!(backoff(m, h, 1000), h);
    }

    #[test]
    fn settings_from_the_environment() {
        let env = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }
        };
        assert!(Settings::from_lookup(env(&[])).is_err());
        let s = Settings::from_lookup(env(&[
            (ENV_DOMAINS, "Example.com, www.example.com"),
            (ENV_CONTACT, "ops@example.com"),
            (ENV_DIRECTORY, "https://ca.test/dir"),
            (ENV_CA_FILE, "/etc/ca.pem"),
            (ENV_CHALLENGE, "http-01"),
            (ENV_RENEW_NOW, "1"),
            ("BLARGH_DATA_DIR", "/srv/data"),
        ]))
        .unwrap();
        assert_eq!(s.domains, ["example.com", "www.example.com"]);
        assert_eq!(s.contact.as_deref(), Some("ops@example.com"));
        assert_eq!(s.directory, "https://ca.test/dir");
        assert_eq!(
            s.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(s.challenge, Challenge::Http01);
        assert!(s.renew_now);
        assert_eq!(s.data_dir, PathBuf::from("/srv/data"));
        let d = Settings::from_lookup(env(&[(ENV_DOMAINS, "a.example")])).unwrap();
        assert_eq!(d.directory, LETS_ENCRYPT);
        assert_eq!(d.challenge, Challenge::TlsAlpn01);
        assert!(!d.renew_now);
        assert!(
            Settings::from_lookup(env(&[
                (ENV_DOMAINS, "a.example"),
                (ENV_CHALLENGE, "dns-01")
            ]))
            .is_err()
        );
    }

    #[test]
    fn settings_reject_odd_domains() {
        assert!(Settings::new(["*.example.com"]).check().is_err());
        assert!(Settings::new(["../x"]).check().is_err());
        assert!(Settings::new(Vec::<String>::new()).check().is_err());
        assert!(Settings::new([" Example.COM "]).check().is_ok());
    }
}
