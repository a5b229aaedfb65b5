//! Inferring the C library and the init system from the probe's raw evidence.
//!
//! Both are judgements over several clues, so they live apart from the section parsing:
//!
//! - **libc**: `getconf GNU_LIBC_VERSION` (`glibc 2.36`) is the most reliable; then
//!   `ldd --version`, whose first line is `ldd (<vendor> …) 2.36` for glibc or
//!   `musl libc (<arch>)` followed by `Version 1.2.5` for musl; then a musl loader in
//!   `/lib` with no glibc evidence. FreeBSD and macOS have their own libc.
//! - **init**: PID 1's name is the strongest clue when it names a service manager
//!   (`systemd`, `openrc-init`, `runit`, `s6-svscan`, `launchd`); then the directories a
//!   running manager creates under `/run` (`/run/systemd/system` is what `sd_booted(3)`
//!   checks; `/run/openrc`, `/run/s6`). Installed-but-not-running evidence (`/sbin/openrc`
//!   in a container) is deliberately not enough, and neither is `/run/runit`: Debian's
//!   `openssh-server` ships runit service files whose helper creates `/run/runit/supervise`
//!   on hosts where runit is not the init. runit is recognized by PID 1 (`runit`).

use crate::platform::{GlibcVersion, InitSystem, Libc, Os};

/// Decide which C library the host uses.
pub(crate) fn libc(os: &Os, ldd: &[String], getconf: Option<&str>, loaders: &[String]) -> Libc {
    match os {
        Os::FreeBsd => {
            return Libc::Other {
                name: "FreeBSD libc".into(),
            };
        }
        Os::MacOs => {
            return Libc::Other {
                name: "libSystem".into(),
            };
        }
        _ => {}
    }
    if let Some(version) = getconf
        .and_then(|g| g.strip_prefix("glibc "))
        .and_then(GlibcVersion::parse)
    {
        return version.into();
    }
    let first = ldd.first().map(|l| l.trim()).unwrap_or_default();
    if first.starts_with("ldd (")
        && let Some(version) = first.rsplit(' ').next().and_then(GlibcVersion::parse)
    {
        return version.into();
    }
    if first.starts_with("musl libc") {
        let version = ldd
            .iter()
            .find_map(|l| l.trim().strip_prefix("Version "))
            .map(|v| v.trim().to_string());
        return Libc::Musl { version };
    }
    if loaders.iter().any(|l| l.contains("/ld-musl-")) {
        return Libc::Musl { version: None };
    }
    Libc::Unknown
}

