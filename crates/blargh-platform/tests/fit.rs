//! Handcrafted minimal ELF files read by `binary_requirements` and fitted against the
//! probe fixtures with `check_fit`: every refusal names both sides and the fix.

use blargh_platform::{
    Arch, BinaryReqs, ElfError, FitError, GlibcVersion, NeededLibc, Os, Platform,
    binary_requirements, check_fit, parse_probe,
};

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const ELFOSABI_FREEBSD: u8 = 9;
const GLIBC_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
const MUSL_LOADER: &str = "/lib/ld-musl-x86_64.so.1";

/// A minimal little-endian ELF64 executable: a header, an optional `PT_INTERP` segment,
/// and section headers for `.dynstr`, `.gnu.version_r` (one `Verneed` for `libc.so.6`
/// with one `Vernaux` per version name) and `.shstrtab`.
struct TinyElf<'a> {
    machine: u16,
    os_abi: u8,
    interpreter: Option<&'a str>,
    versions: &'a [&'a str],
}

impl TinyElf<'_> {
    fn build(&self) -> Vec<u8> {
        fn u16le(out: &mut Vec<u8>, v: u16) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        fn u32le(out: &mut Vec<u8>, v: u32) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        fn u64le(out: &mut Vec<u8>, v: u64) {
            out.extend_from_slice(&v.to_le_bytes());
        }

        let phnum: u16 = self.interpreter.is_some().into();
        let mut body = Vec::new(); // everything after the headers
        let body_start = 64 + 56 * u64::from(phnum);

        let interp_off = body_start;
        let interp_len = self.interpreter.map_or(0, |i| i.len() as u64 + 1);
        if let Some(i) = self.interpreter {
            body.extend_from_slice(i.as_bytes());
            body.push(0);
        }

        // .dynstr: "\0libc.so.6\0GLIBC_2.2.5\0..."
        let dynstr_off = body_start + body.len() as u64;
        let mut dynstr = vec![0u8];
        let libc_name = dynstr.len() as u32;
        dynstr.extend_from_slice(b"libc.so.6\0");
        let mut name_offsets = Vec::new();
        for v in self.versions {
            name_offsets.push(dynstr.len() as u32);
            dynstr.extend_from_slice(v.as_bytes());
            dynstr.push(0);
        }
        body.extend_from_slice(&dynstr);

        // .gnu.version_r
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let verneed_off = body_start + body.len() as u64;
        let mut verneed = Vec::new();
        if !self.versions.is_empty() {
            u16le(&mut verneed, 1); // vn_version
            u16le(&mut verneed, self.versions.len() as u16); // vn_cnt
            u32le(&mut verneed, libc_name); // vn_file
            u32le(&mut verneed, 16); // vn_aux
            u32le(&mut verneed, 0); // vn_next
            for (i, &name) in name_offsets.iter().enumerate() {
                let last = i + 1 == name_offsets.len();
                u32le(&mut verneed, 0x0d69_6914 + i as u32); // vna_hash (unchecked)
                u16le(&mut verneed, 0); // vna_flags
                u16le(&mut verneed, 2 + i as u16); // vna_other
                u32le(&mut verneed, name); // vna_name
                u32le(&mut verneed, if last { 0 } else { 16 }); // vna_next
            }
        }
        body.extend_from_slice(&verneed);

        // .shstrtab
        let shstrtab_off = body_start + body.len() as u64;
        let shstrtab = b"\0.dynstr\0.gnu.version_r\0.shstrtab\0";
        body.extend_from_slice(shstrtab);
        while body.len() % 8 != 0 {
            body.push(0);
        }
        let shoff = body_start + body.len() as u64;

        let mut out = Vec::new();
        out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, self.os_abi]);
        out.extend_from_slice(&[0; 8]);
        u16le(&mut out, 3); // e_type: ET_DYN (PIE)
        u16le(&mut out, self.machine);
        u32le(&mut out, 1); // e_version
        u64le(&mut out, 0); // e_entry
        u64le(&mut out, if phnum > 0 { 64 } else { 0 }); // e_phoff
        u64le(&mut out, shoff);
        u32le(&mut out, 0); // e_flags
        u16le(&mut out, 64); // e_ehsize
        u16le(&mut out, 56); // e_phentsize
        u16le(&mut out, phnum);
        u16le(&mut out, 64); // e_shentsize
        u16le(&mut out, 4); // e_shnum
        u16le(&mut out, 3); // e_shstrndx

        if phnum > 0 {
            u32le(&mut out, 3); // PT_INTERP
            u32le(&mut out, 4); // PF_R
            u64le(&mut out, interp_off);
            u64le(&mut out, interp_off); // p_vaddr
            u64le(&mut out, interp_off); // p_paddr
            u64le(&mut out, interp_len);
            u64le(&mut out, interp_len);
            u64le(&mut out, 1);
        }
        out.extend_from_slice(&body);

        let mut section = |name: u32, kind: u32, off: u64, size: u64, link: u32, info: u32| {
            u32le(&mut out, name);
            u32le(&mut out, kind);
            u64le(&mut out, 2); // SHF_ALLOC
            u64le(&mut out, off);
            u64le(&mut out, off);
            u64le(&mut out, size);
            u32le(&mut out, link);
            u32le(&mut out, info);
            u64le(&mut out, 1);
            u64le(&mut out, 0);
        };
        section(0, 0, 0, 0, 0, 0);
        section(1, 3, dynstr_off, dynstr.len() as u64, 0, 0);
        let count = u32::from(!self.versions.is_empty());
        section(9, 0x6fff_fffe, verneed_off, verneed.len() as u64, 1, count);
        section(24, 3, shstrtab_off, shstrtab.len() as u64, 0, 0);
        out
    }

    fn reqs(&self) -> BinaryReqs {
        binary_requirements(&self.build()).expect("tiny ELF parses")
    }
}

