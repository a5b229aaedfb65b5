//! `cargo-blargh agent run` and `cargo-blargh agent ctl …`.

use blargh_agent::AgentConfig;
use blargh_proto::control::{Reply, Request};
use blargh_proto::manifest::ReleaseMeta;
use sha2::{Digest, Sha256};

use crate::cli::{AgentCommand, AgentRunArgs, CtlArgs, CtlCommand, ReceiveArgs};
use crate::output;

/// Runs an agent subcommand; returns the process exit code.
pub fn run(cmd: AgentCommand) -> i32 {
    match cmd {
        AgentCommand::Run(args) => run_agent(args),
        AgentCommand::Ctl(args) => ctl(args),
        AgentCommand::HandoverVersion => {
            println!("{}", blargh_agent::upgrade::HANDOVER_VERSION);
            0
        }
    }
}

fn run_agent(a: AgentRunArgs) -> i32 {
    let mut cfg = AgentConfig::new(a.root, a.app);
    cfg.listen = a.listen;
    cfg.user = a.user;
    cfg.agent_user = a.agent_user;
    cfg.socket_group = a.socket_group;
    // Unset flags keep AgentConfig::new's defaults (AgentSettings::DEFAULT).
    if let Some(t) = a.ready_timeout {
        cfg.ready_timeout = t;
    }
    if let Some(t) = a.drain_timeout {
        cfg.drain_timeout = t;
    }
    if let Some(k) = a.keep_releases {
        cfg.keep_releases = k;
    }
    if let Some(w) = a.watchdog_timeout {
        cfg.watchdog_timeout = Some(w).filter(|w| !w.is_zero());
    }
    cfg.max_restarts = a.max_restarts;
    cfg.crash_window = a.crash_window;
    match blargh_agent::run(cfg) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn ctl(a: CtlArgs) -> i32 {
    let Some(root) = a.root else {
        eprintln!("error: which app? pass --root DIR (the agent's --root) or set BLARGH_ROOT");
        return 2;
    };
    let socket = blargh_agent::layout::Layout::new(root).socket();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let request = match a.command {
        CtlCommand::Pipe => {
            // Exit at once: a read of stdin may still be pending on a blocking thread,
            // which dropping the runtime would wait for.
            let code = rt.block_on(pipe(&socket));
            std::process::exit(code);
        }
        CtlCommand::Receive(r) => {
            let result = rt.block_on(receive(&socket, r));
            return print_reply(result, a.json);
        }
        CtlCommand::Upgrade { by } => Request::Upgrade {
            by: by.or_else(whoami),
        },
        CtlCommand::Status => Request::Status,
        CtlCommand::Releases => Request::Releases,
        CtlCommand::Activate {
            id,
            by,
            auto_rollback_crashes,
            auto_rollback_window,
        } => Request::Activate {
            id,
            by: by.or_else(whoami),
            auto_rollback: auto_rollback_crashes.map(|crashes| {
                blargh_proto::control::AutoRollback {
                    window_s: auto_rollback_window.as_secs(),
                    crashes,
                }
            }),
            message: None,
        },
        CtlCommand::Rollback { id, by } => Request::Rollback {
            id,
            by: by.or_else(whoami),
        },
        CtlCommand::Logs { release, lines } => Request::Logs { release, lines },
        CtlCommand::Audit { lines } => Request::Audit { lines },
        CtlCommand::Lock => Request::Lock(blargh_proto::control::LockRequest::Status),
        CtlCommand::EnvList => Request::EnvList,
        CtlCommand::Configure {
            ready_timeout,
            drain_timeout,
            keep_releases,
            watchdog_timeout,
            ready_http,
            ready_exec,
            by,
        } => Request::Configure {
            settings: blargh_proto::control::AgentSettings {
                ready_timeout_ms: ready_timeout.as_millis() as u64,
                drain_timeout_ms: drain_timeout.as_millis() as u64,
                keep_releases,
                watchdog_timeout_ms: watchdog_timeout.map_or(
                    blargh_proto::control::AgentSettings::DEFAULT.watchdog_timeout_ms,
                    |w| w.as_millis() as u64,
                ),
                ready: match (ready_http, ready_exec) {
                    (Some(p), _) => blargh_proto::control::Readiness::Http(p),
                    (None, Some(cmd)) => {
                        blargh_proto::control::Readiness::Exec(vec!["sh".into(), "-c".into(), cmd])
                    }
                    (None, None) => blargh_proto::control::Readiness::Notify,
                },
                tls: None,
            },
            by: by.or_else(whoami),
        },
    };
    let upgrade = matches!(request, Request::Upgrade { .. });
    let result = rt.block_on(async {
        blargh_agent::client::request(&socket, &request, None)
            .await
            .map_err(|e| e.to_string())
    });
    if upgrade
        && let Ok(Reply::Error(e)) = &result
        && e.message.contains("unknown variant `upgrade`")
    {
        eprintln!(
            "error: the running agent predates in-place upgrades; restart its service instead \
             (the app restarts with it)"
        );
        return blargh_seed::init::UPGRADE_UNKNOWN_EXIT;
    }
    print_reply(result, a.json)
}

/// Prints the agent's answer (as JSON with `--json`); the exit code: 0, 1 when the agent
/// refused, 3 when it could not be asked.
fn print_reply(result: Result<Reply, String>, json: bool) -> i32 {
    match result {
        Err(e) => {
            eprintln!("error: {e}");
            3
        }
        Ok(reply) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&reply).expect("json"));
            } else {
                match output::render(&reply) {
                    Ok(text) => print!("{text}"),
                    Err(text) => eprint!("{text}"),
                }
            }
            if reply.is_error() { 1 } else { 0 }
        }
    }
}

