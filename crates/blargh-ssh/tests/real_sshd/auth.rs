//! Authentication: key files (plain and passphrase-protected), ssh-agent with
//! ed25519, RSA (SHA-2 signatures) and ECDSA keys, passwords, and the messages when
//! nothing works.

use std::sync::{Arc, Mutex};

use blargh_ssh::{Session, SshError};
use test_support::sshd::{Agent, Keygen, Sshd, ensure_password_user};

use crate::common::Env;

async fn whoami(env: &Env, session: &Session) -> String {
    let out = env.ok(session.exec("id -un", tokio::io::empty()).await);
    assert!(out.success(), "id -un: {}", out.stderr_str());
    out.stdout_str().trim().to_string()
}

#[tokio::test]
async fn ed25519_key_file() {
    let env = Env::new();
    let key = env.authorized_key("id_deploy");
    let mut options = env.options();
    options.identity_files = vec![key.private.clone()];
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    assert_eq!(whoami(&env, &session).await, "root");
    env.ok(session.close().await);
}

#[tokio::test]
async fn default_key_file_in_home() {
    let env = Env::new();
    // ~/.ssh/id_ed25519 is tried when no key is named.
    env.authorized_key("id_ed25519");
    let session = env.ok(Session::connect(&env.dest("root"), &env.options()).await);
    assert_eq!(whoami(&env, &session).await, "root");
}

async fn agent_login(key_type: &str, bits: Option<u32>, sshd: Sshd) {
    let env = Env::with(sshd);
    let agent = Agent::start();
    let mut keygen = Keygen::new(agent.dir(), &format!("id_{key_type}"), key_type);
    if let Some(bits) = bits {
        keygen = keygen.bits(bits);
    }
    let key = keygen.generate();
    agent.add(&key);
    env.sshd.authorize(&key);
    let mut options = env.options();
    options.use_agent = true;
    options.agent_socket = Some(agent.socket().to_path_buf());
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    assert_eq!(whoami(&env, &session).await, "root");
    let log = env.sshd.log_text();
    assert!(
        log.contains("Accepted publickey for root"),
        "sshd did not log a public key login:\n{log}"
    );
}

#[tokio::test]
async fn agent_ed25519() {
    agent_login("ed25519", None, Sshd::start()).await;
}

#[tokio::test]
async fn agent_ecdsa() {
    agent_login("ecdsa", Some(256), Sshd::start()).await;
}

#[tokio::test]
async fn agent_rsa_with_sha2_signatures() {
    // The daemon accepts only SHA-2 RSA signatures: a login proves rsa-sha2-* was used.
    let sshd = Sshd::builder()
        .config_line("PubkeyAcceptedAlgorithms rsa-sha2-512,rsa-sha2-256")
        .start();
    agent_login("rsa", Some(3072), sshd).await;
}

#[tokio::test]
async fn passphrase_protected_key_file() {
    let env = Env::new();
    let key = Keygen::ed25519(&env.ssh_dir(), "id_locked")
        .passphrase("correct horse battery")
        .generate();
    env.sshd.authorize(&key);

    // Without a passphrase callback the key is skipped, and the error says so.
    let mut options = env.options();
    options.identity_files = vec![key.private.clone()];
    let err = Session::connect(&env.dest("root"), &options)
        .await
        .expect_err("a locked key without a passphrase must not log in");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, SshError::Auth { .. }), "{text}");
    assert!(text.contains("passphrase-protected"), "{text}");
    assert!(text.contains("ssh-add"), "{text}");

    // A wrong passphrase is reported as such.
    let wrong = options
        .clone()
        .with_passphrase(|_| Some("wrong".to_string()));
    let text = Session::connect(&env.dest("root"), &wrong)
        .await
        .expect_err("wrong passphrase")
        .to_string();
    assert!(text.contains("wrong passphrase"), "{text}");

    // With the right one it logs in, and the callback was asked about this file.
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let options = options.with_passphrase(move |path| {
        seen.lock().unwrap().push(path.to_path_buf());
        Some("correct horse battery".to_string())
    });
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    assert_eq!(whoami(&env, &session).await, "root");
    assert_eq!(*asked.lock().unwrap(), vec![key.private.clone()]);
}

