//! The names blargh shows and builds for: target triples per architecture, OS and libc, the
//! binary fit rule between architectures, and the `Display` text of the platform types.

use blargh_platform::{
    Arch, BinaryReqs, Distribution, GlibcVersion, InitKind, InitSystem, Libc, NeededLibc, Os,
    Platform, Support, support,
};

const ALL: [Arch; 10] = [
    Arch::X86_64,
    Arch::X86,
    Arch::Aarch64,
    Arch::Armv7,
    Arch::Arm,
    Arch::Riscv64,
    Arch::Powerpc64le,
    Arch::Powerpc64,
    Arch::S390x,
    Arch::Loongarch64,
];

#[test]
fn a_binary_runs_only_on_its_own_arch_or_generic_arm_on_armv7() {
    for host in ALL {
        for binary in ALL {
            let expected = host == binary || (host == Arch::Armv7 && binary == Arch::Arm);
            assert_eq!(host.runs(&binary), expected, "{host} runs {binary}");
        }
    }
    let other = Arch::Other("mips64".into());
    assert!(other.runs(&Arch::Other("mips64".into())));
    assert!(!other.runs(&Arch::Arm));
}

#[test]
fn linux_triples() {
    let gnu: Vec<Option<String>> = ALL.iter().map(|a| a.linux_triple(false)).collect();
    let musl: Vec<Option<String>> = ALL.iter().map(|a| a.linux_triple(true)).collect();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        gnu,
        [
            some("x86_64-unknown-linux-gnu"),
            some("i686-unknown-linux-gnu"),
            some("aarch64-unknown-linux-gnu"),
            some("armv7-unknown-linux-gnueabihf"),
            some("arm-unknown-linux-gnueabihf"),
            some("riscv64gc-unknown-linux-gnu"),
            some("powerpc64le-unknown-linux-gnu"),
            some("powerpc64-unknown-linux-gnu"),
            some("s390x-unknown-linux-gnu"),
            some("loongarch64-unknown-linux-gnu"),
        ]
    );
    assert_eq!(
        musl,
        [
            some("x86_64-unknown-linux-musl"),
            some("i686-unknown-linux-musl"),
            some("aarch64-unknown-linux-musl"),
            some("armv7-unknown-linux-musleabihf"),
            some("arm-unknown-linux-musleabihf"),
            some("riscv64gc-unknown-linux-musl"),
            some("powerpc64le-unknown-linux-musl"),
            None,
            None,
            some("loongarch64-unknown-linux-musl"),
        ]
    );
    assert_eq!(Arch::Other("mips64".into()).linux_triple(false), None);
}

#[test]
fn triples_follow_the_libc_and_os() {
    let glibc = Libc::Glibc {
        major: 2,
        minor: 36,
    };
    let musl = Libc::Musl { version: None };
    let triple = |arch: Arch, os: Os, libc: &Libc| arch.target_triple(&os, libc);
    assert_eq!(
        triple(Arch::X86_64, Os::Linux, &glibc).as_deref(),
        Some("x86_64-unknown-linux-gnu")
    );
    assert_eq!(
        triple(Arch::X86_64, Os::Linux, &musl).as_deref(),
        Some("x86_64-unknown-linux-musl")
    );
    // An unknown libc gets the static musl triple.
    assert_eq!(
        triple(Arch::X86_64, Os::Linux, &Libc::Unknown).as_deref(),
        Some("x86_64-unknown-linux-musl")
    );
    let bsd = |arch: Arch| triple(arch, Os::FreeBsd, &Libc::Unknown);
    assert_eq!(bsd(Arch::X86_64).as_deref(), Some("x86_64-unknown-freebsd"));
    assert_eq!(
        bsd(Arch::Aarch64).as_deref(),
        Some("aarch64-unknown-freebsd")
    );
    assert_eq!(
        bsd(Arch::Powerpc64).as_deref(),
        Some("powerpc64-unknown-freebsd")
    );
    assert_eq!(
        bsd(Arch::Powerpc64le).as_deref(),
        Some("powerpc64le-unknown-freebsd")
    );
    assert_eq!(bsd(Arch::X86).as_deref(), Some("i686-unknown-freebsd"));
    assert_eq!(bsd(Arch::Armv7).as_deref(), Some("armv7-unknown-freebsd"));
    assert_eq!(
        bsd(Arch::Riscv64).as_deref(),
        Some("riscv64gc-unknown-freebsd")
    );
    assert_eq!(bsd(Arch::S390x), None);
    let mac = |arch: Arch| triple(arch, Os::MacOs, &Libc::Unknown);
    assert_eq!(mac(Arch::X86_64).as_deref(), Some("x86_64-apple-darwin"));
    assert_eq!(mac(Arch::Aarch64).as_deref(), Some("aarch64-apple-darwin"));
    assert_eq!(mac(Arch::Riscv64), None);
    assert_eq!(
        triple(Arch::X86_64, Os::Other("Haiku".into()), &glibc),
        None
    );
}

