//! The Debian packages the tests drive as real peers: one list, one way of installing it,
//! used by `cargo xtask test`, `cargo xtask prereqs` and `.ci/run`.

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

/// Packages that must come from the same Debian release as each other. The machine image
/// ships `qemu-utils` from bookworm-backports, which `Breaks: qemu-system-common (<< 1:8.0)`:
/// installing `qemu-system-x86` alone is refused ("held broken packages"), so both are
/// installed together from the machine's own release, downgrading `qemu-utils` if needed.
const SAME_RELEASE: &[&str] = &["qemu-system-x86", "qemu-utils"];

/// The packages whose files are missing, in list order, without repeats.
fn missing() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for (file, pkg) in NEEDED {
        if !Path::new(file).exists() && !out.contains(pkg) {
            out.push(pkg);
        }
    }
    out
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

/// Installs missing packages with apt-get when root; otherwise says what to run.
pub fn ensure() -> Result<(), String> {
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
