//! Property tests of the config parser: arbitrary text, and TOML-ish text built from the
//! real keys with odd values, never panic it, and every error it returns names a key or a
//! line (or, for a mistake about the whole file, says what is missing).
//! Case count: `PROPTEST_CASES` (256 by default).

use std::path::Path;

use blargh_config::{ErrorKind, KEYS, parse};
use proptest::prelude::*;

const SECTIONS: &[&str] = &[
    "[package]",
    "[package.metadata.blargh]",
    "[package.metadata.blargh.listen]",
    "[package.metadata.blargh.env]",
    "[package.metadata.blargh.auto_rollback]",
    "[package.metadata.blargh.destinations.staging]",
    "[package.metadata.blargh.destinations.staging.listen]",
    "[package.metadata.blargh.destinations.\"é x\"]",
    "[[bin]]",
    "[package.metadata]",
];

/// Keys the parser knows, and a few it does not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => proptest::sample::select(&["name", "window", "crashes", "web", "RUST_LOG", "hostz",
            "\"é\"", "\"\"", "a.b", "bin.name"][..]).prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
    ]
}

/// Values of every TOML type, including durations at the extremes and odd text.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        proptest::sample::select(
            &[
                "\"30s\"",
                "\"0s\"",
                "\"500000000y\"",
                "\"18446744073709551615s\"",
                "\"1h 30m\"",
                "\"soon\"",
                "30",
                "-1",
                "0",
                "9223372036854775807",
                "true",
                "\"true\"",
                "1.5",
                "\"deploy@203.0.113.10\"",
                "\"a@[::1]:22\"",
                "\"0.0.0.0:80\"",
                "\"{bin}\"",
                "\"{binary}\"",
                "\"${X}\"",
                "\"\"",
                "\"é\u{200b}\"",
                "\"x86_64-unknown-linux-musl\"",
                "\"shop\"",
                "\"Shop\"",
                "1979-05-27T07:32:00Z",
                "\"\\u0000\"",
            ][..]
        )
        .prop_map(str::to_string),
        "\"[^\"\\\\\\n]{0,12}\"",
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((key(), inner), 0..4).prop_map(|v| {
                let kv: Vec<String> = v.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    })
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => proptest::sample::select(SECTIONS).prop_map(str::to_string),
        6 => (key(), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "\\PC{0,20}",
        1 => Just(String::new()),
    ]
}

/// A file that starts like a real manifest, then arbitrary lines.
fn document() -> impl Strategy<Value = String> {
    (proptest::collection::vec(line(), 0..16), any::<bool>()).prop_map(|(lines, head)| {
        let mut text = String::new();
        if head {
            text.push_str("[package]\nname = \"shop\"\n\n[package.metadata.blargh]\n");
        }
        text.push_str(&lines.join("\n"));
        text
    })
}

fn assert_located(text: &str, destination: Option<&str>) -> Result<(), TestCaseError> {
    let Err(e) = parse(text, Path::new("Cargo.toml"), destination) else {
        return Ok(());
    };
    let shown = e.to_string();
    prop_assert!(shown.starts_with("Cargo.toml"), "{shown}");
    let whole_file = matches!(
        e.kind(),
        ErrorKind::NoPackage | ErrorKind::NoSection | ErrorKind::UnknownDestination
    );
    prop_assert!(
        whole_file || e.location().is_some() || e.key_path().is_some(),
        "{:?} names neither a key nor a line: {shown}\n--- text:\n{text}",
        e.kind()
    );
    if let Some(at) = e.location() {
        prop_assert!(
            at.line >= 1 && at.line <= text.lines().count().max(1) + 1,
            "{shown}"
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}|[\\[\\]a-z._=\" \\n{},0-9]{0,300}") {
        assert_located(&text, None)?;
    }

    #[test]
    fn toml_ish_text_never_panics_and_errors_are_located(
        text in document(),
        dest in proptest::option::of(prop_oneof![Just("staging"), Just("é x"), Just("nope")]),
    ) {
        assert_located(&text, dest)?;
    }
}

/// Durations at the edge of what humantime reads: refused with the key named, never a panic
/// (`ready_timeout + drain_timeout` once overflowed).
#[test]
fn huge_durations_are_refused_naming_the_key() {
    for (key, value) in [
        ("ready_timeout", "500000000y"),
        ("drain_timeout", "500000000y"),
        ("ready_timeout", "2h"),
        ("lock_expiry", "500000000y"),
        ("auto_rollback", "{ window = \"500000000y\", crashes = 3 }"),
        ("auto_rollback", "{ window = \"2days\", crashes = 3 }"),
    ] {
        let both = "ready_timeout = \"500000000y\"\ndrain_timeout = \"500000000y\"\n".to_string();
        let with_both = if key.ends_with("_timeout") {
            ""
        } else {
            both.as_str()
        };
        for extra in ["", with_both] {
            let v = if value.starts_with('{') {
                value.to_string()
            } else {
                format!("\"{value}\"")
            };
            let text = format!(
                "[package]\nname = \"shop\"\n\n[package.metadata.blargh]\nhosts = [\"a@b\"]\n\
                 {key} = {v}\n{extra}"
            );
            let e = parse(&text, Path::new("Cargo.toml"), None)
                .expect_err(&format!("{key} = {v} was accepted"));
            assert!(e.key_path().is_some() && e.location().is_some(), "{e}");
            assert!(e.to_string().contains("at most"), "{e}");
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
