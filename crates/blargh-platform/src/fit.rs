//! Does a release binary fit a host? [`check_fit`] compares [`BinaryReqs`] with a
//! [`Platform`] before anything is uploaded.
//!
//! Checked in order: the OS, the architecture, then, for dynamically linked binaries, the
//! C library (glibc version, musl) and the presence of the dynamic loader. Each refusal
//! names what the binary needs, what the host has, and the fix, usually a `--target` to
//! build for (for an older glibc, `cargo zigbuild` with the host's glibc in the target).

use thiserror::Error;

use crate::arch::Arch;
use crate::elf::{BinaryReqs, NeededLibc};
use crate::platform::{GlibcVersion, Libc, Os, Platform};

/// Why a binary cannot run on a host. Every message names both sides and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FitError {
    /// The binary is for another operating system.
    #[error("the binary is built for {binary} but the host runs {host}; {fix}")]
    WrongOs {
        /// The binary's OS.
        binary: Os,
        /// The host, by name (e.g. `FreeBSD 14.1-RELEASE`).
        host: String,
        /// What to do.
        fix: String,
    },
    /// The binary is for another CPU architecture.
    #[error("the binary is for {binary} but the host is {host}; {fix}")]
    WrongArch {
        /// The binary's architecture.
        binary: Arch,
        /// The host's architecture.
        host: Arch,
        /// What to do (names the target triple).
        fix: String,
    },
    /// The binary needs a newer glibc than the host has.
    #[error("the binary needs GLIBC_{needed} but the host has glibc {host}; {fix}")]
    GlibcTooOld {
        /// The highest `GLIBC_x.y` the binary references.
        needed: GlibcVersion,
        /// The host's glibc.
        host: GlibcVersion,
        /// What to do.
        fix: String,
    },
    /// The binary needs glibc, the host has another libc (musl on Alpine).
    #[error("the binary is dynamically linked against glibc but the host has {host}; {fix}")]
    NoGlibc {
        /// The host's libc.
        host: Libc,
        /// What to do.
        fix: String,
    },
    /// The binary is dynamically linked against musl, the host has no musl loader.
    #[error(
        "the binary is dynamically linked against musl ({interpreter}) but the host has {host} and no musl loader; {fix}"
    )]
    NoMusl {
        /// The binary's interpreter.
        interpreter: String,
        /// The host's libc.
        host: Libc,
        /// What to do.
        fix: String,
    },
    /// The binary needs a libc, and the probe could not tell which one the host has.
    #[error(
        "the binary is dynamically linked against {needed} but the host's C library could not be determined; {fix}"
    )]
    HostLibcUnknown {
        /// The libc the binary needs.
        needed: NeededLibc,
        /// What to do.
        fix: String,
    },
    /// The binary's dynamic loader does not exist on the host.
    #[error("the binary's interpreter {interpreter} does not exist on the host ({host}); {fix}")]
    MissingLoader {
        /// The binary's interpreter.
        interpreter: String,
        /// The host, by name.
        host: String,
        /// What to do.
        fix: String,
    },
}

