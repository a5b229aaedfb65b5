//! Property tests of the control protocol decoder: arbitrary bytes, arbitrary JSON and
//! mutated valid lines never panic it; every request and reply round-trips through its
//! line; `Request::check` refuses exactly the values beyond the bounds, naming the field.
//! Case count: `PROPTEST_CASES` (256 by default).

use blargh_proto::control::*;
use blargh_proto::manifest::ReleaseMeta;
use blargh_proto::{EnvKey, ReleaseId};
use proptest::prelude::*;

fn release_id() -> impl Strategy<Value = ReleaseId> {
    "[0-9A-Za-z][0-9A-Za-z_.-]{0,40}".prop_filter_map("a valid id", |s| s.parse().ok())
}

fn env_key() -> impl Strategy<Value = EnvKey> {
    "[A-Z][A-Z0-9_]{0,20}".prop_filter_map("a valid key", |s| s.parse().ok())
}

/// Any text, control characters and non-ASCII included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "\\PC{0,20}", Just(String::new())]
}

/// Numbers near the bounds, and the extremes.
fn number(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        0..=max,
        Just(max),
        Just(max + 1),
        Just(u64::MAX),
        any::<u64>()
    ]
}

fn meta() -> impl Strategy<Value = ReleaseMeta> {
    (
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(version, deployed_by, message)| ReleaseMeta {
            version,
            git_sha: None,
            built_at: None,
            deployed_by,
            message,
            tree: None,
        })
}

fn settings() -> impl Strategy<Value = AgentSettings> {
    (
        number(MAX_TIMEOUT_MS),
        number(MAX_TIMEOUT_MS),
        any::<u32>(),
        number(MAX_TIMEOUT_MS),
        prop_oneof![
            Just(Readiness::Notify),
            text().prop_map(Readiness::Http),
            "/[!-~]{0,30}".prop_map(Readiness::Http),
        ],
        proptest::option::of((
            proptest::collection::vec(text(), 0..3),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        )),
    )
        .prop_map(|(r, d, k, w, ready, tls)| AgentSettings {
            ready_timeout_ms: r,
            drain_timeout_ms: d,
            keep_releases: k,
            watchdog_timeout_ms: w,
            ready,
            tls: tls.map(|(domains, contact, directory, ca_file)| TlsSettings {
                domains,
                contact,
                directory,
                ca_file,
            }),
        })
}