#[test]
fn every_uname_spelling() {
    let cases = [
        ("x86_64 amd64 x64", Arch::X86_64),
        ("i386 i486 i586 i686 i86pc x86", Arch::X86),
        ("aarch64 arm64 aarch64_be", Arch::Aarch64),
        ("armv7 armv7l armv7hl armv8l armhf", Arch::Armv7),
        ("arm armv6l armv5tel armv5l armel", Arch::Arm),
        ("riscv64", Arch::Riscv64),
        ("ppc64le powerpc64le", Arch::Powerpc64le),
        ("ppc64 powerpc64", Arch::Powerpc64),
        ("s390x", Arch::S390x),
        ("loongarch64", Arch::Loongarch64),
    ];
    for (names, arch) in cases {
        for name in names.split(' ') {
            assert_eq!(Arch::from_uname(name), arch, "{name}");
        }
    }
    // Serialized as its name; read back through the same normalization.
    assert_eq!(serde_json::to_string(&Arch::X86).unwrap(), "\"x86\"");
    assert_eq!(
        serde_json::from_str::<Arch>("\"arm64\"").unwrap(),
        Arch::Aarch64
    );
    assert_eq!(Arch::Other("sparc64".into()).to_string(), "sparc64");
    assert_eq!(String::from(Arch::Powerpc64), "powerpc64");
}

#[test]
fn os_names() {
    assert_eq!(Os::from_uname("Linux\n"), Os::Linux);
    assert_eq!(Os::from_uname("FreeBSD"), Os::FreeBsd);
    assert_eq!(Os::from_uname("Darwin"), Os::MacOs);
    assert_eq!(Os::from_uname("SunOS"), Os::Other("SunOS".into()));
    assert_eq!(Os::Linux.to_string(), "Linux");
    assert_eq!(Os::FreeBsd.to_string(), "FreeBSD");
    assert_eq!(Os::MacOs.to_string(), "macOS");
    assert_eq!(Os::Other("SunOS".into()).to_string(), "SunOS");
    assert_eq!(Os::Other(String::new()).to_string(), "an unknown OS");
}

#[test]
fn libc_and_init_names() {
    let glibc = Libc::Glibc {
        major: 2,
        minor: 31,
    };
    assert_eq!(glibc.to_string(), "glibc 2.31");
    assert_eq!(
        glibc.glibc_version(),
        Some(GlibcVersion {
            major: 2,
            minor: 31
        })
    );
    assert_eq!(Libc::Unknown.glibc_version(), None);
    assert_eq!(
        Libc::Musl {
            version: Some("1.2.5".into())
        }
        .to_string(),
        "musl 1.2.5"
    );
    assert_eq!(Libc::Musl { version: None }.to_string(), "musl");
    assert_eq!(
        Libc::Other {
            name: "libSystem".into()
        }
        .to_string(),
        "libSystem"
    );
    assert_eq!(Libc::Unknown.to_string(), "unknown libc");
    assert_eq!(GlibcVersion { major: 2, minor: 4 }.to_string(), "2.4");

    let inits = [
        (InitSystem::Systemd, "systemd"),
        (InitSystem::OpenRc, "OpenRC"),
        (InitSystem::Launchd, "launchd"),
        (InitSystem::RcD, "rc.d"),
        (InitSystem::Runit, "runit"),
        (InitSystem::S6, "s6"),
        (InitSystem::SysVinit, "SysV init"),
        (
            InitSystem::Unknown("PID 1 is `bash`".into()),
            "unknown init (PID 1 is `bash`)",
        ),
    ];
    for (init, name) in inits {
        assert_eq!(init.to_string(), name);
    }
    assert_eq!(InitKind::Systemd.to_string(), "systemd");
    assert_eq!(InitKind::OpenRc.to_string(), "OpenRC");

    let needed = [
        (NeededLibc::None, "no libc (static)"),
        (NeededLibc::Glibc, "glibc"),
        (NeededLibc::Musl, "musl"),
        (NeededLibc::FreeBsd, "FreeBSD libc"),
        (
            NeededLibc::Other("/opt/ld.so".into()),
            "the libc of loader /opt/ld.so",
        ),
    ];
    for (libc, name) in needed {
        assert_eq!(libc.to_string(), name);
    }
}

