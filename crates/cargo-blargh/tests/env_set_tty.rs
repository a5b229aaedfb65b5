//! `env set KEY` on a terminal does not echo the value it reads; `KEY=VALUE` on the
//! command line still works but warns that the value lands in the shell's history. The
//! terminal is a real pseudo-terminal (python3's `pty`); the host is a closed port, so the
//! command fails after reading the value, which is all these tests need.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");
const SECRET: &str = "s3cret-canary-7f1d";

/// Runs `cargo-blargh blargh ARGS…` on a new pseudo-terminal, types `typed` once the
/// prompt shows (a line typed before it would be flushed when echo goes off), and returns everything the terminal displayed.
fn on_a_terminal(args: &[&str], typed: &str) -> String {
    let script = r#"
import os, pty, sys, time, select
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:-1])
typed = sys.argv[-1].encode()
out = b""
sent = False
deadline = time.time() + 30
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if not sent and b"value for" in out:
        os.write(fd, typed + b"\n")
        sent = True
    if r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
if os.waitpid(pid, os.WNOHANG) == (0, 0):
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    out += b"\n[killed after 30 s]"
sys.stdout.write(out.decode(errors="replace"))
"#;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("root@127.0.0.1:{port}");
    let home = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .arg("blargh")
        .args(args)
        .args(["--host", &host, "--app", "hello"])
        .arg(typed)
        .env("HOME", home.path())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_value_typed_at_the_prompt_is_not_echoed() {
    let shown = on_a_terminal(&["env", "set", "API_TOKEN"], SECRET);
    assert!(
        shown.contains("value for API_TOKEN"),
        "no prompt: {shown:?}"
    );
    assert!(
        !shown.contains(SECRET),
        "the terminal showed the value: {shown:?}"
    );
}

#[test]
fn a_value_on_the_command_line_works_but_warns() {
    let arg = format!("API_TOKEN={SECRET}");
    let shown = on_a_terminal(&["env", "set", &arg], "");
    assert!(
        !shown.contains("value for API_TOKEN"),
        "asked anyway: {shown:?}"
    );
    assert!(shown.contains("shell history"), "no warning: {shown:?}");
    // It went on to connect (and failed there, the port is closed), not refused the key.
    assert!(shown.contains("127.0.0.1"), "{shown:?}");
    assert!(!shown.contains("invalid value"), "{shown:?}");
}

#[test]
fn a_bad_name_is_refused_without_showing_the_value() {
    let arg = format!("api-token={SECRET}");
    let shown = on_a_terminal(&["env", "set", &arg], "");
    assert!(shown.contains("\"api-token\" is not a valid"), "{shown:?}");
    assert!(
        !shown.contains(SECRET),
        "the error showed the value: {shown:?}"
    );
}
