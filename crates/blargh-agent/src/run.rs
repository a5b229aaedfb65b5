//! The agent's main loop: take or bind the sockets, open the store, start the current
//! release, answer the control socket, and drain the app on SIGTERM.

use std::os::unix::fs::PermissionsExt;

use crate::config::AgentConfig;
use crate::layout::Layout;
use crate::sockets;
use crate::supervisor::Supervisor;

/// Runs the agent until SIGTERM or SIGINT. Builds its own tokio runtime.
pub fn run(cfg: AgentConfig) -> Result<(), String> {
    // Files the agent creates are private unless made otherwise on purpose.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let layout = Layout::new(&cfg.root);
    std::fs::create_dir_all(layout.root())
        .map_err(|e| format!("cannot create {}: {e}", layout.root().display()))?;
    let run_as = resolve_user(&cfg)?;
    let socket_gid = match &cfg.socket_group {
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .map_err(|e| format!("cannot look up group {g:?}: {e}"))?
                .ok_or_else(|| {
                    format!("group {g:?} does not exist; create it or drop --socket-group")
                })?
                .gid
                .as_raw(),
        ),
        None => None,
    };
    prepare_dirs(&layout, run_as)
        .map_err(|e| format!("cannot prepare {}: {e}", layout.root().display()))?;

    let mut listeners = sockets::inherited().map_err(|e| format!("inherited sockets: {e}"))?;
    if listeners.is_empty() {
        listeners = sockets::bind(&cfg.listen).map_err(|e| e.to_string())?;
    }
    if listeners.is_empty() {
        return Err(
            "no listening socket: pass --listen NAME=ADDRESS (for example web=127.0.0.1:8080), \
                    or run the agent from a systemd socket unit"
                .to_string(),
        );
    }
    let trampoline =
        std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let sup = Supervisor::new(cfg.clone(), listeners, run_as, trampoline)
            .map_err(|e| format!("cannot open the release store: {e}"))?;
        let control = crate::control::bind(&layout.socket(), socket_gid).map_err(|e| {
            format!(
                "cannot bind the control socket {}: {e}",
                layout.socket().display()
            )
        })?;
        sup.boot();
        tokio::spawn(crate::control::serve(sup.clone(), control));
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        eprintln!(
            "blargh-agent: serving {} from {} (control socket {})",
            cfg.app,
            layout.root().display(),
            layout.socket().display()
        );
        wait_for_stop().await;
        eprintln!("blargh-agent: stopping; draining the app");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        sup.shutdown().await;
        let _ = std::fs::remove_file(layout.socket());
        Ok::<(), String>(())
    })
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The uid/gid the app runs as. As root, `--user` is required and may not be root; as
/// another user, the app runs as that same user.
fn resolve_user(cfg: &AgentConfig) -> Result<Option<(u32, u32)>, String> {
    let me = nix::unistd::geteuid();
    match (&cfg.user, me.is_root()) {
        (None, true) => Err(
            "the agent runs as root, so it needs --user NAME to run the app as (the app never runs as root)"
                .to_string(),
        ),
        (None, false) => Ok(None),
        (Some(name), is_root) => {
            let user = nix::unistd::User::from_name(name)
                .map_err(|e| format!("cannot look up user {name:?}: {e}"))?
                .ok_or_else(|| format!("user {name:?} does not exist; create it (seed does) or pick another with --user"))?;
            if user.uid.is_root() {
                return Err("--user root: the app never runs as root; pick an unprivileged user".to_string());
            }
            if !is_root {
                if user.uid != me {
                    return Err(format!(
                        "--user {name}: only a root agent can run the app as another user; run the agent as {name} instead"
                    ));
                }
                return Ok(None);
            }
            Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
        }
    }
}

fn prepare_dirs(layout: &Layout, run_as: Option<(u32, u32)>) -> std::io::Result<()> {
    let set = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    };
    // The root must be traversable by the app's user, who reads its release manifests.
    set(layout.root(), 0o755)?;
    for dir in [layout.run(), layout.data(), layout.logs()] {
        std::fs::create_dir_all(&dir)?;
    }
    set(&layout.run(), 0o711)?;
    set(&layout.logs(), 0o700)?;
    set(&layout.data(), 0o700)?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(layout.data(), Some(uid), Some(gid))?;
    }
    Ok(())
}
