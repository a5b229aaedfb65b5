//! Uploads: a stream whose sha256 does not match is refused, and a truncated one leaves no
//! release behind.

use blargh_proto::control::Reply;
use test_support::agent::{AgentOptions, TestAgent};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

fn no_release_left(agent: &TestAgent) {
    match agent.request(&["releases"]).unwrap() {
        Reply::Releases { releases } => assert!(releases.is_empty(), "{releases:?}"),
        other => panic!("{other:?}"),
    }
    let leftovers: Vec<_> = std::fs::read_dir(agent.root().join("releases"))
        .unwrap()
        .chain(std::fs::read_dir(agent.root().join("incoming")).unwrap())
        .collect();
    assert!(leftovers.is_empty(), "files left behind: {leftovers:?}");
}

#[test]
fn a_mismatched_sha256_is_refused() {
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let body = vec![b'x'; 4096];
    let wrong = "0".repeat(64);
    let out = agent
        .ctl(
            &["receive", "-", "--sha256", &wrong, "--size", "4096"],
            Some(&body),
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sha256") && stderr.contains("nothing was stored"),
        "{stderr}"
    );
    no_release_left(&agent);
    assert_eq!(agent.audit().last().unwrap().event, "failure");
}

#[test]
fn a_truncated_stream_leaves_no_release() {
    let agent = TestAgent::start(BIN, AgentOptions::default());
    let body = vec![b'x'; 600];
    let sha = "a".repeat(64);
    let out = agent
        .ctl(
            &["receive", "-", "--sha256", &sha, "--size", "1000"],
            Some(&body),
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("600 of 1000 bytes"), "{stderr}");
    no_release_left(&agent);
}
