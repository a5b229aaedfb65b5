//! The contract shared by the CLI, the agent and the app library: environment variable
//! names, the release manifest, and the control protocol spoken on the agent's socket.
//!
//! Everything that crosses a process boundary in blargh is defined here, once.

pub mod control;
pub mod env;
pub mod manifest;

pub use manifest::ReleaseManifest;
