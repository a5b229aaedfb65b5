//! The facts about a host: [`Platform`] and the types it is made of.
//!
//! A [`Platform`] is what [`crate::parse_probe`] makes of the probe's output. It is plain
//! data (Serialize/Deserialize), so the CLI can cache it, print it or send it along, and
//! its `Display` is the one-line summary shown to a person:
//! `Debian GNU/Linux 12 (bookworm), x86_64, glibc 2.36, systemd`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;

/// Everything blargh knows about a host after probing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The kernel / operating system (`uname -s`).
    pub os: Os,
    /// The kernel release (`uname -r`), e.g. `6.1.0-28-amd64`.
    pub kernel: String,
    /// The distribution, from `/etc/os-release` (or `sw_vers` on macOS), when known.
    pub distro: Option<Distribution>,
    /// The CPU architecture (`uname -m`), normalized.
    pub arch: Arch,
    /// The C library that dynamically linked programs use.
    pub libc: Libc,
    /// Dynamic loaders present on the host (`/lib64/ld-linux-x86-64.so.2`,
    /// `/lib/ld-musl-x86_64.so.1`, …): a dynamically linked binary runs only if its
    /// interpreter is among them.
    pub loaders: Vec<String>,
    /// The init system running as (or managing services for) PID 1.
    pub init: InitSystem,
    /// PID 1's command name (`/proc/1/comm` or `ps -p 1 -o comm=`), if readable.
    pub pid1: Option<String>,
    /// The probing user's id (`id -u`), if reported.
    pub uid: Option<u32>,
    /// Whether the probing user is root (uid 0).
    pub is_root: bool,
    /// Whether `sudo` is installed.
    pub has_sudo: bool,
    /// Service-related commands found on `PATH` (`systemctl`, `rc-service`,
    /// `supervise-daemon`, `sudo`, `doas`, …, and `gzip` for compressed uploads), by name.
    pub commands: Vec<String>,
}

impl Platform {
    /// Whether the command `name` was found on the host's `PATH` by the probe.
    pub fn has_command(&self, name: &str) -> bool {
        self.commands.iter().any(|c| c == name)
    }

    /// Whether the distribution is `id` or declares itself like it (`ID_LIKE`).
    pub fn is_like(&self, id: &str) -> bool {
        self.distro.as_ref().is_some_and(|d| d.is_like(id))
    }

    /// The name of the host for messages: the distribution's pretty name, or the OS name
    /// and kernel release.
    pub fn name(&self) -> String {
        match &self.distro {
            Some(d) => d.to_string(),
            None => format!("{} {}", self.os, self.kernel)
                .trim_end()
                .to_string(),
        }
    }

    /// The Rust target triple matching this host (arch, OS and libc), if Rust has one.
    pub fn target_triple(&self) -> Option<String> {
        self.arch.target_triple(&self.os, &self.libc)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {}, {}",
            self.name(),
            self.arch,
            self.libc,
            self.init
        )
    }
}

/// The operating system, from `uname -s`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Os {
    /// `Linux`.
    #[serde(rename = "linux")]
    Linux,
    /// `FreeBSD`.
    #[serde(rename = "freebsd")]
    FreeBsd,
    /// `Darwin`.
    #[serde(rename = "macos")]
    MacOs,
    /// Anything else, as `uname -s` printed it.
    #[serde(rename = "other")]
    Other(String),
}

impl Os {
    /// Interpret `uname -s`.
    pub fn from_uname(sysname: &str) -> Os {
        match sysname.trim() {
            "Linux" => Os::Linux,
            "FreeBSD" => Os::FreeBsd,
            "Darwin" => Os::MacOs,
            other => Os::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Os::Linux => f.write_str("Linux"),
            Os::FreeBsd => f.write_str("FreeBSD"),
            Os::MacOs => f.write_str("macOS"),
            Os::Other(name) if name.is_empty() => f.write_str("an unknown OS"),
            Os::Other(name) => f.write_str(name),
        }
    }
}

/// A distribution, as `/etc/os-release` describes it (see `os-release(5)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    /// `ID`: lower-case identifier (`debian`, `ubuntu`, `alpine`, `rhel`, …); `linux` when
    /// the file has none, as `os-release(5)` specifies.
    pub id: String,
    /// `ID_LIKE`: identifiers of related distributions, closest first.
    pub id_like: Vec<String>,
    /// `NAME`, e.g. `Debian GNU/Linux`.
    pub name: Option<String>,
    /// `VERSION_ID`, e.g. `12`, `22.04`, `3.20.3`; absent on rolling releases.
    pub version_id: Option<String>,
    /// `VERSION_CODENAME`, e.g. `bookworm`.
    pub version_codename: Option<String>,
    /// `PRETTY_NAME`, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub pretty_name: Option<String>,
}

impl Distribution {
    /// Whether this distribution is `id`, or lists `id` in `ID_LIKE`.
    pub fn is_like(&self, id: &str) -> bool {
        self.id == id || self.id_like.iter().any(|like| like == id)
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pretty) = &self.pretty_name {
            return f.write_str(pretty);
        }
        f.write_str(self.name.as_deref().unwrap_or(&self.id))?;
        if let Some(version) = &self.version_id {
            write!(f, " {version}")?;
        }
        Ok(())
    }
}

