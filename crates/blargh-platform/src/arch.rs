//! CPU architectures, named the way Rust target triples name them.
//!
//! Hosts report their architecture through `uname -m`, which differs between kernels
//! (`amd64` on FreeBSD, `arm64` on macOS and FreeBSD, `armv7l` on 32-bit ARM Linux); ELF
//! files report it as an `e_machine` number. Both are normalized to [`Arch`] so the two
//! sides can be compared, and [`Arch::target_triple`] names the Rust target to build for.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::platform::{Libc, Os};

/// A CPU architecture, normalized.
///
/// [`Arch::as_str`] is the architecture part of a Rust target triple (`x86_64`,
/// `aarch64`, `armv7`, `riscv64`, …), except that 32-bit x86 is called `x86` as in Rust's
/// `target_arch` (its triples start with `i686`). Serialized as that string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Arch {
    /// 64-bit x86 (`x86_64`, `amd64`).
    X86_64,
    /// 32-bit x86 (`i386` … `i686`).
    X86,
    /// 64-bit ARM (`aarch64`, `arm64`).
    Aarch64,
    /// 32-bit ARMv7 or a 32-bit userland on ARMv8 (`armv7l`, `armv8l`).
    Armv7,
    /// Older or unspecified 32-bit ARM (`armv6l`, `armv5tel`, or an ELF `EM_ARM` file,
    /// whose header does not say which revision it needs).
    Arm,
    /// 64-bit RISC-V.
    Riscv64,
    /// 64-bit POWER, little-endian (`ppc64le`).
    Powerpc64le,
    /// 64-bit POWER, big-endian (`ppc64`).
    Powerpc64,
    /// IBM Z (`s390x`).
    S390x,
    /// 64-bit LoongArch.
    Loongarch64,
    /// Anything else, as reported.
    Other(String),
}

impl Arch {
    /// Normalize the output of `uname -m` (or `uname -p`).
    pub fn from_uname(machine: &str) -> Arch {
        match machine.trim() {
            "x86_64" | "amd64" | "x64" => Arch::X86_64,
            "i386" | "i486" | "i586" | "i686" | "i86pc" | "x86" => Arch::X86,
            "aarch64" | "arm64" | "aarch64_be" => Arch::Aarch64,
            "armv7" | "armv7l" | "armv7hl" | "armv8l" | "armhf" => Arch::Armv7,
            "arm" | "armv6l" | "armv5tel" | "armv5l" | "armel" => Arch::Arm,
            "riscv64" => Arch::Riscv64,
            "ppc64le" | "powerpc64le" => Arch::Powerpc64le,
            "ppc64" | "powerpc64" => Arch::Powerpc64,
            "s390x" => Arch::S390x,
            "loongarch64" => Arch::Loongarch64,
            other => Arch::Other(other.to_string()),
        }
    }

