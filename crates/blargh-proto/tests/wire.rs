//! The wire format, pinned: every request and reply variant as it travels, compared byte
//! for byte with `tests/wire.snap.jsonl`, so any change to the protocol shows in review.
//! After a deliberate change (and a bump of `PROTOCOL_VERSION` when old peers would
//! misread it), regenerate with `BLARGH_UPDATE_SNAPSHOT=1 cargo test -p blargh-proto --test wire`.

use blargh_proto::ReleaseManifest;
use blargh_proto::control::*;
use blargh_proto::manifest::ReleaseMeta;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wire.snap.jsonl");

fn manifest() -> ReleaseManifest {
    ReleaseManifest {
        id: "20261128T153210.123Z-0badcafe".parse().unwrap(),
        version: Some("1.4.0".into()),
        git_sha: Some("0badcafe".into()),
        sha256: "ab".repeat(32),
        size: 4_200_000,
        built_at: None,
        deployed_at: "2026-11-28T15:32:10Z".into(),
        deployed_by: Some("ana@laptop via uid 1000 (deploy)".into()),
        message: Some("new checkout".into()),
        tree: None,
    }
}

fn settings() -> AgentSettings {
    AgentSettings {
        ready_timeout_ms: 60_000,
        drain_timeout_ms: 30_000,
        keep_releases: 5,
        watchdog_timeout_ms: 30_000,
        ready: Readiness::Notify,
        tls: None,
    }
}

fn activation() -> Activation {
    Activation {
        release: "20261128T153210.123Z-0badcafe".parse().unwrap(),
        previous: Some("20261127T101010.000Z-00c0ffee".parse().unwrap()),
        pid: 4242,
        ready_ms: 120,
        total_ms: 180,
    }
}

fn requests() -> Vec<Request> {
    vec![
        Request::Status,
        Request::Releases,
        Request::Receive {
            sha256: "ab".repeat(32),
            size: 1234,
            meta: ReleaseMeta {
                version: Some("1.4.0".into()),
                git_sha: None,
                built_at: None,
                deployed_by: Some("ana@laptop".into()),
                message: Some("new checkout".into()),
                tree: None,
            },
            encoding: Encoding::Frame,
        },
        Request::Activate {
            id: "20261128T153210.123Z-0badcafe".parse().unwrap(),
            by: Some("ana@laptop".into()),
            auto_rollback: Some(AutoRollback {
                window_s: 60,
                crashes: 3,
            }),
            message: Some("new checkout".into()),
        },
        Request::Rollback {
            id: None,
            by: Some("ana@laptop".into()),
        },
        Request::Logs {
            release: None,
            lines: 50,
        },
        Request::Audit { lines: 20 },
        Request::Lock(LockRequest::Acquire {
            holder: "ana@laptop".into(),
            message: "deploy".into(),
            ttl_s: 900,
            force: false,
        }),
        Request::Lock(LockRequest::Release {
            holder: "ana@laptop".into(),
            force: false,
        }),
        Request::Lock(LockRequest::Status),
        Request::EnvSet {
            key: "RUST_LOG".parse().unwrap(),
            value: "info".into(),
            by: None,
            restart: true,
        },
        Request::EnvUnset {
            key: "RUST_LOG".parse().unwrap(),
            by: None,
            restart: false,
        },
        Request::EnvList,
        Request::Exec {
            release: None,
            args: vec!["{bin}".into(), "migrate".into()],
            timeout_s: 300,
            by: None,
        },
        Request::Configure {
            settings: AgentSettings {
                ready: Readiness::Http("/up".into()),
                tls: Some(TlsSettings {
                    domains: vec!["shop.example".into(), "www.shop.example".into()],
                    contact: Some("ops@shop.example".into()),
                    directory: None,
                    ca_file: None,
                }),
                ..settings()
            },
            by: Some("ana@laptop".into()),
        },
        Request::Upgrade {
            by: Some("root".into()),
        },
    ]
}

