//! `cargo blargh seed` and `cargo blargh doctor`: prepare a server for deployments, and
//! say what a server is and whether its agent is healthy.

use std::time::Instant;

use blargh_seed::exec::{Mode, Outcome, Transport, run_plan};
use blargh_seed::plan::{Content, Step};
use blargh_seed::seed_plan::{SeedSpec, agent_path, app_root};
use blargh_seed::shell::quote;

use crate::cli::{DoctorArgs, SeedArgs};
use crate::remote::{SshExecutor, connect, probe};
use crate::settings::Settings;

/// Exit code: the host or binary was refused before anything changed.
const REFUSED: i32 = 2;
/// Exit code: the host could not be reached.
const UNREACHABLE: i32 = 3;

/// Runs `seed`; returns the exit code.
pub fn seed(args: SeedArgs) -> i32 {
    runtime().block_on(seed_async(args))
}

/// Runs `doctor`; returns the exit code.
pub fn doctor(args: DoctorArgs) -> i32 {
    runtime().block_on(doctor_async(args))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn seed_async(a: SeedArgs) -> i32 {
    let mut settings = match Settings::resolve(&a.overrides()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return REFUSED;
        }
    };
    if settings.hosts.is_empty() {
        eprintln!(
            "error: which server? pass USER@HOST, or add `hosts = [\"deploy@your-server\"]` under [package.metadata.blargh] in {}",
            a.manifest_path.display()
        );
        return REFUSED;
    }
    if let Err(e) = settings.pin_known_hosts() {
        eprintln!("error: {e}");
        return 1;
    }
    let agent_file = match &a.agent_binary {
        Some(p) => p.clone(),
        None => match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: cannot find my own executable to install as the agent: {e}");
                return 1;
            }
        },
    };
    let agent_bytes = match std::fs::read(&agent_file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "error: cannot read the agent executable {}: {e}",
                agent_file.display()
            );
            return 1;
        }
    };
    // One host after the other: a host-key question or a failure is about one host.
    let mut code = 0;
    for host in settings.hosts.clone() {
        let c = seed_host(&a, &settings, &host, &agent_file, &agent_bytes).await;
        code = code.max(c);
    }
    code
}

