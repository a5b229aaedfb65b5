//! Parsing captured probe outputs (`tests/fixtures/*.txt`) of real systems, and the
//! support verdict for each.
//!
//! Each fixture is what `PROBE_SCRIPT` prints on that system; see
//! `docs/adding-an-init-adapter.md` for how to capture a new one.

use blargh_platform::{
    Arch, InitKind, InitSystem, Libc, Os, Platform, Support, parse_probe, support,
};

/// What a fixture must parse to.
struct Expect {
    os: Os,
    distro: Option<&'static str>,
    version: Option<&'static str>,
    pretty: Option<&'static str>,
    arch: Arch,
    libc: Libc,
    init: InitSystem,
    supported: Option<InitKind>,
    root: bool,
    sudo: bool,
}

fn load(name: &str) -> Platform {
    let path = format!("{}/tests/fixtures/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse_probe(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check(name: &str, want: Expect) -> Platform {
    let p = load(name);
    assert_eq!(p.os, want.os, "{name}: os");
    let distro = p.distro.as_ref();
    assert_eq!(
        distro.map(|d| d.id.as_str()),
        want.distro,
        "{name}: distro id"
    );
    assert_eq!(
        distro.and_then(|d| d.version_id.as_deref()),
        want.version,
        "{name}: version"
    );
    assert_eq!(
        distro.and_then(|d| d.pretty_name.as_deref()),
        want.pretty,
        "{name}: pretty name"
    );
    assert_eq!(p.arch, want.arch, "{name}: arch");
    assert_eq!(p.libc, want.libc, "{name}: libc");
    assert_eq!(p.init, want.init, "{name}: init");
    assert_eq!(p.is_root, want.root, "{name}: root");
    assert_eq!(p.has_sudo, want.sudo, "{name}: sudo");
    let verdict = support(&p);
    assert_eq!(
        verdict.init_kind(),
        want.supported,
        "{name}: support: {verdict}"
    );
    if let Support::Unsupported {
        found, how_to_add, ..
    } = &verdict
    {
        assert_eq!(found, &p.to_string());
        assert!(how_to_add.contains("docs/adding-an-init-adapter.md"));
    }
    // Serializes and comes back identical.
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), p);
    p
}

fn glibc(minor: u32) -> Libc {
    Libc::Glibc { major: 2, minor }
}

fn linux_systemd(
    distro: &'static str,
    version: Option<&'static str>,
    pretty: &'static str,
    arch: Arch,
    glibc_minor: u32,
    root: bool,
    sudo: bool,
) -> Expect {
    Expect {
        os: Os::Linux,
        distro: Some(distro),
        version,
        pretty: Some(pretty),
        arch,
        libc: glibc(glibc_minor),
        init: InitSystem::Systemd,
        supported: Some(InitKind::Systemd),
        root,
        sudo,
    }
}

#[test]
fn debian_11() {
    let p = check(
        "debian-11",
        linux_systemd(
            "debian",
            Some("11"),
            "Debian GNU/Linux 11 (bullseye)",
            Arch::Aarch64,
            31,
            false,
            true,
        ),
    );
    assert_eq!(p.loaders, ["/lib/ld-linux-aarch64.so.1"]);
    assert_eq!(
        p.target_triple().as_deref(),
        Some("aarch64-unknown-linux-gnu")
    );
}

#[test]
fn debian_12() {
    let p = check(
        "debian-12",
        linux_systemd(
            "debian",
            Some("12"),
            "Debian GNU/Linux 12 (bookworm)",
            Arch::X86_64,
            36,
            true,
            false,
        ),
    );
    assert_eq!(
        p.to_string(),
        "Debian GNU/Linux 12 (bookworm), x86_64, glibc 2.36, systemd"
    );
    assert_eq!(
        p.distro.as_ref().unwrap().version_codename.as_deref(),
        Some("bookworm")
    );
    assert_eq!(p.kernel, "6.1.0-28-amd64");
    assert!(p.has_command("systemctl"));
}

