//! Building the release binary with cargo, and finding the file it produced; and choosing
//! the build that fits every host: a native one, or one for an older glibc with
//! `cargo zigbuild` when a host's glibc is older than this machine's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use blargh_platform::GlibcVersion;

/// The commands that install what `cargo zigbuild` needs, one per line.
pub const INSTALL_ZIGBUILD: &str = "pip install ziglang\n    cargo install --locked cargo-zigbuild";

/// Runs `cargo build --release -p PACKAGE --bin BIN [--target T]` in `dir` and returns the
/// path of the executable (read from cargo's JSON messages, so custom target dirs work).
/// Cargo's own progress and errors go to stderr. With `zig`, `cargo zigbuild` instead,
/// whose target may carry a glibc version (`x86_64-unknown-linux-gnu.2.31`).
pub fn build(
    dir: &Path,
    package: &str,
    bin: &str,
    target: Option<&str>,
    zig: bool,
) -> Result<PathBuf, String> {
    let mut cmd = cargo_command(zig, target);
    cmd.current_dir(dir).args(["-p", package, "--bin", bin]);
    run_build(cmd, bin, zig)
}

/// `cargo build --release --message-format=json-render-diagnostics [--target T]` (or
/// `cargo zigbuild …`), for the caller to add the package, the binary and a directory.
pub fn cargo_command(zig: bool, target: Option<&str>) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        if zig { "zigbuild" } else { "build" },
        "--release",
        "--message-format=json-render-diagnostics",
    ]);
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    cmd
}

/// Runs a command made by [`cargo_command`] and returns the executable `bin` it built.
pub fn run_build(mut cmd: Command, bin: &str, zig: bool) -> Result<PathBuf, String> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        let what = if zig { "cargo zigbuild" } else { "cargo build" };
        return Err(format!(
            "{what} failed ({}); see its errors above",
            out.status
        ));
    }
    executable_from_messages(&String::from_utf8_lossy(&out.stdout), bin).ok_or_else(|| {
        format!("cargo built no executable named {bin:?}; set `bin` in [package.metadata.blargh]")
    })
}

/// The executable of binary target `bin` in cargo's `--message-format=json` output.
pub fn executable_from_messages(stdout: &str, bin: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// True for a target that only `cargo zigbuild` understands: a gnu triple with a glibc
/// version after it (`x86_64-unknown-linux-gnu.2.31`).
pub fn is_zig_target(target: &str) -> bool {
    target
        .rsplit_once("-gnu")
        .is_some_and(|(_, rest)| rest.contains('.'))
}

/// What this machine has for `cargo zigbuild`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tools {
    /// `cargo zigbuild` runs (`cargo-zigbuild` on the PATH or in cargo's bin directory).
    pub cargo_zigbuild: bool,
    /// zig runs, as cargo-zigbuild looks for it: `$CARGO_ZIGBUILD_ZIG_PATH`, `zig` on the
    /// PATH, or `python3 -m ziglang` (PyPI's `ziglang`).
    pub zig: bool,
}

impl Tools {
    /// Neither.
    pub const NONE: Tools = Tools {
        cargo_zigbuild: false,
        zig: false,
    };

    /// Asks this machine.
    pub fn detect() -> Tools {
        let runs = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let zig_path = std::env::var("CARGO_ZIGBUILD_ZIG_PATH").ok();
        Tools {
            cargo_zigbuild: runs(&cargo, &["zigbuild", "--help"]),
            zig: zig_path.is_some_and(|z| runs(&z, &["version"]))
                || runs("zig", &["version"])
                || runs("python3", &["-m", "ziglang", "version"]),
        }
    }

    /// Both are there.
    pub fn complete(self) -> bool {
        self.cargo_zigbuild && self.zig
    }

    /// What is missing, for a message: `zig (PyPI's ziglang)`, `cargo-zigbuild`.
    pub fn missing(self) -> String {
        let mut m = Vec::new();
        if !self.zig {
            m.push("zig (PyPI's ziglang)");
        }
        if !self.cargo_zigbuild {
            m.push("cargo-zigbuild");
        }
        m.join(" and ")
    }
}

/// This machine's glibc (`getconf GNU_LIBC_VERSION`); `None` when it has none.
pub fn local_glibc() -> Option<GlibcVersion> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("glibc ")
        .and_then(GlibcVersion::parse)
}

/// A host that runs glibc, as deploy's probe found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GnuHost {
    /// `user@host:port`.
    pub name: String,
    /// Its Rust target, `x86_64-unknown-linux-gnu`.
    pub triple: String,
    /// Its glibc.
    pub glibc: GlibcVersion,
}

/// The build a deploy makes when no `target` is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// `cargo build --release`, for this machine.
    Native {
        /// Why, for the line deploy prints.
        why: String,
    },
    /// `cargo zigbuild --release --target TRIPLE.GLIBC`: for the oldest host's glibc.
    Zigbuild {
        /// `x86_64-unknown-linux-gnu.2.31`.
        target: String,
        /// Why, for the line deploy prints.
        why: String,
    },
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Native { why } => write!(f, "cargo build --release; {why}"),
            Choice::Zigbuild { target, why } => {
                write!(f, "cargo zigbuild --release --target {target}; {why}")
            }
        }
    }
}

/// Any Rust program linked against glibc 2.34 or newer needs `GLIBC_2.34` at least (its
/// `__libc_start_main` carries that version).
const GLIBC_2_34: GlibcVersion = GlibcVersion {
    major: 2,
    minor: 34,
};

