//! The probe: one POSIX `sh` script run on the host over SSH, and the parser of its output.
//!
//! The script ([`PROBE_SCRIPT`]) only reads: it runs `uname`, reads `/etc/os-release`,
//! looks at PID 1 and at a fixed list of paths, asks `ldd`/`getconf` about the C library
//! and `command -v` about a few commands. It works under dash, bash, busybox ash, FreeBSD
//! `sh` and macOS `/bin/sh`. Its output is a series of sections:
//!
//! ```text
//! @@blargh probe 1
//!
//! @@blargh uname-s
//! Linux
//!
//! @@blargh os-release
//! PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
//! ...
//! @@blargh end
//! ```
//!
//! Anything before the `@@blargh probe` line (a login banner, a chatty `.profile`) is
//! ignored; a missing `@@blargh end` means the output was cut short. [`parse_probe`] turns
//! the output into a [`Platform`].

use std::collections::BTreeMap;

use thiserror::Error;

use crate::arch::Arch;
use crate::detect;
use crate::os_release;
use crate::platform::{Distribution, Os, Platform};

/// The output format version the script prints after `@@blargh probe`.
pub const PROBE_FORMAT: u32 = 1;

/// The probe script. Run it once per host with a POSIX shell, e.g. by sending it on
/// standard input to `sh -s`, or as `sh -c '<script>'` (it contains no single quote).
///
/// It needs no root, installs nothing, writes nothing and exits 0.
pub const PROBE_SCRIPT: &str = r#"# blargh platform probe, output format 1. POSIX sh; read-only.
# Each section starts with a line "@@blargh <name>"; the last one is "@@blargh end".
set +e
LC_ALL=C
export LC_ALL
PATH="${PATH:-/usr/bin:/bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH
blargh_section() { printf "\n@@blargh %s\n" "$1"; }
printf "@@blargh probe 1\n"
blargh_section uname-s
uname -s 2>/dev/null
blargh_section uname-m
uname -m 2>/dev/null
blargh_section uname-r
uname -r 2>/dev/null
blargh_section os-release
if [ -r /etc/os-release ]; then
  cat /etc/os-release 2>/dev/null
elif [ -r /usr/lib/os-release ]; then
  cat /usr/lib/os-release 2>/dev/null
fi
blargh_section sw-vers
if command -v sw_vers >/dev/null 2>&1; then sw_vers 2>/dev/null; fi
blargh_section pid1
cat /proc/1/comm 2>/dev/null || ps -p 1 -o comm= 2>/dev/null
blargh_section init
for p in /run/systemd/system /run/openrc /run/runit /run/s6 /etc/runit /etc/s6 \
  /etc/init.d /etc/rc.d /etc/rc.conf /etc/inittab /sbin/init /sbin/openrc \
  /sbin/openrc-init /sbin/runit /sbin/s6-svscan /sbin/launchd; do
  if [ -e "$p" ]; then echo "$p"; fi
done
blargh_section ldd
if command -v ldd >/dev/null 2>&1; then ldd --version 2>&1 | head -n 2; fi
blargh_section getconf
getconf GNU_LIBC_VERSION 2>/dev/null
blargh_section loaders
for p in /lib/ld-musl-*.so.1 /lib/ld-linux*.so.* /lib64/ld-linux*.so.* \
  /lib/ld64.so.* /lib64/ld64.so.* /libexec/ld-elf.so.1; do
  if [ -e "$p" ]; then echo "$p"; fi
done
blargh_section id-u
id -u 2>/dev/null
blargh_section commands
for c in systemctl rc-service rc-status supervise-daemon openrc sv s6-svscan \
  launchctl service sudo doas gzip; do
  p=$(command -v "$c" 2>/dev/null) && echo "$c $p"
done
blargh_section end
"#;

/// Why probe output could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProbeError {
    /// The text has no `@@blargh probe` line: it is not the probe's output (the shell
    /// failed to start, or something else ran).
    #[error(
        "the host's answer is not blargh probe output (no `@@blargh probe` line); it began with: {first_line:?}"
    )]
    NotProbeOutput {
        /// The first non-empty line of what came back, for the message.
        first_line: String,
    },
    /// The output was written by a probe of another format version.
    #[error("probe output format {found} is not the supported format {PROBE_FORMAT}")]
    UnsupportedFormat {
        /// The version the output declares.
        found: String,
    },
    /// The output stops before `@@blargh end`: the connection dropped or the shell died.
    #[error("the probe output was cut short after section `{last_section}` (no `@@blargh end`)")]
    Truncated {
        /// The last section that began.
        last_section: String,
    },
    /// A section every POSIX system answers came back empty.
    #[error("the probe output has no `{0}` (the host's `{0}` printed nothing)")]
    Missing(&'static str),
}

/// The probe output split into named sections of lines (`\r` stripped, blank lines
/// dropped).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sections {
    sections: BTreeMap<String, Vec<String>>,
}

