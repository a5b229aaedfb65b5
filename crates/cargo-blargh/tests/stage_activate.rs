//! Stage now, switch later: `deploy --stage` ships and verifies a release on every host and
//! starts nothing; `cargo blargh activate RELEASE` switches to it later, on one host
//! (`--host`) or on all, under load with no failed request; a release that a host lacks
//! is refused on every host before anything changes; `activate --parallel` (and `deploy
//! --parallel`) switch the hosts at once and `activate -m` is the reason in each agent's
//! audit log (two loopback sshd hosts, root only).

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

/// `activate` shares deploy's switch: without `--parallel` each host's `before_activate`
/// runs after the one before it has switched, with `--parallel` both run at once (each
/// logs its start and end in one shared file), as with `deploy --parallel`; and `-m` is the reason the agent of every
/// host writes on the activation's line of its audit log (as `deploy -m` is kept in the
/// release's manifest).
#[test]
fn activate_parallel_switches_at_once_and_its_message_reaches_the_audit_log() {
    if !can_run("activate_parallel_switches_at_once_and_its_message_reaches_the_audit_log") {
        return;
    }
    let v1 = hello::build("v1", Profile::Debug).unwrap();
    let v2 = hello::build("v2", Profile::Debug).unwrap();
    let (s1, s2) = (sha12(&v1), sha12(&v2));
    let base = tempfile::tempdir().unwrap();
    let one = LocalServer::start(Path::new(BIN), "actpar");
    let two = LocalServer::start_beside(Path::new(BIN), &one, base.path());
    let log_dir = tempfile::tempdir().unwrap();
    // The app's user (`nobody`) runs before_activate and writes the log.
    std::fs::set_permissions(
        log_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let log = log_dir.path().join("log");
    let app = AppDir::new(Path::new(BIN));
    app.configure(
        "hello",
        &format!(
            "hosts = [\"{}\", \"{}\"]\napp = \"actpar\"\n{}\n\
             known_hosts = [\"{}\", \"{}\"]\nready_timeout = \"30s\"\ndrain_timeout = \"2s\"\n\
             before_activate = [\"sh\", \"-c\", \"echo start >> {l}; sleep 2; echo end >> {l}\", \"{{bin}}\"]",
            one.destination(),
            two.destination(),
            one.listen_line(),
            one.known_hosts_line(),
            two.known_hosts_line(),
            l = log.display(),
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
    for (v, why) in [(&v1, "staged v1"), (&v2, "staged v2")] {
        ok(&app.run(
            &[
                "deploy",
                "--stage",
                "-m",
                why,
                "--binary",
                v.to_str().unwrap(),
            ],
            &key,
        ));
    }
    // deploy's -m is kept with the release on every host.
    let out = app.run(&["releases", "--json"], &key);
    let t = ok(&out);
    let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for h in hosts.as_array().unwrap_or_else(|| panic!("{t}")) {
        let releases = h["reply"]["releases"]
            .as_array()
            .unwrap_or_else(|| panic!("{t}"));
        for (sha, why) in [(&s1, "staged v1"), (&s2, "staged v2")] {
            let m = releases
                .iter()
                .map(|r| &r["manifest"])
                .find(|m| m["sha256"].as_str().unwrap_or("").starts_with(sha.as_str()))
                .unwrap_or_else(|| panic!("no release {sha} in:\n{t}"));
            assert_eq!(m["message"], why, "deploy -m is not in the manifest: {m}");
        }
    }
    // Runs `args` (an activate or a deploy) with --json; returns the order of the
    // before_activate runs and the release id each host activated.
    let switch = |args: &[&str]| -> (String, Vec<String>) {
        let _ = std::fs::remove_file(&log);
        let out = app.run(&[args, &["--json"]].concat(), &key);
        let t = ok(&out);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids: Vec<String> = report["hosts"]
            .as_array()
            .unwrap_or_else(|| panic!("{t}"))
            .iter()
            .map(|h| {
                assert_eq!(h["outcome"], "activated", "{t}");
                h["release"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(ids.len(), 2, "{t}");
        let order = std::fs::read_to_string(&log)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        (order, ids)
    };
    let (order, ids1) = switch(&["activate", &s1, "-m", "one host after the other"]);
    assert_eq!(order, "start end start end");
    assert_eq!(current_shas(&app, &key), [s1.clone(), s1.clone()]);
    let (order, ids2) = switch(&["activate", &s2, "--parallel", "-m", "both at once"]);
    assert_eq!(order, "start start end end", "--parallel was not parallel");
    assert_eq!(current_shas(&app, &key), [s2.clone(), s2.clone()]);
    // deploy takes the flag too (the key `parallel` is config_keys' to prove).
    let (order, _) = switch(&["deploy", "--parallel", "--binary", v1.to_str().unwrap()]);
    assert_eq!(
        order, "start start end end",
        "deploy --parallel was not parallel"
    );
    assert_eq!(current_shas(&app, &key), [s1.clone(), s1.clone()]);

    // Each host's audit log: the activation of each release, with its message.
    let out = app.run(&["audit", "--json", "-n", "100"], &key);
    let t = ok(&out);
    let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = hosts.as_array().unwrap_or_else(|| panic!("{t}"));
    assert_eq!(hosts.len(), 2, "{t}");
    for (i, h) in hosts.iter().enumerate() {
        let events = h["reply"]["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{h}"));
        for (id, message) in [
            (&ids1[i], "one host after the other"),
            (&ids2[i], "both at once"),
        ] {
            let activation = events
                .iter()
                .find(|e| e["event"] == "activate" && e["release"] == id.as_str())
                .unwrap_or_else(|| panic!("no activation of {id} in:\n{t}"));
            let detail = activation["detail"].as_str().unwrap_or_default();
            assert!(
                detail.ends_with(&format!(": {message}")),
                "the activation of {id} is audited without -m {message:?}: {activation}"
            );
        }
    }
}