/// Which build fits every host: native when no host's glibc is older than `local` (this
/// machine's), else `cargo zigbuild` for the oldest host's glibc when `tools` has what it
/// needs. Without the tools: an error naming what to install and the musl alternative when
/// a native build certainly cannot start on the oldest host, else native (the fit check
/// before anything is sent has the last word).
pub fn choose(
    local: Option<GlibcVersion>,
    hosts: &[GnuHost],
    tools: Tools,
) -> Result<Choice, String> {
    let Some(local) = local else {
        return Ok(Choice::Native {
            why: "this machine has no glibc to compare with the hosts'".into(),
        });
    };
    let Some(oldest) = hosts.iter().min_by_key(|h| h.glibc) else {
        return Ok(Choice::Native {
            why: "no host reported a glibc".into(),
        });
    };
    if oldest.glibc >= local {
        return Ok(Choice::Native {
            why: format!("every host's glibc is {local} or newer, as this machine's is"),
        });
    }
    let older = format!(
        "{} has glibc {}, older than this machine's {local}",
        oldest.name, oldest.glibc
    );
    if tools.complete() {
        return Ok(Choice::Zigbuild {
            target: format!("{}.{}", oldest.triple, oldest.glibc),
            why: older,
        });
    }
    let musl = oldest.triple.replace("-gnu", "-musl");
    let how = format!(
        "to build for glibc {g} deploy uses cargo-zigbuild, and this machine lacks {missing}; \
         install it with:\n    {INSTALL_ZIGBUILD}\nor build a static binary instead: \
         `rustup target add {musl}` and `target = \"{musl}\"` under [package.metadata.blargh] \
         (or `--target {musl}`)",
        g = oldest.glibc,
        missing = tools.missing(),
    );
    if oldest.glibc < GLIBC_2_34 && local >= GLIBC_2_34 {
        return Err(format!(
            "{older}: a build here needs GLIBC_{GLIBC_2_34} and would not start there; {how}"
        ));
    }
    Ok(Choice::Native {
        why: format!("{older}; a native build may still fit (checked before anything is sent)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let msgs = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"shop","kind":["lib"]},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"shop","kind":["bin"]},"executable":"/t/release/shop"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n",
        );
        assert_eq!(
            executable_from_messages(msgs, "shop"),
            Some(PathBuf::from("/t/release/shop"))
        );
        assert_eq!(executable_from_messages(msgs, "other"), None);
    }

    fn v(minor: u32) -> GlibcVersion {
        GlibcVersion { major: 2, minor }
    }

    fn host(name: &str, minor: u32) -> GnuHost {
        GnuHost {
            name: name.into(),
            triple: "x86_64-unknown-linux-gnu".into(),
            glibc: v(minor),
        }
    }

    const ALL: Tools = Tools {
        cargo_zigbuild: true,
        zig: true,
    };
    const NONE: Tools = Tools::NONE;

    #[test]
    fn hosts_as_new_as_this_machine_get_a_native_build() {
        for tools in [ALL, NONE] {
            let c = choose(Some(v(36)), &[host("a", 36), host("b", 39)], tools).unwrap();
            assert!(matches!(c, Choice::Native { .. }), "{c}");
            assert!(c.to_string().contains("2.36 or newer"), "{c}");
        }
        let c = choose(Some(v(36)), &[], ALL).unwrap();
        assert!(matches!(c, Choice::Native { .. }), "{c}");
        let c = choose(None, &[host("a", 17)], ALL).unwrap();
        assert!(matches!(c, Choice::Native { .. }), "{c}");
    }

    #[test]
    fn an_older_host_gets_a_zigbuild_for_the_oldest_glibc() {
        let hosts = [host("new", 39), host("bullseye", 31), host("jammy", 35)];
        let c = choose(Some(v(36)), &hosts, ALL).unwrap();
        assert_eq!(
            c,
            Choice::Zigbuild {
                target: "x86_64-unknown-linux-gnu.2.31".into(),
                why: "bullseye has glibc 2.31, older than this machine's 2.36".into(),
            }
        );
        assert_eq!(
            c.to_string(),
            "cargo zigbuild --release --target x86_64-unknown-linux-gnu.2.31; bullseye has \
             glibc 2.31, older than this machine's 2.36"
        );
        let c = choose(Some(v(36)), &[host("jammy", 35)], ALL).unwrap();
        assert!(
            matches!(&c, Choice::Zigbuild { target, .. } if target.ends_with(".2.35")),
            "{c}"
        );
    }

    #[test]
    fn without_the_tools_the_error_says_what_to_install_and_the_musl_way() {
        for tools in [
            NONE,
            Tools {
                cargo_zigbuild: true,
                zig: false,
            },
            Tools {
                cargo_zigbuild: false,
                zig: true,
            },
        ] {
            let e = choose(Some(v(36)), &[host("bullseye", 31)], tools).unwrap_err();
            for want in [
                "bullseye has glibc 2.31",
                "needs GLIBC_2.34",
                "pip install ziglang",
                "cargo install --locked cargo-zigbuild",
                "target = \"x86_64-unknown-linux-musl\"",
                "--target x86_64-unknown-linux-musl",
            ] {
                assert!(e.contains(want), "{want:?} in {e}");
            }
            assert!(e.contains(&tools.missing()), "{e}");
        }
        // 2.35 may still run a native build (it needs 2.34): build, let the fit check say.
        let c = choose(Some(v(36)), &[host("jammy", 35)], NONE).unwrap();
        assert!(
            matches!(&c, Choice::Native { why } if why.contains("may still fit")),
            "{c}"
        );
    }

    #[test]
    fn zig_targets_are_gnu_triples_with_a_glibc_version() {
        assert!(is_zig_target("x86_64-unknown-linux-gnu.2.31"));
        assert!(is_zig_target("armv7-unknown-linux-gnueabihf.2.28"));
        assert!(!is_zig_target("x86_64-unknown-linux-gnu"));
        assert!(!is_zig_target("x86_64-unknown-linux-musl"));
    }
}