#[test]
fn debian_12_with_openrc() {
    let p = check(
        "debian-12-openrc",
        Expect {
            os: Os::Linux,
            distro: Some("debian"),
            version: Some("12"),
            pretty: Some("Debian GNU/Linux 12 (bookworm)"),
            arch: Arch::X86_64,
            libc: glibc(36),
            init: InitSystem::OpenRc,
            supported: Some(InitKind::OpenRc),
            root: false,
            sudo: true,
        },
    );
    assert!(p.has_command("supervise-daemon"));
    assert!(p.has_command("rc-service"));
    assert!(!p.has_command("systemctl"));
}

#[test]
fn ubuntu_22_04() {
    let p = check(
        "ubuntu-22.04",
        linux_systemd(
            "ubuntu",
            Some("22.04"),
            "Ubuntu 22.04.5 LTS",
            Arch::X86_64,
            35,
            false,
            true,
        ),
    );
    assert!(p.is_like("debian"));
    assert_eq!(p.uid, Some(1000));
}

#[test]
fn ubuntu_24_04() {
    let p = check(
        "ubuntu-24.04",
        linux_systemd(
            "ubuntu",
            Some("24.04"),
            "Ubuntu 24.04.1 LTS",
            Arch::X86_64,
            39,
            false,
            true,
        ),
    );
    assert_eq!(
        p.to_string(),
        "Ubuntu 24.04.1 LTS, x86_64, glibc 2.39, systemd"
    );
}

#[test]
fn alpine_3_20() {
    let p = check(
        "alpine-3.20",
        Expect {
            os: Os::Linux,
            distro: Some("alpine"),
            version: Some("3.20.3"),
            pretty: Some("Alpine Linux v3.20"),
            arch: Arch::X86_64,
            libc: Libc::Musl {
                version: Some("1.2.5".into()),
            },
            init: InitSystem::OpenRc,
            supported: Some(InitKind::OpenRc),
            root: true,
            sudo: false,
        },
    );
    assert_eq!(
        p.to_string(),
        "Alpine Linux v3.20, x86_64, musl 1.2.5, OpenRC"
    );
    assert_eq!(
        p.target_triple().as_deref(),
        Some("x86_64-unknown-linux-musl")
    );
    assert!(p.has_command("supervise-daemon"));
}

#[test]
fn rhel_9() {
    let p = check(
        "rhel-9",
        linux_systemd(
            "rhel",
            Some("9.5"),
            "Red Hat Enterprise Linux 9.5 (Plow)",
            Arch::X86_64,
            34,
            false,
            true,
        ),
    );
    assert!(p.is_like("fedora"));
}

#[test]
fn rocky_9() {
    let p = check(
        "rocky-9",
        linux_systemd(
            "rocky",
            Some("9.5"),
            "Rocky Linux 9.5 (Blue Onyx)",
            Arch::X86_64,
            34,
            true,
            true,
        ),
    );
    assert!(p.is_like("rhel"));
}

#[test]
fn alma_9() {
    let p = check(
        "alma-9",
        linux_systemd(
            "almalinux",
            Some("9.5"),
            "AlmaLinux 9.5 (Teal Serval)",
            Arch::X86_64,
            34,
            false,
            true,
        ),
    );
    assert_eq!(
        p.distro.as_ref().unwrap().id_like,
        ["rhel", "centos", "fedora"]
    );
}

#[test]
fn fedora_41() {
    let p = check(
        "fedora-41",
        linux_systemd(
            "fedora",
            Some("41"),
            "Fedora Linux 41 (Cloud Edition)",
            Arch::Aarch64,
            40,
            false,
            true,
        ),
    );
    // `VERSION_CODENAME=""` is no codename.
    assert_eq!(p.distro.as_ref().unwrap().version_codename, None);
}

#[test]
fn arch_linux() {
    let p = check(
        "arch",
        linux_systemd("arch", None, "Arch Linux", Arch::X86_64, 40, false, true),
    );
    assert_eq!(p.to_string(), "Arch Linux, x86_64, glibc 2.40, systemd");
}

