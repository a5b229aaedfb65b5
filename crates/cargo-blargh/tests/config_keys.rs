//! The keys of `[package.metadata.blargh]` not covered on a VM take effect, on the fast
//! tier: `bin` and `target` through `deploy --dry-run` (a real cargo build, no server);
//! `hosts` + `destinations`, `known_hosts`, `auto_rollback`, `lock_expiry`, `parallel` and
//! `ready` against OpenSSH sshd and agents on loopback (root only; test_support::loopback).

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use test_support::hello::{self, Profile};
use test_support::loopback::{AppDir, LocalServer, can_run};
use test_support::remote::text;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed:\n{}", text(out));
    text(out)
}

/// A dependency-free package `twobins` with binaries `first` and `second`.
fn two_binaries(keys: &str) -> AppDir {
    let app = AppDir::new(Path::new(BIN));
    app.configure("twobins", keys);
    let bin = app.path().join("src/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("first.rs"), "fn main() { println!(\"first\"); }\n").unwrap();
    std::fs::write(
        bin.join("second.rs"),
        "fn main() { println!(\"second\"); }\n",
    )
    .unwrap();
    app
}

/// `deploy --dry-run` in `app`: builds, names the binary, sends nothing.
fn dry_run(app: &AppDir) -> String {
    let out = app
        .command(&["deploy", "--dry-run"])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap();
    ok(&out)
}

#[test]
fn bin_chooses_the_binary_that_is_built_and_shipped() {
    let app = two_binaries("hosts = [\"deploy@192.0.2.1\"]\nbin = \"second\"");
    let out = dry_run(&app);
    assert!(out.contains("building second "), "{out}");
    let shipped = app.path().join("target/release/second");
    assert!(
        out.contains(&format!("would deploy {} (", shipped.display())),
        "{out}"
    );
    let built = std::process::Command::new(&shipped).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&built.stdout), "second\n");
}

#[test]
fn target_builds_for_the_configured_triple() {
    let app = two_binaries(
        "hosts = [\"deploy@192.0.2.1\"]\nbin = \"first\"\ntarget = \"x86_64-unknown-linux-gnu\"",
    );
    let out = dry_run(&app);
    let shipped = app
        .path()
        .join("target/x86_64-unknown-linux-gnu/release/first");
    assert!(
        out.contains(&format!("would deploy {} (", shipped.display())),
        "{out}"
    );
    assert!(
        shipped.exists(),
        "{} was not built:\n{out}",
        shipped.display()
    );
}

/// The body of `GET path` on loopback `port`, or the error.
fn get(port: u16, path: &str) -> String {
    test_support::http::get(port, path)
        .map(|r| r.body)
        .unwrap_or_else(|e| format!("error: {e}"))
}