impl Sections {
    /// Split probe output into sections, checking the start and end markers.
    pub fn parse(output: &str) -> Result<Sections, ProbeError> {
        let mut lines = output.lines().map(|l| l.trim_end_matches('\r'));
        let mut started = false;
        let mut first_line = None;
        for line in lines.by_ref() {
            if first_line.is_none() && !line.trim().is_empty() {
                first_line = Some(line.to_string());
            }
            if let Some(format) = line.strip_prefix("@@blargh probe") {
                let format = format.trim();
                if format != PROBE_FORMAT.to_string() {
                    return Err(ProbeError::UnsupportedFormat {
                        found: format.to_string(),
                    });
                }
                started = true;
                break;
            }
        }
        if !started {
            return Err(ProbeError::NotProbeOutput {
                first_line: first_line.unwrap_or_default(),
            });
        }
        let mut sections = BTreeMap::new();
        let mut current: Option<(String, Vec<String>)> = None;
        for line in lines {
            if let Some(name) = line.strip_prefix("@@blargh ") {
                let name = name.trim().to_string();
                if let Some((done, body)) = current.take() {
                    sections.insert(done, body);
                }
                if name == "end" {
                    return Ok(Sections { sections });
                }
                current = Some((name, Vec::new()));
            } else if let Some((_, body)) = current.as_mut()
                && !line.trim().is_empty()
            {
                body.push(line.to_string());
            }
        }
        Err(ProbeError::Truncated {
            last_section: current.map(|(name, _)| name).unwrap_or_default(),
        })
    }

    /// The lines of a section; empty if the section is absent or printed nothing.
    pub fn lines(&self, name: &str) -> &[String] {
        self.sections.get(name).map_or(&[], Vec::as_slice)
    }

    /// The first line of a section, trimmed; `None` if it printed nothing.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.lines(name)
            .first()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
    }
}

/// Parse the output of [`PROBE_SCRIPT`] into a [`Platform`].
pub fn parse_probe(output: &str) -> Result<Platform, ProbeError> {
    let sections = Sections::parse(output)?;
    let os = Os::from_uname(
        sections
            .first("uname-s")
            .ok_or(ProbeError::Missing("uname -s"))?,
    );
    let arch = Arch::from_uname(
        sections
            .first("uname-m")
            .ok_or(ProbeError::Missing("uname -m"))?,
    );
    let kernel = sections.first("uname-r").unwrap_or_default().to_string();
    let distro = os_release::parse_distribution(&sections.lines("os-release").join("\n"))
        .or_else(|| sw_vers_distribution(sections.lines("sw-vers")));
    let pid1 = sections.first("pid1").map(str::to_string);
    let paths = sections.lines("init");
    let loaders: Vec<String> = sections
        .lines("loaders")
        .iter()
        .map(|l| l.trim().to_string())
        .collect();
    let commands: Vec<String> = sections
        .lines("commands")
        .iter()
        .filter_map(|l| {
            let (name, path) = l.trim().split_once(' ')?;
            (!path.trim().is_empty()).then(|| name.to_string())
        })
        .collect();
    let libc = detect::libc(
        &os,
        sections.lines("ldd"),
        sections.first("getconf"),
        &loaders,
    );
    let init = detect::init(&os, pid1.as_deref(), paths);
    let uid = sections.first("id-u").and_then(|u| u.parse::<u32>().ok());
    let has_sudo = commands.iter().any(|c| c == "sudo");
    Ok(Platform {
        os,
        kernel,
        distro,
        arch,
        libc,
        loaders,
        init,
        pid1,
        uid,
        is_root: uid == Some(0),
        has_sudo,
        commands,
    })
}

/// Describe macOS from `sw_vers` (`ProductName:  macOS`, `ProductVersion:  14.6.1`).
fn sw_vers_distribution(lines: &[String]) -> Option<Distribution> {
    let get = |key: &str| {
        lines.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let name = get("ProductName")?;
    let version = get("ProductVersion");
    let pretty = match &version {
        Some(v) => format!("{name} {v}"),
        None => name.clone(),
    };
    Some(Distribution {
        id: name.to_lowercase().replace(' ', ""),
        id_like: Vec::new(),
        name: Some(name),
        version_id: version,
        version_codename: None,
        pretty_name: Some(pretty),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_can_be_single_quoted() {
        assert!(!PROBE_SCRIPT.contains('\''));
    }

    #[test]
    fn banner_before_start_is_ignored() {
        let out = "Welcome!\n@@blargh probe 1\n\n@@blargh uname-s\nLinux\n\n@@blargh uname-m\nx86_64\n@@blargh end\n";
        let p = parse_probe(out).unwrap();
        assert_eq!(p.os, Os::Linux);
        assert_eq!(p.arch, Arch::X86_64);
        assert_eq!(p.distro, None);
    }

    #[test]
    fn crlf_output_parses() {
        let out = "@@blargh probe 1\r\n@@blargh uname-s\r\nLinux\r\n@@blargh uname-m\r\naarch64\r\n@@blargh end\r\n";
        assert_eq!(parse_probe(out).unwrap().arch, Arch::Aarch64);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_probe("sh: 1: Syntax error\n"),
            Err(ProbeError::NotProbeOutput { first_line }) if first_line == "sh: 1: Syntax error"
        ));
        assert!(matches!(
            parse_probe("@@blargh probe 2\n@@blargh end\n"),
            Err(ProbeError::UnsupportedFormat { .. })
        ));
        assert_eq!(
            parse_probe("@@blargh probe 1\n@@blargh uname-s\nLinux\n@@blargh os-release\nID=x\n"),
            Err(ProbeError::Truncated {
                last_section: "os-release".into()
            })
        );
        assert_eq!(
            parse_probe("@@blargh probe 1\n@@blargh uname-s\nLinux\n@@blargh end\n"),
            Err(ProbeError::Missing("uname -m"))
        );
    }

    #[test]
    fn the_first_non_empty_line_is_quoted() {
        assert_eq!(
            parse_probe("\n  \nbash: sh: not found\nlogout\n"),
            Err(ProbeError::NotProbeOutput {
                first_line: "bash: sh: not found".into()
            })
        );
    }
}
