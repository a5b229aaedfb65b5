//! A server that stops answering gives a clear error naming the host and the step after
//! `connect_timeout`, never a hang: one that accepts TCP and says nothing, and one whose
//! authentication stalls (an `AuthorizedKeysCommand` that never returns).

use std::time::{Duration, Instant};

use blargh_ssh::{Session, SshError};
use test_support::sshd::Sshd;

use crate::common::Env;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Connects with `TIMEOUT`, and fails the test if the attempt outlives it by much.
async fn connect_expecting_timeout(env: &Env, options: blargh_ssh::ConnectOptions) -> SshError {
    let mut options = options;
    options.connect_timeout = TIMEOUT;
    let t0 = Instant::now();
    let r = tokio::time::timeout(TIMEOUT * 5, Session::connect(&env.dest("root"), &options)).await;
    let took = t0.elapsed();
    let err = match r {
        Err(_) => panic!("still connecting after {took:?}: no timeout"),
        Ok(Ok(_)) => panic!("connected"),
        Ok(Err(e)) => e,
    };
    assert!(took < TIMEOUT * 3, "took {took:?}: {err}");
    err
}

#[tokio::test]
async fn a_server_that_accepts_and_says_nothing_times_out_naming_the_host() {
    let env = Env::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accepted by the kernel's backlog, never read or written.
    let mut options = env.options();
    options.connect_timeout = TIMEOUT;
    let dest = blargh_ssh::Destination::new("127.0.0.1")
        .with_user("root")
        .with_port(port);
    let t0 = Instant::now();
    let err = tokio::time::timeout(TIMEOUT * 5, Session::connect(&dest, &options))
        .await
        .expect("no timeout")
        .expect_err("connected to a silent port");
    assert!(t0.elapsed() < TIMEOUT * 3, "{:?}", t0.elapsed());
    let shown = err.to_string();
    assert!(matches!(err, SshError::Timeout { .. }), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1 port {port}")), "{shown}");
    drop(silent);
}

#[tokio::test]
async fn authentication_that_stalls_times_out_naming_the_host() {
    // sshd asks this command for the keys of a user whose key is not in the file, and it
    // never answers: the server stalls halfway through authentication.
    let sshd = Sshd::builder()
        .config_line("AuthorizedKeysCommand /bin/sleep 600")
        .config_line("AuthorizedKeysCommandUser nobody")
        .start();
    let env = Env::with(sshd);
    // Not in the authorized keys file, so sshd goes on to ask the command.
    let key = test_support::sshd::Keygen::ed25519(&env.ssh_dir(), "id_other").generate();
    let mut options = env.options();
    options.identity_files = vec![key.private.clone()];
    let err = connect_expecting_timeout(&env, options).await;
    let shown = err.to_string();
    assert!(
        matches!(
            err,
            SshError::Timeout {
                step: "SSH authentication",
                ..
            }
        ),
        "{shown}\n--- sshd log ---\n{}",
        env.sshd.log_text()
    );
    assert!(shown.contains("127.0.0.1 port"), "{shown}");
}
