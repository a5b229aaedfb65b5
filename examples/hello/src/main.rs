//! hello: a small axum app deployed with blargh.
//!
//! - `GET /` says which release answers: `hello from <version> (release <id>)`.
//! - `GET /stream?ticks=N&interval_ms=M` streams N lines, one every M ms (a long-lived
//!   response for drain tests).
//! - `GET /health` answers `ok`; `GET /greeting` the `HELLO_GREETING` setting.
//! - `hello migrate` runs a pretend migration (fails if `HELLO_MIGRATION_FAILS` is set).
//!
//! Build-time: `HELLO_VERSION` sets the version it reports (default: the crate version).
//! Run-time: `BLARGH_TLS_DOMAINS` (the config's `tls` key) serves HTTPS with certificates
//! from the ACME CA (`blargh::tls::serve`) unless `HELLO_PLAIN_HTTP=1` (tests that check
//! the key's journey, not HTTPS); else `HELLO_TLS_CERT` + `HELLO_TLS_KEY` (PEM
//! files) serve HTTPS (h2 or HTTP/1.1 by ALPN) instead of HTTP; `HELLO_WARMUP_MS` delays readiness, as a real app loading caches would;
//! `HELLO_ADDR` is the address it binds outside blargh (default 127.0.0.1:3000);
//! `HELLO_CRASH_AFTER_MS` makes it crash that long after it starts serving (for crash-loop
//! tests), only in the build named by `HELLO_CRASH_IN_VERSION` when that is set;
//! `HELLO_HANG_IN_VERSION=v2` makes that build never become ready;
//! `HELLO_BLOCKABLE=1` adds `GET /block`, which blocks every worker thread of the runtime
//! for good (a hung app, for watchdog tests); `HELLO_EXIT_IF_FILE=PATH` makes it exit with
//! status 3 at start while PATH exists (a dependency that is down, for crash-loop tests);
//! `HELLO_ALLOCATABLE=1` adds `GET /alloc?mib=N`, which allocates N MiB (default 64),
//! writes to every page and never frees them (a memory leak, for OOM tests).

use std::time::Duration;

use axum::{Router, extract::Query, routing::get};
use futures_util::stream;

