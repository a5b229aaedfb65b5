//! The contract shared by the CLI, the agent and the app library: environment variable
//! names, validated names (app, socket, env key, release id), the server's paths, the
//! release manifest, and the versioned control protocol spoken on the agent's socket.
//!
//! Everything that crosses a process boundary in blargh is defined here, once.

pub mod control;
pub mod env;
pub mod manifest;
pub mod names;
pub mod paths;

pub use manifest::ReleaseManifest;
pub use names::{AppName, EnvKey, NameError, ReleaseId, SocketName};