/// Decide which init system supervises services on the host.
pub(crate) fn init(os: &Os, pid1: Option<&str>, paths: &[String]) -> InitSystem {
    let has = |path: &str| paths.iter().any(|p| p.trim() == path);
    let pid1_name = pid1.map(|p| p.rsplit('/').next().unwrap_or(p).trim());
    match os {
        Os::MacOs => return InitSystem::Launchd,
        Os::FreeBsd if has("/etc/rc.conf") || has("/etc/rc.d") || pid1_name == Some("init") => {
            return InitSystem::RcD;
        }
        _ => {}
    }
    match pid1_name {
        Some("systemd") => return InitSystem::Systemd,
        Some("openrc-init") => return InitSystem::OpenRc,
        Some("runit" | "runit-init") => return InitSystem::Runit,
        Some("s6-svscan") => return InitSystem::S6,
        Some("launchd") => return InitSystem::Launchd,
        _ => {}
    }
    if has("/run/systemd/system") {
        return InitSystem::Systemd;
    }
    if has("/run/openrc") {
        return InitSystem::OpenRc;
    }
    if has("/run/s6") {
        return InitSystem::S6;
    }
    if pid1_name == Some("init") && has("/etc/inittab") {
        return InitSystem::SysVinit;
    }
    InitSystem::Unknown(match pid1_name {
        Some(name) if !name.is_empty() => format!("PID 1 is `{name}`"),
        _ => "PID 1 could not be read".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn gentoo_style_ldd_is_glibc() {
        let ldd = lines("ldd (Gentoo 2.39-r9 (patchset 6)) 2.39\nCopyright");
        assert_eq!(
            libc(&Os::Linux, &ldd, None, &[]),
            Libc::Glibc {
                major: 2,
                minor: 39
            }
        );
    }

    #[test]
    fn getconf_wins_over_ldd() {
        let ldd = lines("musl libc (x86_64)\nVersion 1.2.5");
        assert_eq!(
            libc(&Os::Linux, &ldd, Some("glibc 2.36"), &[]),
            Libc::Glibc {
                major: 2,
                minor: 36
            }
        );
    }

    #[test]
    fn musl_loader_alone_means_musl() {
        let loaders = lines("/lib/ld-musl-aarch64.so.1");
        assert_eq!(
            libc(&Os::Linux, &[], None, &loaders),
            Libc::Musl { version: None }
        );
        assert_eq!(libc(&Os::Linux, &[], None, &[]), Libc::Unknown);
    }

    #[test]
    fn container_with_openrc_installed_is_unknown() {
        let paths = lines("/sbin/openrc\n/etc/init.d");
        assert_eq!(
            init(&Os::Linux, Some("bash"), &paths),
            InitSystem::Unknown("PID 1 is `bash`".into())
        );
        assert_eq!(
            init(&Os::Linux, None, &[]),
            InitSystem::Unknown("PID 1 could not be read".into())
        );
    }

    #[test]
    fn void_rc_conf_is_not_bsd() {
        let paths = lines("/etc/rc.conf\n/etc/runit\n/run/runit");
        assert_eq!(init(&Os::Linux, Some("runit"), &paths), InitSystem::Runit);
    }

    #[test]
    fn debian_runit_leftovers_are_not_runit() {
        // openssh-server's runit files on a Debian container whose PID 1 is something else.
        let paths = lines("/run/runit\n/etc/runit\n/etc/init.d\n/sbin/init");
        assert_eq!(
            init(&Os::Linux, Some("process_api"), &paths),
            InitSystem::Unknown("PID 1 is `process_api`".into())
        );
    }

    #[test]
    fn plain_sysvinit() {
        let paths = lines("/etc/inittab\n/etc/init.d\n/sbin/init");
        assert_eq!(init(&Os::Linux, Some("init"), &paths), InitSystem::SysVinit);
    }
    #[test]
    fn each_init_signal_alone_decides() {
        let none: &[String] = &[];
        // PID 1's name alone.
        for (pid1, want) in [
            ("/lib/systemd/systemd", InitSystem::Systemd),
            ("openrc-init", InitSystem::OpenRc),
            ("runit", InitSystem::Runit),
            ("runit-init", InitSystem::Runit),
            ("s6-svscan", InitSystem::S6),
            ("launchd", InitSystem::Launchd),
        ] {
            assert_eq!(init(&Os::Linux, Some(pid1), none), want, "PID 1 {pid1}");
        }
        // One directory under /run alone, PID 1 unreadable.
        for (path, want) in [
            ("/run/systemd/system", InitSystem::Systemd),
            ("/run/openrc", InitSystem::OpenRc),
            ("/run/s6", InitSystem::S6),
        ] {
            assert_eq!(init(&Os::Linux, None, &lines(path)), want, "{path}");
        }
        // SysV init needs both PID 1 `init` and /etc/inittab.
        assert_eq!(
            init(&Os::Linux, Some("init"), none),
            InitSystem::Unknown("PID 1 is `init`".into())
        );
        assert_eq!(
            init(&Os::Linux, None, &lines("/etc/inittab")),
            InitSystem::Unknown("PID 1 could not be read".into())
        );
        assert_eq!(
            init(&Os::Linux, Some(""), none),
            InitSystem::Unknown("PID 1 could not be read".into())
        );
    }

    #[test]
    fn freebsd_rc_d_from_any_one_signal() {
        let none: &[String] = &[];
        assert_eq!(init(&Os::FreeBsd, Some("init"), none), InitSystem::RcD);
        assert_eq!(
            init(&Os::FreeBsd, None, &lines("/etc/rc.conf")),
            InitSystem::RcD
        );
        assert_eq!(
            init(&Os::FreeBsd, None, &lines("/etc/rc.d")),
            InitSystem::RcD
        );
        assert_eq!(
            init(&Os::FreeBsd, None, none),
            InitSystem::Unknown("PID 1 could not be read".into())
        );
        // rc.conf on Linux means nothing by itself.
        assert!(matches!(
            init(&Os::Linux, None, &lines("/etc/rc.conf")),
            InitSystem::Unknown(_)
        ));
        assert_eq!(init(&Os::MacOs, None, none), InitSystem::Launchd);
    }

    #[test]
    fn libc_of_each_os_and_tool() {
        let freebsd = libc(&Os::FreeBsd, &[], Some("glibc 2.36"), &[]);
        assert_eq!(
            freebsd,
            Libc::Other {
                name: "FreeBSD libc".into()
            }
        );
        assert_eq!(
            libc(&Os::MacOs, &[], None, &[]),
            Libc::Other {
                name: "libSystem".into()
            }
        );
        let debian = lines("ldd (Debian GLIBC 2.36-9+deb12u4) 2.36\nCopyright (C) 2022");
        assert_eq!(
            libc(&Os::Linux, &debian, None, &[]),
            Libc::Glibc {
                major: 2,
                minor: 36
            }
        );
        let alpine = lines("musl libc (x86_64)\nVersion 1.2.5");
        let glibc_loader = lines("/lib64/ld-linux-x86-64.so.2");
        assert_eq!(
            libc(&Os::Linux, &alpine, None, &glibc_loader),
            Libc::Musl {
                version: Some("1.2.5".into())
            }
        );
        assert_eq!(libc(&Os::Linux, &[], None, &glibc_loader), Libc::Unknown);
        // A getconf answer that is not glibc's falls through to ldd.
        assert_eq!(
            libc(&Os::Linux, &alpine, Some("undefined"), &[]),
            Libc::Musl {
                version: Some("1.2.5".into())
            }
        );
    }
}
