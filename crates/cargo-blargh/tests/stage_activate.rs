//! Stage now, switch later: `deploy --stage` ships and verifies a release on every host and
//! starts nothing; `cargo blargh activate RELEASE` switches to it later, on one host
//! (`--host`) or on all, under load with no failed request; a release that a host lacks
//! is refused on every host before anything changes (two loopback sshd hosts, root only).

use std::path::Path;

use test_support::hello::{self, Profile};
use test_support::http;
use test_support::load::Wrk;
use test_support::loopback::{AppDir, LocalServer, can_run};
use test_support::remote::text;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

/// Each host's current release (first 12 digits of its sha256) and pid, from
/// `status --json`, in host order.
fn current(app: &AppDir, key: &[String]) -> Vec<(String, u64)> {
    let out = app.run(&["status", "--json"], key);
    assert!(out.status.success(), "status failed:\n{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = v.as_array().unwrap_or_else(|| panic!("{v}"));
    hosts
        .iter()
        .map(|h| {
            let status = &h["reply"];
            let sha = status["current"]["sha256"]
                .as_str()
                .unwrap_or_else(|| panic!("no current release in {h}"));
            (sha[..12].to_string(), status["pid"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// Just the releases of [`current`].
fn current_shas(app: &AppDir, key: &[String]) -> Vec<String> {
    current(app, key).into_iter().map(|(sha, _)| sha).collect()
}

fn sha12(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))[..12].to_string()
}

#[test]
fn a_staged_release_starts_nothing_until_activated_host_by_host() {
    if !can_run("a_staged_release_starts_nothing_until_activated_host_by_host") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let (s1, s2) = (sha12(&v1), sha12(&v2));
    let base = tempfile::tempdir().unwrap();
    let one = LocalServer::start(Path::new(BIN), "staged");
    let two = LocalServer::start_beside(Path::new(BIN), &one, base.path());
    let app = AppDir::new(Path::new(BIN));
    app.configure(
        "hello",
        &format!(
            "hosts = [\"{}\", \"{}\"]\napp = \"staged\"\n{}\n\
             known_hosts = [\"{}\", \"{}\"]\nready_timeout = \"30s\"\ndrain_timeout = \"2s\"",
            one.destination(),
            two.destination(),
            one.listen_line(),
            one.known_hosts_line(),
            two.known_hosts_line(),
        ),
    );
    let key = ["-i".to_string(), one.key().display().to_string()];
    let ok = |out: &std::process::Output| -> String {
        let t = text(out);
        assert!(
            out.status.success(),
            "failed:\n{t}\n{}\n{}",
            one.agent_log(),
            two.agent_log()
        );
        t
    };
    ok(&app.run(&["deploy", "--binary", v1.to_str().unwrap()], &key));
    assert_eq!(current_shas(&app, &key), [s1.clone(), s1.clone()]);
    let pids_before: Vec<u64> = current(&app, &key).into_iter().map(|(_, p)| p).collect();

    // Staged: shipped to both, started on neither.
    let t = ok(&app.run(
        &["deploy", "--stage", "--binary", v2.to_str().unwrap()],
        &key,
    ));
    assert_eq!(t.matches("  staged  ").count(), 2, "{t}");
    assert!(t.contains(&format!("cargo blargh activate {s2}")), "{t}");
    assert_eq!(current_shas(&app, &key), [s1.clone(), s1.clone()]);
    let body = http::get(one.web_port(), "/").unwrap().body;
    assert!(body.starts_with("hello from v1 "), "{body}");
    let pids: Vec<u64> = current(&app, &key).into_iter().map(|(_, p)| p).collect();
    assert_eq!(pids, pids_before, "staging restarted the app");
    let releases = ok(&app.run(&["releases", "--json"], &key));
    assert_eq!(
        releases.matches(&s2).count(),
        2,
        "v2 stored on both:\n{releases}"
    );
    let out = app.run(&["lock", "status"], &key);
    assert!(
        !text(&out).contains("(deploy, pid"),
        "the stage left its lock:\n{}",
        text(&out)
    );

    // A release no host has: refused, nothing changes.
    let out = app.run(&["activate", "0123abcd0123"], &key);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no release has a sha256 starting with 0123abcd0123"),
        "{}",
        text(&out)
    );
    assert_eq!(current_shas(&app, &key), [s1.clone(), s1.clone()]);

    // A release only one host has: refused on both, nothing switches. (v1 with bytes
    // appended: another sha256, still an executable.)
    let v1x = base.path().join("hello-v1x");
    let mut bytes = std::fs::read(&v1).unwrap();
    bytes.extend_from_slice(b"staged on one host only");
    std::fs::write(&v1x, bytes).unwrap();
    std::fs::set_permissions(&v1x, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sx = sha12(&v1x);
    ok(&app.run(
        &[
            "deploy",
            "--stage",
            "--binary",
            v1x.to_str().unwrap(),
            "--host",
            &one.destination(),
        ],
        &key,
    ));
    let out = app.run(&["activate", &sx], &key);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("no release has a sha256 starting with {sx}")),
        "{}",
        text(&out)
    );
    assert_eq!(current_shas(&app, &key), [s1.clone(), s1.clone()]);

    // One host, under load: the first switches, the second keeps v1.
    let wrk = Wrk::start(&format!("http://127.0.0.1:{}/", one.web_port()), 8, 2).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = ok(&app.run(&["activate", &s2, "--host", &one.destination()], &key));
    assert!(t.contains("activated"), "{t}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let report = wrk.finish().unwrap();
    assert!(report.requests > 100, "{}", report.raw);
    assert_eq!(report.failures(), 0, "failed requests:\n{}", report.raw);
    assert_eq!(current_shas(&app, &key), [s2.clone(), s1.clone()]);
    let body = http::get(one.web_port(), "/").unwrap().body;
    assert!(body.starts_with("hello from v2 "), "{body}");

    // Then every host, by the release id works as well as by sha256.
    ok(&app.run(&["activate", &s2], &key));
    assert_eq!(current_shas(&app, &key), [s2.clone(), s2.clone()]);
}
