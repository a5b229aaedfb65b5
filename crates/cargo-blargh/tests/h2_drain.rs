//! HTTP/2 clients across activations: `blargh::serve` speaks h2c to a client that opens
//! with the HTTP/2 preface, and a draining release sends GOAWAY at once, so the client opens
//! its next streams on a new connection (to the new release) while the streams in flight
//! finish. Under h2load (8 connections × 4 concurrent streams), 6 activations alternating two
//! builds of examples/hello fail no stream it sent; under hyper's HTTP/2 client (which
//! reconnects after GOAWAY, as browsers do), 10 activations fail no request.

use std::time::Duration;

use test_support::agent::{AgentOptions, TestAgent};
use test_support::h2client::H2Client;
use test_support::h2load::H2load;
use test_support::hello::{self, Profile};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

const CLIENTS: u32 = 8;

#[test]
fn six_activations_under_h2_load_fail_no_stream() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let r1 = agent.receive(&v1, "v1");
    let r2 = agent.receive(&v2, "v2");
    agent.activate(&r1).unwrap();

    // h2load does not reconnect after GOAWAY (nghttp2 1.52): its clients end there, and
    // the requests it had yet to send are counted as failed (`unsent` here: they never
    // reached a server). So each activation gets a fresh run whose 8 connections are all on
    // the serving release when the switch starts; every stream it sent must succeed.
    let (mut done, mut unsent) = (0, 0);
    for i in 0..6 {
        let id = if i % 2 == 0 { &r2 } else { &r1 };
        let load = H2load::start(
            &format!("http://127.0.0.1:{}/", agent.port()),
            CLIENTS,
            4,
            Duration::from_secs(8),
            &[],
        )
        .unwrap();
        agent.wait_for_clients_on_current(CLIENTS as usize, Duration::from_secs(15));
        let before = agent.status().pid;
        let a = agent
            .activate(id)
            .unwrap_or_else(|e| panic!("activation {i} failed: {e:?}\n{}", agent.agent_log()));
        assert_ne!(Some(a.pid), before);
        let report = load.finish().unwrap();
        eprintln!(
            "activation {i}: {}",
            report
                .raw
                .lines()
                .find(|l| l.starts_with("requests:"))
                .unwrap_or("")
        );
        assert_eq!(report.protocol, "h2c", "{}", report.raw);
        assert!(report.done > 100, "load was sustained: {}", report.raw);
        assert_eq!(
            report.failures(),
            0,
            "failed streams at activation {i}:\n{}",
            report.raw
        );
        done += report.done;
        unsent += report.unsent;
    }
    eprintln!(
        "{done} streams across 6 activations, none failed; {unsent} never sent (h2load's \
         clients stop at GOAWAY)"
    );
}

#[test]
fn ten_activations_under_continuous_h2_load_fail_no_request() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let r1 = agent.receive(&v1, "v1");
    let r2 = agent.receive(&v2, "v2");
    agent.activate(&r1).unwrap();
    // A client that reconnects after GOAWAY, as browsers and HTTP libraries do.
    let load = H2Client::start(&format!("http://127.0.0.1:{}/", agent.port()), 16);
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..10 {
        let id = if i % 2 == 0 { &r2 } else { &r1 };
        agent
            .activate(id)
            .unwrap_or_else(|e| panic!("activation {i} failed: {e:?}\n{}", agent.agent_log()));
        std::thread::sleep(Duration::from_millis(500));
    }
    let counts = load.finish();
    eprintln!("{counts:?}");
    assert!(counts.ok > 1000, "load was sustained: {counts:?}");
    assert_eq!(counts.failed, 0, "failed requests: {counts:?}");
}

/// What curl negotiated and got: (HTTP version, body).
fn curl(cacert: &std::path::Path, port: u16, version_flag: &str) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", version_flag, "--cacert"])
        .arg(cacert)
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://localhost:{port}/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl {version_flag}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, version) = text.rsplit_once('\n').unwrap();
    (version.to_string(), body.to_string())
}

#[test]
fn over_tls_alpn_picks_h2_or_http1_and_activations_fail_no_stream() {
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = test_support::certs::self_signed(certs.path()).unwrap();
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            env: vec![
                ("HELLO_TLS_CERT".into(), cert.display().to_string()),
                ("HELLO_TLS_KEY".into(), key.display().to_string()),
            ],
            ..AgentOptions::default()
        },
    );
    let r1 = agent.receive(&v1, "v1");
    let r2 = agent.receive(&v2, "v2");
    agent.activate(&r1).unwrap();
    // A real client that checks the certificate: ALPN gives h2, or HTTP/1.1 when asked.
    let (version, body) = curl(&cert, agent.port(), "--http2");
    assert_eq!(version, "2", "{body}");
    assert!(body.starts_with("hello from v1 "), "{body}");
    let (version, _) = curl(&cert, agent.port(), "--http1.1");
    assert_eq!(version, "1.1");

    for i in 0..4 {
        let id = if i % 2 == 0 { &r2 } else { &r1 };
        let load = H2load::start(
            &format!("https://127.0.0.1:{}/", agent.port()),
            CLIENTS,
            4,
            Duration::from_secs(8),
            &[],
        )
        .unwrap();
        agent.wait_for_clients_on_current(CLIENTS as usize, Duration::from_secs(15));
        agent
            .activate(id)
            .unwrap_or_else(|e| panic!("activation {i} failed: {e:?}\n{}", agent.agent_log()));
        let report = load.finish().unwrap();
        eprintln!(
            "TLS activation {i}: {}",
            report
                .raw
                .lines()
                .find(|l| l.starts_with("requests:"))
                .unwrap_or("")
        );
        assert_eq!(report.protocol, "h2", "{}", report.raw);
        assert!(report.done > 100, "load was sustained: {}", report.raw);
        assert_eq!(report.started, report.done, "streams lost:\n{}", report.raw);
        assert!(
            report.failed <= report.unsent,
            "failed streams:\n{}",
            report.raw
        );
    }
    let (version, body) = curl(&cert, agent.port(), "--http2");
    assert_eq!(version, "2");
    assert!(body.starts_with("hello from v1 "), "{body}");
}