/// The version this build reports; tests build two releases with different values.
const VERSION: &str = match option_env!("HELLO_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

#[derive(serde::Deserialize)]
struct AllocParams {
    mib: Option<usize>,
}

#[derive(serde::Deserialize)]
struct StreamParams {
    ticks: Option<u32>,
    interval_ms: Option<u64>,
}

fn app() -> Router {
    let release = blargh::release::current_id().unwrap_or_else(|| "dev".to_string());
    let greeting = format!("hello from {VERSION} (release {release})\n");
    let mut router = Router::new();
    if std::env::var_os("HELLO_BLOCKABLE").is_some_and(|v| v == "1") {
        router = router.route("/block", get(block_every_worker));
    }
    if std::env::var_os("HELLO_ALLOCATABLE").is_some_and(|v| v == "1") {
        router = router.route("/alloc", get(leak));
    }
    router
        .route("/", get(move || async move { greeting }))
        .route("/health", get(|| async { "ok\n" }))
        .route("/stream", get(stream_ticks))
        .route("/greeting", get(greeting_setting))
        .route("/static/{name}", get(static_file))
        .nest_service("/_blargh", blargh::dashboard::router())
}

/// `GET /static/NAME`: the file `static/NAME` relative to the working directory, which
/// is the release's tree when it was deployed with `include` (404 otherwise).
async fn static_file(
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Vec<u8>, axum::http::StatusCode> {
    if name.contains('/') || name.starts_with('.') {
        return Err(axum::http::StatusCode::BAD_REQUEST);
    }
    std::fs::read(std::path::Path::new("static").join(name))
        .map_err(|_| axum::http::StatusCode::NOT_FOUND)
}

async fn stream_ticks(Query(p): Query<StreamParams>) -> axum::body::Body {
    let ticks = p.ticks.unwrap_or(10);
    let interval = Duration::from_millis(p.interval_ms.unwrap_or(100));
    let s = stream::unfold(0u32, move |i| async move {
        if i >= ticks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let line = format!("tick {i} from {VERSION}\n");
        Some((Ok::<_, std::convert::Infallible>(line), i + 1))
    });
    axum::body::Body::from_stream(s)
}

/// `GET /block`: blocks every worker thread of the runtime for good, as a deadlock or a
/// blocking call in async code would. Nothing answers after this, not even the watchdog
/// ping; the agent's watchdog replaces the process.
async fn block_every_worker() -> &'static str {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    eprintln!("hello {VERSION}: blocking all {workers} worker threads (GET /block)");
    // One task per worker and as many spare: a blocked worker's queued tasks are stolen
    // by the others, which then block too.
    for _ in 0..workers * 2 {
        tokio::spawn(async { block_forever() });
    }
    block_forever()
}

/// `GET /alloc?mib=N`: allocates N MiB a MiB at a time, touching every page, and never
/// frees them. Under a memory limit the kernel's OOM killer ends the process first.
async fn leak(Query(p): Query<AllocParams>) -> String {
    let mib = p.mib.unwrap_or(64);
    eprintln!("hello {VERSION}: allocating {mib} MiB (GET /alloc)");
    for _ in 0..mib {
        Box::leak(vec![0x5au8; 1 << 20].into_boxed_slice());
    }
    format!("allocated {mib} MiB\n")
}

fn block_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `GET /greeting`: the `HELLO_GREETING` setting (for `cargo blargh env set` tests).
async fn greeting_setting() -> String {
    std::env::var("HELLO_GREETING").unwrap_or_else(|_| "(no greeting set)".into()) + "\n"
}

/// `hello migrate`: what a `before_activate` migration looks like; fails when
/// `HELLO_MIGRATION_FAILS` is set.
fn migrate() -> std::io::Result<()> {
    println!("hello {VERSION}: migrating the database");
    if std::env::var_os("HELLO_MIGRATION_FAILS").is_some() {
        eprintln!("hello {VERSION}: migration failed: column \"email\" already exists");
        std::process::exit(1);
    }
    println!("hello {VERSION}: migration done");
    Ok(())
}

fn env_ms(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return migrate();
    }
    if std::env::var("HELLO_HANG_IN_VERSION").is_ok_and(|v| v == VERSION) {
        println!("hello {VERSION}: waiting for a database that never answers");
        std::future::pending::<()>().await;
    }
    if let Some(path) = std::env::var_os("HELLO_EXIT_IF_FILE")
        && std::path::Path::new(&path).exists()
    {
        eprintln!(
            "hello {VERSION}: the database is down ({} exists); exiting",
            std::path::Path::new(&path).display()
        );
        std::process::exit(3);
    }
    let warmup = env_ms("HELLO_WARMUP_MS").unwrap_or(0);
    println!("hello {VERSION} starting (warm-up {warmup} ms)");
    tokio::time::sleep(Duration::from_millis(warmup)).await;
    // Outside blargh (`cargo run`), bind HELLO_ADDR or 127.0.0.1:3000.
    let dev_addr = std::env::var("HELLO_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = blargh::listen("web", dev_addr.as_str())?;
    println!("hello {VERSION} serving on {}", listener.local_addr()?);
    // HELLO_CRASH_IN_VERSION=v4 makes only that build crash (a bad release among good ones).
    let crash_here = std::env::var("HELLO_CRASH_IN_VERSION").map_or(true, |v| v == VERSION);
    if let Some(ms) = env_ms("HELLO_CRASH_AFTER_MS").filter(|_| crash_here) {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            eprintln!("hello {VERSION} crashing on purpose (HELLO_CRASH_AFTER_MS={ms})");
            std::process::exit(101);
        });
    }
    let plain = std::env::var_os("HELLO_PLAIN_HTTP").is_some_and(|v| v == "1");
    if std::env::var_os(blargh::tls::ENV_DOMAINS).is_some() && !plain {
        // `tls = { domains = [...] }` in the config: certificates from the ACME CA.
        blargh::tls::serve(listener, app()).await?;
    } else if let Some(tls) = tls_config()? {
        blargh::serve_tls(listener, app(), tls).await?;
    } else {
        blargh::serve(listener, app()).await?;
    }
    println!("hello {VERSION} drained, exiting");
    Ok(())
}

/// `HELLO_TLS_CERT` and `HELLO_TLS_KEY` (PEM files): serve HTTPS with them, HTTP/2 or
/// HTTP/1.1 by ALPN. Unset: plain HTTP.
fn tls_config() -> std::io::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (
        std::env::var_os("HELLO_TLS_CERT"),
        std::env::var_os("HELLO_TLS_KEY"),
    ) else {
        return Ok(None);
    };
    let bad = |e: rustls::pki_types::pem::Error| std::io::Error::other(e.to_string());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(bad)?
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(bad)?;
    // ring is the one crypto backend of the tree (docs/tls.md); its provider lacks the
    // post-quantum key exchange, which is what the deprecation says.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(std::sync::Arc::new(config)))
}
