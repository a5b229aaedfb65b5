//! The day-to-day commands on a deployed app: `deploy`, `rollback`, `releases`, `status`,
//! `logs`, `audit`, `env`, `lock`, `exec`. Each resolves the app and its hosts, then talks
//! to each host's agent over SSH.

use std::io::{IsTerminal, Read};

use blargh_proto::control::{LockRequest, Reply};
use blargh_proto::{AppName, EnvKey, ReleaseId};
use futures_util::future::join_all;

use crate::cli::{ActivateArgs, AppArgs, Command, DeployArgs, EnvCommand, LockCommand};
use crate::deploy::{DeployReport, Payload, Switch, activate_staged, deploy, whoami};
use crate::remote::connect;
use crate::remote_agent::{self, ClientError, RemoteAgent};
use crate::settings::{Overrides, Settings};
use blargh_config::ReleaseContent;

/// The settings of an app command: its flags over `[package.metadata.blargh]`, resolved
/// once (see [`crate::settings`]), with an app and hosts to talk to.
pub fn resolve(a: &AppArgs) -> Result<Settings, String> {
    resolve_overrides(&a.overrides())
}

/// [`resolve`] for a command with flags beyond [`AppArgs`] (deploy's `--target`, …).
pub fn resolve_overrides(o: &Overrides) -> Result<Settings, String> {
    let mut t = Settings::resolve(o)?;
    t.pin_known_hosts()?;
    t.require_hosts(&o.manifest_path)?;
    Ok(t)
}

/// One request of a day-to-day command, sent to every host.
#[derive(Debug, Clone)]
enum Op {
    Rollback(Option<ReleaseId>),
    Releases,
    Status,
    Logs(usize),
    Audit(usize),
    EnvList,
    EnvUnset(EnvKey),
    EnvSet(EnvKey, String),
    Lock(LockRequest),
    Exec { args: Vec<String>, timeout_s: u64 },
}

impl Op {
    /// Sends the request through the typed client; the answer as a reply, for printing.
    async fn run(&self, ra: &mut RemoteAgent) -> Result<Reply, ClientError> {
        let by = Some(whoami());
        Ok(match self {
            Op::Rollback(id) => Reply::Activated(ra.rollback(id.clone(), by).await?),
            Op::Releases => Reply::Releases {
                releases: ra.releases().await?,
            },
            Op::Status => Reply::Status(ra.status().await?),
            Op::Logs(lines) => Reply::Logs {
                lines: ra.logs(None, *lines).await?,
            },
            Op::Audit(lines) => Reply::Audit {
                events: ra.audit(*lines).await?,
            },
            Op::EnvList => Reply::Env {
                names: ra.env_list().await?,
                restarted: None,
            },
            Op::EnvUnset(key) => {
                let c = ra.env_unset(key, by, true).await?;
                Reply::Env {
                    names: c.names,
                    restarted: c.restarted,
                }
            }
            Op::EnvSet(key, value) => {
                let c = ra.env_set(key, value, by, true).await?;
                Reply::Env {
                    names: c.names,
                    restarted: c.restarted,
                }
            }
            Op::Lock(req) => Reply::Lock {
                held: ra.lock(req.clone()).await?,
            },
            Op::Exec { args, timeout_s } => {
                let r = ra.exec(None, args.clone(), *timeout_s, by).await?;
                Reply::Exec {
                    status: r.status,
                    stdout: r.stdout,
                    stderr: r.stderr,
                }
            }
        })
    }
}

