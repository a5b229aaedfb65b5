//! The SSH flags of the day-to-day commands against a real OpenSSH sshd on loopback: one
//! `--password-stdin` serves every host of a multi-host command.

use std::io::Write;
use std::process::{Command, Stdio};

use test_support::sshd::{Sshd, ensure_password_user};

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");

#[test]
fn one_password_on_stdin_serves_every_host() {
    if !test_support::agent::running_as_root() {
        eprintln!(
            "SKIPPED one_password_on_stdin_serves_every_host: needs root (a local user with a password)"
        );
        return;
    }
    ensure_password_user("blarghpw", "pw-Secret-4411");
    let sshd = Sshd::builder().password_authentication(true).start();
    let kh = sshd.dir().join("client_known_hosts");
    std::fs::write(&kh, sshd.known_hosts_line() + "\n").unwrap();
    let cfg = sshd.dir().join("client_ssh_config");
    std::fs::write(&cfg, "").unwrap();
    let a = format!("blarghpw@127.0.0.1:{}", sshd.port());
    let b = format!("blarghpw@localhost:{}", sshd.port());
    let kh_b = format!(
        "{}\n{}",
        sshd.known_hosts_line(),
        sshd.known_hosts_line()
            .replacen("127.0.0.1", "localhost", 1)
    );
    std::fs::write(&kh, kh_b + "\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "status",
            "--app",
            "nosuchapp",
            "--host",
            &a,
            "--host",
            &b,
            "--password-stdin",
        ])
        .arg("--known-hosts")
        .arg(&kh)
        .arg("--ssh-config")
        .arg(&cfg)
        .env_remove("SSH_AUTH_SOCK")
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"pw-Secret-4411\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Both hosts logged in: each fails only because no agent was seeded for that app.
    for host in [&a, &b] {
        let line = text
            .lines()
            .find(|l| l.starts_with(host.as_str()))
            .unwrap_or_else(|| panic!("no line for {host}:\n{text}"));
        assert!(line.contains("seeded"), "{host} did not get in:\n{text}");
    }
    assert!(
        !text.contains("pw-Secret-4411"),
        "the password is shown:\n{text}"
    );
}