#[tokio::test]
async fn identity_file_is_tried_before_many_agent_keys() {
    // An agent full of wrong keys would exhaust MaxAuthTries if tried first.
    let env = Env::with(Sshd::builder().config_line("MaxAuthTries 2").start());
    let agent = Agent::start();
    for i in 0..3 {
        agent.add(&Keygen::ed25519(agent.dir(), &format!("wrong{i}")).generate());
    }
    let key = env.authorized_key("id_right");
    let mut options = env.options();
    options.use_agent = true;
    options.agent_socket = Some(agent.socket().to_path_buf());
    options.identity_files = vec![key.private.clone()];
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    assert_eq!(whoami(&env, &session).await, "root");
}

#[tokio::test]
async fn password() {
    const USER: &str = "blargh-pw-test";
    const PASSWORD: &str = "blargh pw test 7c1e";
    ensure_password_user(USER, PASSWORD);
    let env = Env::with(Sshd::builder().password_authentication(true).start());

    let mut options = env.options();
    options.password = Some(PASSWORD.to_string());
    let session = env.ok(Session::connect(&env.dest(USER), &options).await);
    assert_eq!(whoami(&env, &session).await, USER);
    env.ok(session.close().await);

    options.password = Some("not the password".to_string());
    let err = Session::connect(&env.dest(USER), &options)
        .await
        .expect_err("wrong password");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, SshError::Auth { .. }), "{text}");
    assert!(text.contains("password: rejected"), "{text}");
}

#[tokio::test]
async fn failure_lists_what_was_tried() {
    let env = Env::new();
    let stranger = Keygen::ed25519(&env.ssh_dir(), "id_stranger").generate();
    let mut options = env.options();
    options.identity_files = vec![stranger.private.clone()];
    options.password = Some("irrelevant".into());
    let err = Session::connect(&env.dest("root"), &options)
        .await
        .expect_err("an unknown key must not log in");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, SshError::Auth { .. }), "{text}");
    assert!(text.contains("as root on 127.0.0.1:"), "{text}");
    assert!(text.contains("id_stranger: rejected"), "{text}");
    assert!(text.contains("password: not offered"), "{text}");
    assert!(text.contains("publickey"), "{text}");
    assert!(text.contains("authorized_keys"), "{text}");

    // Nothing at all to offer.
    let err = Session::connect(&env.dest("root"), &env.options())
        .await
        .expect_err("no credentials");
    assert!(err.to_string().contains("No key was available"), "{err}");
}

#[tokio::test]
async fn ecdsa_key_file() {
    let env = Env::new();
    let key = Keygen::new(&env.ssh_dir(), "id_ecdsa", "ecdsa")
        .bits(384)
        .generate();
    env.sshd.authorize(&key);
    let mut options = env.options();
    options.identity_files = vec![key.private.clone()];
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    assert_eq!(whoami(&env, &session).await, "root");
}

#[tokio::test]
async fn rsa_key_file_is_signed_by_the_agent() {
    // MaxAuthTries 2 and two wrong agent keys: only trying the named file first works.
    let env = Env::with(Sshd::builder().config_line("MaxAuthTries 2").start());
    let key = Keygen::new(&env.ssh_dir(), "id_rsa_deploy", "rsa")
        .bits(3072)
        .generate();
    env.sshd.authorize(&key);
    let mut options = env.options();
    options.identity_files = vec![key.private.clone()];

    // Without an agent the RSA file cannot be used, and the error says what to do.
    let err = Session::connect(&env.dest("root"), &options)
        .await
        .expect_err("RSA key files need the agent");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        text.contains("RSA key files are used only through ssh-agent"),
        "{text}"
    );
    assert!(
        text.contains(&format!("ssh-add {}", key.private.display())),
        "{text}"
    );

    let agent = Agent::start();
    agent.add(&Keygen::ed25519(agent.dir(), "wrong0").generate());
    agent.add(&Keygen::ed25519(agent.dir(), "wrong1").generate());
    agent.add(&key);
    options.use_agent = true;
    options.agent_socket = Some(agent.socket().to_path_buf());
    let session = env.ok(Session::connect(&env.dest("root"), &options).await);
    assert_eq!(whoami(&env, &session).await, "root");
}