fn request() -> impl Strategy<Value = Request> {
    let by = || proptest::option::of(text());
    prop_oneof![
        Just(Request::Status),
        Just(Request::Releases),
        Just(Request::EnvList),
        (
            "[0-9a-f]{64}",
            number(MAX_UPLOAD_BYTES),
            meta(),
            any::<bool>()
        )
            .prop_map(|(sha256, size, meta, frame)| Request::Receive {
                sha256,
                size,
                meta,
                encoding: if frame {
                    Encoding::Frame
                } else {
                    Encoding::Raw
                },
            }),
        (
            release_id(),
            by(),
            proptest::option::of((number(MAX_WINDOW_S), any::<u32>())),
            by()
        )
            .prop_map(|(id, by, ar, message)| Request::Activate {
                id,
                by,
                auto_rollback: ar.map(|(window_s, crashes)| AutoRollback { window_s, crashes }),
                message,
            }),
        (proptest::option::of(release_id()), by())
            .prop_map(|(id, by)| Request::Rollback { id, by }),
        (proptest::option::of(release_id()), any::<usize>())
            .prop_map(|(release, lines)| Request::Logs { release, lines }),
        any::<usize>().prop_map(|lines| Request::Audit { lines }),
        (text(), text(), number(MAX_LOCK_TTL_S), any::<bool>()).prop_map(
            |(holder, message, ttl_s, force)| Request::Lock(LockRequest::Acquire {
                holder,
                message,
                ttl_s,
                force,
            })
        ),
        (text(), any::<bool>())
            .prop_map(|(holder, force)| Request::Lock(LockRequest::Release { holder, force })),
        (env_key(), text(), by(), any::<bool>()).prop_map(|(key, value, by, restart)| {
            Request::EnvSet {
                key,
                value,
                by,
                restart,
            }
        }),
        (env_key(), by(), any::<bool>()).prop_map(|(key, by, restart)| Request::EnvUnset {
            key,
            by,
            restart
        }),
        (
            proptest::option::of(release_id()),
            proptest::collection::vec(text(), 0..4),
            number(MAX_EXEC_TIMEOUT_S),
            by()
        )
            .prop_map(|(release, args, timeout_s, by)| Request::Exec {
                release,
                args,
                timeout_s,
                by,
            }),
        (settings(), by()).prop_map(|(settings, by)| Request::Configure { settings, by }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (text(), proptest::collection::vec(text(), 0..3)).prop_map(|(message, release_log)| {
            Reply::Error(ControlError {
                message,
                release_log,
            })
        }),
        proptest::collection::vec(text(), 0..5).prop_map(|lines| Reply::Logs { lines }),
        (proptest::option::of(any::<i32>()), text(), text()).prop_map(
            |(status, stdout, stderr)| Reply::Exec {
                status,
                stdout,
                stderr,
            }
        ),
        proptest::option::of((text(), text(), text(), any::<u64>())).prop_map(|h| {
            Reply::Lock {
                held: h.map(|(holder, message, since, expires_unix)| LockInfo {
                    holder,
                    message,
                    since,
                    expires_unix,
                }),
            }
        }),
        settings().prop_map(|settings| Reply::Configured { settings }),
    ]
}

/// Arbitrary JSON, nested a few levels.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
        prop_oneof![
            Just("cmd"),
            Just("status"),
            Just("receive"),
            Just("activate"),
            Just("lock"),
            Just("acquire"),
            Just("exec"),
            Just("configure"),
            Just("error")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    text(),
                    Just("cmd".to_string()),
                    Just("v".to_string()),
                    Just("request".to_string()),
                    Just("reply".to_string()),
                    Just("size".to_string()),
                    Just("window_s".to_string()),
                    Just("auto_rollback".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The bound a request breaks, if any, by its own fields.
fn beyond_bounds(r: &Request) -> Option<&'static str> {
    match r {
        Request::Receive { size, .. } if *size > MAX_UPLOAD_BYTES => Some("size"),
        Request::Activate {
            auto_rollback: Some(ar),
            ..
        } if ar.window_s > MAX_WINDOW_S => Some("window_s"),
        Request::Lock(LockRequest::Acquire { ttl_s, .. }) if *ttl_s > MAX_LOCK_TTL_S => {
            Some("ttl_s")
        }
        Request::Exec { timeout_s, .. } if *timeout_s > MAX_EXEC_TIMEOUT_S => Some("timeout_s"),
        Request::Configure { settings, .. } if settings.check().is_err() => Some("_"),
        _ => None,
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let line = String::from_utf8_lossy(&bytes);
        if let Ok(r) = decode_line::<Request>(&line) {
            let _ = r.check();
        }
        let _ = decode_line::<Reply>(&line);
    }

    #[test]
    fn arbitrary_json_never_panics_the_decoder(value in json(), v in prop_oneof![Just(2u32), any::<u32>()]) {
        let request = serde_json::json!({"v": v, "request": value}).to_string();
        if let Ok(r) = decode_line::<Request>(&request) {
            let _ = r.check();
        }
        let mut reply = serde_json::json!({"v": v});
        if let (Some(o), serde_json::Value::Object(m)) = (reply.as_object_mut(), &value) {
            o.extend(m.clone());
        }
        let _ = decode_line::<Reply>(&reply.to_string());
        let _ = decode_line::<Request>(&value.to_string());
        let _ = decode_line::<Reply>(&value.to_string());
    }

    #[test]
    fn mutated_request_lines_never_panic_the_decoder(
        r in request(),
        at in any::<prop::sample::Index>(),
        with in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut bytes = encode_line(&r).trim_end().as_bytes().to_vec();
        let i = at.index(bytes.len());
        if cut { bytes.truncate(i) } else { bytes[i] = with }
        let line = String::from_utf8_lossy(&bytes);
        if let Ok(r) = decode_line::<Request>(&line) {
            let _ = r.check();
        }
    }

    #[test]
    fn requests_round_trip_and_the_bounds_are_checked(r in request()) {
        let line = encode_line(&r);
        prop_assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let back: Request = decode_line(line.trim_end()).unwrap();
        prop_assert_eq!(&back, &r);
        match (beyond_bounds(&r), r.check()) {
            (None, Ok(())) => {}
            (Some(field), Err(m)) => prop_assert!(
                field == "_" || m.contains(field),
                "{m:?} does not name {field}"
            ),
            (want, got) => prop_assert!(false, "{r:?}: expected {want:?}, check said {got:?}"),
        }
    }

    #[test]
    fn replies_round_trip(r in reply()) {
        let line = encode_line(&r);
        prop_assert!(!line.trim_end().contains('\n'));
        let back: Reply = decode_line(line.trim_end()).unwrap();
        prop_assert_eq!(back, r);
    }
}
