//! Readiness for apps that cannot send `READY=1`: with `ready = { http = "/up" }` the agent
//! gives each new process a listener of its own (`blargh-ready`) and waits for `GET /up`
//! to answer 2xx there, so the process being replaced cannot answer for it. A Python app
//! (no blargh library) is switched under wrk with no failed request; one whose `/up` never
//! says 200 is refused while the old one serves; without the check it never becomes ready.

use std::time::Duration;

use test_support::agent::{AgentOptions, TestAgent};
use test_support::http;
use test_support::load::Wrk;
use test_support::stacks::{NoNotifyApp, no_notify_app};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

fn configure(agent: &TestAgent, ready_http: Option<&str>) {
    let mut args = vec![
        "configure",
        "--ready-timeout",
        "5s",
        "--drain-timeout",
        "3s",
        "--keep-releases",
        "5",
    ];
    if let Some(path) = ready_http {
        args.extend(["--ready-http", path]);
    }
    let out = agent.ctl(&args, None).unwrap();
    assert!(
        out.status.success(),
        "configure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_app_that_cannot_notify_is_ready_when_its_own_listener_answers() {
    let dir = tempfile::tempdir().unwrap();
    let app = |name: &str, version: &str, never_up: bool| {
        no_notify_app(
            dir.path(),
            name,
            NoNotifyApp {
                version,
                warmup_s: 1.0,
                never_up,
            },
        )
        .unwrap()
    };
    let (py1, py2, stuck) = (
        app("py1", "py1", false),
        app("py2", "py2", false),
        app("stuck", "stuck", true),
    );
    let agent = TestAgent::start(BIN, AgentOptions::default());
    configure(&agent, Some("/up"));
    assert_eq!(
        agent.status().settings.ready,
        blargh_proto::control::Readiness::Http("/up".into())
    );

    let first = agent.receive(&py1, "py1");
    let a = agent.activate(&first).unwrap_or_else(|e| {
        panic!("{}\n{}", e.message, agent.agent_log());
    });
    assert!(
        a.ready_ms >= 1000,
        "ready before /up said 200 (after its 1 s warm-up): {} ms",
        a.ready_ms
    );
    let body = http::get(agent.port(), "/").unwrap().body;
    assert!(body.starts_with("hello from py1 "), "{body}");
    // /up lives only on the private listener, not on the shared one.
    let up = http::get(agent.port(), "/up").unwrap().body;
    assert_eq!(up, format!("hello from py1 pid {}\n", a.pid));

    let wrk = Wrk::start(&format!("http://127.0.0.1:{}/", agent.port()), 8, 1).unwrap();
    agent.wait_for_clients_on_current(8, Duration::from_secs(15));
    let second = agent.receive(&py2, "py2");
    let b = agent.activate(&second).unwrap_or_else(|e| {
        panic!("{}\n{}", e.message, agent.agent_log());
    });
    assert!(b.ready_ms >= 1000, "{} ms", b.ready_ms);
    // The old process answers /up on the shared socket with 200 all along: had the agent
    // asked there, this one would have passed.
    let never = agent.receive(&stuck, "stuck");
    let err = agent.activate(&never).unwrap_err();
    assert!(
        err.message
            .contains("a 2xx answer to GET /up on the listener named blargh-ready"),
        "{}",
        err.message
    );
    std::thread::sleep(Duration::from_millis(500));
    let report = wrk.finish().unwrap();
    assert!(report.requests > 100, "{}", report.raw);
    assert_eq!(report.failures(), 0, "failed requests:\n{}", report.raw);
    let status = agent.status();
    assert_eq!(status.current.unwrap().id.as_str(), second);
    assert_eq!(status.pid, Some(b.pid));
    let body = http::get(agent.port(), "/").unwrap().body;
    assert!(body.starts_with("hello from py2 "), "{body}");
}

#[test]
fn without_the_http_check_such_an_app_never_becomes_ready() {
    let dir = tempfile::tempdir().unwrap();
    let py = no_notify_app(
        dir.path(),
        "py",
        NoNotifyApp {
            version: "py",
            warmup_s: 0.0,
            never_up: false,
        },
    )
    .unwrap();
    let agent = TestAgent::start(BIN, AgentOptions::default());
    configure(&agent, None);
    let id = agent.receive(&py, "py");
    let err = agent.activate(&id).unwrap_err();
    assert!(
        err.message.contains("READY=1 on NOTIFY_SOCKET"),
        "{}",
        err.message
    );
    // It was running, with its sockets, the whole time: only readiness was missing.
    assert!(
        err.release_log
            .iter()
            .any(|l| l.contains("sockets ['web']")),
        "{:?}",
        err.release_log
    );
}

#[test]
fn a_certificate_the_app_reports_shows_in_status_with_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let py = no_notify_app(
        dir.path(),
        "py",
        NoNotifyApp {
            version: "py",
            warmup_s: 0.0,
            never_up: false,
        },
    )
    .unwrap();
    let report = r#"{"domain":"shop.example","not_after":"2099-01-01T00:00:00Z","issuer":"Pebble Intermediate CA"}"#;
    let agent = TestAgent::start(
        BIN,
        AgentOptions {
            env: vec![("APP_CERT_REPORT".into(), report.into())],
            ..AgentOptions::default()
        },
    );
    configure(&agent, Some("/up"));
    let id = agent.receive(&py, "py");
    agent.activate(&id).unwrap();
    let st = agent.wait_for("the certificate report", Duration::from_secs(10), |s| {
        !s.certificates.is_empty()
    });
    assert_eq!(st.certificates[0].domain, "shop.example");
    assert_eq!(st.certificates[0].not_after, "2099-01-01T00:00:00Z");
    let out = agent.ctl(&["status"], None).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tls       shop.example expires 2099-01-01T00:00:00Z (in ")
            && text.contains("issuer Pebble Intermediate CA"),
        "{text}"
    );
}