#[test]
fn binary_requirements_read_as_a_line() {
    let reqs = |libc: NeededLibc, glibc: Option<GlibcVersion>| BinaryReqs {
        arch: Arch::X86_64,
        os: Os::Linux,
        interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
        libc,
        glibc,
    };
    let v = GlibcVersion {
        major: 2,
        minor: 34,
    };
    assert_eq!(
        reqs(NeededLibc::Glibc, Some(v)).to_string(),
        "Linux x86_64, dynamic, glibc >= 2.34"
    );
    assert_eq!(
        reqs(NeededLibc::Glibc, None).to_string(),
        "Linux x86_64, dynamic, glibc"
    );
    assert_eq!(
        reqs(NeededLibc::Musl, None).to_string(),
        "Linux x86_64, dynamic, musl"
    );
}

fn distro(pretty: Option<&str>, name: Option<&str>, version: Option<&str>) -> Distribution {
    Distribution {
        id: "thing".into(),
        id_like: vec!["debian".into(), "ubuntu".into()],
        name: name.map(str::to_string),
        version_id: version.map(str::to_string),
        version_codename: None,
        pretty_name: pretty.map(str::to_string),
    }
}

#[test]
fn distribution_names_fall_back() {
    assert_eq!(
        distro(Some("Thing OS 3"), Some("Thing"), Some("3")).to_string(),
        "Thing OS 3"
    );
    assert_eq!(
        distro(None, Some("Thing"), Some("3")).to_string(),
        "Thing 3"
    );
    assert_eq!(distro(None, None, None).to_string(), "thing");
    let d = distro(None, None, None);
    assert!(d.is_like("thing") && d.is_like("ubuntu") && d.is_like("debian"));
    assert!(!d.is_like("fedora"));
}

fn host(os: Os, init: InitSystem) -> Platform {
    Platform {
        os,
        kernel: "6.1.0".into(),
        distro: None,
        arch: Arch::X86_64,
        libc: Libc::Unknown,
        loaders: vec![],
        init,
        pid1: None,
        uid: None,
        is_root: false,
        has_sudo: false,
        commands: vec!["systemctl".into()],
    }
}

#[test]
fn hosts_without_a_distribution_are_named_by_kernel() {
    let p = host(Os::Linux, InitSystem::Systemd);
    assert_eq!(p.name(), "Linux 6.1.0");
    let mut bare = host(Os::Other(String::new()), InitSystem::Systemd);
    bare.kernel = String::new();
    assert_eq!(bare.name(), "an unknown OS");
    assert!(p.has_command("systemctl"));
    assert!(!p.has_command("systemd"));
    assert!(!p.is_like("debian"));
}

#[test]
fn support_verdicts() {
    assert_eq!(
        support(&host(Os::Linux, InitSystem::Systemd)),
        Support::Supported(InitKind::Systemd)
    );
    assert_eq!(
        support(&host(Os::Linux, InitSystem::OpenRc)).init_kind(),
        Some(InitKind::OpenRc)
    );
    assert_eq!(
        Support::Supported(InitKind::OpenRc).to_string(),
        "supported (init adapter: OpenRC)"
    );
    let unknown = support(&host(
        Os::Linux,
        InitSystem::Unknown("PID 1 is `sh`".into()),
    ));
    let Support::Unsupported { why, found, .. } = &unknown else {
        panic!("an unknown init must be unsupported")
    };
    assert!(why.contains("PID 1 is `sh`"), "{why}");
    assert!(why.contains("/run/systemd/system"), "{why}");
    assert_eq!(
        found,
        "Linux 6.1.0, x86_64, unknown libc, unknown init (PID 1 is `sh`)"
    );
    let text = unknown.to_string();
    assert!(
        text.starts_with("unsupported host: Linux 6.1.0")
            && text.contains("\n  why: could not tell")
            && text.ends_with("docs/adding-an-init-adapter.md"),
        "{text}"
    );
    // Linux-ness comes first: systemd on another OS is still refused.
    let Support::Unsupported { why, .. } = support(&host(Os::FreeBsd, InitSystem::Systemd)) else {
        panic!("non-Linux must be unsupported")
    };
    assert!(why.contains("runs FreeBSD with systemd"), "{why}");
    let Support::Unsupported { why, .. } = support(&host(Os::Linux, InitSystem::S6)) else {
        panic!("s6 must be unsupported")
    };
    assert!(why.contains("runs s6"), "{why}");
}
