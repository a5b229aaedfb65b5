//! The probe and the ELF reader against this machine: `PROBE_SCRIPT` run with the local
//! `sh`, and real executables (`/bin/ls`, cargo, this test binary) read and fitted.
//!
//! The machine is a container without an init system as PID 1, so only stable facts are
//! asserted: OS, architecture, distribution, libc. On Debian 12 (the project's machine)
//! that is exactly Debian 12 / x86_64 / glibc 2.36.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use blargh_platform::{
    Arch, GlibcVersion, Libc, NeededLibc, Os, PROBE_SCRIPT, Platform, binary_requirements,
    check_fit, parse_probe,
};

/// Run the probe as `sh -s` with the script on standard input, as over SSH.
fn probe_via_stdin(shell: &str) -> String {
    let mut child = Command::new(shell)
        .arg("-s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PROBE_SCRIPT.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "probe exited with {}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

fn local_platform() -> Platform {
    parse_probe(&probe_via_stdin("sh")).expect("local probe output parses")
}

fn local_os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default()
}

fn is_debian_12() -> bool {
    let text = local_os_release();
    text.lines().any(|l| l == "ID=debian") && text.lines().any(|l| l == "VERSION_ID=\"12\"")
}

#[test]
fn local_probe_parses() {
    let p = local_platform();
    assert_eq!(p.os, Os::Linux);
    assert_eq!(p.arch, Arch::from_uname(std::env::consts::ARCH));
    assert!(!p.kernel.is_empty());
    assert!(p.pid1.is_some(), "PID 1's name is readable");
    assert_eq!(p.is_root, p.uid == Some(0));
    assert!(p.uid.is_some());
    // Seed compresses the agent's upload when the host has gzip; this machine has it.
    assert!(p.has_command("gzip"), "the probe looks for gzip");
    let expected = blargh_platform::os_release::parse_distribution(&local_os_release());
    assert_eq!(p.distro, expected);
    if is_debian_12() {
        let d = p.distro.as_ref().unwrap();
        assert_eq!(d.id, "debian");
        assert_eq!(d.version_id.as_deref(), Some("12"));
        assert_eq!(p.arch, Arch::X86_64);
        assert_eq!(
            p.libc,
            Libc::Glibc {
                major: 2,
                minor: 36
            }
        );
        assert!(
            p.loaders
                .contains(&"/lib64/ld-linux-x86-64.so.2".to_string())
        );
        assert!(
            p.to_string()
                .starts_with("Debian GNU/Linux 12 (bookworm), x86_64, glibc 2.36, ")
        );
    }
}

#[test]
fn probe_is_the_same_under_sh_c_and_busybox() {
    let via_stdin = probe_via_stdin("sh");
    let out = Command::new("sh")
        .arg("-c")
        .arg(PROBE_SCRIPT)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), via_stdin);
    // busybox ash, as on Alpine, where the machine has it.
    if Path::new("/usr/bin/busybox").exists() || Path::new("/bin/busybox").exists() {
        let out = Command::new("busybox")
            .args(["sh", "-c", PROBE_SCRIPT])
            .output()
            .unwrap();
        assert_eq!(
            parse_probe(&String::from_utf8(out.stdout).unwrap()).unwrap(),
            parse_probe(&via_stdin).unwrap()
        );
    }
}

/// Read an executable and check it fits this machine.
fn check_local_binary(path: &Path) -> blargh_platform::BinaryReqs {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reqs = binary_requirements(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(reqs.os, Os::Linux, "{}", path.display());
    assert_eq!(
        reqs.arch,
        Arch::from_uname(std::env::consts::ARCH),
        "{}",
        path.display()
    );
    let platform = local_platform();
    check_fit(&reqs, &platform)
        .unwrap_or_else(|e| panic!("{} does not fit this machine: {e}", path.display()));
    reqs
}

#[test]
fn bin_ls_is_glibc_and_fits() {
    let reqs = check_local_binary(Path::new("/bin/ls"));
    if is_debian_12() {
        assert_eq!(reqs.libc, NeededLibc::Glibc);
        assert_eq!(
            reqs.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        let needed = reqs.glibc.expect("ls references GLIBC_ versions");
        assert!(needed >= GlibcVersion { major: 2, minor: 2 }, "{needed}");
        assert!(
            needed
                <= GlibcVersion {
                    major: 2,
                    minor: 36
                },
            "{needed}"
        );
        assert_eq!(
            reqs.to_string(),
            format!("Linux x86_64, dynamic, glibc >= {needed}")
        );
    }
}

#[test]
fn static_pie_ldconfig_needs_no_libc() {
    // Debian's ldconfig is static-pie: ET_DYN with no PT_INTERP.
    let path = Path::new("/sbin/ldconfig");
    if is_debian_12() && path.exists() {
        let reqs = check_local_binary(path);
        assert!(reqs.is_static());
        assert_eq!(reqs.libc, NeededLibc::None);
        assert_eq!(reqs.glibc, None);
    }
}

#[test]
fn cargo_and_this_test_binary_fit() {
    // The toolchain's cargo (not the rustup proxy) when cargo runs the tests.
    if let Some(cargo) = std::env::var_os("CARGO") {
        let reqs = check_local_binary(Path::new(&cargo));
        if reqs.libc == NeededLibc::Glibc {
            assert!(reqs.glibc.is_some());
        }
    }
    let me = std::env::current_exe().unwrap();
    let reqs = check_local_binary(&me);
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert_eq!(reqs.libc, NeededLibc::Glibc);
        assert!(reqs.glibc.is_some());
    }
}
