//! The agent's main loop: take or bind the sockets, open the store, start the current
//! release, answer the control socket, and drain the app on SIGTERM.

use std::os::unix::fs::PermissionsExt;

use crate::config::AgentConfig;
use crate::layout::Layout;
use crate::sockets::{self, Listener};
use crate::supervisor::Supervisor;
use crate::upgrade::Handover;
use blargh_proto::control::Reply;

/// Runs the agent until SIGTERM or SIGINT. Builds its own tokio runtime; the calling
/// thread becomes the agent's leader ([`crate::leader`]), which forks the releases and,
/// on an in-place upgrade, executes the new agent.
pub fn run(cfg: AgentConfig) -> Result<(), String> {
    // First, while no other thread runs: an earlier agent's handover, if it exec'd us.
    let handover = Handover::take()?;
    let leader = crate::leader::lead().map_err(|e| e.to_string())?;
    // Files the agent creates are private unless made otherwise on purpose.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let layout = Layout::new(&cfg.root);
    // The sockets first: a root agent (OpenRC) binds ports below 1024, then becomes its own
    // user before it touches a file under the app's root. After an upgrade they are the
    // earlier agent's, which stay open across the exec.
    let mut listeners = match &handover {
        Some(h) => h
            .listeners
            .iter()
            .map(|l| Listener {
                name: l.name.clone(),
                // SAFETY: named by the handover just taken, each taken once.
                socket: std::net::TcpListener::from(unsafe { crate::upgrade::own(l.fd) }),
            })
            .collect(),
        None => sockets::inherited().map_err(|e| format!("inherited sockets: {e}"))?,
    };
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
    if let Some(name) = &cfg.agent_user {
        become_agent_user(name)?;
    }
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

    let trampoline =
        std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let main = async move {
        let sup = Supervisor::new(cfg.clone(), listeners, run_as, trampoline)
            .map_err(|e| format!("cannot open the release store: {e}"))?;
        let control = match &handover {
            Some(h) => {
                // SAFETY: named by the handover just taken, taken once.
                crate::control::adopt(unsafe { crate::upgrade::own(h.control) })
            }
            None => crate::control::bind(&layout.socket(), socket_gid),
        }
        .map_err(|e| {
            format!(
                "cannot bind the control socket {}: {e}",
                layout.socket().display()
            )
        })?;
        sup.set_control_fd(std::os::fd::AsRawFd::as_raw_fd(&control));
        let (handed, took_over) = match handover {
            Some(mut h) => (h.current.take(), Some(h)),
            None => (None, None),
        };
        sup.boot(handed);
        tokio::spawn(crate::control::serve(sup.clone(), control));
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        match took_over {
            Some(h) => {
                eprintln!(
                    "blargh-agent: upgraded in place from {} to {} (pid {}); serving {}",
                    h.from_version,
                    env!("CARGO_PKG_VERSION"),
                    std::process::id(),
                    cfg.app
                );
                // SAFETY: named by the handover just taken, taken once.
                let conn = unsafe { crate::upgrade::own(h.reply_to) };
                let report = sup.took_over(&h);
                crate::control::answer_on(conn, &Reply::Upgraded(report)).await;
            }
            None => eprintln!(
                "blargh-agent: serving {} from {} (control socket {})",
                cfg.app,
                layout.root().display(),
                layout.socket().display()
            ),
        }
        wait_for_stop().await;
        eprintln!("blargh-agent: stopping; draining the app");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        sup.shutdown().await;
        let _ = std::fs::remove_file(layout.socket());
        Ok::<(), String>(())
    };
    let main = rt.spawn(main);
    rt.spawn(async move {
        crate::leader::finish(match main.await {
            Ok(result) => result,
            Err(e) => Err(format!("the agent's main task failed: {e}")),
        })
    });
    let result = leader.serve(&rt);
    // Tasks still running (connections, copiers) end with the runtime, without waiting.
    rt.shutdown_background();
    result
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

/// `--agent-user NAME`: from root to that user with only `CAP_SETUID`, `CAP_SETGID` and
/// `CAP_KILL` (before any thread starts). Already that user: nothing to do.
fn become_agent_user(name: &str) -> Result<(), String> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| format!("cannot look up user {name:?}: {e}"))?
        .ok_or_else(|| {
            format!("--agent-user {name}: no such user; create it (seed does) or drop the flag")
        })?;
    let me = nix::unistd::geteuid();
    if user.uid == me {
        return Ok(());
    }
    if !me.is_root() {
        return Err(format!(
            "--agent-user {name}: only a root agent can become another user; run it as {name}"
        ));
    }
    let groups = crate::privilege::groups_of(name, user.gid.as_raw())
        .map_err(|e| format!("cannot list the groups of {name}: {e}"))?;
    crate::privilege::drop_to_agent_user(user.uid.as_raw(), user.gid.as_raw(), &groups)
        .map_err(|e| format!("cannot become {name}: {e}"))
}

/// The uid/gid the app runs as. As root, `--user` is required and may not be root; as
/// another user, the app runs as `--user` when the agent holds `CAP_SETUID` and
/// `CAP_SETGID` (the agent user under seed's units), else as the agent's own user.
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
            if !is_root && user.uid == me {
                return Ok(None);
            }
            if !crate::privilege::can_switch_users() {
                return Err(format!(
                    "--user {name}: this agent (uid {me}) holds neither root nor CAP_SETUID and CAP_SETGID, so it cannot start the app as {name}; \
                     run the agent as {name}, or under seed's service (which grants those capabilities)"
                ));
            }
            Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
        }
    }
}

/// Creates the agent's directories. `data/` must belong to the app's user: a root agent
/// gives it to the app; the agent user (which cannot chown) finds it made by seed.
fn prepare_dirs(layout: &Layout, run_as: Option<(u32, u32)>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let set = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    };
    let me = nix::unistd::geteuid().as_raw();
    // The root must be traversable by the app's user, who reads its release manifests.
    // Under seed it is root's (1775): seed set its mode, and the agent may not change it.
    if std::fs::metadata(layout.root())?.uid() == me {
        set(layout.root(), 0o755)?;
    }
    for dir in [layout.run(), layout.logs()] {
        std::fs::create_dir_all(&dir)?;
    }
    set(&layout.run(), 0o711)?;
    set(&layout.logs(), 0o700)?;
    let data = layout.data();
    let meta = match std::fs::symlink_metadata(&data) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&data)?;
            set(&data, 0o700)?;
            std::fs::symlink_metadata(&data)?
        }
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory (a symlink is refused: the app's data stays under its root); \
             move it away and run `cargo blargh seed` again",
            data.display()
        )));
    }
    let Some((uid, gid)) = run_as else {
        return set(&data, 0o700);
    };
    if meta.uid() != uid {
        std::os::unix::fs::lchown(&data, Some(uid), Some(gid)).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "{} belongs to uid {} but the app runs as uid {uid}, and the agent cannot give it away ({e}); \
                     run `cargo blargh seed` again (it creates data/ for the app's user)",
                    data.display(),
                    meta.uid()
                ),
            )
        })?;
    }
    if me == 0 {
        set(&data, 0o700)?;
    }
    Ok(())
}