fn glibc_x86_64(versions: &[&str]) -> BinaryReqs {
    TinyElf {
        machine: EM_X86_64,
        os_abi: 0,
        interpreter: Some(GLIBC_LOADER),
        versions,
    }
    .reqs()
}

fn static_binary(machine: u16) -> BinaryReqs {
    TinyElf {
        machine,
        os_abi: 0,
        interpreter: None,
        versions: &[],
    }
    .reqs()
}

fn fixture(name: &str) -> Platform {
    let path = format!("{}/tests/fixtures/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    parse_probe(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn reads_the_handcrafted_requirements() {
    let reqs = glibc_x86_64(&["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_PRIVATE", "GLIBC_2.3"]);
    assert_eq!(
        reqs,
        BinaryReqs {
            arch: Arch::X86_64,
            os: Os::Linux,
            interpreter: Some(GLIBC_LOADER.into()),
            libc: NeededLibc::Glibc,
            glibc: Some(GlibcVersion {
                major: 2,
                minor: 34
            }),
        }
    );
    assert!(!reqs.is_static());

    let reqs = static_binary(EM_AARCH64);
    assert_eq!(reqs.arch, Arch::Aarch64);
    assert!(reqs.is_static());
    assert_eq!(reqs.libc, NeededLibc::None);
    assert_eq!(reqs.glibc, None);
    assert_eq!(reqs.to_string(), "Linux aarch64, static");

    let musl = TinyElf {
        machine: EM_X86_64,
        os_abi: 0,
        interpreter: Some(MUSL_LOADER),
        versions: &[],
    }
    .reqs();
    assert_eq!(musl.libc, NeededLibc::Musl);

    let freebsd = TinyElf {
        machine: EM_X86_64,
        os_abi: ELFOSABI_FREEBSD,
        interpreter: Some("/libexec/ld-elf.so.1"),
        versions: &[],
    }
    .reqs();
    assert_eq!(freebsd.os, Os::FreeBsd);
    assert_eq!(freebsd.libc, NeededLibc::FreeBsd);
}

#[test]
fn newer_glibc_than_the_host_is_refused_naming_both() {
    let reqs = glibc_x86_64(&["GLIBC_2.2.5", "GLIBC_2.39"]);
    let err = check_fit(&reqs, &fixture("debian-12")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the binary needs GLIBC_2.39 but the host has glibc 2.36; build for glibc 2.36 with \
         `cargo zigbuild --release --target x86_64-unknown-linux-gnu.2.36` (deploy and seed \
         do that by themselves once `pip install ziglang` and `cargo install --locked \
         cargo-zigbuild` are done), or a static binary: `--target x86_64-unknown-linux-musl`"
    );
    assert!(matches!(err, FitError::GlibcTooOld { .. }));
    // The same binary fits Ubuntu 24.04 (glibc 2.39) and Fedora-era hosts.
    check_fit(&reqs, &fixture("ubuntu-24.04")).unwrap();
    check_fit(&reqs, &fixture("arch")).unwrap();
}

#[test]
fn dt_relr_needs_glibc_2_36() {
    let reqs = glibc_x86_64(&["GLIBC_2.2.5", "GLIBC_ABI_DT_RELR"]);
    assert_eq!(
        reqs.glibc,
        Some(GlibcVersion {
            major: 2,
            minor: 36
        })
    );
    check_fit(&reqs, &fixture("debian-12")).unwrap();
    let err = check_fit(&reqs, &fixture("rhel-9")).unwrap_err();
    assert!(err.to_string().contains("GLIBC_2.36"), "{err}");
    assert!(err.to_string().contains("glibc 2.34"), "{err}");
}

#[test]
fn older_glibc_fits_every_glibc_fixture() {
    let reqs = glibc_x86_64(&["GLIBC_2.2.5", "GLIBC_2.17"]);
    for host in [
        "debian-12",
        "ubuntu-22.04",
        "ubuntu-24.04",
        "rhel-9",
        "rocky-9",
        "alma-9",
        "arch",
        "opensuse-leap-15.6",
        "opensuse-tumbleweed",
        "debian-12-openrc",
        "void-runit",
    ] {
        check_fit(&reqs, &fixture(host)).unwrap_or_else(|e| panic!("{host}: {e}"));
    }
}

#[test]
fn wrong_arch_names_the_target_triple() {
    let err = check_fit(&static_binary(EM_X86_64), &fixture("debian-11")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the binary is for x86_64 but the host is aarch64; build for the host: \
         `--target aarch64-unknown-linux-gnu` (or `--target aarch64-unknown-linux-musl` for a \
         static binary)"
    );
    let err = check_fit(&static_binary(EM_AARCH64), &fixture("alpine-3.20")).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("build for the host: `--target x86_64-unknown-linux-musl`"),
        "{err}"
    );
    check_fit(&static_binary(EM_AARCH64), &fixture("fedora-41")).unwrap();
}