    /// The normalized name (see the type's documentation).
    pub fn as_str(&self) -> &str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::X86 => "x86",
            Arch::Aarch64 => "aarch64",
            Arch::Armv7 => "armv7",
            Arch::Arm => "arm",
            Arch::Riscv64 => "riscv64",
            Arch::Powerpc64le => "powerpc64le",
            Arch::Powerpc64 => "powerpc64",
            Arch::S390x => "s390x",
            Arch::Loongarch64 => "loongarch64",
            Arch::Other(name) => name,
        }
    }

    /// Whether a binary built for `binary` runs on a host of this architecture.
    ///
    /// Exact matches only, except that a generic 32-bit ARM binary runs on an ARMv7 host.
    /// (An x86_64 kernel may run x86 binaries and an aarch64 one 32-bit ARM binaries, but
    /// only with compat libraries that a server rarely has, so those are refused.)
    pub fn runs(&self, binary: &Arch) -> bool {
        self == binary || (*self == Arch::Armv7 && *binary == Arch::Arm)
    }

    /// The Rust target triple for this architecture on `os` with `libc`, if Rust has one.
    ///
    /// On Linux, a musl or unknown libc gives the `-musl` triple (a static binary runs
    /// anywhere), glibc the `-gnu` one.
    pub fn target_triple(&self, os: &Os, libc: &Libc) -> Option<String> {
        let musl = !matches!(libc, Libc::Glibc { .. });
        match os {
            Os::Linux => self.linux_triple(musl),
            Os::FreeBsd => match self {
                Arch::X86_64 | Arch::Aarch64 | Arch::Powerpc64 | Arch::Powerpc64le => {
                    Some(format!("{}-unknown-freebsd", self.as_str()))
                }
                Arch::X86 => Some("i686-unknown-freebsd".into()),
                Arch::Armv7 => Some("armv7-unknown-freebsd".into()),
                Arch::Riscv64 => Some("riscv64gc-unknown-freebsd".into()),
                _ => None,
            },
            Os::MacOs => match self {
                Arch::X86_64 => Some("x86_64-apple-darwin".into()),
                Arch::Aarch64 => Some("aarch64-apple-darwin".into()),
                _ => None,
            },
            Os::Other(_) => None,
        }
    }

    /// The Linux target triple for this architecture, `-musl` or `-gnu`.
    pub fn linux_triple(&self, musl: bool) -> Option<String> {
        let libc = if musl { "musl" } else { "gnu" };
        let triple = match self {
            Arch::X86_64 => format!("x86_64-unknown-linux-{libc}"),
            Arch::X86 => format!("i686-unknown-linux-{libc}"),
            Arch::Aarch64 => format!("aarch64-unknown-linux-{libc}"),
            Arch::Armv7 => format!("armv7-unknown-linux-{libc}eabihf"),
            Arch::Arm => format!("arm-unknown-linux-{libc}eabihf"),
            Arch::Riscv64 => format!("riscv64gc-unknown-linux-{libc}"),
            Arch::Powerpc64le => format!("powerpc64le-unknown-linux-{libc}"),
            Arch::Powerpc64 if !musl => "powerpc64-unknown-linux-gnu".into(),
            Arch::S390x if !musl => "s390x-unknown-linux-gnu".into(),
            Arch::Loongarch64 => format!("loongarch64-unknown-linux-{libc}"),
            _ => return None,
        };
        Some(triple)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Arch {
    fn from(name: String) -> Arch {
        Arch::from_uname(&name)
    }
}

impl From<Arch> for String {
    fn from(arch: Arch) -> String {
        arch.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_spellings_normalize() {
        assert_eq!(Arch::from_uname("amd64"), Arch::X86_64);
        assert_eq!(Arch::from_uname("x86_64\n"), Arch::X86_64);
        assert_eq!(Arch::from_uname("arm64"), Arch::Aarch64);
        assert_eq!(Arch::from_uname("armv7l"), Arch::Armv7);
        assert_eq!(Arch::from_uname("armv6l"), Arch::Arm);
        assert_eq!(Arch::from_uname("i686"), Arch::X86);
        assert_eq!(Arch::from_uname("ppc64le"), Arch::Powerpc64le);
        assert_eq!(Arch::from_uname("mips64"), Arch::Other("mips64".into()));
    }

    #[test]
    fn names_round_trip() {
        for arch in [
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
        ] {
            assert_eq!(Arch::from_uname(arch.as_str()), arch);
        }
    }

    #[test]
    fn triples() {
        let glibc = Libc::Glibc {
            major: 2,
            minor: 36,
        };
        let musl = Libc::Musl { version: None };
        assert_eq!(
            Arch::Aarch64.target_triple(&Os::Linux, &glibc).as_deref(),
            Some("aarch64-unknown-linux-gnu")
        );
        assert_eq!(
            Arch::Armv7.target_triple(&Os::Linux, &musl).as_deref(),
            Some("armv7-unknown-linux-musleabihf")
        );
        assert_eq!(
            Arch::Riscv64.target_triple(&Os::Linux, &glibc).as_deref(),
            Some("riscv64gc-unknown-linux-gnu")
        );
        assert_eq!(
            Arch::X86_64
                .target_triple(&Os::FreeBsd, &Libc::Unknown)
                .as_deref(),
            Some("x86_64-unknown-freebsd")
        );
        assert_eq!(
            Arch::Aarch64
                .target_triple(&Os::MacOs, &Libc::Unknown)
                .as_deref(),
            Some("aarch64-apple-darwin")
        );
        assert!(Arch::Armv7.runs(&Arch::Arm));
        assert!(!Arch::Arm.runs(&Arch::Armv7));
        assert!(!Arch::X86_64.runs(&Arch::X86));
    }
}
