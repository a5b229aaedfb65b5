//! Tests of the whole parse: every key's default, every kind of error message (each must
//! name the key's full path, the line and the fix), destinations and merging, and the
//! skeleton round trip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::*;

const HEAD: &str = "[package]\nname = \"Shop\"\nversion = \"0.1.0\"\n\n[package.metadata.blargh]\n";

/// Parses `HEAD` followed by `section`.
fn try_parse(section: &str, destination: Option<&str>) -> Result<DeployConfig, ConfigError> {
    parse(
        &format!("{HEAD}{section}"),
        Path::new("Cargo.toml"),
        destination,
    )
}

fn ok(section: &str) -> DeployConfig {
    try_parse(section, None).unwrap_or_else(|e| panic!("{e}"))
}

fn err(section: &str) -> ConfigError {
    err_for(section, None)
}

fn err_for(section: &str, destination: Option<&str>) -> ConfigError {
    match try_parse(section, destination) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

/// Asserts `e` is of `kind`, on `line` (of the whole file, HEAD is 5 lines), and that its
/// text contains every one of `parts`.
#[track_caller]
fn assert_error(e: &ConfigError, kind: ErrorKind, line: usize, parts: &[&str]) {
    let text = e.to_string();
    assert_eq!(e.kind(), kind, "{text}");
    assert_eq!(e.location().map(|l| l.line), Some(line), "{text}");
    assert!(text.starts_with(&format!("Cargo.toml:{line}:")), "{text}");
    for part in parts {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

#[test]
fn every_key_has_its_default() {
    let c = ok("hosts = [\"deploy@203.0.113.10\"]\n");
    assert_eq!(c.hosts, ["deploy@203.0.113.10"]);
    assert_eq!(c.package, "Shop");
    assert_eq!(c.app, "shop", "the package name, lower-cased");
    assert_eq!(c.bin, None);
    assert_eq!(c.target, None);
    let web: SocketAddr = "0.0.0.0:80".parse().unwrap();
    assert_eq!(c.listen, BTreeMap::from([("web".parse().unwrap(), web)]));
    assert_eq!(c.listen_specs(), ["web=0.0.0.0:80"]);
    assert!(c.env.is_empty());
    assert_eq!(c.ready_timeout, Duration::from_secs(60));
    assert_eq!(c.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.keep_releases, 5);
    assert_eq!(c.watchdog_timeout, Some(Duration::from_secs(30)));
    assert_eq!(c.before_activate, None);
    assert_eq!(c.before_activate_argv("/x"), None);
    assert_eq!(
        c.auto_rollback,
        Some(AutoRollback {
            window: Duration::from_secs(60),
            crashes: 3
        })
    );
    assert_eq!(c.lock_expiry, Duration::from_secs(15 * 60));
    assert!(!c.parallel);
    assert!(c.known_hosts.is_empty());
    assert_eq!(c.destination, None);
    assert!(c.destinations.is_empty());
    assert_eq!(c.file, Path::new("Cargo.toml"));
}

#[test]
fn every_key_can_be_set() {
    let c = ok(
        r#"hosts = ["deploy@a.example.com", "deploy@b.example.com:2222", "web-3"]
app = "shop-eu"
bin = "shop-server"
target = "x86_64-unknown-linux-musl"
listen = { web = "0.0.0.0:8080", admin = "127.0.0.1:9000" }
env = { RUST_LOG = "info,shop=debug", DATABASE_URL = "postgres:///shop" }
ready_timeout = "2m"
drain_timeout = "500ms"
keep_releases = 10
watchdog_timeout = "5s"
before_activate = ["{bin}", "migrate", "--to=latest"]
auto_rollback = { window = "5m", crashes = 1 }
lock_expiry = "1h"
parallel = true
known_hosts = ["a.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"]
"#,
    );
    assert_eq!(c.hosts.len(), 3);
    assert_eq!(c.app, "shop-eu");
    assert_eq!(c.bin.as_deref(), Some("shop-server"));
    assert_eq!(c.target.as_deref(), Some("x86_64-unknown-linux-musl"));
    assert_eq!(
        c.listen_specs(),
        ["admin=127.0.0.1:9000", "web=0.0.0.0:8080"]
    );
    assert_eq!(c.env["RUST_LOG"], "info,shop=debug");
    assert_eq!(c.ready_timeout, Duration::from_secs(120));
    assert_eq!(c.drain_timeout, Duration::from_millis(500));
    assert_eq!(c.keep_releases, 10);
    assert_eq!(c.watchdog_timeout, Some(Duration::from_secs(5)));
    assert_eq!(
        c.before_activate_argv("/var/lib/blargh/shop/releases/1/app")
            .unwrap(),
        [
            "/var/lib/blargh/shop/releases/1/app",
            "migrate",
            "--to=latest"
        ]
    );
    let rollback = c.auto_rollback.unwrap();
    assert_eq!(
        (rollback.window, rollback.crashes),
        (Duration::from_secs(300), 1)
    );
    assert_eq!(c.lock_expiry, Duration::from_secs(3600));
    assert!(c.parallel);
    assert_eq!(c.known_hosts.len(), 1);
}

#[test]
fn small_forms_auto_rollback_empty_lists_and_tables() {
    let c = ok("hosts = [\"h\"]\nauto_rollback = false\n");
    assert_eq!(c.auto_rollback, None);
    let c = ok("hosts = [\"h\"]\nauto_rollback = true\n");
    assert_eq!(c.auto_rollback, Some(DEFAULT_AUTO_ROLLBACK));
    let c = ok("hosts = [\"h\"]\nauto_rollback = { crashes = 5 }\n");
    assert_eq!(c.auto_rollback.unwrap().crashes, 5);
    assert_eq!(c.auto_rollback.unwrap().window, Duration::from_secs(60));
    let c = ok("hosts = [\"h\"]\nbefore_activate = []\nlisten = {}\n");
    assert_eq!(c.before_activate, None);
    assert!(c.listen.is_empty(), "an app may serve no socket");
    // Sub-tables written as sections.
    let c = ok(
        "hosts = [\"h\"]\n[package.metadata.blargh.env]\nA = \"1\"\n\
                [package.metadata.blargh.listen]\nweb = \"[::]:443\"\n",
    );
    assert_eq!(c.env["A"], "1");
    assert_eq!(c.listen["web"], "[::]:443".parse::<SocketAddr>().unwrap());
}

#[test]
fn unknown_keys_name_the_path_and_the_nearest_key() {
    let e = err("hostz = [\"h\"]\n");
    assert_error(
        &e,
        ErrorKind::UnknownKey,
        6,
        &[
            "unknown key `package.metadata.blargh.hostz`",
            "did you mean `hosts`?",
        ],
    );
    assert_eq!(e.key_path(), Some("package.metadata.blargh.hostz"));

    let e =
        err("hosts = [\"h\"]\n\n[package.metadata.blargh.destinations.staging]\nhostz = [\"s\"]\n");
    assert_error(
        &e,
        ErrorKind::UnknownKey,
        9,
        &[
            "`package.metadata.blargh.destinations.staging.hostz`",
            "did you mean `hosts`?",
        ],
    );

    let e = err("hosts = [\"h\"]\ndrain-timeout = \"3s\"\n");
    assert_error(
        &e,
        ErrorKind::UnknownKey,
        7,
        &["did you mean `drain_timeout`?"],
    );
    let e = err("hosts = [\"h\"]\nservers = [\"x\"]\n");
    assert_error(&e, ErrorKind::UnknownKey, 7, &["did you mean `hosts`?"]);
    let e = err("hosts = [\"h\"]\ncolour = \"blue\"\n");
    assert_error(
        &e,
        ErrorKind::UnknownKey,
        7,
        &["the keys here are hosts, app, bin"],
    );
    let e = err("hosts = [\"h\"]\nauto_rollback = { window = \"1m\", crash = 2 }\n");
    assert_error(
        &e,
        ErrorKind::UnknownKey,
        7,
        &[
            "`package.metadata.blargh.auto_rollback.crash`",
            "did you mean `crashes`?",
        ],
    );
    let e = err("[package.metadata.blargh.destinations.a]\ndestinations = {}\n");
    assert_error(&e, ErrorKind::UnknownKey, 7, &["destinations do not nest"]);
}

#[test]
fn durations_say_what_they_found_and_how_to_write_one() {
    let e = err("hosts = [\"h\"]\ndrain_timeout = \"thirty seconds\"\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        7,
        &[
            "package.metadata.blargh.drain_timeout = \"thirty seconds\": not a duration",
            "write it like \"30s\", \"500ms\" or \"2m\"",
        ],
    );
    assert_eq!(e.key_path(), Some("package.metadata.blargh.drain_timeout"));
    let e = err("hosts = [\"h\"]\nready_timeout = 30\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        7,
        &[
            "ready_timeout = 30: a duration is a string with a unit",
            "ready_timeout = \"30s\"",
        ],
    );
    let e = err("hosts = [\"h\"]\nlock_expiry = \"20\"\n");
    assert_error(&e, ErrorKind::InvalidValue, 7, &["needs a unit", "\"20s\""]);
    let e = err("hosts = [\"h\"]\nready_timeout = \"0s\"\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        7,
        &["must be longer than zero"],
    );
    let e = err("hosts = [\"h\"]\nauto_rollback = { window = true }\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        7,
        &[
            "package.metadata.blargh.auto_rollback.window = true",
            "expected a duration",
        ],
    );
}

#[test]
fn lock_expiry_must_outlive_an_activation() {
    let e = err("hosts = [\"h\"]\nlock_expiry = \"1m\"\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        7,
        &[
            "package.metadata.blargh.lock_expiry = \"1m\": too short",
            "ready_timeout + drain_timeout = 1m 30s",
            "lock_expiry = \"3m\"",
        ],
    );
    let e = err("hosts = [\"h\"]\nready_timeout = \"20m\"\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        5,
        &["lock_expiry (default 15m): too short"],
    );
}

#[test]
fn hosts_are_required_and_checked() {
    let e = err("app = \"shop\"\n");
    assert_error(
        &e,
        ErrorKind::MissingHosts,
        5,
        &[
            "no hosts to deploy to",
            "add hosts = [\"deploy@203.0.113.10\"]",
            "[package.metadata.blargh]",
        ],
    );
    assert_eq!(e.key_path(), Some("package.metadata.blargh.hosts"));
    let e = err("hosts = []\n");
    assert_error(&e, ErrorKind::MissingHosts, 6, &["no hosts to deploy to"]);
    let e = err("hosts = \"deploy@h\"\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        6,
        &[
            "hosts = \"deploy@h\": expected a list, found a string",
            "hosts = [\"deploy@h\"]",
        ],
    );
    let e = err("hosts = [\"ok@h\", \"-oProxyCommand=evil\"]\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        6,
        &[
            "package.metadata.blargh.hosts[1] = \"-oProxyCommand=evil\"",
            "cannot start with '-'",
        ],
    );
    let e = err("hosts = [\"h:99999\"]\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        6,
        &["not a port", "user@host:port"],
    );
    let e = err("hosts = [\"a\", \"a\"]\n");
    assert_error(&e, ErrorKind::InvalidValue, 6, &["\"a\" is listed twice"]);
    let e = err("hosts = [\"a\", 2]\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        6,
        &["hosts[1] = 2: expected a string, found a number"],
    );
}

#[test]
fn app_names_are_checked_and_defaulted() {
    let e = err("hosts = [\"h\"]\napp = \"My Shop\"\n");
    assert_error(
        &e,
        ErrorKind::InvalidValue,
        7,
        &[
            "app = \"My Shop\": not a valid app name",
            "app = \"my-shop\"",
        ],
    );
    let text = "[package]\nname = \"a_really_long_package_name_x\"\n[package.metadata.blargh]\nhosts = [\"h\"]\n";
    let e = parse(text, Path::new("Cargo.toml"), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidValue);
    assert!(
        e.to_string()
            .contains("package name `a_really_long_package_name_x` cannot be an app name"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("add app = \"a_really_long_package_na\""),
        "{e}"
    );
}

#[test]
fn other_values_name_the_key_found_and_expected() {
    let cases: &[(&str, &[&str])] = &[
        (
            "bin = 3",
            &[
                "package.metadata.blargh.bin = 3: expected a string, found a number",
                "bin = \"shop\"",
            ],
        ),
        ("bin = \"a/b\"", &["not a binary target name"]),
        (
            "target = \"musl\"",
            &[
                "target = \"musl\": not a target triple",
                "x86_64-unknown-linux-musl",
            ],
        ),
        (
            "keep_releases = 1",
            &["keep_releases = 1: must be at least 2", "keep_releases = 5"],
        ),
        (
            "keep_releases = \"5\"",
            &["expected a whole number, found a string"],
        ),
        ("keep_releases = 99999999999", &["too large"]),
        (
            "parallel = \"true\"",
            &[
                "parallel = \"true\": expected true or false",
                "without quotes: parallel = true",
            ],
        ),
        ("parallel = 1", &["expected true or false, found a number"]),
        (
            "listen = \"0.0.0.0:80\"",
            &[
                "listen = \"0.0.0.0:80\": expected a table",
                "listen = { web = \"0.0.0.0:80\" }",
            ],
        ),
        (
            "listen = { web = \"localhost:80\" }",
            &[
                "package.metadata.blargh.listen.web = \"localhost:80\": not an IP address and port",
                "\"0.0.0.0:80\"",
            ],
        ),
        ("listen = { web = \"0.0.0.0:0\" }", &["port 0"]),
        (
            "listen = { Web = \"0.0.0.0:80\" }",
            &["package.metadata.blargh.listen.Web: not a valid socket name"],
        ),
        (
            "listen = { web = \"0.0.0.0:80\", api = \"0.0.0.0:80\" }",
            &["the same address as socket `api`"],
        ),
        (
            "env = { rust_log = \"info\" }",
            &[
                "package.metadata.blargh.env.rust_log: not a valid environment variable name",
                "write RUST_LOG",
            ],
        ),
        (
            "env = { PORT = 8080 }",
            &["env.PORT = 8080: values are strings", "PORT = \"8080\""],
        ),
        (
            "env = { LISTEN_FDS = \"3\" }",
            &["env.LISTEN_FDS: set by the agent", "`listen`"],
        ),
        ("env = { NOTIFY_SOCKET = \"x\" }", &["set by the agent"]),
        (
            "env = { BLARGH_APP = \"x\" }",
            &["env.BLARGH_APP: names starting with BLARGH_"],
        ),
        ("env = { A = \"x\\ny\" }", &["line breaks"]),
        (
            "before_activate = \"{bin} migrate\"",
            &[
                "before_activate = \"{bin} migrate\": expected a list of arguments",
                "before_activate = [\"{bin}\", \"migrate\"]",
            ],
        ),
        (
            "before_activate = [\"{binary}\", \"migrate\"]",
            &[
                "before_activate[0] = \"{binary}\": {binary} is not a placeholder",
                "only {bin}",
            ],
        ),
        ("before_activate = [\"\"]", &["the program to run is empty"]),
        (
            "before_activate = [\"migrate\", \"--yes\"]",
            &[
                "before_activate = [\"migrate\", \"--yes\"]: does not run the new release",
                "before_activate = [\"{bin}\", \"migrate\", \"--yes\"]",
            ],
        ),
        (
            "auto_rollback = \"off\"",
            &[
                "auto_rollback = \"off\": expected a table or false",
                "false to turn it off",
            ],
        ),
        (
            "auto_rollback = { crashes = 0 }",
            &["auto_rollback.crashes = 0: must be at least 1"],
        ),
        (
            "known_hosts = [\"SHA256:abc\"]",
            &[
                "known_hosts[0] = \"SHA256:abc\": not a known_hosts line",
                "ssh-keyscan",
            ],
        ),
        (
            "destinations = 3",
            &[
                "destinations = 3: expected tables",
                "[package.metadata.blargh.destinations.staging]",
            ],
        ),
        (
            "destinations = { staging = 1 }",
            &["destinations.staging = 1: expected a table"],
        ),
        (
            "destinations = { \"st ag\" = {} }",
            &["destinations.\"st ag\": not a valid destination name"],
        ),
    ];
    for (line, parts) in cases {
        let e = err(&format!("hosts = [\"h\"]\n{line}\n"));
        assert_error(&e, ErrorKind::InvalidValue, 7, parts);
    }
}

#[test]
fn long_values_are_shortened_in_messages() {
    let long = "x".repeat(200);
    let e = err(&format!("hosts = [\"h\"]\ntarget = \"{long}\"\n"));
    assert!(e.message().contains("xxx...: not a target triple"), "{e}");
    assert!(e.message().len() < 300);
}

#[test]
fn files_without_the_section_or_package_say_what_to_do() {
    let e = parse(
        "[package]\nname = \"shop\"\n",
        Path::new("app/Cargo.toml"),
        None,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSection);
    assert_eq!(
        e.to_string(),
        "app/Cargo.toml: no [package.metadata.blargh] section: run `cargo blargh init` to add \
         one, then set `hosts`"
    );
    let e = parse(
        "[workspace]\nmembers = [\"a\"]\n",
        Path::new("Cargo.toml"),
        None,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoPackage);
    assert!(e.to_string().contains("no [package]"), "{e}");
    let e = parse(
        "[package]\nname = \"shop\"\n[package.metadata]\nblargh = 1\n",
        Path::new("Cargo.toml"),
        None,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidValue);
    assert!(
        e.to_string()
            .contains("package.metadata.blargh = 1: expected a table"),
        "{e}"
    );
    let e = parse(
        "[package]\nname = \"shop\"\nversion = \n",
        Path::new("Cargo.toml"),
        None,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Syntax);
    assert_eq!(e.location().unwrap().line, 3);
    assert!(
        e.to_string()
            .starts_with("Cargo.toml:3:11: not valid TOML:"),
        "{e}"
    );
}

const STAGES: &str = r#"hosts = ["deploy@prod-1.example.com", "deploy@prod-2.example.com"]
env = { RUST_LOG = "info", REGION = "eu" }
listen = { web = "0.0.0.0:80", admin = "127.0.0.1:9000" }
auto_rollback = { window = "2m", crashes = 2 }
before_activate = ["{bin}", "migrate"]
parallel = true

[package.metadata.blargh.destinations.staging]
hosts = ["deploy@staging.example.com"]
env = { RUST_LOG = "debug" }
listen = { web = "0.0.0.0:8080" }
auto_rollback = { crashes = 5 }
before_activate = []
parallel = false

[package.metadata.blargh.destinations.production]
keep_releases = 10
"#;

#[test]
fn a_destination_overrides_the_top_level_tables_merging_key_by_key() {
    let top = ok(STAGES);
    assert_eq!(top.destinations, ["production", "staging"]);
    assert_eq!(top.destination, None);
    assert_eq!(top.hosts.len(), 2);

    let s = try_parse(STAGES, Some("staging")).unwrap();
    assert_eq!(s.destination.as_deref(), Some("staging"));
    assert_eq!(s.hosts, ["deploy@staging.example.com"], "lists replace");
    assert_eq!(s.env["RUST_LOG"], "debug", "env merges key by key");
    assert_eq!(s.env["REGION"], "eu");
    assert_eq!(
        s.listen_specs(),
        ["admin=127.0.0.1:9000", "web=0.0.0.0:8080"]
    );
    let rollback = s.auto_rollback.unwrap();
    assert_eq!(
        (rollback.window, rollback.crashes),
        (Duration::from_secs(120), 5)
    );
    assert_eq!(
        s.before_activate, None,
        "[] turns the top level's command off"
    );
    assert!(!s.parallel);

    let p = try_parse(STAGES, Some("production")).unwrap();
    assert_eq!(p.hosts, top.hosts, "unset keys come from the top level");
    assert_eq!(p.keep_releases, 10);
    assert_eq!(p.before_activate.as_deref().unwrap(), ["{bin}", "migrate"]);
    assert!(p.parallel);

    // `false` in a destination replaces a table, and a table replaces `false`.
    let off = format!("{STAGES}auto_rollback = false\n");
    assert_eq!(
        try_parse(&off, Some("production")).unwrap().auto_rollback,
        None
    );
    let on = "hosts = [\"h\"]\nauto_rollback = false\n[package.metadata.blargh.destinations.s]\n\
              auto_rollback = { crashes = 4 }\n";
    let on = try_parse(on, Some("s")).unwrap().auto_rollback.unwrap();
    assert_eq!((on.window, on.crashes), (Duration::from_secs(60), 4));
}

#[test]
fn destinations_need_hosts_from_somewhere() {
    let only_stages = "[package.metadata.blargh.destinations.staging]\nhosts = [\"s\"]\n\
                       [package.metadata.blargh.destinations.production]\napp = \"shop\"\n";
    assert_eq!(
        try_parse(only_stages, Some("staging")).unwrap().hosts,
        ["s"]
    );
    let e = err_for(only_stages, Some("production"));
    assert_error(
        &e,
        ErrorKind::MissingHosts,
        8,
        &[
            "no hosts for destination `production`",
            "to [package.metadata.blargh.destinations.production]",
            "or to [package.metadata.blargh] to share them",
        ],
    );
    assert_eq!(
        e.key_path(),
        Some("package.metadata.blargh.destinations.production.hosts")
    );
    let e = err_for(only_stages, None);
    assert_error(
        &e,
        ErrorKind::MissingHosts,
        5,
        &[
            "no hosts in [package.metadata.blargh]",
            "choose a destination with -d (production, staging)",
        ],
    );
}

#[test]
fn unknown_destinations_list_the_configured_ones() {
    let e = err_for(STAGES, Some("prod"));
    assert_eq!(e.kind(), ErrorKind::UnknownDestination);
    assert_eq!(
        e.to_string(),
        "Cargo.toml: no destination `prod`: the configured ones are production, staging (did you \
         mean `production`?); to add it, write [package.metadata.blargh.destinations.prod]"
    );
    let e = err_for(STAGES, Some("stagign"));
    assert!(e.to_string().contains("did you mean `staging`?"), "{e}");
    let e = err_for("hosts = [\"h\"]\n", Some("staging"));
    assert!(
        e.to_string()
            .contains("none is configured; add [package.metadata.blargh.destinations.staging]"),
        "{e}"
    );
}

#[test]
fn every_destination_is_checked_whichever_is_chosen() {
    let text = format!("{STAGES}drain_timeout = \"forever\"\n");
    for d in [None, Some("staging"), Some("production")] {
        let e = err_for(&text, d);
        assert_error(
            &e,
            ErrorKind::InvalidValue,
            23,
            &["package.metadata.blargh.destinations.production.drain_timeout = \"forever\""],
        );
    }
}

#[test]
fn mistakes_across_keys_in_any_destination_fail_every_deploy() {
    let text = format!("{STAGES}lock_expiry = \"1m\"\n");
    for d in [None, Some("staging")] {
        let e = err_for(&text, d);
        assert_error(
            &e,
            ErrorKind::InvalidValue,
            23,
            &["package.metadata.blargh.destinations.production.lock_expiry = \"1m\": too short"],
        );
    }
}

#[test]
fn dotted_keys_and_inline_sections_work_too() {
    let text = "[package]\nname = \"shop\"\nmetadata.blargh.hosts = [\"h\"]\nmetadata.blargh.env.A = \"b\"\n";
    let c = parse(text, Path::new("Cargo.toml"), None).unwrap();
    assert_eq!(c.hosts, ["h"]);
    assert_eq!(c.env["A"], "b");
    let text =
        "[package]\nname = \"shop\"\n[package.metadata]\nblargh = { hosts = [\"h\"], hostz = 1 }\n";
    let e = parse(text, Path::new("Cargo.toml"), None).unwrap_err();
    assert_eq!(
        e.location().unwrap(),
        Location {
            line: 4,
            column: 27
        }
    );
}

/// The skeleton with `hosts` filled in, appended to a Cargo.toml.
fn filled_skeleton(package: &str) -> String {
    let base = format!(
        "[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n"
    );
    add_skeleton(&base, Path::new("Cargo.toml"))
        .unwrap()
        .replace("\nhosts = []", "\nhosts = [\"deploy@203.0.113.10\"]")
}

#[test]
fn the_skeleton_parses_once_hosts_is_filled_in_and_shows_the_defaults() {
    let text = filled_skeleton("Shop");
    let plain = parse(&text, Path::new("Cargo.toml"), None).unwrap();
    assert_eq!(plain.app, "shop");

    // Uncommenting every `# key = value` line of the main section changes nothing but
    // `bin` and `target`, which have no value to show for their default.
    let (main, stages) = text.split_at(
        text.find("# [package.metadata.blargh.destinations")
            .unwrap(),
    );
    let mut shown = Vec::new();
    let uncommented: String = main
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if KEYS.iter().any(|k| rest.starts_with(&format!("{k} = "))) => {
                shown.push(rest.split(' ').next().unwrap().to_string());
                format!("{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let expected: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| !matches!(*k, "hosts" | "destinations"))
        .collect();
    assert_eq!(
        shown, expected,
        "every key but hosts is shown, in KEYS order"
    );
    let full = parse(
        &format!("{uncommented}{stages}"),
        Path::new("Cargo.toml"),
        None,
    )
    .unwrap();
    assert_eq!(full.bin.as_deref(), Some("Shop"));
    assert_eq!(full.target.as_deref(), Some("x86_64-unknown-linux-musl"));
    // release_dir and start are shown with an example (the default is the built binary).
    assert_eq!(
        full.release,
        ReleaseContent::Dir {
            dir: "_build/prod/rel/shop".into(),
            start: vec!["bin/shop".into(), "start".into()]
        }
    );
    // tls is shown with an example (there is no default domain).
    assert_eq!(full.tls.as_ref().unwrap().domains, ["shop.example"]);
    assert_eq!(
        DeployConfig {
            bin: None,
            target: None,
            tls: None,
            release: plain.release.clone(),
            ..full
        },
        plain
    );

    // And the destinations example, uncommented, is a valid destination.
    let with_stage = text
        .replace("# [package", "[package")
        .replace("# hosts = [\"deploy@staging", "hosts = [\"deploy@staging")
        .replace(
            "# env = { RUST_LOG = \"debug\" }",
            "env = { RUST_LOG = \"debug\" }",
        );
    let staging = parse(&with_stage, Path::new("Cargo.toml"), Some("staging")).unwrap();
    assert_eq!(staging.hosts, ["deploy@staging.example.com"]);
}

#[test]
fn the_skeleton_without_hosts_says_to_add_them() {
    let base = "[package]\nname = \"shop\"\n";
    let text = add_skeleton(base, Path::new("Cargo.toml")).unwrap();
    let e = parse(&text, Path::new("Cargo.toml"), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingHosts);
    assert!(
        e.message()
            .contains("add hosts = [\"deploy@203.0.113.10\"]"),
        "{e}"
    );
}

#[test]
fn the_skeleton_sets_app_when_the_package_name_cannot_be_one() {
    let text = filled_skeleton("9lives_and_a_very_long_name");
    assert!(
        text.contains("\napp = \"app-9lives_and_a_very_lo\"\n"),
        "{text}"
    );
    let c = parse(&text, Path::new("Cargo.toml"), None).unwrap();
    assert_eq!(c.app, "app-9lives_and_a_very_lo");
}

#[test]
fn add_skeleton_appends_once() {
    let base = "[package]\nname = \"shop\"";
    let text = add_skeleton(base, Path::new("Cargo.toml")).unwrap();
    assert!(
        text.starts_with("[package]\nname = \"shop\"\n\n# How `cargo blargh deploy`"),
        "{text}"
    );
    assert!(text.ends_with('\n'));
    let e = add_skeleton(&text, Path::new("Cargo.toml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SectionExists);
    assert!(
        e.to_string()
            .starts_with("Cargo.toml:5:19: [package.metadata.blargh] is already here: edit it"),
        "{e}"
    );
    let e = add_skeleton("[workspace]\n", Path::new("Cargo.toml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoPackage);
    let inline = "[package]\nname = \"shop\"\nmetadata = { docs = 1 }\n";
    let e = add_skeleton(inline, Path::new("Cargo.toml")).unwrap_err();
    assert!(e.to_string().contains("inline table"), "{e}");
    let e = add_skeleton("[package\n", Path::new("Cargo.toml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Syntax);
}

#[test]
fn load_reads_a_file_or_a_directory_and_names_missing_ones() {
    let dir = std::env::temp_dir().join(format!("blargh-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Cargo.toml"), format!("{HEAD}hosts = [\"h\"]\n")).unwrap();
    assert_eq!(load(&dir, None).unwrap().file, dir.join("Cargo.toml"));
    assert_eq!(load(&dir.join("Cargo.toml"), None).unwrap().hosts, ["h"]);
    std::fs::remove_dir_all(&dir).unwrap();
    let e = load(&dir, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("cannot read it"), "{e}");
    assert!(e.to_string().contains("app's package directory"), "{e}");
}

/// Hosts that would be misread by ssh (or by us) are refused, each with its own reason.
#[test]
fn hosts_that_ssh_would_misread_are_refused() {
    for (host, why) in [
        ("http://deploy@h", "only ssh:// URLs are understood"),
        ("-oProxyCommand=x@h", "a user cannot start with '-'"),
        ("@h", "the user before '@' is empty"),
    ] {
        let e = err(&format!("hosts = [{}]\n", check::quote(host)));
        assert!(e.to_string().contains(why), "{host}: {e}");
    }
    // An IPv6 address in brackets without a port, and an ssh:// URL, are fine.
    assert_eq!(ok("hosts = [\"deploy@[2001:db8::1]\"]\n").hosts.len(), 1);
    assert_eq!(ok("hosts = [\"ssh://deploy@h:2222/\"]\n").hosts.len(), 1);
}

/// Control characters are escaped when a value is quoted back in a message.
#[test]
fn quoted_values_escape_control_characters() {
    assert_eq!(check::quote("a\u{1b}b"), "\"a\\u001Bb\"");
    assert_eq!(check::quote("q\"\\\n\t\r"), "\"q\\\"\\\\\\n\\t\\r\"");
}

/// A destination name is letters, digits, '-' and '_' only.
#[test]
fn destination_names_are_checked_character_by_character() {
    assert!(check::destination_name("prod-eu_1").is_ok());
    for bad in ["", "pro d", "prod.eu", "prod/eu", &"x".repeat(65)] {
        assert!(check::destination_name(bad).is_err(), "{bad:?}");
    }
}

/// `{word}` placeholders other than `{bin}` are found; `${VAR}` belongs to a shell.
#[test]
fn placeholders_are_found_unless_a_shell_owns_them() {
    assert_eq!(check::unknown_placeholder("{binary}"), Some("{binary}"));
    assert_eq!(check::unknown_placeholder("--x={home}"), Some("{home}"));
    assert_eq!(check::unknown_placeholder("${home}"), None);
    assert_eq!(check::unknown_placeholder("a${home}"), None);
    assert_eq!(check::unknown_placeholder("{bin} {bin}"), None);
}

/// The edit distance behind "did you mean".
#[test]
fn edit_distances() {
    assert_eq!(check::distance("", "abc"), 3);
    assert_eq!(check::distance("abc", ""), 3);
    assert_eq!(check::distance("kitten", "sitting"), 3);
    assert_eq!(check::distance("hots", "hosts"), 1);
    assert_eq!(check::distance("same", "same"), 0);
}

/// A byte offset inside a multi-byte character counts from that character's start.
#[test]
fn locations_inside_a_character_step_back_to_it() {
    let at = Location::of("aé\nb", 2);
    assert_eq!((at.line, at.column), (1, 2));
    let at = Location::of("aé\nb", 4);
    assert_eq!((at.line, at.column), (2, 1));
}

/// Only the strings "true" and "false" get the "without quotes" hint; other strings are
/// the wrong type.
#[test]
fn quoted_booleans_get_their_own_hint() {
    let e = err("hosts = [\"a@b\"]\nparallel = \"true\"\n").to_string();
    assert!(e.contains("write it without quotes"), "{e}");
    let e = err("hosts = [\"a@b\"]\nparallel = \"yes\"\n").to_string();
    assert!(!e.contains("without quotes"), "{e}");
    assert!(e.contains("true or false"), "{e}");
}

/// Inside a destination, `destinations` is not a key to suggest (they do not nest).
#[test]
fn a_destination_never_suggests_destinations() {
    let e = err(
        "hosts = [\"a@b\"]\n[package.metadata.blargh.destinations.staging]\ndestinationz = 1\n",
    )
    .to_string();
    assert!(e.contains("destinationz"), "{e}");
    assert!(!e.contains("did you mean `destinations`"), "{e}");
}

/// A second placeholder after `{bin}` is still found (the scan moves on correctly).
#[test]
fn a_placeholder_after_bin_is_found() {
    assert_eq!(check::unknown_placeholder("{bin}{home}"), Some("{home}"));
    assert_eq!(
        check::unknown_placeholder("x{bin} --y={data}"),
        Some("{data}")
    );
}

/// `init` appends the section after exactly one blank line, whatever the file ends with.
#[test]
fn the_skeleton_follows_one_blank_line() {
    for text in ["[package]\nname = \"a\"\n", "[package]\nname = \"a\""] {
        let out = add_skeleton(text, Path::new("Cargo.toml")).unwrap();
        assert!(out.starts_with("[package]\nname = \"a\"\n\n"), "{out:?}");
        assert!(!out.contains("\n\n\n"), "{out:?}");
    }
}

#[test]
fn the_watchdog_is_a_duration_or_false() {
    let c = ok("hosts = [\"h\"]\nwatchdog_timeout = false\n");
    assert_eq!(c.watchdog_timeout, None);
    let e = err("hosts = [\"h\"]\nwatchdog_timeout = \"50ms\"\n").to_string();
    assert!(
        e.contains("shorter than 100ms") && e.contains("or false"),
        "{e}"
    );
    let e = err("hosts = [\"h\"]\nwatchdog_timeout = true\n").to_string();
    assert!(e.contains("false to turn it off"), "{e}");
    let e = err("hosts = [\"h\"]\nwatchdog_timeout = \"0s\"\n").to_string();
    assert!(e.contains("longer than zero"), "{e}");
}

#[test]
fn readiness_is_notify_an_http_path_or_a_command() {
    use blargh_proto::control::Readiness;
    assert_eq!(ok("hosts = [\"h\"]\n").ready, Readiness::Notify);
    assert_eq!(
        ok("hosts = [\"h\"]\nready = \"notify\"\n").ready,
        Readiness::Notify
    );
    assert_eq!(
        ok("hosts = [\"h\"]\nready = { http = \"/up\" }\n").ready,
        Readiness::Http("/up".into())
    );
    assert_eq!(
        ok("hosts = [\"h\"]\nready = { exec = [\"{bin}\", \"check\"] }\n").ready,
        Readiness::Exec(vec!["{bin}".into(), "check".into()])
    );
    let e = err("hosts = [\"h\"]\nready = { exec = [] }\n").to_string();
    assert!(e.contains("ready.exec"), "{e}");
    let e = err("hosts = [\"h\"]\nready = { http = \"/up\", exec = [\"x\"] }\n").to_string();
    assert!(e.contains("not both"), "{e}");
    let e = err("hosts = [\"h\"]\nready = { http = \"up\" }\n").to_string();
    assert!(
        e.contains("ready.http") && e.contains("must start with '/'"),
        "{e}"
    );
    let e = err("hosts = [\"h\"]\nready = { http = \"/a b\" }\n").to_string();
    assert!(e.contains("visible ASCII"), "{e}");
    let e = err("hosts = [\"h\"]\nready = {}\n").to_string();
    assert!(
        e.contains("says nothing") && e.contains("{ http = \"/up\" }"),
        "{e}"
    );
    let e = err("hosts = [\"h\"]\nready = \"http\"\n").to_string();
    assert!(e.contains("ready = \"notify\""), "{e}");
    let e = err("hosts = [\"h\"]\nready = true\n").to_string();
    assert!(e.contains("found true/false"), "{e}");
}

#[test]
fn tls_takes_domains_contact_and_directory_and_names_the_key_when_wrong() {
    let c = ok(
        "hosts = [\"h\"]\ntls = { domains = [\"shop.example\", \"www.shop.example\"], contact = \"ops@shop.example\", directory = \"https://ca.example/dir\", ca_file = \"/etc/ssl/ca.pem\" }\n",
    );
    let t = c.tls.unwrap();
    assert_eq!(t.ca_file.as_deref(), Some("/etc/ssl/ca.pem"));
    assert_eq!(t.domains, ["shop.example", "www.shop.example"]);
    assert_eq!(t.contact.as_deref(), Some("ops@shop.example"));
    assert_eq!(t.directory.as_deref(), Some("https://ca.example/dir"));
    assert_eq!(ok("hosts = [\"h\"]\n").tls, None);
    for (bad, key, says) in [
        (
            "tls = { domains = [\"*.shop.example\"] }",
            "tls.domains",
            "wildcard",
        ),
        ("tls = { domains = [] }", "tls.domains", "give 1 to"),
        ("tls = { contact = \"a@b.example\" }", "tls", "no domains"),
        (
            "tls = { domains = [\"shop.example\"], contact = \"nobody\" }",
            "tls.contact",
            "email",
        ),
        (
            "tls = { domains = [\"shop.example\"], directory = \"http://ca\" }",
            "tls.directory",
            "https://",
        ),
        (
            "tls = { domains = [\"shop.example\"], domain = \"x\" }",
            "tls.domain",
            "domains",
        ),
        (
            "tls = { domains = [\"shop.example\"], ca_file = \"ca.pem\" }",
            "tls.ca_file",
            "absolute path",
        ),
        ("tls = \"shop.example\"", "tls", "table"),
    ] {
        let e = err(&format!("hosts = [\"h\"]\n{bad}\n")).to_string();
        assert!(e.contains(key) && e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn a_release_is_the_binary_with_its_includes_or_a_directory_with_its_start() {
    let c = ok("hosts = [\"h\"]\n");
    assert_eq!(c.release, ReleaseContent::Binary { include: vec![] });
    assert_eq!(c.max_release_size, 500_000_000);
    let c = ok(
        "hosts = [\"h\"]\ninclude = [\"static/**\", \"templates/*.html\"]\nmax_release_size = \"2 MiB\"\n",
    );
    assert_eq!(
        c.release,
        ReleaseContent::Binary {
            include: vec!["static/**".into(), "templates/*.html".into()]
        }
    );
    assert_eq!(c.max_release_size, 2 << 20);
    let c = ok(
        "hosts = [\"h\"]\nrelease_dir = \"_build/prod/rel/shop\"\nstart = [\"bin/shop\", \"start\"]\n",
    );
    assert_eq!(
        c.release,
        ReleaseContent::Dir {
            dir: "_build/prod/rel/shop".into(),
            start: vec!["bin/shop".into(), "start".into()]
        }
    );
    // A destination turns the top level's include off with [] and ships a directory.
    let text = "hosts = [\"h\"]\ninclude = [\"static/**\"]\n\
                [package.metadata.blargh.destinations.beam]\n\
                include = []\nrelease_dir = \"rel\"\nstart = [\"bin/shop\"]\n";
    let c = try_parse(text, Some("beam")).unwrap();
    assert!(matches!(c.release, ReleaseContent::Dir { .. }));
}

#[test]
fn bad_include_start_release_dir_and_size_name_the_key() {
    let h = "hosts = [\"h\"]\n";
    for (line, parts) in [
        (
            "include = [\"/etc/**\"]",
            &["package.metadata.blargh.include[0]", "absolute"][..],
        ),
        (
            "include = [\"../secrets/*\"]",
            &["include[0]", "leaves the package's directory"],
        ),
        (
            "include = [\"static/**\", \"a/[b\"]",
            &["include[1]", "not a glob pattern"],
        ),
        ("include = \"static/**\"", &["include", "expected a list"]),
        (
            "start = [\"bin/shop\"]",
            &["package.metadata.blargh.start", "release_dir"],
        ),
        (
            "release_dir = \"rel\"",
            &["needs start", "start = [\"bin/shop\""],
        ),
        (
            "release_dir = \"rel\"\nstart = [\"/bin/sh\"]",
            &["package.metadata.blargh.start", "absolute path"],
        ),
        (
            "release_dir = \"rel\"\nstart = [\"../x\"]",
            &["start", "leaves the release"],
        ),
        ("release_dir = \"rel\"\nstart = []", &["start", "is empty"]),
        (
            "release_dir = \"rel\"\nstart = \"bin/shop start\"",
            &["start", "[\"bin/shop\", \"start\"]"],
        ),
        (
            "release_dir = \"rel\"\nstart = [\"x\"]\ninclude = [\"a\"]",
            &["include and", "cannot be used together"],
        ),
        ("max_release_size = 500", &["max_release_size", "\"500 B\""]),
        (
            "max_release_size = \"500\"",
            &["max_release_size", "needs a unit"],
        ),
        (
            "max_release_size = \"5 TB\"",
            &["max_release_size", "\"TB\" is not a unit"],
        ),
        (
            "max_release_size = \"2 GiB\"",
            &["max_release_size", "at most 1 GiB"],
        ),
        ("max_release_size = \"0 MB\"", &["max_release_size", "zero"]),
    ] {
        let e = err(&format!("{h}{line}\n"));
        let text = e.to_string();
        assert_eq!(e.kind(), ErrorKind::InvalidValue, "{line}: {text}");
        for p in parts {
            assert!(text.contains(p), "{line}: {text:?} lacks {p:?}");
        }
    }
}
