//! Running commands: a large streamed stdin checked with `sha256sum` on the server,
//! exit status and stderr, stdout by lines, and connection errors before any SSH.

use std::time::Instant;

use blargh_ssh::{ConnectOptions, Destination, ExitStatus, Session, SshConfigFile, SshError};
use sha2::{Digest, Sha256};

use crate::common::Env;

async fn session(env: &Env) -> Session {
    let key = env.authorized_key("id");
    let mut options = env.options();
    options.identity_files = vec![key.private];
    env.ok(Session::connect(&env.dest("root"), &options).await)
}

/// Deterministic, incompressible-looking bytes.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn large_stdin_arrives_intact() {
    let env = Env::new();
    let session = session(&env).await;
    let data = payload(24 * 1024 * 1024 + 12345);
    let expected = hex::encode(Sha256::digest(&data));
    let started = Instant::now();
    let out = env.ok(session.exec("sha256sum", &data[..]).await);
    let took = started.elapsed();
    assert!(out.success(), "{}", out.stderr_str());
    assert_eq!(
        out.stdout_str().split_whitespace().next(),
        Some(expected.as_str())
    );
    eprintln!("24 MiB through exec stdin in {took:?}");

    // Written to a file and read back by size, the way releases are uploaded.
    let path = env.sshd.dir().join("upload.bin");
    let cmd = format!("cat > {p} && stat -c %s {p}", p = path.display());
    let out = env.ok(session.exec(&cmd, &data[..]).await);
    assert!(out.success(), "{}", out.stderr_str());
    assert_eq!(out.stdout_str().trim(), data.len().to_string());
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[tokio::test]
async fn exit_status_stdout_and_stderr() {
    let env = Env::new();
    let session = session(&env).await;
    let out = env.ok(session
        .exec("echo out; echo err >&2; exit 3", tokio::io::empty())
        .await);
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");

    let err = session
        .exec_checked("echo 'disk full' >&2; exit 7", tokio::io::empty())
        .await
        .expect_err("non-zero status is an error here");
    let text = err.to_string();
    assert!(matches!(err, SshError::CommandFailed { .. }), "{text}");
    assert!(text.contains("exited with status 7"), "{text}");
    assert!(text.contains("disk full"), "{text}");

    // A command that ignores its stdin does not hang on it.
    let out = env.ok(session.exec("true", &payload(4 * 1024 * 1024)[..]).await);
    assert!(out.success());

    let out = env.ok(session.exec("kill -TERM $$", tokio::io::empty()).await);
    assert!(
        matches!(out.status, ExitStatus::Signal { .. }),
        "{:?}",
        out.status
    );

    // Several commands at once on one connection.
    let (a, b) = tokio::join!(
        session.exec("echo a", tokio::io::empty()),
        session.exec("cat", &b"b"[..])
    );
    assert_eq!(env.ok(a).stdout, b"a\n");
    assert_eq!(env.ok(b).stdout, b"b");
    env.ok(session.close().await);
}

#[tokio::test]
async fn stdout_lines_are_streamed() {
    let env = Env::new();
    let session = session(&env).await;
    let mut lines = Vec::new();
    let out = env.ok(session
        .exec_lines(
            "printf 'one\\ntwo\\r\\n'; sleep 0.2; printf 'three'; echo warn >&2",
            tokio::io::empty(),
            |line| lines.push(line.to_string()),
        )
        .await);
    assert!(out.success());
    assert!(out.stdout.is_empty());
    assert_eq!(out.stderr, b"warn\n");
    assert_eq!(lines, vec!["one", "two", "three"]);
}

#[tokio::test]
async fn tcp_and_dns_errors_name_the_step() {
    let options = ConnectOptions {
        ssh_config: SshConfigFile::Ignore,
        use_agent: false,
        ..ConnectOptions::default()
    };
    let closed = test_support::sshd::free_port();
    let dest = Destination::new("127.0.0.1")
        .with_user("root")
        .with_port(closed);
    let err = Session::connect(&dest, &options)
        .await
        .expect_err("closed port");
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&format!("port {closed}")), "{err}");

    let dest = Destination::parse("root@blargh-test.invalid").unwrap();
    let err = Session::connect(&dest, &options)
        .await
        .expect_err("bad name");
    assert!(matches!(err, SshError::Dns { .. }), "{err}");
    assert!(err.to_string().contains("blargh-test.invalid"), "{err}");
}

#[tokio::test]
async fn dropping_a_follow_stops_the_remote_command() {
    let env = Env::new();
    let session = session(&env).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut follow = Box::pin(session.exec_lines(
        "while true; do echo blargh-tick; sleep 0.1; done",
        tokio::io::empty(),
        move |line| {
            let _ = tx.send(line.to_string());
        },
    ));
    // Follow until three lines have arrived, then stop by dropping the future.
    let followed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        for _ in 0..3 {
            tokio::select! {
                ended = &mut follow => panic!("the loop ended by itself: {ended:?}"),
                line = rx.recv() => assert_eq!(line.as_deref(), Some("blargh-tick")),
            }
        }
    })
    .await;
    assert!(followed.is_ok(), "no lines arrived while following");
    drop(follow);
    // The channel was closed: the loop's next echo fails and the shell ends.
    let out = env.ok(session
        .exec(
            "for i in $(seq 30); do pgrep -f 'bl[a]rgh-tick' >/dev/null || exit 0; \
                 sleep 0.3; done; exit 1",
            tokio::io::empty(),
        )
        .await);
    assert!(out.success(), "the remote loop is still running");
}

/// A long-lived channel: each line written is answered before the next is sent, over one
/// exec (a conversation, as the agent's control requests go), then the exit status.
#[tokio::test]
async fn one_channel_carries_a_conversation() {
    let env = Env::new();
    let session = session(&env).await;
    // Answers each line as it arrives: the reply can only come if stdin is sent
    // incrementally and stdout read before stdin ends.
    let mut ch = env.ok(session
        .open_exec("while read -r l; do echo \"got $l\"; done; echo bye >&2; exit 7")
        .await);
    for i in 0..5 {
        env.ok(ch.write(format!("line {i}\n").as_bytes()).await);
        let answer = env.ok(ch.read_line().await);
        assert_eq!(answer.as_deref(), Some(format!("got line {i}").as_str()));
    }
    let out = env.ok(ch.finish().await);
    assert_eq!(out.status, ExitStatus::Code(7));
    assert_eq!(out.stderr_str().trim(), "bye");

    // What one channel saves: 5 exchanges on one channel against 5 execs.
    let started = Instant::now();
    let mut ch = env.ok(session
        .open_exec("while read -r l; do echo \"$l\"; done")
        .await);
    for i in 0..5 {
        env.ok(ch.write(format!("{i}\n").as_bytes()).await);
        assert!(env.ok(ch.read_line().await).is_some());
    }
    env.ok(ch.finish().await);
    let one_channel = started.elapsed();
    let started = Instant::now();
    for i in 0..5 {
        let out = env.ok(session.exec("head -n 1", format!("{i}\n").as_bytes()).await);
        assert!(out.success());
    }
    let execs = started.elapsed();
    eprintln!("5 exchanges on loopback sshd: one channel {one_channel:?}, one exec each {execs:?}");
}
