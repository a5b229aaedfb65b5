//! The support verdict: can `cargo blargh seed` prepare this host?
//!
//! blargh runs its agent under the host's init system through an init adapter. The
//! adapters that ship are systemd and OpenRC, on Linux. Every other host gets a clear
//! refusal naming what was found, why it is not supported, and where to read how to add
//! an adapter ([`HOW_TO_ADD`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::platform::{InitSystem, Os, Platform};

/// Where the guide to adding an init adapter lives, relative to the repository root.
pub const ADAPTER_GUIDE: &str = "docs/adding-an-init-adapter.md";

/// The pointer given with every refusal.
pub const HOW_TO_ADD: &str = "blargh ships init adapters for systemd and OpenRC on Linux; \
     support for another init system is one adapter plus its detection, see \
     docs/adding-an-init-adapter.md";

/// An init system that blargh has an adapter for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitKind {
    /// systemd: a `.service` plus a `.socket` unit.
    Systemd,
    /// OpenRC: an `/etc/init.d` script run under `supervise-daemon`.
    OpenRc,
}

impl fmt::Display for InitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InitKind::Systemd => "systemd",
            InitKind::OpenRc => "OpenRC",
        })
    }
}

/// Whether blargh can seed a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Supported, with the adapter to use.
    Supported(InitKind),
    /// Not supported.
    Unsupported {
        /// What the host is, e.g. `FreeBSD 14.1-RELEASE, x86_64, FreeBSD libc, rc.d`.
        found: String,
        /// Why blargh cannot run there yet.
        why: String,
        /// How to add support: points at [`ADAPTER_GUIDE`].
        how_to_add: &'static str,
    },
}

impl Support {
    /// The adapter to use, if supported.
    pub fn init_kind(&self) -> Option<InitKind> {
        match self {
            Support::Supported(kind) => Some(*kind),
            Support::Unsupported { .. } => None,
        }
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Supported(kind) => write!(f, "supported (init adapter: {kind})"),
            Support::Unsupported {
                found,
                why,
                how_to_add,
            } => write!(f, "unsupported host: {found}\n  why: {why}\n  {how_to_add}"),
        }
    }
}

/// Decide whether blargh supports `platform`: Linux with systemd or OpenRC.
pub fn support(platform: &Platform) -> Support {
    let refuse = |why: String| Support::Unsupported {
        found: platform.to_string(),
        why,
        how_to_add: HOW_TO_ADD,
    };
    if platform.os != Os::Linux {
        return refuse(format!(
            "blargh's agent runs on Linux only for now; this host runs {} with {}, which has \
             no init adapter",
            platform.os, platform.init
        ));
    }
    match &platform.init {
        InitSystem::Systemd => Support::Supported(InitKind::Systemd),
        InitSystem::OpenRc => Support::Supported(InitKind::OpenRc),
        InitSystem::Unknown(what) => refuse(format!(
            "could not tell which init system runs on this host ({what}; neither \
             /run/systemd/system nor /run/openrc exists). blargh needs \
             systemd or OpenRC to start its agent at boot and restart it; a container \
             without an init system cannot be seeded"
        )),
        other => refuse(format!(
            "the host runs {other}, and blargh has no init adapter for it yet (it has systemd \
             and OpenRC)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_path_is_in_the_pointer() {
        assert!(HOW_TO_ADD.contains(ADAPTER_GUIDE));
    }
}
