//! Loads the realistic manifest in `tests/fixtures/shop.Cargo.toml` from disk, at the top
//! level and for each of its destinations, the way `cargo blargh deploy [-d NAME]` will.

use std::path::{Path, PathBuf};
use std::time::Duration;

use blargh_config::{AutoRollback, ErrorKind, load};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop.Cargo.toml")
}

#[test]
fn the_top_level_is_the_shared_configuration() {
    let c = load(&fixture(), None).unwrap();
    assert_eq!(c.file, fixture());
    assert_eq!(c.package, "shop");
    assert_eq!(c.app, "shop");
    assert_eq!(c.destinations, ["production", "staging"]);
    assert_eq!(c.hosts, ["deploy@203.0.113.10", "deploy@203.0.113.11:2222"]);
    assert_eq!(c.bin.as_deref(), Some("shop"));
    assert_eq!(c.target.as_deref(), Some("x86_64-unknown-linux-musl"));
    assert_eq!(c.listen_specs(), ["admin=127.0.0.1:9000", "web=0.0.0.0:80"]);
    assert_eq!(c.env.len(), 3);
    assert_eq!(c.env["SHOP_CURRENCY"], "EUR");
    assert_eq!(c.ready_timeout, Duration::from_secs(45));
    assert_eq!(c.drain_timeout, Duration::from_secs(20));
    assert_eq!(c.keep_releases, 8);
    assert_eq!(
        c.before_activate_argv("/var/lib/blargh/shop/releases/20261128T153210Z-0badcafe/shop")
            .unwrap(),
        [
            "/var/lib/blargh/shop/releases/20261128T153210Z-0badcafe/shop",
            "migrate",
            "--database-url-from-env"
        ]
    );
    assert_eq!(
        c.auto_rollback,
        Some(AutoRollback {
            window: Duration::from_secs(90),
            crashes: 2
        })
    );
    assert_eq!(c.lock_expiry, Duration::from_secs(20 * 60));
    assert!(!c.parallel);
    assert_eq!(c.known_hosts.len(), 2);
}

#[test]
fn staging_overrides_and_merges() {
    let c = load(&fixture(), Some("staging")).unwrap();
    assert_eq!(c.destination.as_deref(), Some("staging"));
    assert_eq!(c.app, "shop-staging");
    assert_eq!(c.hosts, ["deploy@staging.example.com"]);
    assert_eq!(
        c.listen_specs(),
        ["admin=127.0.0.1:9000", "web=0.0.0.0:8080"]
    );
    assert_eq!(c.env["RUST_LOG"], "debug");
    assert_eq!(c.env["SHOP_PUBLIC_URL"], "https://staging.shop.example.com");
    assert_eq!(c.env["SHOP_CURRENCY"], "EUR", "kept from the top level");
    assert_eq!(c.keep_releases, 3);
    assert_eq!(c.auto_rollback, None);
    assert!(
        c.known_hosts.is_empty(),
        "an empty list replaces the top level's"
    );
    assert_eq!(c.ready_timeout, Duration::from_secs(45), "inherited");
}

#[test]
fn production_inherits_what_it_does_not_set() {
    let c = load(&fixture(), Some("production")).unwrap();
    assert_eq!(c.app, "shop");
    assert_eq!(c.hosts.len(), 2);
    assert_eq!(c.env.len(), 4);
    assert_eq!(c.env["SHOP_ANALYTICS"], "on");
    assert_eq!(
        c.auto_rollback,
        Some(AutoRollback {
            window: Duration::from_secs(90),
            crashes: 1
        })
    );
}

#[test]
fn an_unknown_destination_lists_both() {
    let e = load(&fixture(), Some("prod")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownDestination);
    assert!(e.to_string().contains("production, staging"), "{e}");
    assert!(e.to_string().contains("did you mean `production`?"), "{e}");
}

#[test]
fn init_refuses_a_manifest_that_is_configured() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let e = blargh_config::add_skeleton(&text, &fixture()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SectionExists);
    assert_eq!(e.location().unwrap().line, 23);
}
