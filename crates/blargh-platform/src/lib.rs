//! What a server is, decided by pure functions: no network, no SSH, no processes.
//!
//! `cargo blargh seed` runs [`PROBE_SCRIPT`] on a host once over SSH and hands the output to
//! [`parse_probe`], which returns a [`Platform`]: OS, distribution, architecture, C library,
//! init system, privileges. [`support()`] says whether blargh can seed that host (Linux with
//! systemd or OpenRC) or why not. Before a deploy uploads anything,
//! [`binary_requirements`] reads a release binary's ELF headers and [`check_fit`] refuses a
//! binary the host cannot run, naming the fix.
//!
//! ```
//! let output = "@@blargh probe 1\n@@blargh uname-s\nLinux\n@@blargh uname-m\namd64\n@@blargh end\n";
//! let platform = blargh_platform::parse_probe(output).unwrap();
//! assert_eq!(platform.arch, blargh_platform::Arch::X86_64);
//! ```

pub mod arch;
mod detect;
pub mod elf;
pub mod fit;
pub mod os_release;
pub mod platform;
pub mod probe;
pub mod support;

pub use arch::Arch;
pub use elf::{BinaryReqs, ElfError, NeededLibc, binary_requirements};
pub use fit::{FitError, check_fit};
pub use platform::{Distribution, GlibcVersion, InitSystem, Libc, Os, Platform};
pub use probe::{PROBE_SCRIPT, ProbeError, parse_probe};
pub use support::{InitKind, Support, support};