/// Seeds one host with `s`; returns the exit code.
async fn seed_host(
    a: &SeedArgs,
    s: &Settings,
    destination: &str,
    agent_file: &std::path::Path,
    agent_bytes: &[u8],
) -> i32 {
    let t0 = Instant::now();
    eprintln!("connecting to {destination} …");
    let session = match connect(destination, &s.connect).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return UNREACHABLE;
        }
    };
    let platform = match probe(&session).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    eprintln!("host: {}", platform);
    let init = match blargh_seed::init::for_platform(&platform) {
        Ok(i) => i,
        Err(why) => {
            eprintln!("error: this host cannot be seeded: {why}");
            return REFUSED;
        }
    };
    // The agent must run there: refuse before sending anything. This executable needing a
    // newer glibc than the host has, an agent is built for the host's (or found built).
    let fits = |bytes: &[u8]| {
        blargh_platform::binary_requirements(bytes)
            .map_err(|e| (e.to_string(), false))
            .and_then(|reqs| {
                blargh_platform::check_fit(&reqs, &platform).map_err(|e| {
                    let glibc = matches!(e, blargh_platform::FitError::GlibcTooOld { .. });
                    (e.to_string(), glibc)
                })
            })
    };
    let fitted;
    let agent_bytes = match fits(agent_bytes) {
        Ok(()) => agent_bytes,
        Err((e, glibc)) => {
            let refuse = |more: Option<String>| {
                eprintln!(
                    "error: the agent executable {} cannot run on this host: {e}",
                    agent_file.display()
                );
                if let Some(more) = more {
                    eprintln!("{more}");
                }
                eprintln!("nothing was changed on the host");
                REFUSED
            };
            if !glibc || a.agent_binary.is_some() {
                return refuse(None);
            }
            eprintln!("this cargo-blargh needs a newer glibc than the host's ({e})");
            let sha = crate::deploy::sha256_hex(agent_bytes);
            match crate::agent_build::fitting_agent(&platform, &sha) {
                Ok(found) => match fits(&found.1) {
                    Ok(()) => {
                        eprintln!("installing the agent {}", found.0.display());
                        fitted = found.1;
                        fitted.as_slice()
                    }
                    Err((why, _)) => {
                        return refuse(Some(format!(
                            "the agent built for it does not fit either ({}): {why}",
                            found.0.display()
                        )));
                    }
                },
                Err(why) => {
                    return refuse(Some(format!("no agent that fits could be made: {why}")));
                }
            }
        }
    };
    let ssh_user = session.host().user.clone();
    let is_root = platform.is_root;
    if !is_root {
        let sudo = session.exec("sudo -n true", &b""[..]).await;
        if !sudo.as_ref().is_ok_and(|o| o.success()) {
            eprintln!(
                "error: {ssh_user} is not root and cannot use sudo without a password on this host.\n\
                 Seed needs root once (to create the app's user and install its service); later deploys need none.\n\
                 Connect as root, or allow {ssh_user} passwordless sudo (e.g. `{ssh_user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/)."
            );
            return REFUSED;
        }
    }

    let spec = SeedSpec {
        app: s.app.clone(),
        listen: s.listen_pairs(),
        ssh_user: ssh_user.clone(),
        agent: Content::new(agent_bytes.to_vec(), "agent executable"),
        drain_timeout_s: s.agent.drain_timeout.as_secs().max(1),
        ready_timeout_s: s.agent.ready_timeout.as_secs().max(1),
        keep_releases: s.agent.keep_releases,
    };
    let mut plan = blargh_seed::seed_plan(&spec, init.as_ref());
    if let Some(key) = authorized_key(a) {
        plan.steps.insert(0, key);
    }

    let mode = if a.dry_run { Mode::DryRun } else { Mode::Apply };
    println!(
        "{} {} on {ssh_user}@{} ({}):",
        if a.dry_run { "would seed" } else { "seeding" },
        s.app,
        session.host().display_addr(),
        platform,
    );
    let mut exec = SshExecutor {
        session: &session,
        is_root,
    };
    // The agent travels gzip-compressed when the host can decompress it.
    let transport = Transport {
        gzip: platform.has_command("gzip"),
    };
    let result = run_plan(&mut exec, &plan, mode, transport, |step, outcome| {
        let tag = match outcome {
            Outcome::Unchanged => "ok",
            Outcome::Changed => "changed",
            Outcome::WouldChange => "would change",
            Outcome::NotNeeded => "not needed",
        };
        println!("  {tag:<13} {}", step.title);
    })
    .await;
    let outcomes = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!(
                "the steps before it stay applied; fix the cause and run seed again (it is idempotent)"
            );
            return 1;
        }
    };
    // The agent's own settings: what the unit's flags say only counts for a fresh agent;
    // the agent keeps what deploy or an earlier seed applied, so seed applies them too.
    let mut tuned = Vec::new();
    if mode == Mode::Apply {
        match apply_tuning(&session, s, !is_root).await {
            Ok(changes) => {
                for c in &changes {
                    println!("  {:<13} agent setting {c}", "changed");
                }
                tuned = changes;
            }
            Err(e) => {
                eprintln!("error: the agent runs but its settings could not be applied: {e}");
                return 1;
            }
        }
    }
    let count = |k: Outcome| {
        outcomes.iter().filter(|o| **o == k).count()
            + if k == Outcome::Changed {
                tuned.len()
            } else {
                0
            }
    };
    let secs = t0.elapsed().as_secs_f32();
    match mode {
        Mode::DryRun => println!(
            "dry run: {} steps would change, {} already done; nothing was changed ({secs:.1} s)",
            count(Outcome::WouldChange),
            count(Outcome::Unchanged)
        ),
        Mode::Apply if count(Outcome::Changed) == 0 => {
            println!(
                "nothing changed: {} was already seeded ({secs:.1} s)",
                s.app
            )
        }
        Mode::Apply => println!(
            "seeded {}: {} steps changed, {} already done; the agent answers ({secs:.1} s)\n\
             next: `cargo blargh deploy` from your app's directory",
            s.app,
            count(Outcome::Changed),
            count(Outcome::Unchanged)
        ),
    }
    let _ = session.close().await;
    0
}

