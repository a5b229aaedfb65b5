//! Project chores, run as `cargo xtask <task>`:
//!
//! - `test`: install what the tests need (Debian packages, when root) and run them all;
//! - `bench`: measure the agent against the promises and print figures and ratios;
//! - `demo`: show a zero-downtime switch on this machine;
//! - `mutants`: mutation testing of the VM-free crates, score per crate (docs/testing.md);
//! - `audit`: Cargo.lock against a snapshot of the RustSec advisory database;
//! - `prereqs`: install the Debian packages the tests drive, and zig and cargo-zigbuild.

mod audit;
mod bench;
mod bench_deploy;
mod bench_roundtrips;
mod bench_seed;
mod bench_tls;
mod demo;
mod mutants;
mod prereqs;

use std::process::{Command, ExitCode};

use test_support::hello::workspace_root;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("prereqs") => prereqs::ensure(),
        Some("mutants") => mutants::run(&args[1..]),
        Some("audit") => audit::run(&args[1..]),
        _ => Err(
            "usage: cargo xtask <test|bench|demo|mutants|audit|prereqs>\n  test     install test prerequisites and run every test\n  bench    print benchmark figures (docs/benchmarks.md); `bench seed`, `bench deploy`, `bench roundtrips` on a VM\n  demo     seed a throwaway VM, deploy v1, deploy v2 under load (--local: no VM)\n  mutants  cargo-mutants on the VM-free crates, score per crate (--in-diff: only what changed)\n  audit    Cargo.lock against the RustSec advisories in audit/ (offline; audit/accepted.toml)\n  prereqs  install the Debian packages tests need, zig and cargo-zigbuild"
                .to_string(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask test [ARGS…]`: prerequisites, then `cargo test --workspace` (ARGS go to it).
fn test(extra: &[String]) -> Result<(), String> {
    prereqs::ensure()?;
    run(Command::new(cargo())
        .current_dir(workspace_root())
        .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .args(extra))
}

/// Builds `cargo-blargh` and two releases of examples/hello (v1, v2) with `profile`;
/// returns (cargo-blargh, hello v1, hello v2).
pub fn build_all(
    profile: test_support::hello::Profile,
) -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf), String> {
    use test_support::hello::{self, Profile};
    eprintln!("xtask: building cargo-blargh and two releases of examples/hello (v1, v2)");
    let mut cmd = Command::new(cargo());
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "-p", "cargo-blargh"]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    let dir = if profile == Profile::Release {
        "release"
    } else {
        "debug"
    };
    let bin = workspace_root()
        .join("target")
        .join(dir)
        .join("cargo-blargh");
    let v1 = hello::build("v1", profile).map_err(|e| e.to_string())?;
    let v2 = hello::build("v2", profile).map_err(|e| e.to_string())?;
    Ok((bin, v1, v2))
}

/// The cargo that runs us.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs a command, failing with its status.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}
