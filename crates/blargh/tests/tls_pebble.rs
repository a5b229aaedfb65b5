//! `blargh::tls` against a real ACME CA: Pebble, validating for real (TLS-ALPN-01 on the
//! test's HTTPS port, HTTP-01 on its HTTP port, names resolved by pebble-challtestsrv to
//! 127.0.0.1). Clients are real too: curl with `--cacert` on Pebble's root, openssl
//! s_client to see which certificate is served. Needs `apt-get install pebble`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blargh::tls::{Challenge, Settings, Tls};
use test_support::pebble::Pebble;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DOMAIN: &str = "app.example.com";

/// The test's app: an HTTPS listener (TLS-ALPN-01 is validated here) and an HTTP one
/// (HTTP-01), bound before Pebble starts so Pebble can be told their ports.
struct Ports {
    https: TcpListener,
    http: TcpListener,
}

impl Ports {
    async fn bind() -> Ports {
        Ports {
            https: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }
    fn https_port(&self) -> u16 {
        self.https.local_addr().unwrap().port()
    }
    fn http_port(&self) -> u16 {
        self.http.local_addr().unwrap().port()
    }

    /// Serves `hello` over HTTPS with `tls`'s config, and HTTP-01 answers (else 404) on
    /// plain HTTP, until the test ends.
    fn serve(self, tls: &Tls) -> u16 {
        let port = self.https_port();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = self.https.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if s.get_ref().1.alpn_protocol() == Some(b"acme-tls/1") {
                        return; // the CA's validation handshake carries no HTTP
                    }
                    let _ = read_head(&mut s).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n")
                        .await;
                    let _ = s.shutdown().await;
                });
            }
        });
        let tls = tls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = self.http.accept().await else {
                    continue;
                };
                let tls = tls.clone();
                tokio::spawn(async move {
                    let head = read_head(&mut tcp).await;
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let reply = match tls.http01(&path) {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    };
                    let _ = tcp.write_all(reply.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        port
    }
}

async fn read_head<S: AsyncReadExt + Unpin>(s: &mut S) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn settings(pebble: &Pebble, data: &Path, challenge: Challenge) -> Settings {
    Settings::new([DOMAIN])
        .contact("ops@example.com")
        .directory(&pebble.directory)
        .ca_file(&pebble.ca_file)
        .data_dir(data)
        .challenge(challenge)
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(4))
        .poll_interval(Duration::from_millis(200))
}

