//! What a release binary needs from a host, read from its ELF headers.
//!
//! [`binary_requirements`] reads, without running anything:
//!
//! - the architecture, from `e_machine` (plus class and byte order);
//! - the OS it was built for, from `EI_OSABI` and the interpreter;
//! - static vs dynamic: a binary with a `PT_INTERP` segment needs that dynamic loader on
//!   the host (`/lib64/ld-linux-x86-64.so.2` is glibc, `/lib/ld-musl-x86_64.so.1` musl);
//!   one without (static or static-pie) needs no libc from the host;
//! - for glibc builds, the highest `GLIBC_x.y` symbol version it references, from the
//!   `.gnu.version_r` (`SHT_GNU_VERNEED`) section. `GLIBC_ABI_DT_RELR` (packed relative
//!   relocations) counts as 2.36, the release that introduced it.
//!
//! A binary stripped of its section headers (`sstrip`) has no `.gnu.version_r` to read;
//! its glibc requirement is then unknown (`None`). `strip` and cargo's `strip = true` keep
//! section headers.
//!
//! Parsing uses the `object` crate's low-level ELF reader (features `read_core` + `elf`
//! only), whose one dependency is `memchr`; goblin would bring `scroll` and, through its
//! derive, `syn`/`quote`/`proc-macro2` into the build.

use std::fmt;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, FileKind};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::arch::Arch;
use crate::platform::{GlibcVersion, Os};

/// What a binary needs from the host it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryReqs {
    /// The CPU architecture it was built for.
    pub arch: Arch,
    /// The OS it was built for: FreeBSD when branded so (`EI_OSABI`) or when it uses
    /// FreeBSD's loader; otherwise Linux.
    pub os: Os,
    /// The dynamic loader (`PT_INTERP`), `None` for a static or static-pie binary.
    pub interpreter: Option<String>,
    /// The C library it is dynamically linked against.
    pub libc: NeededLibc,
    /// For glibc builds: the highest `GLIBC_x.y` symbol version it references.
    pub glibc: Option<GlibcVersion>,
}

impl BinaryReqs {
    /// Whether the binary is static (needs no dynamic loader or libc from the host).
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none()
    }
}

impl fmt::Display for BinaryReqs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}, ", self.os, self.arch)?;
        match (&self.libc, self.glibc) {
            (NeededLibc::None, _) => f.write_str("static"),
            (NeededLibc::Glibc, Some(v)) => write!(f, "dynamic, glibc >= {v}"),
            (libc, _) => write!(f, "dynamic, {libc}"),
        }
    }
}

/// The C library a binary is dynamically linked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NeededLibc {
    /// None: the binary is static.
    None,
    /// GNU libc.
    Glibc,
    /// musl.
    Musl,
    /// FreeBSD's libc (`/libexec/ld-elf.so.1`).
    FreeBsd,
    /// Some other loader, named by its path.
    Other(String),
}

impl fmt::Display for NeededLibc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NeededLibc::None => f.write_str("no libc (static)"),
            NeededLibc::Glibc => f.write_str("glibc"),
            NeededLibc::Musl => f.write_str("musl"),
            NeededLibc::FreeBsd => f.write_str("FreeBSD libc"),
            NeededLibc::Other(loader) => write!(f, "the libc of loader {loader}"),
        }
    }
}

/// Why a file's requirements could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ElfError {
    /// The file is not an ELF file.
    #[error(
        "the binary is not an ELF file (it looks like {0}); blargh deploys Linux ELF executables"
    )]
    NotElf(&'static str),
    /// An ELF file, but not an executable (an object file or a core dump).
    #[error("the ELF file is not an executable (ELF type {0})")]
    NotExecutable(u16),
    /// The ELF structures are inconsistent or cut short.
    #[error("the ELF file is malformed: {0}")]
    Malformed(String),
}

impl From<object::read::Error> for ElfError {
    fn from(e: object::read::Error) -> ElfError {
        ElfError::Malformed(e.to_string())
    }
}

/// Read what an ELF executable needs from a host.
pub fn binary_requirements(elf_bytes: &[u8]) -> Result<BinaryReqs, ElfError> {
    match FileKind::parse(elf_bytes) {
        Ok(FileKind::Elf32) => read::<elf::FileHeader32<Endianness>>(elf_bytes),
        Ok(FileKind::Elf64) => read::<elf::FileHeader64<Endianness>>(elf_bytes),
        _ => Err(ElfError::NotElf(describe_non_elf(elf_bytes))),
    }
}

