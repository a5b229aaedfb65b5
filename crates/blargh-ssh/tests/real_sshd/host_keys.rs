//! Host key checking against known_hosts: unknown hosts refused by default,
//! accept-new, hashed and `[host]:port` entries, and a changed key refused with a
//! message that says how to check and fix it.

use std::fs;
use std::process::Command;

use blargh_ssh::{HostKeyPolicy, Session, SshError};
use test_support::sshd::{Keygen, hash_known_hosts};

use crate::common::Env;

/// `SHA256:…` of a public key file, as `ssh-keygen -lf` prints it.
fn fingerprint(public: &std::path::Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .expect("ssh-keygen -lf");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string()
}

#[tokio::test]
async fn bracketed_port_entry_is_accepted() {
    let env = Env::new();
    let text = fs::read_to_string(env.known_hosts()).unwrap();
    assert!(text.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", env.sshd.port())));
    let key = env.authorized_key("id");
    let mut options = env.options();
    options.identity_files = vec![key.private];
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    env.ok(session.close().await);
}

#[tokio::test]
async fn unknown_host_is_refused_when_not_interactive() {
    let env = Env::new();
    fs::write(env.known_hosts(), "").unwrap();
    let key = env.authorized_key("id");
    let mut options = env.options();
    options.identity_files = vec![key.private];
    let err = Session::connect(&env.dest("root"), &options)
        .await
        .expect_err("unknown host must be refused");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, SshError::UnknownHostKey { .. }), "{text}");
    assert!(
        text.contains(&fingerprint(&env.sshd.host_key().public)),
        "{text}"
    );
    assert!(
        text.contains(&env.known_hosts().display().to_string()),
        "{text}"
    );
    assert!(text.contains("ssh-keygen -lf"), "{text}");
    assert_eq!(fs::read_to_string(env.known_hosts()).unwrap(), "");
}

#[tokio::test]
async fn ask_callback_decides() {
    let env = Env::new();
    fs::write(env.known_hosts(), "").unwrap();
    let key = env.authorized_key("id");
    let mut options = env.options();
    options.identity_files = vec![key.private];
    let port = env.sshd.port();
    let expected = fingerprint(&env.sshd.host_key().public);

    let no = options.clone().with_ask(|_| false);
    assert!(matches!(
        Session::connect(&env.dest("root"), &no).await,
        Err(SshError::UnknownHostKey { .. })
    ));

    let yes = options.with_ask(move |u| {
        assert_eq!(u.host, format!("[127.0.0.1]:{port}"));
        assert_eq!(u.key_type, "ssh-ed25519");
        assert_eq!(u.fingerprint, expected);
        true
    });
    let session = env.ok(Session::connect(&env.dest("root"), &yes).await);
    env.ok(session.close().await);
    let text = fs::read_to_string(env.known_hosts()).unwrap();
    assert!(
        text.starts_with(&format!("[127.0.0.1]:{port} ssh-ed25519 ")),
        "{text}"
    );
}

#[tokio::test]
async fn accept_new_records_the_key_and_the_next_connect_passes() {
    let env = Env::new();
    let kh = env.ssh_dir().join("new_dir/known_hosts");
    let key = env.authorized_key("id");
    let mut options = env.options();
    options.identity_files = vec![key.private];
    options.known_hosts = Some(kh.clone());
    options.host_key_policy = HostKeyPolicy::AcceptNew;
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    env.ok(session.close().await);

    let text = fs::read_to_string(&kh).unwrap();
    assert_eq!(
        text.trim(),
        format!(
            "[127.0.0.1]:{} {}",
            env.sshd.port(),
            env.sshd.host_key().type_and_blob()
        )
    );

    options.host_key_policy = HostKeyPolicy::Refuse;
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    env.ok(session.close().await);
    assert_eq!(
        fs::read_to_string(&kh).unwrap(),
        text,
        "nothing more appended"
    );
}

#[tokio::test]
async fn hashed_entry_is_accepted() {
    let env = Env::new();
    hash_known_hosts(&env.known_hosts());
    let text = fs::read_to_string(env.known_hosts()).unwrap();
    assert!(text.starts_with("|1|"), "not hashed: {text}");
    let key = env.authorized_key("id");
    let mut options = env.options();
    options.identity_files = vec![key.private];
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    env.ok(session.close().await);
}

#[tokio::test]
async fn changed_host_key_is_refused_with_the_fix() {
    let env = Env::new();
    let other = Keygen::ed25519(&env.ssh_dir(), "other_host_key").generate();
    fs::write(
        env.known_hosts(),
        format!(
            "# an older key\n[127.0.0.1]:{} {}\n",
            env.sshd.port(),
            other.type_and_blob()
        ),
    )
    .unwrap();
    let key = env.authorized_key("id");
    let mut options = env.options();
    options.identity_files = vec![key.private];
    // Even accept-new must not replace a recorded key.
    options.host_key_policy = HostKeyPolicy::AcceptNew;
    let err = Session::connect(&env.dest("root"), &options)
        .await
        .expect_err("a changed key must be refused");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        matches!(err, SshError::HostKeyChanged { line: 2, .. }),
        "{text}"
    );
    let kh = env.known_hosts().display().to_string();
    assert!(
        text.contains(&fingerprint(&env.sshd.host_key().public)),
        "{text}"
    );
    assert!(text.contains(&format!("{kh}:2")), "{text}");
    assert!(
        text.contains(&format!(
            "ssh-keygen -R '[127.0.0.1]:{}' -f {kh}",
            env.sshd.port()
        )),
        "{text}"
    );
    assert!(
        text.contains("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"),
        "{text}"
    );
    assert!(
        !fs::read_to_string(env.known_hosts())
            .unwrap()
            .contains(&env.sshd.host_key().type_and_blob())
    );
}