/// Polls `probe` (in a blocking thread, it may run curl) until it is `Some`.
async fn until<T: Send + 'static>(
    timeout: Duration,
    what: &str,
    pebble: &Pebble,
    probe: impl Fn() -> Option<T> + Send + Sync + 'static,
) -> T {
    let probe = Arc::new(probe);
    let t0 = Instant::now();
    loop {
        let p = probe.clone();
        if let Some(v) = tokio::task::spawn_blocking(move || p()).await.unwrap() {
            return v;
        }
        if t0.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                pebble.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn issued(tls: &Tls, pebble: &Pebble) -> String {
    let t = tls.clone();
    until(
        Duration::from_secs(30),
        "a CA-issued certificate",
        pebble,
        move || {
            let c = &t.certificates()[0];
            (!c.self_signed).then(|| c.serial.clone())
        },
    )
    .await
}

fn curl(root: &Path, port: u16) -> Result<String, String> {
    test_support::pebble::https_get(root, DOMAIN, port)
}

fn served(port: u16) -> (String, String) {
    test_support::pebble::served_certificate(DOMAIN, port)
}

fn norm(serial: &str) -> String {
    test_support::pebble::normalized_serial(serial)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_alpn01_first_start_obtains_a_certificate_and_serves_https() {
    let t0 = Instant::now();
    let ports = Ports::bind().await;
    let pebble = Pebble::start(ports.http_port(), ports.https_port());
    let data = tempfile::tempdir().unwrap();
    let tls = Tls::start(settings(&pebble, data.path(), Challenge::TlsAlpn01))
        .await
        .unwrap();
    // Returns at once, serving a self-signed certificate until the CA issues one.
    assert!(tls.certificates()[0].self_signed);
    let port = ports.serve(&tls);
    let serial = issued(&tls, &pebble).await;
    let root = pebble.issuer_root();
    assert_eq!(curl(&root, port).unwrap(), "hello\n");
    assert_eq!(served(port).0, norm(&serial));
    let info = &tls.certificates()[0];
    assert_eq!(info.domains, vec![DOMAIN.to_string()]);
    assert!(info.issuer.contains("Pebble"), "{info:?}");
    assert_eq!(tls.orders_started(), 1);
    let dir = data.path().join("tls");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(format!("{DOMAIN}.pem"))), 0o600);
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        assert!(!p.to_string_lossy().contains(".tmp."), "leftover {p:?}");
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{p:?}");
        }
    }
    eprintln!("took {:.1?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http01_first_start_obtains_a_certificate_and_serves_https() {
    let t0 = Instant::now();
    let ports = Ports::bind().await;
    let http_port = ports.http_port();
    let pebble = Pebble::start(ports.http_port(), ports.https_port());
    let data = tempfile::tempdir().unwrap();
    let tls = Tls::start(settings(&pebble, data.path(), Challenge::Http01))
        .await
        .unwrap();
    let port = ports.serve(&tls);
    let serial = issued(&tls, &pebble).await;
    assert_eq!(curl(&pebble.issuer_root(), port).unwrap(), "hello\n");
    assert_eq!(served(port).0, norm(&serial));
    // Paths that are not a pending challenge are the app's.
    assert_eq!(tls.http01("/.well-known/acme-challenge/nope"), None);
    assert_eq!(tls.http01("/"), None);
    let code = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "http://127.0.0.1:{http_port}/.well-known/acme-challenge/nope"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&code.stdout), "404");
    assert_eq!(tls.orders_started(), 1);
    eprintln!("took {:.1?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_release_on_the_same_data_dir_does_not_order_again() {
    let t0 = Instant::now();
    let ports = Ports::bind().await;
    let pebble = Pebble::start(ports.http_port(), ports.https_port());
    let data = tempfile::tempdir().unwrap();
    // Old and new release start together on one data dir (the deploy overlap).
    let a = Tls::start(settings(&pebble, data.path(), Challenge::TlsAlpn01))
        .await
        .unwrap();
    let b = Tls::start(settings(&pebble, data.path(), Challenge::TlsAlpn01))
        .await
        .unwrap();
    // Only `a` serves: when `b` is the one ordering, `a` answers the challenge from disk,
    // as a release sharing the socket would.
    let port = ports.serve(&a);
    let sa = issued(&a, &pebble).await;
    let sb = issued(&b, &pebble).await;
    assert_eq!(sa, sb, "both serve the one certificate ordered");
    assert_eq!(pebble.orders(), 1, "orders Pebble saw");
    assert_eq!(
        a.orders_started() + b.orders_started(),
        1,
        "exactly one order between the two (a {}, b {})",
        a.orders_started(),
        b.orders_started()
    );
    // A third start (the next deploy) loads it from disk at once and orders nothing.
    let c = Tls::start(settings(&pebble, data.path(), Challenge::TlsAlpn01))
        .await
        .unwrap();
    assert_eq!(c.certificates()[0].serial, sa);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.orders_started(), 0);
    assert_eq!(pebble.orders(), 1, "orders Pebble saw");
    assert_eq!(curl(&pebble.issuer_root(), port).unwrap(), "hello\n");
    eprintln!("took {:.1?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewal_when_told_expiry_is_near_swaps_the_certificate_without_restart() {
    let t0 = Instant::now();
    let ports = Ports::bind().await;
    let pebble = Pebble::start(ports.http_port(), ports.https_port());
    let data = tempfile::tempdir().unwrap();
    let tls = Tls::start(settings(&pebble, data.path(), Challenge::TlsAlpn01))
        .await
        .unwrap();
    let port = ports.serve(&tls);
    let first = issued(&tls, &pebble).await;
    assert_eq!(served(port).0, norm(&first));
    tls.renew_now();
    let t = tls.clone();
    let f = first.clone();
    let second = until(
        Duration::from_secs(30),
        "the renewed certificate",
        &pebble,
        move || {
            let s = t.certificates()[0].serial.clone();
            (s != f).then_some(s)
        },
    )
    .await;
    // Same listener, same acceptor, same ServerConfig: the new certificate is served.
    assert_eq!(served(port).0, norm(&second));
    assert_eq!(curl(&pebble.issuer_root(), port).unwrap(), "hello\n");
    assert_eq!(tls.orders_started(), 2);
    assert_eq!(pebble.orders(), 2, "orders Pebble saw");
    // And it was saved: a restart would serve it too.
    let again = Tls::start(settings(&pebble, data.path(), Challenge::TlsAlpn01))
        .await
        .unwrap();
    assert_eq!(again.certificates()[0].serial, second);
    eprintln!("took {:.1?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_ca_down_the_certificate_keeps_serving_and_a_fresh_dir_is_self_signed() {
    let t0 = Instant::now();
    let ports = Ports::bind().await;
    let pebble_ports = (ports.http_port(), ports.https_port());
    let mut pebble = Pebble::start(pebble_ports.0, pebble_ports.1);
    let data = tempfile::tempdir().unwrap();
    let tls = Tls::start(settings(&pebble, data.path(), Challenge::TlsAlpn01))
        .await
        .unwrap();
    let port = ports.serve(&tls);
    let serial = issued(&tls, &pebble).await;
    let root = pebble.issuer_root();
    pebble.stop();
    // A renewal now fails (CA unreachable): the current certificate stays.
    tls.renew_now();
    let t = tls.clone();
    until(
        Duration::from_secs(30),
        "two failed renewal attempts",
        &pebble,
        move || (t.orders_started() >= 3).then_some(()),
    )
    .await;
    assert_eq!(tls.certificates()[0].serial, serial);
    assert_eq!(served(port).0, norm(&serial));
    assert_eq!(curl(&root, port).unwrap(), "hello\n");
    // The backoff is shared through the data dir: a release started now (or a restart),
    // even one told to renew,
    // waits for the next attempt (4 s after the third failure) instead of ordering at once.
    let late = Tls::start(settings(&pebble, data.path(), Challenge::TlsAlpn01).renew_now(true))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        late.orders_started(),
        0,
        "a new release must respect the backoff"
    );
    assert_eq!(late.certificates()[0].serial, serial);
    drop(late);

    // A fresh data dir with the CA down: a self-signed certificate, served.
    let ports2 = Ports::bind().await;
    let fresh = tempfile::tempdir().unwrap();
    let dev = Tls::start(settings(&pebble, fresh.path(), Challenge::TlsAlpn01))
        .await
        .unwrap();
    let port2 = ports2.serve(&dev);
    let d = dev.clone();
    until(
        Duration::from_secs(30),
        "a failed first order",
        &pebble,
        move || (d.orders_started() >= 1).then_some(()),
    )
    .await;
    let info = &dev.certificates()[0];
    assert!(info.self_signed, "{info:?}");
    let (served_serial, issuer) = served(port2);
    assert_eq!(served_serial, norm(&info.serial));
    assert!(issuer.contains("self-signed"), "{issuer}");
    assert!(
        curl(&root, port2).is_err(),
        "a self-signed cert must not verify"
    );
    eprintln!("took {:.1?}", t0.elapsed());
}
