//! The app side of blargh: take the listening sockets the agent hands over, say when the
//! app is ready, drain gracefully when a new release takes over, and know which release runs.
//!
//! Everything here also works outside blargh: without inherited sockets, [`listen`] binds a
//! development address, so `cargo run` keeps working.
//!
//! # Example with axum (feature `axum`)
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     // The socket named "web" from the agent, or 127.0.0.1:3000 under `cargo run`.
//!     let listener = blargh::listen("web", "127.0.0.1:3000")?;
//!     let release = blargh::release::current();
//!     let app = Router::new().route(
//!         "/",
//!         get(move || {
//!             let id = release.as_ref().map(|r| r.id.to_string()).unwrap_or("dev".into());
//!             async move { format!("hello from {id}\n") }
//!         }),
//!     );
//!     // Signals readiness, serves HTTP/1 and HTTP/2 (h2c), and on SIGTERM drains: stops
//!     // accepting, answers the next request on each HTTP/1 keep-alive connection with
//!     // `Connection: close`, sends GOAWAY on each HTTP/2 one, lets streaming responses
//!     // finish until the drain deadline, then returns.
//!     blargh::serve(listener, app).await
//! }
//! ```
//!
//! Apps on other stacks use the pieces: [`listen`], [`notify::ready`],
//! [`shutdown::signal`] (feature `tokio`), [`notify::stopping`], and the watchdog ping
//! ([`notify::watchdog`] every [`notify::watchdog_interval`], or `notify::spawn_watchdog`
//! with feature `tokio`).
//!
//! With feature `dashboard`, `dashboard::router()` is a deployment dashboard (current and
//! previous releases, uptime, host) an axum app mounts in one line:
//! `.nest_service("/_blargh", blargh::dashboard::router())`.

#[cfg(any(feature = "dashboard", feature = "tls"))]
mod calendar;
#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod listen;
pub mod notify;
pub mod release;
#[cfg(feature = "axum")]
mod serve;
#[cfg(feature = "tokio")]
pub mod shutdown;
#[cfg(feature = "tls")]
pub mod tls;

pub use listen::{listen, listener};
#[cfg(feature = "axum")]
pub use serve::{DrainConfig, serve, serve_with};
#[cfg(feature = "tls")]
pub use serve::{HANDSHAKE_TIMEOUT, serve_tls};