/// Check that a binary with requirements `reqs` can run on `platform`.
pub fn check_fit(reqs: &BinaryReqs, platform: &Platform) -> Result<(), FitError> {
    if reqs.os != platform.os {
        let fix = match platform.target_triple() {
            Some(t) => format!("build for the host: `--target {t}`"),
            None => format!("build it on or for {}", platform.os),
        };
        let fix = if platform.os == Os::MacOs {
            format!("macOS runs Mach-O binaries, not ELF; {fix}")
        } else {
            fix
        };
        return Err(FitError::WrongOs {
            binary: reqs.os.clone(),
            host: platform.name(),
            fix,
        });
    }
    if !platform.arch.runs(&reqs.arch) {
        return Err(FitError::WrongArch {
            binary: reqs.arch.clone(),
            host: platform.arch.clone(),
            fix: arch_fix(platform),
        });
    }
    let Some(interpreter) = &reqs.interpreter else {
        return Ok(());
    };
    let static_fix = static_fix(platform);
    match (&reqs.libc, &platform.libc) {
        (NeededLibc::Glibc, Libc::Glibc { major, minor }) => {
            let host = GlibcVersion {
                major: *major,
                minor: *minor,
            };
            if let Some(needed) = reqs.glibc
                && needed > host
            {
                return Err(FitError::GlibcTooOld {
                    needed,
                    host,
                    fix: glibc_fix(platform, host, &static_fix),
                });
            }
        }
        (NeededLibc::Glibc | NeededLibc::Musl, Libc::Unknown) => {
            return Err(FitError::HostLibcUnknown {
                needed: reqs.libc.clone(),
                fix: format!("build a static binary: {static_fix}"),
            });
        }
        (NeededLibc::Glibc, host) => {
            return Err(FitError::NoGlibc {
                host: host.clone(),
                fix: format!("build a static binary: {static_fix}"),
            });
        }
        (NeededLibc::Musl, host @ (Libc::Glibc { .. } | Libc::Other { .. }))
            if !platform.loaders.contains(interpreter) =>
        {
            return Err(FitError::NoMusl {
                interpreter: interpreter.clone(),
                host: host.clone(),
                fix: "link it statically: Rust's musl targets do unless built with \
                      `-C target-feature=-crt-static`"
                    .to_string(),
            });
        }
        _ => {}
    }
    if !platform.loaders.contains(interpreter) && loader_should_be_listed(interpreter, platform) {
        let nix = if interpreter.starts_with("/nix/store/") {
            " (a binary built on NixOS points at a loader in its Nix store; reset it with \
             `patchelf --set-interpreter` or build static)"
        } else {
            ""
        };
        return Err(FitError::MissingLoader {
            interpreter: interpreter.clone(),
            host: platform.name(),
            fix: format!("build a static binary: {static_fix}{nix}"),
        });
    }
    Ok(())
}

/// Whether the probe would have listed `interpreter` had it existed: it lists the
/// standard loader locations, and a Nix store path exists only on NixOS.
fn loader_should_be_listed(interpreter: &str, platform: &Platform) -> bool {
    if interpreter.starts_with("/nix/store/") {
        return !platform.is_like("nixos");
    }
    [
        "/lib/ld-musl-",
        "/lib/ld-linux",
        "/lib64/ld-linux",
        "/lib/ld64.so.",
        "/lib64/ld64.so.",
    ]
    .iter()
    .any(|prefix| interpreter.starts_with(prefix))
        || interpreter == "/libexec/ld-elf.so.1"
}

/// The fix for an architecture mismatch: the host's own triple, and the musl one.
fn arch_fix(platform: &Platform) -> String {
    let arch = &platform.arch;
    match (platform.target_triple(), platform.os == Os::Linux) {
        (Some(t), true) if matches!(platform.libc, Libc::Glibc { .. }) => {
            match arch.linux_triple(true) {
                Some(musl) => format!(
                    "build for the host: `--target {t}` (or `--target {musl}` for a static \
                     binary)"
                ),
                None => format!("build for the host: `--target {t}`"),
            }
        }
        (Some(t), _) => format!("build for the host: `--target {t}`"),
        (None, _) => format!("build it for {arch} on {}", platform.os),
    }
}

/// The fix for a glibc too new for the host: a build for the host's glibc with
/// cargo-zigbuild (which deploy and seed run by themselves once it is installed), or a
/// static binary.
fn glibc_fix(platform: &Platform, host: GlibcVersion, static_fix: &str) -> String {
    match platform.arch.linux_triple(false) {
        Some(t) => format!(
            "build for glibc {host} with `cargo zigbuild --release --target {t}.{host}` \
             (deploy and seed do that by themselves once `pip install ziglang` and \
             `cargo install --locked cargo-zigbuild` are done), or a static binary: {static_fix}"
        ),
        None => format!("build on an older system or a static binary: {static_fix}"),
    }
}

/// The `--target` that gives a static binary for the host, as message text.
fn static_fix(platform: &Platform) -> String {
    match platform.arch.linux_triple(true) {
        Some(t) => format!("`--target {t}`"),
        None => format!("a static build for {}", platform.arch),
    }
}
