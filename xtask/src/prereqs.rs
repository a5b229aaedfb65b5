//! The Debian packages the tests drive as real peers, installed when missing.

use std::path::Path;
use std::process::Command;

/// (a file the package provides, the package).
const NEEDED: &[(&str, &str)] = &[
    ("/usr/bin/wrk", "wrk"),
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/bin/ssh", "openssh-client"),
    ("/usr/bin/ssh-keygen", "openssh-client"),
    ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    ("/usr/bin/qemu-img", "qemu-utils"),
    ("/usr/sbin/debootstrap", "debootstrap"),
    ("/usr/sbin/mkfs.ext4", "e2fsprogs"),
    ("/usr/bin/chromium", "chromium"),
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "fonts-dejavu-core",
    ),
];

/// Installs missing packages with apt-get when root; otherwise says what to run.
pub fn ensure() -> Result<(), String> {
    let mut missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(file, _)| !Path::new(file).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !test_support::agent::running_as_root() {
        return Err(format!(
            "the tests need these Debian packages: {list}\n  install them with: sudo apt-get install -y --no-install-recommends {list}"
        ));
    }
    eprintln!("xtask: installing {list}");
    crate::run(Command::new("apt-get").arg("update").arg("-q"))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
