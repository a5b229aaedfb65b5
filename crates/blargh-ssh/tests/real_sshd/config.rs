//! `~/.ssh/config` against a real server: a `Host` alias with HostName, Port, User and
//! IdentityFile, and ProxyJump through a jump host (the same daemon, via direct-tcpip).

use std::fs;

use blargh_ssh::{Destination, Session, SshConfigFile};

use crate::common::Env;

#[tokio::test]
async fn alias_from_ssh_config() {
    let env = Env::new();
    let key = env.authorized_key("deploy_key");
    fs::write(
        env.ssh_dir().join("config"),
        format!(
            "Host blargh-test-alias\n  HostName 127.0.0.1\n  Port {}\n  User root\n  \
             IdentityFile ~/.ssh/deploy_key\n  IdentitiesOnly yes\n",
            env.sshd.port()
        ),
    )
    .unwrap();
    let mut options = env.options();
    options.ssh_config = SshConfigFile::Default;
    let session = env.ok(Session::connect(&Destination::new("blargh-test-alias"), &options).await);
    assert_eq!(session.host().host_name, "127.0.0.1");
    assert_eq!(session.host().identity_files, vec![key.private.clone()]);
    let out = env.ok(session.exec("id -un", tokio::io::empty()).await);
    assert_eq!(out.stdout_str().trim(), "root");
    env.ok(session.close().await);
}

#[tokio::test]
async fn proxy_jump() {
    let env = Env::new();
    env.authorized_key("id_ed25519");
    let port = env.sshd.port();
    fs::write(
        env.ssh_dir().join("config"),
        format!(
            "Host target\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  ProxyJump jump\n\n\
             Host jump\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        ),
    )
    .unwrap();
    let mut options = env.options();
    options.ssh_config = SshConfigFile::Default;
    let session = env.ok(Session::connect(&Destination::new("target"), &options).await);
    // The second login came through the first one's tunnel.
    let out = env.ok(session
        .exec("echo $SSH_CONNECTION", tokio::io::empty())
        .await);
    assert!(
        out.stdout_str().starts_with("127.0.0.1 "),
        "{}",
        out.stdout_str()
    );
    env.ok(session.close().await);
    let log = env.sshd.log_text();
    assert_eq!(
        log.matches("Accepted publickey for root").count(),
        2,
        "expected a jump login and a target login:\n{log}"
    );
}