/// Runs one of the app commands; returns the exit code.
pub fn run(cmd: Command) -> i32 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let (app, op) = match cmd {
            Command::Deploy(a) => return deploy_cmd(a).await,
            Command::Activate(a) => return activate_cmd(a).await,
            Command::Init { manifest_path } => return init(&manifest_path),
            Command::Logs {
                lines,
                follow: true,
                app,
            } => return follow_logs(&app, lines).await,
            Command::Rollback { release, app } => (app, Op::Rollback(release)),
            Command::Releases { app } => (app, Op::Releases),
            Command::Status { app } => (app, Op::Status),
            Command::Logs {
                lines,
                follow: false,
                app,
            } => (app, Op::Logs(lines)),
            Command::Audit { lines, app } => (app, Op::Audit(lines)),
            Command::Env(EnvCommand::List { app }) => (app, Op::EnvList),
            Command::Env(EnvCommand::Unset { key, app }) => (app, Op::EnvUnset(key)),
            Command::Env(EnvCommand::Set { key, app }) => {
                let value = key
                    .key
                    .parse::<EnvKey>()
                    .map_err(|e| e.to_string())
                    .and_then(|k| {
                        let v = match key.value {
                            Some(v) => inline_secret(&k, v),
                            None => read_secret(&k),
                        }?;
                        Ok((k, v))
                    });
                match value {
                    Ok((key, value)) => (app, Op::EnvSet(key, value)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return 2;
                    }
                }
            }
            Command::Lock(LockCommand::Acquire {
                message,
                force,
                expiry,
                app,
            }) => {
                if force {
                    eprintln!("warning: --force takes the lock even if another deploy holds it");
                }
                let req = LockRequest::Acquire {
                    holder: whoami(),
                    message,
                    ttl_s: expiry.as_secs().max(1),
                    force,
                };
                (app, Op::Lock(req))
            }
            Command::Lock(LockCommand::Release { force, app }) => {
                let req = LockRequest::Release {
                    holder: whoami(),
                    force,
                };
                (app, Op::Lock(req))
            }
            Command::Lock(LockCommand::Status { app }) => (app, Op::Lock(LockRequest::Status)),
            Command::Exec { app, timeout, args } => {
                let args = std::iter::once("{bin}".to_string()).chain(args).collect();
                (
                    app,
                    Op::Exec {
                        args,
                        timeout_s: timeout,
                    },
                )
            }
            other => {
                eprintln!("error: {other:?} is not an app command (this is a bug in cargo-blargh)");
                return 2;
            }
        };
        each_host(&app, op).await
    })
}

/// The value for `env set KEY`: stdin when piped; on a terminal, asked for and typed on
/// one line without echo. Never taken from argv (see [`inline_secret`] for `KEY=VALUE`).
fn read_secret(key: &str) -> Result<String, String> {
    let mut value = String::new();
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("value for {key} (one line, not shown): ");
        let echo = EchoOff::new(&stdin);
        let read = stdin.read_line(&mut value);
        drop(echo);
        eprintln!();
        read.map_err(|e| format!("cannot read the value: {e}"))?;
    } else {
        stdin
            .lock()
            .read_to_string(&mut value)
            .map_err(|e| format!("cannot read the value from stdin: {e}"))?;
    }
    let value = value.strip_suffix('\n').unwrap_or(&value);
    let value = value.strip_suffix('\r').unwrap_or(value).to_string();
    one_line(key, value)
}

/// The value of `env set KEY=VALUE`: accepted, with a warning about where it now is.
fn inline_secret(key: &str, value: String) -> Result<String, String> {
    eprintln!(
        "warning: the value of {key} was given on the command line: it stays in your shell \
         history and other local users can see it in `ps` while this runs; next time pipe it \
         (`printf %s \"$VALUE\" | cargo blargh env set {key}`) or type it at the prompt"
    );
    one_line(key, value)
}

fn one_line(key: &str, value: String) -> Result<String, String> {
    if value.contains('\n') {
        return Err(format!(
            "the value for {key} has several lines; env values are one line"
        ));
    }
    Ok(value)
}

/// Stdin's terminal echo turned off until dropped.
struct EchoOff {
    saved: Option<nix::sys::termios::Termios>,
}

