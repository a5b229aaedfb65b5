//! What the agent assumes when a client leaves out an optional field of a request.

use blargh_proto::control::{Encoding, LockRequest, Request};

fn parse(line: &str) -> Request {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn env_set_without_restart_restarts() {
    assert_eq!(
        parse(r#"{"cmd":"env_set","key":"RUST_LOG","value":"debug"}"#),
        Request::EnvSet {
            key: "RUST_LOG".parse().unwrap(),
            value: "debug".into(),
            by: None,
            restart: true,
        }
    );
    // An explicit false is kept.
    assert_eq!(
        parse(r#"{"cmd":"env_set","key":"K","value":"v","restart":false}"#),
        Request::EnvSet {
            key: "K".parse().unwrap(),
            value: "v".into(),
            by: None,
            restart: false,
        }
    );
}

#[test]
fn env_unset_without_restart_restarts() {
    assert_eq!(
        parse(r#"{"cmd":"env_unset","key":"RUST_LOG"}"#),
        Request::EnvUnset {
            key: "RUST_LOG".parse().unwrap(),
            by: None,
            restart: true,
        }
    );
}

#[test]
fn receive_without_encoding_is_raw() {
    let sha = "ab".repeat(32);
    let Request::Receive { encoding, meta, .. } =
        parse(&format!(r#"{{"cmd":"receive","sha256":"{sha}","size":3}}"#))
    else {
        panic!("not a receive");
    };
    assert_eq!(encoding, Encoding::Raw);
    assert_eq!(meta, Default::default());
}

#[test]
fn lock_requests_are_not_forced_unless_asked() {
    assert_eq!(
        parse(r#"{"cmd":"lock","action":"release","holder":"ana@laptop"}"#),
        Request::Lock(LockRequest::Release {
            holder: "ana@laptop".into(),
            force: false,
        })
    );
}
