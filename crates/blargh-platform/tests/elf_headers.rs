//! `binary_requirements` on bare ELF headers of every class, byte order and machine blargh
//! names: the architecture mapping (32-bit included) and the non-ELF descriptions.

use blargh_platform::{Arch, ElfError, NeededLibc, Os, binary_requirements};

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const ET_CORE: u16 = 4;

/// An ELF file made of its header alone: no program headers, no sections (a static
/// binary as far as `binary_requirements` can tell).
fn header(class64: bool, big_endian: bool, machine: u16, e_type: u16) -> Vec<u8> {
    let put16 = |out: &mut Vec<u8>, v: u16| {
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        })
    };
    let put32 = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        })
    };
    let class = if class64 { 2 } else { 1 };
    let data = if big_endian { 2 } else { 1 };
    let mut out = vec![0x7f, b'E', b'L', b'F', class, data, 1, 0];
    out.extend_from_slice(&[0; 8]);
    put16(&mut out, e_type);
    put16(&mut out, machine);
    put32(&mut out, 1); // e_version
    let word = if class64 { 8 } else { 4 };
    for _ in 0..3 {
        // e_entry, e_phoff, e_shoff
        out.extend(std::iter::repeat_n(0, word));
    }
    put32(&mut out, 0); // e_flags
    put16(&mut out, if class64 { 64 } else { 52 }); // e_ehsize
    put16(&mut out, if class64 { 56 } else { 32 }); // e_phentsize
    put16(&mut out, 0); // e_phnum
    put16(&mut out, if class64 { 64 } else { 40 }); // e_shentsize
    put16(&mut out, 0); // e_shnum
    put16(&mut out, 0); // e_shstrndx
    assert_eq!(out.len(), if class64 { 64 } else { 52 });
    out
}

fn arch(class64: bool, big_endian: bool, machine: u16) -> Arch {
    binary_requirements(&header(class64, big_endian, machine, ET_DYN))
        .unwrap_or_else(|e| panic!("machine {machine}: {e}"))
        .arch
}

#[test]
fn thirty_two_bit_binaries_are_read() {
    let reqs = binary_requirements(&header(false, false, 40, ET_EXEC)).unwrap();
    assert_eq!(reqs.arch, Arch::Arm);
    assert_eq!(reqs.os, Os::Linux);
    assert_eq!(reqs.libc, NeededLibc::None);
    assert!(reqs.is_static());
    assert_eq!(arch(false, false, 3), Arch::X86);
    // The fit check lets a generic ARM binary run on an ARMv7 host, nothing else.
    assert!(Arch::Armv7.runs(&reqs.arch));
    assert!(!Arch::Aarch64.runs(&reqs.arch));
}

#[test]
fn machines_map_to_arches() {
    assert_eq!(arch(true, false, 62), Arch::X86_64);
    assert_eq!(arch(true, false, 183), Arch::Aarch64);
    assert_eq!(arch(true, false, 243), Arch::Riscv64);
    assert_eq!(arch(true, false, 21), Arch::Powerpc64le);
    assert_eq!(arch(true, true, 21), Arch::Powerpc64);
    assert_eq!(arch(true, true, 22), Arch::S390x);
    assert_eq!(arch(true, false, 258), Arch::Loongarch64);
}

#[test]
fn thirty_two_bit_variants_of_64_bit_machines_are_other() {
    assert_eq!(
        arch(false, false, 243),
        Arch::Other("ELF machine 243 (32-bit)".into())
    );
    assert_eq!(
        arch(false, true, 22),
        Arch::Other("ELF machine 22 (32-bit)".into())
    );
    assert_eq!(
        arch(false, false, 258),
        Arch::Other("ELF machine 258 (32-bit)".into())
    );
    assert_eq!(
        arch(true, true, 8),
        Arch::Other("ELF machine 8 (64-bit)".into())
    );
}

#[test]
fn executables_and_pies_only() {
    assert!(binary_requirements(&header(true, false, 62, ET_EXEC)).is_ok());
    assert!(binary_requirements(&header(true, false, 62, ET_DYN)).is_ok());
    assert_eq!(
        binary_requirements(&header(true, false, 62, ET_CORE)),
        Err(ElfError::NotExecutable(ET_CORE))
    );
    assert_eq!(
        binary_requirements(&header(false, false, 40, ET_CORE)),
        Err(ElfError::NotExecutable(ET_CORE))
    );
}

#[test]
fn non_elf_files_are_named() {
    let named = |bytes: &[u8]| match binary_requirements(bytes) {
        Err(ElfError::NotElf(what)) => what,
        other => panic!("{bytes:?}: {other:?}"),
    };
    assert_eq!(
        named(&[0xfe, 0xed, 0xfa, 0xcf, 0, 0]),
        "a Mach-O (macOS) binary"
    );
    assert_eq!(
        named(&[0xce, 0xfa, 0xed, 0xfe, 0, 0]),
        "a Mach-O (macOS) binary"
    );
    assert_eq!(
        named(&[0xca, 0xfe, 0xba, 0xbe, 0, 0]),
        "a Mach-O (macOS) binary"
    );
    assert_eq!(named(b"MZ\x90\x00\x03\x00"), "a Windows PE binary");
    assert_eq!(named(b""), "an empty file");
    assert_eq!(named(b"hello world"), "something else");
    let err = ElfError::NotElf("a script");
    assert_eq!(
        err.to_string(),
        "the binary is not an ELF file (it looks like a script); blargh deploys Linux ELF \
         executables"
    );
}
