//! The agent: the process on the server that owns the app's listening sockets, stores its
//! releases, starts them, waits for readiness, drains the old one, restarts crashes, and
//! answers a control socket. It runs as `cargo-blargh agent run …` under the host's init.
//!
//! Files are laid out as [`layout::Layout`] describes; what runs is decided by
//! [`supervisor::Supervisor`]; how a release is started is [`spawn`]; the only way in is
//! the Unix socket served by [`control`].

pub mod audit;
pub mod client;
pub mod config;
pub mod control;
pub mod durable;
pub mod env_file;
pub mod handover;
pub mod layout;
pub mod leader;
pub mod lock;
pub mod logs;
pub mod notify;
pub mod privilege;
pub mod readiness;
pub mod run;
pub mod sockets;
pub mod spawn;
pub mod store;
pub mod supervisor;
pub mod time;
pub mod trampoline;
pub mod upgrade;

pub use config::AgentConfig;
pub use run::run;