/// Brings the agent's timeouts and retention in line with `s`; returns what changed.
async fn apply_tuning(
    session: &blargh_ssh::Session,
    s: &Settings,
    sudo: bool,
) -> Result<Vec<String>, String> {
    let mut agent = crate::remote_agent::open_as(session, &s.app, sudo).await?;
    let result = async {
        let status = agent.status().await.map_err(|e| e.to_string())?;
        let have = crate::drift::HostFacts::of(&status);
        let mut want = s.wanted(String::new());
        // How the app shows readiness and which certificates it wants are the app's
        // (deploy applies them from its Cargo.toml); a seed run from elsewhere would reset
        // them, so seed leaves them as the host has them.
        want.tuning.ready = have.tuning.ready.clone();
        want.tuning.tls = have.tuning.tls.clone();
        let changes: Vec<String> = crate::drift::compare(&want, &have)
            .into_iter()
            .filter(|d| !d.needs_root())
            .map(|d| d.to_string())
            .collect();
        if !changes.is_empty() {
            agent
                .configure(
                    blargh_proto::control::AgentSettings::from(want.tuning.clone()),
                    Some(format!("{} (seed)", crate::deploy::whoami())),
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(changes)
    }
    .await;
    crate::remote_agent::close(agent).await;
    result
}

/// After a password login, the developer's public key goes into authorized_keys so that
/// the next connection needs no password.
fn authorized_key(a: &SeedArgs) -> Option<Step> {
    let path = a.authorize_key.clone().or_else(|| {
        if !a.connect.password_stdin {
            return None;
        }
        let home = std::env::var_os("HOME")?;
        ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
            .iter()
            .map(|f| std::path::Path::new(&home).join(".ssh").join(f))
            .find(|p| p.exists())
    })?;
    let key = std::fs::read_to_string(&path).ok()?.trim().to_string();
    let k = quote(&key);
    Some(
        Step::ensure(
            "authorized-key",
            format!("your key {} may log in", path.display()),
            format!("grep -qxF {k} ~/.ssh/authorized_keys"),
            format!(
                "mkdir -p ~/.ssh && chmod 700 ~/.ssh && printf '%s\\n' {k} >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys"
            ),
        )
        .as_user(),
    )
}

async fn doctor_async(a: DoctorArgs) -> i32 {
    let session = match connect(&a.destination, &a.connect).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return UNREACHABLE;
        }
    };
    println!(
        "host      {}@{}",
        session.host().user,
        session.host().display_addr()
    );
    let platform = match probe(&session).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    println!("platform  {platform}");
    let supported = blargh_platform::support(&platform);
    println!("supported {supported}");
    let mut code = if supported.init_kind().is_some() {
        0
    } else {
        REFUSED
    };
    if let Some(app) = &a.app {
        let app: blargh_proto::AppName = match app.parse() {
            Ok(app) => app,
            Err(e) => {
                eprintln!("error: --app {e}");
                return REFUSED;
            }
        };
        let app = &app;
        let agent = agent_path(app);
        let ctl = format!(
            "{} agent ctl --root {} status",
            quote(&agent),
            quote(&app_root(app))
        );
        let installed = session
            .exec(&format!("test -x {}", quote(&agent)), &b""[..])
            .await
            .is_ok_and(|o| o.success());
        if !installed {
            println!("agent     not installed for {app} (run `cargo blargh seed` first)");
            code = code.max(1);
        } else {
            match session.exec(&ctl, &b""[..]).await {
                Ok(o) if o.success() => {
                    println!("agent     installed and answering:");
                    for l in o.stdout_str().lines() {
                        println!("          {l}");
                    }
                }
                Ok(o) => {
                    println!(
                        "agent     installed but NOT answering: {}",
                        o.stderr_str().trim()
                    );
                    code = code.max(1);
                }
                Err(e) => {
                    println!("agent     cannot ask it: {e}");
                    code = code.max(1);
                }
            }
        }
    }
    let _ = session.close().await;
    code
}