#[test]
fn static_binaries_fit_any_linux_of_their_arch() {
    let reqs = static_binary(EM_X86_64);
    for host in ["alpine-3.20", "debian-12", "nixos-24.11", "void-runit"] {
        check_fit(&reqs, &fixture(host)).unwrap_or_else(|e| panic!("{host}: {e}"));
    }
}

#[test]
fn glibc_binary_on_alpine_is_refused() {
    let err = check_fit(&glibc_x86_64(&["GLIBC_2.2.5"]), &fixture("alpine-3.20")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the binary is dynamically linked against glibc but the host has musl 1.2.5; build a \
         static binary: `--target x86_64-unknown-linux-musl`"
    );
}

#[test]
fn dynamic_musl_binary_needs_a_musl_loader() {
    let reqs = TinyElf {
        machine: EM_X86_64,
        os_abi: 0,
        interpreter: Some(MUSL_LOADER),
        versions: &[],
    }
    .reqs();
    check_fit(&reqs, &fixture("alpine-3.20")).unwrap();
    let err = check_fit(&reqs, &fixture("debian-12")).unwrap_err();
    assert!(matches!(err, FitError::NoMusl { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(MUSL_LOADER) && msg.contains("glibc 2.36"),
        "{msg}"
    );
    // A glibc host with musl installed has the loader.
    let mut with_musl = fixture("debian-12");
    with_musl.loaders.push(MUSL_LOADER.into());
    check_fit(&reqs, &with_musl).unwrap();
}

#[test]
fn linux_binary_on_freebsd_or_macos_is_refused() {
    let reqs = static_binary(EM_X86_64);
    let err = check_fit(&reqs, &fixture("freebsd-14")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the binary is built for Linux but the host runs FreeBSD 14.2-RELEASE; build for the \
         host: `--target x86_64-unknown-freebsd`"
    );
    let err = check_fit(&reqs, &fixture("macos-14")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the binary is built for Linux but the host runs macOS 14.7.2; macOS runs Mach-O \
         binaries, not ELF; build for the host: `--target aarch64-apple-darwin`"
    );
}

#[test]
fn missing_loaders_are_refused() {
    // Built on NixOS: the interpreter lives in the Nix store.
    let nix_loader =
        "/nix/store/3dyw8dzj9ab4m8hv5dpyx7zii8d0w6fi-glibc-2.40-36/lib/ld-linux-x86-64.so.2";
    let reqs = TinyElf {
        machine: EM_X86_64,
        os_abi: 0,
        interpreter: Some(nix_loader),
        versions: &["GLIBC_2.34"],
    }
    .reqs();
    assert_eq!(reqs.libc, NeededLibc::Glibc);
    let err = check_fit(&reqs, &fixture("debian-12")).unwrap_err();
    assert!(matches!(err, FitError::MissingLoader { .. }), "{err}");
    assert!(err.to_string().contains("patchelf"), "{err}");
    check_fit(&reqs, &fixture("nixos-24.11")).unwrap();

    // An FHS glibc binary on NixOS without nix-ld.
    let err = check_fit(&glibc_x86_64(&["GLIBC_2.34"]), &fixture("nixos-24.11")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the binary's interpreter /lib64/ld-linux-x86-64.so.2 does not exist on the host \
         (NixOS 24.11 (Vicuna)); build a static binary: `--target x86_64-unknown-linux-musl`"
    );
}

#[test]
fn unknown_host_libc_is_refused_for_dynamic_binaries() {
    let mut host = fixture("debian-12");
    host.libc = blargh_platform::Libc::Unknown;
    let err = check_fit(&glibc_x86_64(&["GLIBC_2.2.5"]), &host).unwrap_err();
    assert!(matches!(err, FitError::HostLibcUnknown { .. }), "{err}");
    check_fit(&static_binary(EM_X86_64), &host).unwrap();
}

#[test]
fn object_files_and_garbage_are_errors() {
    let mut bytes = TinyElf {
        machine: EM_X86_64,
        os_abi: 0,
        interpreter: None,
        versions: &[],
    }
    .build();
    bytes[16] = 1; // ET_REL
    assert_eq!(binary_requirements(&bytes), Err(ElfError::NotExecutable(1)));
    let mut truncated = TinyElf {
        machine: EM_X86_64,
        os_abi: 0,
        interpreter: Some(GLIBC_LOADER),
        versions: &["GLIBC_2.34"],
    }
    .build();
    truncated.truncate(100);
    assert!(matches!(
        binary_requirements(&truncated),
        Err(ElfError::Malformed(_))
    ));
}

/// A binary with `interpreter` and no `GLIBC_*` version references, branded `os_abi`.
fn with_loader(interpreter: Option<&str>, os_abi: u8) -> BinaryReqs {
    TinyElf {
        machine: EM_X86_64,
        os_abi,
        interpreter,
        versions: &[],
    }
    .reqs()
}

#[test]
fn the_loader_alone_names_the_libc() {
    assert_eq!(with_loader(Some(GLIBC_LOADER), 0).libc, NeededLibc::Glibc);
    assert_eq!(
        with_loader(Some("/lib64/ld64.so.2"), 0).libc,
        NeededLibc::Glibc
    );
    assert_eq!(
        with_loader(Some("/opt/vendor/ld.so"), 0).libc,
        NeededLibc::Other("/opt/vendor/ld.so".into())
    );
    // FreeBSD either by its loader or by its brand.
    let by_loader = with_loader(Some("/libexec/ld-elf.so.1"), 0);
    assert_eq!(
        (by_loader.os, by_loader.libc),
        (Os::FreeBsd, NeededLibc::FreeBsd)
    );
    let by_brand = with_loader(None, ELFOSABI_FREEBSD);
    assert_eq!(
        (by_brand.os, by_brand.libc),
        (Os::FreeBsd, NeededLibc::None)
    );
    assert_eq!(with_loader(None, 0).os, Os::Linux);
}

#[test]
fn an_unknown_loader_location_is_not_checked() {
    // The probe lists only the standard loader paths, so another one cannot be called
    // missing; FreeBSD's own loader is among the standard ones.
    let vendor = with_loader(Some("/opt/vendor/ld.so"), 0);
    check_fit(&vendor, &fixture("debian-12")).unwrap();
    let mut bsd_host = fixture("freebsd-14");
    bsd_host.loaders.clear();
    let err = check_fit(&with_loader(Some("/libexec/ld-elf.so.1"), 0), &bsd_host).unwrap_err();
    assert!(matches!(err, FitError::MissingLoader { .. }), "{err}");
}