/// A glibc version, `major.minor` (glibc has no meaningful third part for ABI purposes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GlibcVersion {
    /// Major version, `2` for every glibc in use.
    pub major: u32,
    /// Minor version, e.g. `36`.
    pub minor: u32,
}

impl GlibcVersion {
    /// Parse `2.36`, `2.2.5` (→ 2.2), or `2.36-9+deb12u4` (→ 2.36).
    pub fn parse(text: &str) -> Option<GlibcVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_text = parts.next()?;
        let digits = minor_text
            .find(|c: char| !c.is_ascii_digit())
            .map_or(minor_text, |end| &minor_text[..end]);
        let minor = digits.parse().ok()?;
        Some(GlibcVersion { major, minor })
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The host's C library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Libc {
    /// GNU libc, with its version.
    Glibc {
        /// Major version (2).
        major: u32,
        /// Minor version, e.g. 36.
        minor: u32,
    },
    /// musl libc; its version when `ldd` reported it.
    Musl {
        /// e.g. `1.2.5`.
        version: Option<String>,
    },
    /// A libc that is not glibc or musl: FreeBSD's libc, macOS's libSystem.
    Other {
        /// What it is called, e.g. `FreeBSD libc`.
        name: String,
    },
    /// The probe could not tell.
    Unknown,
}

impl Libc {
    /// The glibc version, if this is glibc.
    pub fn glibc_version(&self) -> Option<GlibcVersion> {
        match *self {
            Libc::Glibc { major, minor } => Some(GlibcVersion { major, minor }),
            _ => None,
        }
    }
}

impl From<GlibcVersion> for Libc {
    fn from(v: GlibcVersion) -> Libc {
        Libc::Glibc {
            major: v.major,
            minor: v.minor,
        }
    }
}

impl fmt::Display for Libc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Libc::Glibc { major, minor } => write!(f, "glibc {major}.{minor}"),
            Libc::Musl { version: Some(v) } => write!(f, "musl {v}"),
            Libc::Musl { version: None } => f.write_str("musl"),
            Libc::Other { name } => f.write_str(name),
            Libc::Unknown => f.write_str("unknown libc"),
        }
    }
}

/// The init system that supervises services on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitSystem {
    /// systemd.
    Systemd,
    /// OpenRC (under sysvinit, busybox init or `openrc-init`).
    OpenRc,
    /// macOS launchd.
    Launchd,
    /// BSD rc.d scripts (FreeBSD).
    RcD,
    /// runit (Void Linux and others).
    Runit,
    /// s6 / s6-rc.
    S6,
    /// Plain SysV init scripts, with no service manager recognized on top.
    SysVinit,
    /// Not recognized; holds what was found (PID 1's name, or a note).
    Unknown(String),
}

impl fmt::Display for InitSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitSystem::Systemd => f.write_str("systemd"),
            InitSystem::OpenRc => f.write_str("OpenRC"),
            InitSystem::Launchd => f.write_str("launchd"),
            InitSystem::RcD => f.write_str("rc.d"),
            InitSystem::Runit => f.write_str("runit"),
            InitSystem::S6 => f.write_str("s6"),
            InitSystem::SysVinit => f.write_str("SysV init"),
            InitSystem::Unknown(what) => write!(f, "unknown init ({what})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_parse() {
        let v = |major, minor| Some(GlibcVersion { major, minor });
        assert_eq!(GlibcVersion::parse("2.36"), v(2, 36));
        assert_eq!(GlibcVersion::parse("2.2.5"), v(2, 2));
        assert_eq!(GlibcVersion::parse("2.36-9+deb12u4"), v(2, 36));
        assert_eq!(GlibcVersion::parse("2"), None);
        assert_eq!(GlibcVersion::parse("x.y"), None);
        assert!(GlibcVersion::parse("2.39") > GlibcVersion::parse("2.4"));
    }

    #[test]
    fn display_summary() {
        let p = Platform {
            os: Os::Linux,
            kernel: "6.1.0-28-amd64".into(),
            distro: Some(Distribution {
                id: "debian".into(),
                id_like: vec![],
                name: Some("Debian GNU/Linux".into()),
                version_id: Some("12".into()),
                version_codename: Some("bookworm".into()),
                pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
            }),
            arch: Arch::X86_64,
            libc: Libc::Glibc {
                major: 2,
                minor: 36,
            },
            loaders: vec!["/lib64/ld-linux-x86-64.so.2".into()],
            init: InitSystem::Systemd,
            pid1: Some("systemd".into()),
            uid: Some(0),
            is_root: true,
            has_sudo: false,
            commands: vec!["systemctl".into()],
        };
        assert_eq!(
            p.to_string(),
            "Debian GNU/Linux 12 (bookworm), x86_64, glibc 2.36, systemd"
        );
        let json = serde_json_round_trip(&p);
        assert_eq!(json, p);
    }

    fn serde_json_round_trip(p: &Platform) -> Platform {
        let text = serde_json::to_string(p).unwrap();
        assert!(text.contains(r#""arch":"x86_64""#), "{text}");
        assert!(text.contains(r#""kind":"glibc""#), "{text}");
        serde_json::from_str(&text).unwrap()
    }
}