/// Polls `GET /` for up to `limit` until the body starts with `prefix`; the bodies seen.
fn wait_body(port: u16, prefix: &str, limit: Duration) -> Result<(), Vec<String>> {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while t0.elapsed() < limit {
        let body = get(port, "/");
        if body.starts_with(prefix) {
            return Ok(());
        }
        if seen.last() != Some(&body) {
            seen.push(body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(seen)
}

fn deploy(app: &AppDir, server: &LocalServer, binary: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["deploy", "--binary", binary.to_str().unwrap()];
    args.extend_from_slice(extra);
    app.run(&args, &server.connect_flags())
}

#[test]
fn a_destination_uses_its_own_hosts_app_and_env() {
    if !can_run("a_destination_uses_its_own_hosts_app_and_env") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let server = LocalServer::start(Path::new(BIN), "keysdest");
    let app = AppDir::new(Path::new(BIN));
    // The top level names a host nobody listens on and another app: used, they fail.
    app.configure(
        "hello",
        &format!(
            "hosts = [\"root@127.0.0.1:9\"]\napp = \"keystop\"\n{listen}\n\
             env = {{ HELLO_GREETING = \"from the top level\" }}\n\n\
             [package.metadata.blargh.destinations.staging]\n\
             hosts = [\"{dest}\"]\napp = \"keysdest\"\n\
             env = {{ HELLO_GREETING = \"from staging\" }}\n",
            listen = server.listen_line(),
            dest = server.destination(),
        ),
    );
    let out = deploy(&app, &server, &v1, &["-d", "staging"]);
    let t = ok(&out);
    assert!(
        get(server.web_port(), "/").starts_with("hello from v1 "),
        "{t}\n{}",
        server.agent_log()
    );
    assert_eq!(get(server.web_port(), "/greeting"), "from staging\n");
    // Without -d the top level's unreachable host is the one tried.
    let out = deploy(&app, &server, &v1, &[]);
    let t = text(&out);
    assert!(!out.status.success(), "the top level deployed:\n{t}");
    assert!(t.contains("127.0.0.1:9"), "{t}");
}

#[test]
fn known_hosts_in_the_config_vouch_for_the_host() {
    if !can_run("known_hosts_in_the_config_vouch_for_the_host") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let server = LocalServer::start(Path::new(BIN), "keyskh");
    let app = AppDir::new(Path::new(BIN));
    let base = format!(
        "hosts = [\"{}\"]\napp = \"keyskh\"\n{}",
        server.destination(),
        server.listen_line()
    );
    // Only -i: no --known-hosts flag, and HOME (so ~/.ssh/known_hosts) is empty.
    let key_only = ["-i".to_string(), server.key().display().to_string()];
    app.configure("hello", &base);
    let args = ["deploy", "--binary", v1.to_str().unwrap()];
    let out = app.run(&args, &key_only);
    let t = text(&out);
    assert!(
        !out.status.success(),
        "an unknown host key was trusted:\n{t}"
    );
    app.configure(
        "hello",
        &format!("{base}\nknown_hosts = [\"{}\"]", server.known_hosts_line()),
    );
    ok(&app.run(&args, &key_only));
    assert!(get(server.web_port(), "/").starts_with("hello from v1 "));
}

#[test]
fn auto_rollback_from_the_config_is_what_the_agent_does() {
    if !can_run("auto_rollback_from_the_config_is_what_the_agent_does") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let v3 = hello::build("v3", Profile::Debug).unwrap();
    let server = LocalServer::start(Path::new(BIN), "keysar");
    let app = AppDir::new(Path::new(BIN));
    let port = server.web_port();
    // v2 crashes a second after it starts serving; the others never do.
    let configure = |auto_rollback: &str| {
        app.configure(
            "hello",
            &format!(
                "hosts = [\"{}\"]\napp = \"keysar\"\n{}\n\
                 env = {{ HELLO_CRASH_AFTER_MS = \"1000\", HELLO_CRASH_IN_VERSION = \"v2\" }}\n\
                 auto_rollback = {auto_rollback}",
                server.destination(),
                server.listen_line()
            ),
        )
    };

    // Off: v2 crashes and is restarted; the agent never goes back to v1 by itself.
    configure("false");
    ok(&deploy(&app, &server, &v1, &[]));
    ok(&deploy(&app, &server, &v2, &[]));
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while t0.elapsed() < Duration::from_secs(6) {
        let body = get(port, "/");
        assert!(
            !body.starts_with("hello from v1 "),
            "rolled back with auto_rollback = false; bodies {seen:?}\n{}",
            server.agent_log()
        );
        if seen.last() != Some(&body) {
            seen.push(body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.iter().any(|b| b.starts_with("hello from v2 ")),
        "v2 never served: {seen:?}"
    );

    // One crash allowed: the first crash of v2 sends the agent back to v3.
    configure("{ crashes = 1 }");
    ok(&deploy(&app, &server, &v3, &[]));
    wait_body(port, "hello from v3 ", Duration::from_secs(10)).unwrap();
    ok(&deploy(&app, &server, &v2, &[]));
    if let Err(seen) = wait_body(port, "hello from v3 ", Duration::from_secs(15)) {
        panic!(
            "no rollback after v2 crashed with auto_rollback = {{ crashes = 1 }}: {seen:?}\n{}",
            server.agent_log()
        );
    }
}

#[test]
fn lock_expiry_lets_a_killed_deploys_lock_be_taken_over() {
    if !can_run("lock_expiry_lets_a_killed_deploys_lock_be_taken_over") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let server = LocalServer::start(Path::new(BIN), "keyslock");
    let app = AppDir::new(Path::new(BIN));
    // The first before_activate leaves a mark and hangs; later ones pass at once.
    let mark = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        mark.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mark_file = mark.path().join("hanging");
    let expiry = Duration::from_secs(15);
    app.configure(
        "hello",
        &format!(
            "hosts = [\"{}\"]\napp = \"keyslock\"\n{}\n\
             ready_timeout = \"5s\"\ndrain_timeout = \"2s\"\nlock_expiry = \"15s\"\n\
             before_activate = [\"sh\", \"-c\", \"test -e {m} || {{ touch {m}; sleep 30; }}\", \"{{bin}}\"]",
            server.destination(),
            server.listen_line(),
            m = mark_file.display(),
        ),
    );
    // A first deploy with the mark in place puts the binary on the host, so the one to be
    // killed takes the lock and reaches before_activate quickly.
    std::fs::write(&mark_file, "").unwrap();
    ok(&deploy(&app, &server, &v1, &[]));
    std::fs::remove_file(&mark_file).unwrap();
    let started = Instant::now();
    let mut first = app
        .command(&["deploy", "--binary", v1.to_str().unwrap()])
        .args(server.connect_flags())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !mark_file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first deploy never ran before_activate\n{}",
            server.agent_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The lock was taken before before_activate ran, so it expires by now + expiry.
    let locked_by = Instant::now();
    first.kill().unwrap();
    first.wait().unwrap();

    // The lock outlives the killed deploy: a second deploy is refused…
    let out = deploy(&app, &server, &v1, &[]);
    let t = text(&out);
    assert!(
        started.elapsed() < expiry,
        "too slow to tell: the killed deploy's lock may have expired already"
    );
    assert!(!out.status.success(), "deploy ignored a held lock:\n{t}");
    assert!(t.contains("the deploy lock is held by"), "{t}");
    // …until lock_expiry has passed since it was taken; then it takes the lock over.
    std::thread::sleep(expiry.saturating_sub(locked_by.elapsed()) + Duration::from_secs(1));
    let t = ok(&deploy(&app, &server, &v1, &[]));
    assert!(
        get(server.web_port(), "/").starts_with("hello from v1 "),
        "{t}"
    );
}

#[test]
fn parallel_activates_the_hosts_at_once_and_its_absence_one_by_one() {
    if !can_run("parallel_activates_the_hosts_at_once_and_its_absence_one_by_one") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let base = tempfile::tempdir().unwrap();
    let one = LocalServer::start(Path::new(BIN), "keyspar");
    let two = LocalServer::start_beside(Path::new(BIN), &one, base.path());
    let app = AppDir::new(Path::new(BIN));
    // Each host's before_activate logs its start and end in one shared file.
    let log_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        log_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let log = log_dir.path().join("log");
    let configure = |parallel: bool| {
        app.configure(
            "hello",
            &format!(
                "hosts = [\"{}\", \"{}\"]\napp = \"keyspar\"\n{}\n\
                 known_hosts = [\"{}\", \"{}\"]\nparallel = {parallel}\n\
                 before_activate = [\"sh\", \"-c\", \"echo start >> {l}; sleep 2; echo end >> {l}\", \"{{bin}}\"]",
                one.destination(),
                two.destination(),
                one.listen_line(),
                one.known_hosts_line(),
                two.known_hosts_line(),
                l = log.display(),
            ),
        )
    };
    let key = ["-i".to_string(), one.key().display().to_string()];
    let deploy_logged = |binary: &Path| -> String {
        let _ = std::fs::remove_file(&log);
        let out = app.run(&["deploy", "--binary", binary.to_str().unwrap()], &key);
        let t = ok(&out);
        assert!(
            t.matches("activated").count() >= 2,
            "not both hosts activated:\n{t}\n{}\n{}",
            one.agent_log(),
            two.agent_log()
        );
        std::fs::read_to_string(&log)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    configure(false);
    assert_eq!(deploy_logged(&v1), "start end start end");
    configure(true);
    assert_eq!(deploy_logged(&v2), "start start end end");
}

/// `ready = { http = "/up" }` reaches the agent through deploy (said as applied), and the
/// agent then waits for `/up` on the new release's own listener: examples/hello, which only
/// says `READY=1`, is refused while v1 keeps serving. What such a check does for an app
/// that serves it: `ready_http.rs`.
#[test]
fn ready_http_from_the_config_is_how_the_agent_waits() {
    if !can_run("ready_http_from_the_config_is_how_the_agent_waits") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let server = LocalServer::start(Path::new(BIN), "keysready");
    let app = AppDir::new(Path::new(BIN));
    let configure = |ready: &str| {
        app.configure(
            "hello",
            &format!(
                "hosts = [\"{}\"]\napp = \"keysready\"\n{}\nready_timeout = \"3s\"\n{ready}",
                server.destination(),
                server.listen_line()
            ),
        )
    };
    configure("ready = \"notify\"");
    ok(&deploy(&app, &server, &v1, &[]));
    configure("ready = { http = \"/up\" }");
    let out = deploy(&app, &server, &v2, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("applied ready READY=1 → http /up"), "{t}");
    assert!(
        t.contains("a 2xx answer to GET /up on the listener named blargh-ready"),
        "{t}"
    );
    assert!(get(server.web_port(), "/").starts_with("hello from v1 "));
    // And back: the default again, v2 goes through.
    configure("");
    let t = ok(&deploy(&app, &server, &v2, &[]));
    assert!(t.contains("applied ready http /up → READY=1"), "{t}");
    assert!(get(server.web_port(), "/").starts_with("hello from v2 "));
}

#[test]
fn tls_from_the_config_reaches_the_app_through_the_agent() {
    if !can_run("tls_from_the_config_reaches_the_app_through_the_agent") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let server = LocalServer::start(Path::new(BIN), "keystls");
    let app = AppDir::new(Path::new(BIN));
    // before_activate runs with the release's environment; what it prints goes to the logs.
    let show = "before_activate = [\"sh\", \"-c\", \"echo tls=[$BLARGH_TLS_DOMAINS+$BLARGH_TLS_CONTACT+$BLARGH_ACME_DIRECTORY+$BLARGH_ACME_CA_FILE] {bin}\"]";
    let configure = |tls: &str| {
        app.configure(
            "hello",
            &format!(
                "hosts = [\"{}\"]\napp = \"keystls\"\n{}\n{show}\n{tls}",
                server.destination(),
                server.listen_line()
            ),
        )
    };
    configure(
        "tls = { domains = [\"shop.example\", \"www.shop.example\"], contact = \"ops@shop.example\", \
         directory = \"https://ca.example/dir\", ca_file = \"/etc/ssl/ca.pem\" }",
    );
    let t = ok(&deploy(&app, &server, &v1, &[]));
    assert!(
        t.contains("applied tls off → shop.example,www.shop.example"),
        "{t}"
    );
    let logs = || ok(&app.run(&["logs", "-n", "200"], &server.connect_flags()));
    let t = logs();
    assert!(
        t.contains(
            "tls=[shop.example,www.shop.example+ops@shop.example+https://ca.example/dir+/etc/ssl/ca.pem]"
        ),
        "{t}"
    );
    // hello serves HTTPS through blargh::tls when the domains are set; with no CA reachable
    // it serves a self-signed certificate and reports it, which status shows.
    let status = || ok(&app.run(&["status"], &server.connect_flags()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut t = status();
    while !t.contains("issuer self-signed") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(300));
        t = status();
    }
    for domain in ["shop.example", "www.shop.example"] {
        assert!(
            t.lines().any(|l| l.contains("tls")
                && l.contains(domain)
                && l.contains("issuer self-signed")),
            "status shows {domain}'s self-signed certificate:\n{t}"
        );
    }
    // Removed from the config: removed from the app's environment.
    configure("");
    let t = ok(&deploy(&app, &server, &v1, &[]));
    assert!(
        t.contains("applied tls shop.example,www.shop.example → off"),
        "{t}"
    );
    let t = logs();
    assert!(t.contains("tls=[+++]"), "{t}");
}