fn read<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<BinaryReqs, ElfError> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let file_type = header.e_type(endian);
    if file_type != elf::ET_EXEC && file_type != elf::ET_DYN {
        return Err(ElfError::NotExecutable(file_type.0));
    }
    let arch = arch_of(header, endian);

    let mut interpreter = None;
    for segment in header.program_headers(endian, data)? {
        if let Some(path) = segment.interpreter(endian, data)? {
            interpreter = Some(String::from_utf8_lossy(path).into_owned());
        }
    }

    let sections = header.sections(endian, data)?;
    let mut glibc: Option<GlibcVersion> = None;
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((_need, mut auxes)) = needs.next()? {
            while let Some(aux) = auxes.next()? {
                if let Some(v) = glibc_symbol_version(aux.name(endian, strings)?) {
                    glibc = glibc.max(Some(v));
                }
            }
        }
    }

    let libc = match &interpreter {
        None => NeededLibc::None,
        Some(i) if i.contains("/ld-musl-") => NeededLibc::Musl,
        Some(i) if i.ends_with("/ld-elf.so.1") => NeededLibc::FreeBsd,
        Some(i) if glibc.is_some() || i.contains("/ld-linux") || i.contains("/ld64.so.") => {
            NeededLibc::Glibc
        }
        Some(i) => NeededLibc::Other(i.clone()),
    };
    let os = if header.e_ident().os_abi == elf::ELFOSABI_FREEBSD || libc == NeededLibc::FreeBsd {
        Os::FreeBsd
    } else {
        Os::Linux
    };
    Ok(BinaryReqs {
        arch,
        os,
        interpreter,
        libc,
        glibc,
    })
}

/// Map `e_machine` (with class and byte order) to an [`Arch`].
fn arch_of<Elf: FileHeader<Endian = Endianness>>(header: &Elf, endian: Endianness) -> Arch {
    let is_64 = header.is_class_64();
    match header.e_machine(endian) {
        elf::EM_X86_64 => Arch::X86_64,
        elf::EM_386 => Arch::X86,
        elf::EM_AARCH64 => Arch::Aarch64,
        elf::EM_ARM => Arch::Arm,
        elf::EM_RISCV if is_64 => Arch::Riscv64,
        elf::EM_PPC64 if endian == Endianness::Little => Arch::Powerpc64le,
        elf::EM_PPC64 => Arch::Powerpc64,
        elf::EM_S390 if is_64 => Arch::S390x,
        elf::EM_LOONGARCH if is_64 => Arch::Loongarch64,
        other => Arch::Other(format!(
            "ELF machine {} ({}-bit)",
            other.0,
            if is_64 { 64 } else { 32 }
        )),
    }
}

/// The glibc release a `GLIBC_*` version name requires: `GLIBC_2.34` → 2.34,
/// `GLIBC_2.2.5` → 2.2, `GLIBC_ABI_DT_RELR` → 2.36; `None` for anything else
/// (`GLIBC_PRIVATE`, `GLIBCXX_3.4.30`, `GCC_3.0`).
pub fn glibc_symbol_version(name: &[u8]) -> Option<GlibcVersion> {
    let name = std::str::from_utf8(name).ok()?;
    if name == "GLIBC_ABI_DT_RELR" {
        return Some(GlibcVersion {
            major: 2,
            minor: 36,
        });
    }
    let version = name.strip_prefix("GLIBC_")?;
    if !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    GlibcVersion::parse(version)
}

/// Name what a non-ELF file probably is, for the error message.
fn describe_non_elf(bytes: &[u8]) -> &'static str {
    match bytes {
        [0xfe, 0xed, 0xfa, 0xce | 0xcf, ..]
        | [0xce | 0xcf, 0xfa, 0xed, 0xfe, ..]
        | [0xca, 0xfe, 0xba, 0xbe, ..] => "a Mach-O (macOS) binary",
        [b'M', b'Z', ..] => "a Windows PE binary",
        [b'#', b'!', ..] => "a script",
        [] => "an empty file",
        _ => "something else",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_version_names() {
        let v = |minor| Some(GlibcVersion { major: 2, minor });
        assert_eq!(glibc_symbol_version(b"GLIBC_2.34"), v(34));
        assert_eq!(glibc_symbol_version(b"GLIBC_2.2.5"), v(2));
        assert_eq!(glibc_symbol_version(b"GLIBC_ABI_DT_RELR"), v(36));
        assert_eq!(glibc_symbol_version(b"GLIBC_PRIVATE"), None);
        assert_eq!(glibc_symbol_version(b"GLIBCXX_3.4.30"), None);
        assert_eq!(glibc_symbol_version(b"GCC_3.0"), None);
    }

    #[test]
    fn non_elf_files_are_named() {
        assert_eq!(
            binary_requirements(&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]),
            Err(ElfError::NotElf("a Mach-O (macOS) binary"))
        );
        assert_eq!(
            binary_requirements(b"#!/bin/sh\necho hi\n"),
            Err(ElfError::NotElf("a script"))
        );
        assert!(matches!(
            binary_requirements(b"\x7fELF\x02\x01\x01"),
            Err(ElfError::NotElf(_) | ElfError::Malformed(_))
        ));
    }
}