impl EchoOff {
    fn new(stdin: &std::io::Stdin) -> EchoOff {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        let saved = tcgetattr(stdin).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            let _ = tcsetattr(stdin, SetArg::TCSAFLUSH, &quiet);
        }
        EchoOff { saved }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// `cargo blargh init`: appends a commented `[package.metadata.blargh]` to Cargo.toml.
fn init(manifest: &std::path::Path) -> i32 {
    let text = match std::fs::read_to_string(manifest) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "error: cannot read {}: {e}; run this in your app's directory",
                manifest.display()
            );
            return 2;
        }
    };
    match blargh_config::add_skeleton(&text, manifest) {
        Ok(new) => match std::fs::write(manifest, new) {
            Ok(()) => {
                println!(
                    "added [package.metadata.blargh] to {}: set `hosts`, then `cargo blargh seed HOST --app NAME` and `cargo blargh deploy`",
                    manifest.display()
                );
                0
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", manifest.display());
                1
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Sends `op` to the app's agent on every host at once and prints the answers.
async fn each_host(a: &AppArgs, op: Op) -> i32 {
    let t = match resolve(a) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let app = t.app.clone();
    let answers = join_all(t.hosts.iter().map(|h| one_host(h, &app, &t.connect, &op))).await;
    let mut code = 0;
    let mut json = Vec::new();
    for (host, answer) in t.hosts.iter().zip(answers) {
        let reply = match answer {
            Ok(reply) => reply,
            Err(ClientError::Agent(e)) => {
                code = 1;
                Reply::Error(e)
            }
            Err(e) => {
                code = 3;
                if a.json {
                    json.push(serde_json::json!({ "host": host, "error": e.to_string() }));
                } else {
                    crate::output::print_lines(host, &format!("error: {e}"), false);
                }
                continue;
            }
        };
        // A reply that says something failed (a command `exec` ran exited non-zero) fails
        // the command, so that CI sees a failed migration.
        let (text, ok) = match crate::output::render(&reply) {
            Ok(t) => (t, true),
            Err(t) => (t, false),
        };
        if !ok && code == 0 {
            code = 1;
        }
        if a.json {
            json.push(serde_json::json!({ "host": host, "reply": reply }));
        } else {
            crate::output::print_lines(host, &text, ok);
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json).expect("json"));
    }
    code
}

/// `logs -f`: the last `lines` of every host, then new lines as they appear, polled once a
/// second over one SSH connection per host, until Ctrl-C.
async fn follow_logs(a: &AppArgs, lines: usize) -> i32 {
    let t = match resolve(a) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let app = t.app.clone();
    // One connection and one channel per host for the whole follow.
    let mut agents = Vec::new();
    for h in &t.hosts {
        let opened = match connect(h, &t.connect).await {
            Ok(s) => remote_agent::open(&s, &app).await.map(|ra| (s, ra)),
            Err(e) => Err(e),
        };
        match opened {
            Ok((session, ra)) => agents.push((h.clone(), session, ra, None::<String>)),
            Err(e) => {
                eprintln!("{h}  error: {e}");
                return 3;
            }
        }
    }
    let mut first = true;
    loop {
        for (host, _session, ra, last) in agents.iter_mut() {
            let want = if first { lines } else { 1000 };
            match ra.logs(None, want).await {
                Ok(got) => {
                    let start = match last.as_ref() {
                        Some(l) => got.iter().rposition(|x| x == l).map(|i| i + 1).unwrap_or(0),
                        None => 0,
                    };
                    for l in &got[start..] {
                        println!("{host}  {}", crate::output::printable(l));
                    }
                    if let Some(l) = got.last() {
                        *last = Some(l.clone());
                    }
                }
                Err(e) => {
                    eprintln!("{host}  error: {e}");
                    return 3;
                }
            }
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return 0,
        }
    }
}

/// One connection, one channel, one request.
async fn one_host(
    host: &str,
    app: &AppName,
    connect_args: &crate::remote::ConnectArgs,
    op: &Op,
) -> Result<Reply, ClientError> {
    let session = connect(host, connect_args)
        .await
        .map_err(ClientError::Transport)?;
    let result = match remote_agent::open(&session, app).await {
        Ok(mut ra) => {
            let r = op.run(&mut ra).await;
            remote_agent::close(ra).await;
            r
        }
        Err(e) => Err(ClientError::Transport(e)),
    };
    let _ = session.close().await;
    result
}

/// The settings of a deploy or an activation, with progress lines on a terminal (not with
/// `--json`); on bad input, the error is printed and exit code 2 returned.
fn resolve_switch(app: &AppArgs, overrides: Overrides) -> Result<Settings, i32> {
    let mut t = resolve_overrides(&overrides).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    t.deploy.progress = !app.json && std::io::stderr().is_terminal();
    Ok(t)
}

async fn deploy_cmd(a: DeployArgs) -> i32 {
    let overrides = Overrides {
        target: a.target.clone(),
        parallel: a.parallel,
        message: a.message.clone(),
        ..a.app.overrides()
    };
    let mut t = match resolve_switch(&a.app, overrides) {
        Ok(t) => t,
        Err(code) => return code,
    };
    t.deploy.switch = if a.stage { Switch::Staged } else { Switch::Now };
    let app_dir = match &t.build {
        Some(b) => b.dir.clone(),
        None => std::path::PathBuf::from("."),
    };
    let mut hook_env = vec![
        ("BLARGH_APP".to_string(), t.app.to_string()),
        ("BLARGH_HOSTS".to_string(), t.hosts.join(",")),
        ("BLARGH_PERFORMER".to_string(), whoami()),
        (
            "BLARGH_MESSAGE".to_string(),
            a.message.clone().unwrap_or_default(),
        ),
        (
            "BLARGH_VERSION".to_string(),
            t.deploy.version.clone().unwrap_or_default(),
        ),
        (
            "BLARGH_GIT_SHA".to_string(),
            t.deploy.git_sha.clone().unwrap_or_default(),
        ),
        (
            "BLARGH_DESTINATION".to_string(),
            a.app.destination.clone().unwrap_or_default(),
        ),
    ];
    if !a.dry_run
        && let Err(e) = crate::hooks::run(&app_dir, "pre-build", &hook_env)
    {
        eprintln!("error: {e}; the deploy was stopped before the build");
        return 1;
    }
    let t_build = std::time::Instant::now();
    let (payload, what) = match release_payload(&a, &t, &app_dir).await {
        Ok(p) => p,
        Err((code, e)) => {
            eprintln!("error: {e}");
            return code;
        }
    };
    let build_ms = t_build.elapsed().as_millis();
    if payload.bytes.len() as u64 > t.max_release_size {
        eprintln!(
            "error: the release ({what}) is {} bytes, more than max_release_size ({} bytes); \
             ship less (check include) or raise max_release_size in [package.metadata.blargh]; \
             nothing was sent",
            payload.bytes.len(),
            t.max_release_size
        );
        return 2;
    }
    let binary = &payload.bytes;
    if a.dry_run {
        println!(
            "would deploy {what} ({} bytes, sha256 {}) as {} to: {}",
            binary.len(),
            crate::deploy::sha256_hex(binary),
            t.app,
            t.hosts.join(", ")
        );
        println!(
            "steps per host: connect, check the binary fits, lock, ship (nothing / delta / whole), {}activate{}, unlock",
            if t.deploy.before_activate.is_some() {
                "before_activate, "
            } else {
                ""
            },
            if t.deploy.auto_rollback.is_some() {
                " (automatic rollback armed)"
            } else {
                ""
            }
        );
        return 0;
    }
    hook_env.push(("BLARGH_SHA256".into(), crate::deploy::sha256_hex(binary)));
    if let Err(e) = crate::hooks::run(&app_dir, "pre-deploy", &hook_env) {
        eprintln!("error: {e}; nothing was sent to the servers");
        return 1;
    }
    let report = deploy(&t.deploy, &payload, &t.connect).await;
    print_report(&report, Some(build_ms), a.app.json);
    hook_env.push((
        "BLARGH_RESULT".into(),
        if report.ok { "ok" } else { "failed" }.into(),
    ));
    hook_env.push(("BLARGH_RUNTIME_MS".into(), report.total_ms.to_string()));
    hook_env.push((
        "BLARGH_BYTES_SENT".into(),
        report
            .hosts
            .iter()
            .map(|h| h.bytes_sent)
            .sum::<u64>()
            .to_string(),
    ));
    if let Err(e) = crate::hooks::run(&app_dir, "post-deploy", &hook_env) {
        eprintln!("warning: {e}");
    }
    if report.ok { 0 } else { 1 }
}

/// What this deploy ships, and how to name it: the built (or `--binary`) executable, that
/// executable packed with its `include`d files, or a packed `release_dir` (no cargo build:
/// a pre-build hook or the developer builds it). Errors carry the exit code.
async fn release_payload(
    a: &DeployArgs,
    t: &Settings,
    app_dir: &std::path::Path,
) -> Result<(Payload, String), (i32, String)> {
    if let ReleaseContent::Dir { dir, start } = &t.content {
        if a.binary.is_some() {
            return Err((
                2,
                "--binary ships one executable, but this app's release is its release_dir; \
                 drop --binary (or release_dir)"
                    .into(),
            ));
        }
        eprintln!("packing {} (release_dir) …", dir.display());
        let packed = crate::pack::release_dir(dir, start).map_err(|e| (2, e))?;
        let what = format!("{} ({} entries)", dir.display(), packed.entries);
        return Ok((
            Payload {
                bytes: packed.bytes,
                tree: Some(packed.tree),
                fit: None,
            },
            what,
        ));
    }
    let path = match (&a.binary, &t.build) {
        (Some(p), _) => p.clone(),
        (None, Some(b)) => build_binary(a, t, b).await?,
        (None, None) => {
            return Err((
                2,
                "nothing to deploy: run from the app's directory (its Cargo.toml), or pass --binary PATH"
                    .into(),
            ));
        }
    };
    let binary =
        std::fs::read(&path).map_err(|e| (1, format!("cannot read {}: {e}", path.display())))?;
    match &t.content {
        ReleaseContent::Binary { include } if !include.is_empty() => {
            let packed = crate::pack::include(app_dir, &binary, include).map_err(|e| (2, e))?;
            let what = format!(
                "{} with {} included entries",
                path.display(),
                packed.entries - 1
            );
            Ok((
                Payload {
                    bytes: packed.bytes,
                    tree: Some(packed.tree),
                    fit: Some(binary),
                },
                what,
            ))
        }
        _ => Ok((Payload::binary(binary), path.display().to_string())),
    }
}

/// Builds the app's binary for the configured target, or, with none configured, for the
/// oldest glibc among the hosts (probed over SSH): natively when this machine's glibc is
/// not newer than any host's, else with cargo zigbuild when it is installed.
async fn build_binary(
    a: &DeployArgs,
    t: &Settings,
    b: &crate::settings::Build,
) -> Result<std::path::PathBuf, (i32, String)> {
    let (target, zig) = match &b.target {
        Some(target) => {
            let zig = crate::build::is_zig_target(target);
            let how = if zig { "cargo zigbuild" } else { "cargo build" };
            eprintln!(
                "building {} ({how} --release --target {target}: `target` is configured) …",
                b.bin
            );
            (Some(target.clone()), zig)
        }
        None if a.dry_run => {
            // A dry run reaches no host, so it cannot fit the build to one.
            eprintln!(
                "building {} (cargo build --release; a dry run asks no host which \
                 glibc it has) …",
                b.bin
            );
            (None, false)
        }
        None => {
            let hosts = crate::deploy::gnu_hosts(&t.hosts, &t.connect).await;
            let local = crate::build::local_glibc();
            // Asking for zig costs a few processes: only when a host is older.
            let tools = if hosts.iter().any(|h| local.is_some_and(|l| h.glibc < l)) {
                crate::build::Tools::detect()
            } else {
                crate::build::Tools::NONE
            };
            let choice = crate::build::choose(local, &hosts, tools);
            match choice {
                Ok(choice) => {
                    eprintln!("building {} ({choice}) …", b.bin);
                    match choice {
                        crate::build::Choice::Native { .. } => (None, false),
                        crate::build::Choice::Zigbuild { target, .. } => (Some(target), true),
                    }
                }
                Err(e) => return Err((1, format!("{e}\nnothing was built or sent"))),
            }
        }
    };
    crate::build::build(&b.dir, &b.package, &b.bin, target.as_deref(), zig)
        .map_err(|e| (1, e.to_string()))
}

/// `cargo blargh activate RELEASE`: the switch half of a deploy, for a release the hosts
/// already have.
async fn activate_cmd(a: ActivateArgs) -> i32 {
    let overrides = Overrides {
        parallel: a.parallel,
        message: a.message.clone(),
        ..a.app.overrides()
    };
    let t = match resolve_switch(&a.app, overrides) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let report = activate_staged(&t.deploy, &a.release, &t.connect).await;
    print_report(&report, None, a.app.json);
    if report.ok { 0 } else { 1 }
}

fn print_report(r: &DeployReport, build_ms: Option<u128>, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).expect("json"));
        return;
    }
    for h in &r.hosts {
        let phases = format!(
            "connect+lock {} ms, ship {} ms, activate {} ms",
            h.ms[0], h.ms[1], h.ms[2]
        );
        println!(
            "{}  {}  {}  sent {} ({} bytes)  [{phases}]",
            h.host,
            h.outcome,
            h.release.as_deref().unwrap_or("-"),
            h.sent,
            h.bytes_sent
        );
        for change in &h.applied {
            println!("{}  applied {change}", h.host);
        }
        if let Some(e) = &h.error {
            crate::output::print_lines(&h.host, &format!("error: {e}"), false);
            if !h.release_log.is_empty() {
                eprintln!("{}  the new release's last output:", h.host);
                for l in &h.release_log {
                    eprintln!("{}    {}", h.host, crate::output::printable(l));
                }
            }
        }
    }
    let sent: u64 = r.hosts.iter().map(|h| h.bytes_sent).sum();
    let staged = r.ok && r.hosts.iter().all(|h| h.outcome == "staged");
    let Some(build_ms) = build_ms else {
        println!(
            "{}: release {} on {} host(s) in {} ms",
            if r.ok { "activated" } else { "FAILED" },
            r.sha256.get(..12).unwrap_or("-"),
            r.hosts.len(),
            r.total_ms
        );
        return;
    };
    println!(
        "{}: binary {} bytes, sent {sent} bytes in all ({:.2} % of one copy); build {build_ms} ms, deploy {} ms",
        if !r.ok {
            "FAILED"
        } else if staged {
            "staged"
        } else {
            "deployed"
        },
        r.size,
        sent as f64 * 100.0 / r.size.max(1) as f64,
        r.total_ms
    );
    if staged {
        println!(
            "nothing was started; switch with: cargo blargh activate {}",
            &r.sha256[..12.min(r.sha256.len())]
        );
    }
}