async fn receive(socket: &std::path::Path, r: ReceiveArgs) -> Result<Reply, String> {
    let meta = ReleaseMeta {
        version: r.version,
        git_sha: r.git_sha,
        built_at: None,
        deployed_by: r.by.or_else(whoami),
        message: r.message,
        tree: None,
    };
    let (sha256, size, mut body): (String, u64, Box<dyn tokio::io::AsyncRead + Unpin + Send>) = if r
        .file
        .as_os_str()
        == "-"
    {
        let (Some(sha), Some(size)) = (r.sha256, r.size) else {
            return Err("reading stdin needs --sha256 and --size (they are checked before the release is stored)".into());
        };
        (sha, size, Box::new(tokio::io::stdin()))
    } else {
        let bytes =
            std::fs::read(&r.file).map_err(|e| format!("cannot read {}: {e}", r.file.display()))?;
        let sha = r
            .sha256
            .unwrap_or_else(|| hex::encode(Sha256::digest(&bytes)));
        let size = r.size.unwrap_or(bytes.len() as u64);
        (sha, size, Box::new(std::io::Cursor::new(bytes)))
    };
    let req = Request::Receive {
        sha256,
        size,
        meta,
        encoding: blargh_proto::control::Encoding::Raw,
    };
    blargh_agent::client::request(socket, &req, Some(&mut body))
        .await
        .map_err(|e| e.to_string())
}

/// `ctl pipe`: stdin to the control socket and its answers to stdout, byte for byte and as
/// they come, until stdin ends; the agent answers request after request on the one
/// connection, so a whole command's requests (uploads included) cross one SSH channel.
/// Requests, and secrets such as env values, travel on stdin, never in a command line.
async fn pipe(socket: &std::path::Path) -> i32 {
    let stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: cannot reach the agent at {}: {e}; is it running? (`cargo blargh doctor` says)",
                socket.display()
            );
            return 3;
        }
    };
    let (mut read, mut write) = stream.into_split();
    // Up: until stdin ends. Down: until the agent closes, which it does after stdin ended
    // (or after refusing a request of another version); then stop, without waiting on stdin.
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut write).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut write).await;
    });
    let mut stdout = tokio::io::stdout();
    let down = tokio::io::copy(&mut read, &mut stdout).await;
    let _ = tokio::io::AsyncWriteExt::flush(&mut stdout).await;
    up.abort();
    match down {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: reading the agent's answer: {e}");
            3
        }
    }
}

/// `user@host` of whoever runs the command, for the audit log.
fn whoami() -> Option<String> {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    Some(if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    })
}
