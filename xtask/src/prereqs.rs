//! The Debian packages the tests drive as real peers: one list, one way of installing it,
//! used by `cargo xtask test`, `cargo xtask prereqs` and `.ci/run`. Also the two tools that
//! build for an older glibc (the Debian 11 VM test): zig from PyPI's `ziglang`, which
//! cargo-zigbuild runs as `python3 -m ziglang`, and cargo-zigbuild from crates.io, both
//! pinned.

use std::path::Path;
use std::process::Command;

/// (a file the package provides, the package).
const NEEDED: &[(&str, &str)] = &[
    ("/usr/bin/wrk", "wrk"),
    ("/usr/bin/h2load", "nghttp2-client"),
    ("/usr/bin/curl", "curl"),
    ("/usr/bin/openssl", "openssl"),
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/bin/ssh", "openssh-client"),
    ("/usr/bin/ssh-keygen", "openssh-client"),
    ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    ("/usr/bin/qemu-img", "qemu-utils"),
    ("/usr/sbin/debootstrap", "debootstrap"),
    ("/usr/sbin/mkfs.ext4", "e2fsprogs"),
    ("/etc/ssl/certs/ca-certificates.crt", "ca-certificates"),
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/pebble", "pebble"),
    ("/usr/bin/pebble-challtestsrv", "pebble"),
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "fonts-dejavu-core",
    ),
    // `mix release` of examples/elixir-hello (tests/beam_release.rs): elixir pulls in
    // erlang-base and the OTP apps it needs; that is all a release without hex packages
    // takes (erlang-dev/erlang-src are not needed).
    ("/usr/bin/mix", "elixir"),
];

/// PyPI's `ziglang`: zig, for cargo-zigbuild (`python3 -m ziglang`).
const ZIGLANG: &str = "0.17.1";
/// crates.io's `cargo-zigbuild`.
const CARGO_ZIGBUILD: &str = "0.24.0";

/// Packages that must come from the same Debian release as each other. The machine image
/// ships `qemu-utils` from bookworm-backports, which `Breaks: qemu-system-common (<< 1:8.0)`:
/// installing `qemu-system-x86` alone is refused ("held broken packages"), so both are
/// installed together from the machine's own release, downgrading `qemu-utils` if needed.
const SAME_RELEASE: &[&str] = &["qemu-system-x86", "qemu-utils"];

/// The packages whose files are missing, in list order, without repeats; and python3-pip
/// when `python3` has no pip to install zig with.
fn missing() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for (file, pkg) in NEEDED {
        if !Path::new(file).exists() && !out.contains(pkg) {
            out.push(pkg);
        }
    }
    if !has_zig() && !runs("python3", &["-m", "pip", "--version"]) {
        out.push("python3-pip");
    }
    out
}

/// `program args…` runs and exits 0 (its output thrown away).
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// zig answers as cargo-zigbuild finds it: `python3 -m ziglang`.
fn has_zig() -> bool {
    runs("python3", &["-m", "ziglang", "version"])
}

/// Installs zig (PyPI's `ziglang`, into the `python3` on the PATH, which is the one
/// cargo-zigbuild runs) and cargo-zigbuild, each when missing.
fn ensure_zigbuild() -> Result<(), String> {
    if !has_zig() {
        eprintln!("xtask: installing zig (pip install ziglang=={ZIGLANG})");
        let mut pip = Command::new("python3");
        pip.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ]);
        if !test_support::agent::running_as_root() {
            pip.arg("--user");
        }
        // Debian's python3 is "externally managed" (PEP 668) and refuses a plain `pip
        // install`; this variable lets it (older pips ignore it).
        crate::run(
            pip.arg(format!("ziglang=={ZIGLANG}"))
                .env("PIP_BREAK_SYSTEM_PACKAGES", "1"),
        )?;
        if !has_zig() {
            return Err(
                "pip installed ziglang but `python3 -m ziglang version` still fails".into(),
            );
        }
    }
    let cargo = crate::cargo();
    if !runs(&cargo, &["zigbuild", "--help"]) {
        eprintln!("xtask: installing cargo-zigbuild {CARGO_ZIGBUILD}");
        crate::run(Command::new(&cargo).args([
            "install",
            "--locked",
            "--quiet",
            "cargo-zigbuild",
            "--version",
            CARGO_ZIGBUILD,
        ]))?;
    }
    Ok(())
}

/// The `apt-get install` arguments for `missing` packages on a machine of `codename`
/// (`bookworm`): packages of one [`SAME_RELEASE`] group go together, pinned to `codename`.
pub fn install_args(missing: &[&str], codename: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "--allow-downgrades",
    ]
    .map(String::from)
    .to_vec();
    let grouped = missing.iter().any(|p| SAME_RELEASE.contains(p));
    for pkg in missing {
        if !SAME_RELEASE.contains(pkg) {
            args.push((*pkg).to_string());
        }
    }
    if grouped {
        for pkg in SAME_RELEASE {
            args.push(format!("{pkg}/{codename}"));
        }
    }
    args
}

/// This machine's Debian codename, from `/etc/os-release`.
fn codename() -> Result<String, String> {
    let text = std::fs::read_to_string("/etc/os-release")
        .map_err(|e| format!("cannot read /etc/os-release: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "no VERSION_CODENAME in /etc/os-release: is this Debian?".to_string())
}

/// Installs missing packages with apt-get when root (otherwise says what to run), then zig
/// and cargo-zigbuild.
pub fn ensure() -> Result<(), String> {
    apt_packages()?;
    ensure_zigbuild()
}

fn apt_packages() -> Result<(), String> {
    let missing = missing();
    if missing.is_empty() {
        return Ok(());
    }
    let args = install_args(&missing, &codename()?);
    if !test_support::agent::running_as_root() {
        return Err(format!(
            "the tests need these Debian packages: {}\n  install them with: sudo apt-get update && sudo apt-get {}",
            missing.join(" "),
            args.join(" ")
        ));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    crate::run(Command::new("apt-get").arg("update").arg("-q"))?;
    crate::run(
        Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

#[cfg(test)]
mod tests {
    use super::install_args;

    #[test]
    fn qemu_packages_are_installed_together_from_the_machines_release() {
        let args = install_args(&["wrk", "qemu-system-x86"], "bookworm");
        assert!(args.contains(&"--allow-downgrades".to_string()));
        assert!(args.contains(&"wrk".to_string()));
        assert!(args.contains(&"qemu-system-x86/bookworm".to_string()));
        assert!(args.contains(&"qemu-utils/bookworm".to_string()));
        assert!(!args.contains(&"qemu-system-x86".to_string()));
    }

    #[test]
    fn other_packages_are_not_pinned() {
        let args = install_args(&["wrk"], "bookworm");
        assert_eq!(args.last().unwrap(), "wrk");
        assert!(!args.iter().any(|a| a.contains("qemu")));
    }
}
