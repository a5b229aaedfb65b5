//! The shutdown signal: SIGTERM from the agent when a newer release is ready, or Ctrl-C.

/// Resolves when the process is asked to stop (SIGTERM or SIGINT).
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The drain deadline the agent gives this release (`BLARGH_DRAIN_TIMEOUT_MS`), less a
/// margin so the app finishes on its own before the agent's SIGKILL. `None` outside blargh.
pub fn drain_budget() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var(blargh_proto::env::DRAIN_TIMEOUT_MS)
        .ok()?
        .parse()
        .ok()?;
    let margin = (ms / 10).min(1000);
    Some(std::time::Duration::from_millis(ms - margin))
}
