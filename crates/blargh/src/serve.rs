//! An HTTP/1 and HTTP/2 server for any tower service (an axum `Router` included) that drains
//! on SIGTERM without failing a request: the piece that makes a release switch invisible to
//! clients. HTTP/2 is spoken to clients that open with its preface (h2c with prior knowledge,
//! or h2 chosen by ALPN over TLS); a draining HTTP/2 connection gets GOAWAY at once, so the
//! client opens its next streams elsewhere while the ones in flight finish.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::{notify, shutdown};

/// How a draining release treats its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainConfig {
    /// After SIGTERM, the longest the server waits for connections to finish before it
    /// returns and drops them. Defaults to the agent's drain timeout less a margin, or 30 s.
    pub deadline: Duration,
    /// A keep-alive connection with no request for this long is closed while draining.
    /// Connections that send a request get `Connection: close` on its response instead,
    /// which never races with a client sending on them.
    pub idle_close_after: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            deadline: shutdown::drain_budget().unwrap_or(Duration::from_secs(30)),
            idle_close_after: Duration::from_secs(1),
        }
    }
}

/// Serves `service` on `listener` until SIGTERM or SIGINT, then drains (see [`serve_with`]).
pub async fn serve<S, B>(listener: std::net::TcpListener, service: S) -> io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(listener, service, DrainConfig::default()).await
}

/// Serves `service` on `listener`: signals readiness, accepts until SIGTERM or SIGINT, then
/// stops accepting, tells the agent (`STOPPING=1`), answers the next request on every
/// HTTP/1 keep-alive connection with `Connection: close`, sends GOAWAY on every HTTP/2 one,
/// lets responses in progress (streams, upgrades) run until they end, closes connections
/// idle for `idle_close_after`, and returns once no connection is left or the deadline has
/// passed.
pub async fn serve_with<S, B>(
    listener: std::net::TcpListener,
    service: S,
    config: DrainConfig,
) -> io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_on(listener, service, config, None).await
}

/// [`serve`] over TLS: each connection's handshake (at most [`HANDSHAKE_TIMEOUT`]) uses
/// `tls`, whose ALPN list decides between HTTP/2 (`h2`) and HTTP/1.1; a certificate resolver
/// in it may change certificates at any time (renewal without a restart).
#[cfg(feature = "tls")]
pub async fn serve_tls<S, B>(
    listener: std::net::TcpListener,
    service: S,
    tls: Arc<rustls::ServerConfig>,
) -> io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_on(
        listener,
        service,
        DrainConfig::default(),
        Some(tokio_rustls::TlsAcceptor::from(tls)),
    )
    .await
}

/// How long a client may take to finish its TLS handshake.
#[cfg(feature = "tls")]
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(feature = "tls")]
type Acceptor = tokio_rustls::TlsAcceptor;
/// Without the `tls` feature there is never an acceptor.
#[cfg(not(feature = "tls"))]
type Acceptor = Infallible;

async fn serve_on<S, B>(
    listener: std::net::TcpListener,
    service: S,
    config: DrainConfig,
    tls: Option<Acceptor>,
) -> io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let draining = Arc::new(AtomicBool::new(false));
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let mut conns = JoinSet::new();
    let stop = shutdown::signal();
    tokio::pin!(stop);

    notify::ready()?;
    // Pings from a task of this runtime: an app whose workers are all stuck stops pinging.
    let pings = notify::spawn_watchdog();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let (service, draining, drain_rx) =
                        (service.clone(), draining.clone(), drain_rx.clone());
                    let idle = config.idle_close_after;
                    match &tls {
                        None => {
                            conns.spawn(serve_connection(stream, service, draining, drain_rx, idle));
                        }
                        #[cfg(feature = "tls")]
                        Some(acceptor) => {
                            let handshake = acceptor.accept(stream);
                            conns.spawn(async move {
                                // A client that never finishes its handshake holds nothing.
                                if let Ok(Ok(stream)) =
                                    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await
                                {
                                    // A CA validating TLS-ALPN-01 only wanted the handshake's
                                    // certificate: that connection carries no HTTP.
                                    if stream.get_ref().1.alpn_protocol() == Some(b"acme-tls/1") {
                                        return;
                                    }
                                    serve_connection(stream, service, draining, drain_rx, idle)
                                        .await;
                                }
                            });
                        }
                        #[cfg(not(feature = "tls"))]
                        Some(never) => match *never {},
                    }
                }
                // Out of fds or a connection reset while queued: keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }

    // Our copy of the socket closes; the agent's copy keeps it open for the next release.
    drop(listener);
    draining.store(true, Ordering::SeqCst);
    let _ = drain_tx.send(true);
    let _ = notify::stopping();

    let deadline = tokio::time::sleep(config.deadline);
    tokio::pin!(deadline);
    // A second Ctrl-C stops at once (development); a second SIGTERM does not, since init
    // systems may send one to the whole group while the agent sends its own.
    let again = tokio::signal::ctrl_c();
    tokio::pin!(again);
    loop {
        tokio::select! {
            next = conns.join_next() => if next.is_none() { break },
            _ = &mut deadline => break,
            _ = &mut again => break,
        }
    }
    conns.abort_all();
    if let Some(p) = pings {
        p.abort();
    }
    Ok(())
}

/// What a connection's task knows about its requests.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
    /// The connection speaks HTTP/2 (seen on its first request).
    h2: AtomicBool,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(
            self.last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed(),
        )
    }
}

async fn serve_connection<I, S, B>(
    stream: I,
    service: S,
    draining: Arc<AtomicBool>,
    mut drain_rx: tokio::sync::watch::Receiver<bool>,
    idle_close_after: Duration,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
        h2: AtomicBool::new(false),
    });
    let svc_activity = activity.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let service = service.clone();
        let activity = svc_activity.clone();
        let draining = draining.clone();
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.touch();
        let h1 = req.version() < Version::HTTP_2;
        if !h1 {
            activity.h2.store(true, Ordering::SeqCst);
        }
        async move {
            let mut res = service.oneshot(req).await?;
            if h1 && draining.load(Ordering::SeqCst) {
                // hyper closes the connection after writing a response that says so. (An
                // HTTP/2 connection got GOAWAY instead: the header is not allowed there.)
                res.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            activity.touch();
            activity.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(res)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);

    // Serve normally until the release starts draining.
    if !*drain_rx.borrow() {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = drain_rx.changed() => {}
        }
    }
    // HTTP/2: GOAWAY now; the streams in flight finish, new ones go to the next release.
    if activity.h2.load(Ordering::SeqCst) {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
        return;
    }
    // HTTP/1: requests get `Connection: close`; a connection left idle is closed.
    loop {
        let wait = match activity.idle_for() {
            Some(idle) if idle >= idle_close_after => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
                return;
            }
            Some(idle) => idle_close_after - idle,
            None => Duration::from_millis(50),
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