#[test]
fn opensuse_leap_15_6() {
    let p = check(
        "opensuse-leap-15.6",
        linux_systemd(
            "opensuse-leap",
            Some("15.6"),
            "openSUSE Leap 15.6",
            Arch::X86_64,
            38,
            true,
            true,
        ),
    );
    assert!(p.is_like("suse"));
}

#[test]
fn opensuse_tumbleweed() {
    check(
        "opensuse-tumbleweed",
        linux_systemd(
            "opensuse-tumbleweed",
            Some("20241229"),
            "openSUSE Tumbleweed",
            Arch::X86_64,
            40,
            false,
            true,
        ),
    );
}

#[test]
fn nixos() {
    let p = check(
        "nixos-24.11",
        linux_systemd(
            "nixos",
            Some("24.11"),
            "NixOS 24.11 (Vicuna)",
            Arch::X86_64,
            40,
            false,
            true,
        ),
    );
    // No FHS loader without nix-ld.
    assert!(p.loaders.is_empty());
}

#[test]
fn freebsd_14() {
    let p = check(
        "freebsd-14",
        Expect {
            os: Os::FreeBsd,
            distro: Some("freebsd"),
            version: Some("14.2"),
            pretty: Some("FreeBSD 14.2-RELEASE"),
            arch: Arch::X86_64,
            libc: Libc::Other {
                name: "FreeBSD libc".into(),
            },
            init: InitSystem::RcD,
            supported: None,
            root: false,
            sudo: true,
        },
    );
    assert_eq!(
        p.to_string(),
        "FreeBSD 14.2-RELEASE, x86_64, FreeBSD libc, rc.d"
    );
    assert_eq!(p.target_triple().as_deref(), Some("x86_64-unknown-freebsd"));
    let Support::Unsupported { why, .. } = support(&p) else {
        panic!("FreeBSD must be unsupported")
    };
    assert!(why.contains("FreeBSD") && why.contains("rc.d"), "{why}");
}

#[test]
fn macos_14() {
    let p = check(
        "macos-14",
        Expect {
            os: Os::MacOs,
            distro: Some("macos"),
            version: Some("14.7.2"),
            pretty: Some("macOS 14.7.2"),
            arch: Arch::Aarch64,
            libc: Libc::Other {
                name: "libSystem".into(),
            },
            init: InitSystem::Launchd,
            supported: None,
            root: false,
            sudo: true,
        },
    );
    assert_eq!(p.to_string(), "macOS 14.7.2, aarch64, libSystem, launchd");
    assert_eq!(p.pid1.as_deref(), Some("/sbin/launchd"));
}

#[test]
fn void_linux_runit() {
    let p = check(
        "void-runit",
        Expect {
            os: Os::Linux,
            distro: Some("void"),
            version: None,
            pretty: Some("Void Linux"),
            arch: Arch::X86_64,
            libc: glibc(39),
            init: InitSystem::Runit,
            supported: None,
            root: false,
            sudo: true,
        },
    );
    let Support::Unsupported { why, .. } = support(&p) else {
        panic!("runit must be unsupported")
    };
    assert!(why.contains("runit"), "{why}");
    assert!(
        support(&p)
            .to_string()
            .contains("docs/adding-an-init-adapter.md")
    );
}

#[test]
fn every_fixture_is_covered() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Keep in step with the tests above when adding a fixture.
    assert_eq!(
        names,
        [
            "alma-9.txt",
            "alpine-3.20.txt",
            "arch.txt",
            "debian-11.txt",
            "debian-12-openrc.txt",
            "debian-12.txt",
            "fedora-41.txt",
            "freebsd-14.txt",
            "macos-14.txt",
            "nixos-24.11.txt",
            "opensuse-leap-15.6.txt",
            "opensuse-tumbleweed.txt",
            "rhel-9.txt",
            "rocky-9.txt",
            "ubuntu-22.04.txt",
            "ubuntu-24.04.txt",
            "void-runit.txt",
        ]
    );
}