#[test]
fn a_readiness_command_decides_when_the_new_process_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let app = |name: &str, never_up: bool| {
        no_notify_app(
            dir.path(),
            name,
            NoNotifyApp {
                version: name,
                warmup_s: 1.0,
                never_up,
            },
        )
        .unwrap()
    };
    let (py1, py2, stuck) = (app("py1", false), app("py2", false), app("stuck", true));
    let agent = TestAgent::start(BIN, AgentOptions::default());
    // The app marks itself warm with a file named for its pid, in its data directory.
    let out = agent
        .ctl(
            &[
                "configure",
                "--ready-timeout",
                "5s",
                "--drain-timeout",
                "3s",
                "--keep-releases",
                "5",
                "--ready-exec",
                "test -e warm-$BLARGH_READY_PID",
            ],
            None,
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = agent.activate(&agent.receive(&py1, "py1")).unwrap();
    assert!(
        a.ready_ms >= 1000,
        "ready before its warm-up ended: {} ms",
        a.ready_ms
    );
    // Under load, to the next one: the check is for the new pid, not the old one's file.
    let wrk = Wrk::start(&format!("http://127.0.0.1:{}/", agent.port()), 4, 1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let b = agent.activate(&agent.receive(&py2, "py2")).unwrap();
    assert!(
        b.ready_ms >= 1000,
        "ready on the old process's file: {} ms",
        b.ready_ms
    );
    let report = wrk.finish().unwrap();
    assert_eq!(report.failures(), 0, "{}", report.raw);
    assert!(
        http::get(agent.port(), "/")
            .unwrap()
            .body
            .starts_with("hello from py2 ")
    );
    // One that never marks itself warm is refused, naming the command; py2 serves on.
    let e = agent.activate(&agent.receive(&stuck, "stuck")).unwrap_err();
    assert!(e.message.contains("exiting 0"), "{}", e.message);
    assert!(
        http::get(agent.port(), "/")
            .unwrap()
            .body
            .starts_with("hello from py2 ")
    );
}
