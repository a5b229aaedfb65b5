//! Tower pieces for apps serving with axum (features `tls` + `axum`):
//!
//! - [`AcmeChallengeLayer`] answers `/.well-known/acme-challenge/TOKEN` (HTTP-01) before the
//!   app's routes see the request;
//! - [`RedirectToHttps`] answers everything else on the plain HTTP listener with a
//!   `308` to the same host and path over `https`;
//! - [`HstsLayer`] adds `Strict-Transport-Security` to the HTTPS side's responses.
//!
//! ```no_run
//! # fn f(tls: blargh::tls::Tls, app: axum::Router) {
//! use blargh::tls::http::{AcmeChallengeLayer, HstsLayer, RedirectToHttps};
//! use tower::Layer;
//! // On the HTTP listener: challenges, then a redirect for everything else.
//! let http_side = AcmeChallengeLayer::new(tls.clone()).layer(RedirectToHttps);
//! // On the HTTPS listener: the app, with HSTS for a year.
//! let https_side = app.layer(HstsLayer::new(std::time::Duration::from_secs(365 * 86_400)));
//! # let _ = (http_side, https_side); }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use super::Tls;

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Wraps a service so HTTP-01 challenge requests are answered by [`Tls::http01`] first.
#[derive(Clone, Debug)]
pub struct AcmeChallengeLayer {
    tls: Tls,
}

impl AcmeChallengeLayer {
    /// A layer answering the challenges `tls` has pending.
    pub fn new(tls: Tls) -> Self {
        AcmeChallengeLayer { tls }
    }
}

impl<S> Layer<S> for AcmeChallengeLayer {
    type Service = AcmeChallenge<S>;
    fn layer(&self, inner: S) -> AcmeChallenge<S> {
        AcmeChallenge {
            tls: self.tls.clone(),
            inner,
        }
    }
}

/// The service [`AcmeChallengeLayer`] makes.
#[derive(Clone, Debug)]
pub struct AcmeChallenge<S> {
    tls: Tls,
    inner: S,
}

impl<S, B> Service<Request<B>> for AcmeChallenge<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(answer) = self.tls.http01(req.uri().path()) {
            let mut rsp = Response::new(Body::from(answer));
            rsp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Box::pin(async move { Ok(rsp) });
        }
        Box::pin(self.inner.call(req))
    }
}

/// Answers every request with `308 Permanent Redirect` to `https://<host><path>` (the
/// `Host` header without its port, so the default HTTPS port), or `400` without a `Host`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedirectToHttps;

impl<B> Service<Request<B>> for RedirectToHttps {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .map(strip_port);
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let location = host
            .filter(|h| !h.is_empty() && !h.contains(['/', '@', ' ']))
            .and_then(|h| HeaderValue::from_str(&format!("https://{h}{path}")).ok());
        let mut rsp = Response::new(Body::empty());
        match location {
            Some(loc) => {
                *rsp.status_mut() = StatusCode::PERMANENT_REDIRECT;
                rsp.headers_mut().insert(header::LOCATION, loc);
            }
            None => *rsp.status_mut() = StatusCode::BAD_REQUEST,
        }
        std::future::ready(Ok(rsp))
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [::1]:80
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Adds `Strict-Transport-Security: max-age=<secs>` to every response (for the HTTPS
/// listener only: browsers then never use plain HTTP for the host until it expires).
#[derive(Clone, Debug)]
pub struct HstsLayer {
    value: HeaderValue,
}

impl HstsLayer {
    /// HSTS with this `max-age` (a year is usual once HTTPS is known to work; start short).
    pub fn new(max_age: Duration) -> Self {
        HstsLayer {
            value: HeaderValue::from_str(&format!("max-age={}", max_age.as_secs()))
                .expect("digits are a valid header value"),
        }
    }

    /// The same, with `; includeSubDomains`.
    pub fn include_subdomains(self) -> Self {
        let v = format!(
            "{}; includeSubDomains",
            self.value.to_str().unwrap_or_default()
        );
        HstsLayer {
            value: HeaderValue::from_str(&v).expect("ascii header value"),
        }
    }
}

impl<S> Layer<S> for HstsLayer {
    type Service = Hsts<S>;
    fn layer(&self, inner: S) -> Hsts<S> {
        Hsts {
            value: self.value.clone(),
            inner,
        }
    }
}

/// The service [`HstsLayer`] makes.
#[derive(Clone, Debug)]
pub struct Hsts<S> {
    value: HeaderValue,
    inner: S,
}

impl<S, B, R> Service<Request<B>> for Hsts<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Response<R>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let value = self.value.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut rsp = fut.await?;
            rsp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, value);
            Ok(rsp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn req(host: &str, path: &str) -> Request<Body> {
        Request::builder()
            .uri(path)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn challenges_first_then_redirect() {
        let data = tempfile::tempdir().unwrap();
        // A directory nothing listens on: the background order fails, quietly enough.
        let tls = Tls::start(
            super::super::Settings::new(["a.example"])
                .directory("http://127.0.0.1:9/dir")
                .data_dir(data.path()),
        )
        .await
        .unwrap();
        tls.inner
            .answer_challenge("http", "tok-1", b"tok-1.thumb", None)
            .unwrap();
        let svc = AcmeChallengeLayer::new(tls.clone()).layer(RedirectToHttps);
        let rsp = svc
            .clone()
            .oneshot(req("a.example", "/.well-known/acme-challenge/tok-1"))
            .await
            .unwrap();
        assert_eq!(rsp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(rsp.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"tok-1.thumb");
        let rsp = svc
            .clone()
            .oneshot(req("a.example:80", "/x?y=1"))
            .await
            .unwrap();
        assert_eq!(rsp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(rsp.headers()[header::LOCATION], "https://a.example/x?y=1");
        let rsp = svc
            .oneshot(req("a.example", "/.well-known/acme-challenge/other"))
            .await
            .unwrap();
        assert_eq!(rsp.status(), StatusCode::PERMANENT_REDIRECT);
    }

    #[tokio::test]
    async fn hsts_header_added() {
        let svc = HstsLayer::new(Duration::from_secs(60))
            .include_subdomains()
            .layer(RedirectToHttps);
        let rsp = svc.oneshot(req("a.example", "/")).await.unwrap();
        assert_eq!(
            rsp.headers()[header::STRICT_TRANSPORT_SECURITY],
            "max-age=60; includeSubDomains"
        );
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.example:8080"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
