//! The deploy key given to CI in `BLARGH_SSH_KEY` reaches the SSH client and nothing else:
//! not `cargo build` or any build script it runs, not the local hooks, and no file outlives
//! the command.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-blargh");
const CANARY: &str = "CANARY-9f3e1c-not-a-real-key";

/// A package whose build script and pre-build hook write their environment into `dir`.
fn app(dir: &Path) {
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"canary\"\nversion = \"0.1.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n\n\
         [workspace]\n\n[package.metadata.blargh]\nhosts = [\"nobody@127.0.0.1:1\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        dir.join("build.rs"),
        "fn main() {\n    let env: Vec<String> = std::env::vars().map(|(k, v)| format!(\"{k}={v}\")).collect();\n    \
         std::fs::write(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/build-env.txt\"), env.join(\"\\n\")).unwrap();\n}\n",
    )
    .unwrap();
    let hooks = dir.join(".blargh/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("pre-build");
    std::fs::write(
        &hook,
        "#!/bin/sh\nenv > \"$(dirname \"$0\")/../../hook-env.txt\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_deploy_key_reaches_no_build_script_no_hook_and_no_leftover_file() {
    let dir = tempfile::tempdir().unwrap();
    app(dir.path());
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["deploy", "-m", "canary"])
        .current_dir(dir.path())
        .env("BLARGH_SSH_KEY", CANARY)
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .env("TMPDIR", tmp.path())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The build ran, then the unreachable host failed the deploy.
    assert!(!out.status.success(), "{text}");
    let build_env = std::fs::read_to_string(dir.path().join("build-env.txt"))
        .unwrap_or_else(|e| panic!("the build script did not run ({e}):\n{text}"));
    assert!(build_env.contains("CARGO_PKG_NAME=canary"), "{build_env}");
    assert!(
        !build_env.contains(CANARY),
        "a build script saw the deploy key"
    );
    assert!(!build_env.contains("BLARGH_SSH_KEY"), "{build_env}");
    let hook_env = std::fs::read_to_string(dir.path().join("hook-env.txt")).unwrap();
    assert!(hook_env.contains("BLARGH_HOOK=pre-build"), "{hook_env}");
    assert!(
        !hook_env.contains(CANARY),
        "the pre-build hook saw the deploy key"
    );
    assert!(!text.contains(CANARY), "the output shows the key:\n{text}");
    // The key was written for the SSH client, and removed before the command ended.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}