fn replies() -> Vec<Reply> {
    vec![
        Reply::Status(AgentStatus {
            app: "shop".parse().unwrap(),
            agent_version: "0.1.0".into(),
            agent_pid: 100,
            state: AppState::Running,
            current: Some(manifest()),
            previous: Some("20261127T101010.000Z-00c0ffee".parse().unwrap()),
            pid: Some(4242),
            uptime_ms: Some(5000),
            restarts: 0,
            watchdog_restarts: 0,
            retry_every_ms: None,
            rss_bytes: Some(8_000_000),
            listeners: vec![ListenerInfo {
                name: "web".into(),
                address: "0.0.0.0:80".into(),
            }],
            settings: settings(),
            certificates: vec![CertStatus {
                domain: "shop.example".into(),
                not_after: "2027-03-01T00:00:00Z".into(),
                issuer: "(STAGING) Pebble Intermediate CA".into(),
            }],
        }),
        Reply::Releases {
            releases: vec![ReleaseEntry {
                manifest: manifest(),
                current: true,
                previous: false,
            }],
        },
        Reply::Received {
            release: manifest(),
            already_present: false,
        },
        Reply::Activated(activation()),
        Reply::Logs {
            lines: vec!["20261128T153210.123Z-0badcafe out listening".into()],
        },
        Reply::Audit {
            events: vec![AuditEvent {
                at: "2026-11-28T15:32:10Z".into(),
                event: "activate".into(),
                release: Some("20261128T153210.123Z-0badcafe".into()),
                previous: None,
                by: Some("ana@laptop via uid 1000 (deploy)".into()),
                detail: Some("pid 4242, ready in 120 ms".into()),
            }],
        },
        Reply::Lock {
            held: Some(LockInfo {
                holder: "ana@laptop".into(),
                message: "deploy".into(),
                since: "2026-11-28T15:32:10Z".into(),
                expires_unix: 1_795_000_000,
            }),
        },
        Reply::Env {
            names: vec!["RUST_LOG".parse().unwrap()],
            restarted: Some(activation()),
        },
        Reply::Configured {
            settings: settings(),
        },
        Reply::Exec {
            status: Some(0),
            stdout: "migrated\n".into(),
            stderr: String::new(),
        },
        Reply::Upgraded(Upgraded {
            from_version: "0.1.0".into(),
            to_version: "0.2.0".into(),
            agent_pid: 812,
            kept: Some(KeptProcess {
                release: "20261128T153210.123Z-0badcafe".parse().unwrap(),
                pid: 4242,
            }),
            took_ms: 35,
        }),
        Reply::Error(ControlError {
            message: "release r2 exited with status 3 before it was ready".into(),
            release_log: vec!["boom".into()],
        }),
    ]
}

/// Index of each variant, with no wildcard: a new variant does not compile until it is
/// placed here, and the test below then fails until it has a sample.
fn request_variant(r: &Request) -> usize {
    match r {
        Request::Status => 0,
        Request::Releases => 1,
        Request::Receive { .. } => 2,
        Request::Activate { .. } => 3,
        Request::Rollback { .. } => 4,
        Request::Logs { .. } => 5,
        Request::Audit { .. } => 6,
        Request::Lock(_) => 7,
        Request::EnvSet { .. } => 8,
        Request::EnvUnset { .. } => 9,
        Request::EnvList => 10,
        Request::Exec { .. } => 11,
        Request::Configure { .. } => 12,
        Request::Upgrade { .. } => 13,
    }
}
const REQUEST_VARIANTS: usize = 14;

fn reply_variant(r: &Reply) -> usize {
    match r {
        Reply::Status(_) => 0,
        Reply::Releases { .. } => 1,
        Reply::Received { .. } => 2,
        Reply::Activated(_) => 3,
        Reply::Logs { .. } => 4,
        Reply::Audit { .. } => 5,
        Reply::Lock { .. } => 6,
        Reply::Env { .. } => 7,
        Reply::Configured { .. } => 8,
        Reply::Exec { .. } => 9,
        Reply::Upgraded(_) => 10,
        Reply::Error(_) => 11,
    }
}
const REPLY_VARIANTS: usize = 12;

#[test]
fn every_variant_has_a_sample() {
    let mut seen: Vec<usize> = requests().iter().map(request_variant).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, (0..REQUEST_VARIANTS).collect::<Vec<_>>());
    let mut seen: Vec<usize> = replies().iter().map(reply_variant).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, (0..REPLY_VARIANTS).collect::<Vec<_>>());
}

#[test]
fn samples_round_trip() {
    for r in requests() {
        let back: Request = decode_line(encode_line(&r).trim_end()).unwrap();
        assert_eq!(back, r);
    }
    for r in replies() {
        let back: Reply = decode_line(encode_line(&r).trim_end()).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn wire_format_matches_the_snapshot() {
    let mut text = String::new();
    for r in requests() {
        text.push_str(&encode_line(&r));
    }
    for r in replies() {
        text.push_str(&encode_line(&r));
    }
    if std::env::var_os("BLARGH_UPDATE_SNAPSHOT").is_some() {
        std::fs::write(SNAPSHOT, &text).expect("write the snapshot");
        return;
    }
    let expected = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    if text != expected {
        let first = text
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(text.lines().count().min(expected.lines().count()));
        panic!(
            "the control protocol's wire format changed (first difference on line {}):\n  now:  {}\n  was:  {}\n\
             If this is deliberate, bump PROTOCOL_VERSION when old peers would misread it, and \
             regenerate with BLARGH_UPDATE_SNAPSHOT=1 cargo test -p blargh-proto --test wire",
            first + 1,
            text.lines().nth(first).unwrap_or("(nothing)"),
            expected.lines().nth(first).unwrap_or("(nothing)"),
        );
    }
}
