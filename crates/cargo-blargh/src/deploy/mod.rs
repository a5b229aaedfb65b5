//! `cargo blargh deploy`: build, check the binary fits each host, lock, ship (nothing when
//! the host has it, else a delta, else the whole file), run `before_activate`, activate
//! host by host, roll back the hosts that switched when a later one fails, unlock.

mod ship;

pub use ship::sha256_hex;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use blargh_proto::control::AutoRollback;
use blargh_proto::{EnvKey, ReleaseId};
use blargh_ssh::Session;
use futures_util::future::join_all;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::remote::{ConnectArgs, connect, probe};
use crate::remote_agent::{self, ClientError, RemoteAgent, host_name};

/// What a deploy needs to know, resolved from the app's config and the command line.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    /// App name on the servers.
    pub app: String,
    /// SSH destinations.
    pub hosts: Vec<String>,
    /// Non-secret env settings written before activation.
    pub env: Vec<(EnvKey, String)>,
    /// Run with the new binary before it takes traffic (argv after the binary).
    pub before_activate: Option<Vec<String>>,
    /// The agent rolls back by itself if the new release crashes this soon.
    pub auto_rollback: Option<AutoRollback>,
    /// A lock left by a crashed deploy expires after this.
    pub lock_expiry: Duration,
    /// Activate all hosts at once instead of one at a time.
    pub parallel: bool,
    /// Deploy message.
    pub message: Option<String>,
    /// The app's version (for the manifest).
    pub version: Option<String>,
    /// Git commit, if known.
    pub git_sha: Option<String>,
    /// Where shipped binaries are cached locally (delta bases).
    pub cache_dir: PathBuf,
    /// Show a progress line per host on stderr (a terminal, not --json).
    pub progress: bool,
    /// What the configuration wants of each host besides the release: sockets and the
    /// agent's tuning. Checked (and tuning applied) before anything is sent.
    pub wanted: crate::drift::Wanted,
    /// Switch to the shipped release now, or only stage it (`deploy --stage`).
    pub switch: Switch,
}

/// When a deploy moves traffic to what it shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Switch {
    /// Activate host by host (all at once with `parallel`) right after shipping.
    #[default]
    Now,
    /// Ship and verify on every host, start nothing; `cargo blargh activate` switches later.
    Staged,
}

/// One host's deploy, as reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostReport {
    /// `user@host:port`.
    pub host: String,
    /// Release id on the host.
    pub release: Option<ReleaseId>,
    /// What was sent: `nothing`, `delta`, `whole`.
    pub sent: String,
    /// Bytes that crossed the network for the binary.
    pub bytes_sent: u64,
    /// The release that served before.
    pub previous: Option<ReleaseId>,
    /// `activated`, `rolled back`, `failed`, `not activated`.
    pub outcome: String,
    /// The error, if this host failed.
    pub error: Option<String>,
    /// The failing release's last output lines, if it failed to start.
    pub release_log: Vec<String>,
    /// Settings the agent changed to match the configuration (`drain_timeout 30s → 10s`).
    pub applied: Vec<String>,
    /// Milliseconds: connect+probe+lock, ship, activate.
    pub ms: [u64; 3],
}

/// The whole deploy's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeployReport {
    /// Every host succeeded.
    pub ok: bool,
    /// sha256 of the binary.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// Per host, in config order.
    pub hosts: Vec<HostReport>,
    /// Milliseconds for the whole deploy (after the build).
    pub total_ms: u64,
}

struct Host {
    session: Session,
    /// The one channel to the agent, for all of this deploy's requests.
    ra: RemoteAgent,
    report: HostReport,
    t: Instant,
    bar: ProgressBar,
    /// sha256 and size of the release to activate, when it was found rather than shipped.
    sha256: Option<String>,
    size: u64,
}

/// Where the host lines go: stderr, or nowhere (not a terminal, `--json`).
fn progress(s: &DeploySettings) -> MultiProgress {
    MultiProgress::with_draw_target(if s.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    })
}

/// One spinner line per host, updated as the deploy goes through its phases.
fn host_bar(mp: &MultiProgress, dest: &str) -> ProgressBar {
    let bar = mp.add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix}  {msg} ({elapsed})")
            .expect("valid template"),
    );
    bar.set_prefix(dest.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `user@machine` of the person or CI deploying.
pub fn whoami() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{user}@{host}")
}

/// What a deploy ships: one executable, or the archive of a tree and its start command.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The bytes that ship (and that the host's sha256 check covers).
    pub bytes: Vec<u8>,
    /// Set when `bytes` is a tree's archive.
    pub tree: Option<blargh_proto::manifest::ReleaseTree>,
    /// The executable whose architecture and libc must fit each host: `bytes` for a
    /// single binary, the built binary of an `include` tree, none for a `release_dir`
    /// (built by other tools; its fit is theirs to check).
    pub fit: Option<Vec<u8>>,
}

impl Payload {
    /// A single executable.
    pub fn binary(bytes: Vec<u8>) -> Payload {
        Payload {
            fit: Some(bytes.clone()),
            bytes,
            tree: None,
        }
    }
}

/// Deploys `payload` to every host. Never leaves a lock behind; on failure, hosts that
/// had switched are rolled back.
pub async fn deploy(
    s: &DeploySettings,
    payload: &Payload,
    connect_args: &ConnectArgs,
) -> DeployReport {
    let binary = &payload.bytes[..];
    let t0 = Instant::now();
    let sha256 = ship::sha256_hex(binary);
    let by = whoami();
    // Each deploy holds the lock under its own name, so a lock taken by hand (or another
    // deploy, even by the same person) refuses it.
    let holder = format!("{by} (deploy, pid {})", std::process::id());
    let _ = ship::cache_put(&s.cache_dir, &sha256, binary);

    let mp = progress(s);
    // Phase 1, all hosts at once: connect, check, lock, ship.
    let mut tasks = Vec::new();
    for dest in &s.hosts {
        let bar = host_bar(&mp, dest);
        let who = Who {
            sha256: &sha256,
            by: &by,
            holder: &holder,
        };
        tasks.push(prepare(s, dest, payload, who, connect_args, bar));
    }
    let prepared: Vec<Result<Host, HostReport>> = join_all(tasks).await;
    let switch = s.switch;
    finish(
        s,
        prepared,
        switch,
        &holder,
        mp,
        (sha256, binary.len() as u64),
        t0,
    )
    .await
}

/// The hosts among `hosts` that run glibc, asked before the build so that it can fit the
/// oldest one. One connection each, closed again; a host that cannot be reached or probed
/// is left out (the deploy itself reports it).
pub async fn gnu_hosts(hosts: &[String], connect_args: &ConnectArgs) -> Vec<crate::build::GnuHost> {
    let mut out = Vec::new();
    // One after the other: a host-key question is about one host.
    for dest in hosts {
        let Ok(session) = connect(dest, connect_args).await else {
            continue;
        };
        let name = host_name(&session);
        if let Ok(p) = probe(&session).await
            && let blargh_platform::Libc::Glibc { major, minor } = p.libc
            && let Some(triple) = p.target_triple()
        {
            out.push(crate::build::GnuHost {
                name,
                triple,
                glibc: blargh_platform::GlibcVersion { major, minor },
            });
        }
        let _ = session.close().await;
    }
    out
}

/// Activates a release already on every host (staged by `deploy --stage`, or any kept
/// one), named by its id or by a prefix of its sha256 (at least 8 hex digits, the same on
/// every host), with everything a deploy does around the switch: lock, settings, env,
/// `before_activate`, one host at a time (or `parallel`), and undo on a failure.
pub async fn activate_staged(
    s: &DeploySettings,
    release: &str,
    connect_args: &ConnectArgs,
) -> DeployReport {
    let t0 = Instant::now();
    let by = whoami();
    let holder = format!("{by} (activate, pid {})", std::process::id());
    let mp = progress(s);
    let mut tasks = Vec::new();
    for dest in &s.hosts {
        let bar = host_bar(&mp, dest);
        let who = Who {
            sha256: "",
            by: &by,
            holder: &holder,
        };
        tasks.push(async move {
            let mut host = open_host(s, dest, None, who, connect_args, bar).await?;
            match find_staged(&mut host, release).await {
                Ok(()) => Ok(host),
                Err(e) => Err(give_up(host, Some(who.holder), e).await),
            }
        });
    }
    let prepared: Vec<Result<Host, HostReport>> = join_all(tasks).await;
    // Every host must hold the same bytes under that name.
    let shas: std::collections::BTreeSet<String> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .filter_map(|h| h.sha256.clone())
        .collect();
    let (sha256, size) = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .find_map(|h| h.sha256.clone().map(|sha| (sha, h.size)))
        .unwrap_or_default();
    let mut prepared = prepared;
    if shas.len() > 1 {
        for h in prepared.iter_mut().flatten() {
            h.report.outcome = "failed".into();
            h.report.error = Some(format!(
                "{release:?} names different binaries on different hosts ({}); name one \
                 sha256 prefix, or activate host by host with --host",
                shas.iter().map(|s| &s[..12]).collect::<Vec<_>>().join(", ")
            ));
        }
        return finish(s, prepared, Switch::Staged, &holder, mp, (sha256, size), t0).await;
    }
    finish(s, prepared, Switch::Now, &holder, mp, (sha256, size), t0).await
}

/// Finds `wanted` among the host's releases and records it (and the current one) in the
/// host's report.
async fn find_staged(host: &mut Host, wanted: &str) -> Result<(), String> {
    host.bar.set_message("looking for the release");
    let releases = host.ra.releases().await.map_err(|e| e.to_string())?;
    let manifests: Vec<&blargh_proto::manifest::ReleaseManifest> =
        releases.iter().map(|r| &r.manifest).collect();
    let m = pick_release(&manifests, wanted)
        .map_err(|e| format!("{}: {e}; nothing was activated", host.report.host))?;
    let status = host.ra.status().await.map_err(|e| e.to_string())?;
    host.report.release = Some(m.id.clone());
    host.report.previous = status.current.as_ref().map(|c| c.id.clone());
    host.sha256 = Some(m.sha256.clone());
    host.size = m.size;
    Ok(())
}

/// The release `wanted` names: the one whose id it is, else the one whose sha256 starts
/// with it (8 hex digits or more).
pub fn pick_release<'a>(
    releases: &[&'a blargh_proto::manifest::ReleaseManifest],
    wanted: &str,
) -> Result<&'a blargh_proto::manifest::ReleaseManifest, String> {
    if let Some(m) = releases.iter().find(|m| m.id.as_str() == wanted) {
        return Ok(m);
    }
    let is_prefix =
        wanted.len() >= 8 && wanted.len() <= 64 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_prefix {
        return Err(format!(
            "there is no release {wanted:?} (give a release id from `cargo blargh releases`, \
             or 8 or more hex digits of its sha256)"
        ));
    }
    let wanted = wanted.to_ascii_lowercase();
    let found: Vec<_> = releases
        .iter()
        .filter(|m| m.sha256.starts_with(&wanted))
        .collect();
    match found.as_slice() {
        [m] => Ok(m),
        [] => Err(format!(
            "no release has a sha256 starting with {wanted} (see `cargo blargh releases`)"
        )),
        many => Err(format!(
            "{wanted} starts the sha256 of {} releases ({}); give more digits or a release id",
            many.len(),
            many.iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The one way out for a host that will take no part: releases the deploy lock (when
/// `holder`, this deploy, has taken it), closes the agent channel and the session, and
/// reports the host failed with `error`.
async fn give_up(host: Host, holder: Option<&str>, error: String) -> HostReport {
    let mut host = host;
    if let Some(holder) = holder {
        let _ = host.ra.lock_release(holder, false).await;
    }
    remote_agent::close(host.ra).await;
    let _ = host.session.close().await;
    host.bar.finish_and_clear();
    host.report.outcome = "failed".into();
    host.report.error = Some(error);
    host.report
}

/// Phase 2 and the end of a deploy or an activation: switch (unless `switch` is
/// `Staged`, or a host failed to prepare), undo the hosts that switched when a later one
/// fails, unlock, close, report.
async fn finish(
    s: &DeploySettings,
    prepared: Vec<Result<Host, HostReport>>,
    switch: Switch,
    holder: &str,
    mp: MultiProgress,
    (sha256, size): (String, u64),
    t0: Instant,
) -> DeployReport {
    let holder = holder.to_string();
    let mut hosts = Vec::new();
    let mut reports = Vec::new();
    let mut failed = false;
    for p in prepared {
        match p {
            Ok(h) => hosts.push(h),
            Err(r) => {
                failed = true;
                reports.push(r);
            }
        }
    }

    // Staged: every host has the release; nothing is switched.
    if !failed && switch == Switch::Staged {
        for h in &mut hosts {
            if h.report.error.is_none() {
                h.report.outcome = "staged".into();
            } else {
                failed = true;
            }
        }
    }
    // Phase 2: activate, one host at a time unless parallel.
    if !failed && switch == Switch::Now {
        let mut switched: Vec<usize> = Vec::new();
        if s.parallel {
            let results = join_all(hosts.iter_mut().map(|h| activate(s, h, &holder))).await;
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Ok(()) => switched.push(i),
                    Err(()) => failed = true,
                }
            }
        } else {
            for (i, h) in hosts.iter_mut().enumerate() {
                match activate(s, h, &holder).await {
                    Ok(()) => switched.push(i),
                    Err(()) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        if failed {
            for i in switched {
                let h = &mut hosts[i];
                let back = match h.report.previous.clone() {
                    Some(prev) => {
                        // As the lock's holder: the agent refuses changes by anyone else.
                        h.ra.rollback(Some(prev), Some(holder.clone()))
                            .await
                            .map_err(|e| e.to_string())
                    }
                    None => Err("there was no previous release to go back to".into()),
                };
                h.report.outcome = match back {
                    Ok(_) => "rolled back".into(),
                    Err(e) => format!("rollback FAILED: {e}"),
                };
            }
        }
    }

    // Always unlock what we locked.
    for h in &mut hosts {
        let _ = h.ra.lock_release(&holder, false).await;
    }
    for h in hosts {
        h.bar.finish_and_clear();
        remote_agent::close(h.ra).await;
        let _ = h.session.close().await;
        reports.push(h.report);
    }
    let _ = mp.clear();
    reports.sort_by_key(|r| {
        s.hosts
            .iter()
            .position(|d| r.host.contains(d.as_str()))
            .unwrap_or(0)
    });
    DeployReport {
        ok: !failed,
        sha256,
        size,
        hosts: reports,
        total_ms: t0.elapsed().as_millis() as u64,
    }
}

fn failed_report(host: &str, error: String) -> HostReport {
    HostReport {
        host: host.to_string(),
        release: None,
        sent: "nothing".into(),
        bytes_sent: 0,
        previous: None,
        outcome: "failed".into(),
        error: Some(error),
        release_log: Vec::new(),
        applied: Vec::new(),
        ms: [0; 3],
    }
}

/// Who deploys what: the binary's sha256, the person, and the lock holder name.
#[derive(Clone, Copy)]
struct Who<'a> {
    sha256: &'a str,
    by: &'a str,
    holder: &'a str,
}

async fn prepare(
    s: &DeploySettings,
    dest: &str,
    payload: &Payload,
    who: Who<'_>,
    connect_args: &ConnectArgs,
    bar: ProgressBar,
) -> Result<Host, HostReport> {
    let fit = payload.fit.as_deref();
    let mut host = open_host(s, dest, fit, who, connect_args, bar.clone()).await?;
    let Who { sha256, by, holder } = who;
    let t1 = Instant::now();
    bar.set_message("shipping the release (nothing, a delta, or the whole file)");
    let shipped = ship::ship(&mut host.ra, s, payload, sha256, by).await;
    match shipped {
        Ok(sh) => {
            host.report.release = Some(sh.release);
            host.report.sent = sh.method.into();
            host.report.bytes_sent = sh.bytes;
            host.report.previous = sh.current;
        }
        Err(e) => return Err(give_up(host, Some(holder), e).await),
    }
    host.report.ms[1] = t1.elapsed().as_millis() as u64;
    bar.set_message(format!(
        "shipped {} ({} bytes); waiting to activate",
        host.report.sent, host.report.bytes_sent
    ));
    Ok(host)
}

/// Connects to one host, checks that `binary` (when given) can run there and that the host
/// matches the configuration, takes the deploy lock and applies the configuration's agent
/// settings. Nothing is shipped.
async fn open_host(
    s: &DeploySettings,
    dest: &str,
    binary: Option<&[u8]>,
    who: Who<'_>,
    connect_args: &ConnectArgs,
    bar: ProgressBar,
) -> Result<Host, HostReport> {
    let Who { by, holder, .. } = who;
    let t = Instant::now();
    bar.set_message("connecting");
    let session = connect(dest, connect_args).await.map_err(|e| {
        bar.finish_and_clear();
        failed_report(dest, e)
    })?;
    let name = host_name(&session);
    let fail = |e: String| {
        bar.finish_and_clear();
        failed_report(&name, e)
    };
    if let Some(binary) = binary {
        bar.set_message("checking the host");
        let platform = probe(&session).await.map_err(fail)?;
        let reqs = blargh_platform::binary_requirements(binary)
            .map_err(|e| fail(format!("the release binary: {e}")))?;
        blargh_platform::check_fit(&reqs, &platform).map_err(|e| {
            fail(format!(
                "the release binary cannot run on {name} ({platform}): {e}; nothing was sent"
            ))
        })?;
    }
    let app: blargh_proto::AppName = s.app.parse().map_err(|e| fail(format!("{e}")))?;
    let ra = remote_agent::open(&session, &app).await.map_err(fail)?;
    let mut host = Host {
        session,
        ra,
        report: HostReport {
            host: name.clone(),
            release: None,
            sent: "nothing".into(),
            bytes_sent: 0,
            previous: None,
            outcome: "not activated".into(),
            error: None,
            release_log: Vec::new(),
            applied: Vec::new(),
            ms: [0; 3],
        },
        t,
        bar: bar.clone(),
        sha256: None,
        size: 0,
    };
    bar.set_message("comparing the host with the configuration");
    let diffs = match host.ra.status().await {
        Ok(status) => crate::drift::compare(&s.wanted, &crate::drift::HostFacts::of(&status)),
        Err(e) => return Err(fail(format!("{name}: {e}"))),
    };
    if diffs.iter().any(crate::drift::Difference::needs_root) {
        // Not locked yet: nothing to release.
        let refusal = crate::drift::refusal(&name, &diffs, &s.wanted.seed_command);
        return Err(give_up(host, None, refusal).await);
    }
    bar.set_message("taking the deploy lock");
    let message = s
        .message
        .clone()
        .unwrap_or_else(|| "cargo blargh deploy".into());
    match host
        .ra
        .lock_acquire(holder, &message, s.lock_expiry.as_secs().max(1), false)
        .await
    {
        Ok(_) => {}
        Err(e @ ClientError::Agent(_)) => return Err(fail(format!("{name}: {e}"))),
        Err(e) => return Err(fail(e.to_string())),
    }
    if !diffs.is_empty() {
        bar.set_message("applying the configuration's settings");
        let want = blargh_proto::control::AgentSettings::from(s.wanted.tuning.clone());
        // An agent older than a setting ignores it: what it says is in effect must be
        // what was asked.
        let applied = match host.ra.configure(want.clone(), Some(by.to_string())).await {
            Ok(got) if got == want => Ok(()),
            Ok(got) => Err(format!(
                "the agent kept {got} (it is older than this cargo-blargh; run `cargo blargh \
                 seed` to upgrade it)"
            )),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = applied {
            let what = diffs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let e = format!("{name}: applying {what}: {e}; nothing was sent");
            return Err(give_up(host, Some(holder), e).await);
        }
        host.report.applied = diffs.iter().map(ToString::to_string).collect();
    }
    host.report.ms[0] = host.t.elapsed().as_millis() as u64;
    Ok(host)
}

/// Takes the deploy lock again as `holder`, for another `lock_expiry` from now, so that a
/// long deploy does not lose it midway.
async fn refresh_lock(s: &DeploySettings, h: &mut Host, holder: &str) -> Result<(), String> {
    let message = s
        .message
        .clone()
        .unwrap_or_else(|| "cargo blargh deploy".into());
    h.ra.lock_acquire(holder, &message, s.lock_expiry.as_secs().max(1), false)
        .await
        .map(|_| ())
        .map_err(|e| format!("refreshing the deploy lock: {e}; nothing was activated here"))
}

/// Activates the shipped release on one host, acting as `holder` (the lock's holder: the
/// agent refuses activations, env changes and execs by anyone else while the lock holds).
async fn activate(s: &DeploySettings, h: &mut Host, holder: &str) -> Result<(), ()> {
    let by = holder;
    let t = Instant::now();
    h.bar
        .set_message("activating: starting the new release beside the old one");
    let id = h.report.release.clone().expect("shipped");
    let fail = |report: &mut HostReport, e: String, log: Vec<String>| {
        report.outcome = "failed".into();
        report.error = Some(e);
        report.release_log = log;
    };
    // Refresh the lock: shipping, and the hosts activated before this one, took time that
    // counts against its expiry.
    if let Err(e) = refresh_lock(s, h, holder).await {
        fail(&mut h.report, e, vec![]);
        return Err(());
    }
    for (k, v) in &s.env {
        if let Err(e) = h.ra.env_set(k, v, Some(by.to_string()), false).await {
            fail(&mut h.report, format!("setting {k}: {e}"), vec![]);
            return Err(());
        }
    }
    if let Some(args) = &s.before_activate {
        match h
            .ra
            .exec(Some(id.clone()), args.clone(), 300, Some(by.to_string()))
            .await
        {
            Ok(r) if r.status == Some(0) => {}
            Ok(r) => {
                let log: Vec<String> = r
                    .stdout
                    .lines()
                    .chain(r.stderr.lines())
                    .map(str::to_string)
                    .collect();
                let how = r
                    .status
                    .map(|c| format!("exited with {c}"))
                    .unwrap_or("was killed".into());
                fail(
                    &mut h.report,
                    format!(
                        "before_activate {args:?} {how}; the new release was not activated, the old one keeps serving"
                    ),
                    log,
                );
                return Err(());
            }
            Err(e) => {
                fail(&mut h.report, format!("before_activate: {e}"), vec![]);
                return Err(());
            }
        }
    }
    // And again after before_activate, which may have run for long.
    if s.before_activate.is_some()
        && let Err(e) = refresh_lock(s, h, holder).await
    {
        fail(&mut h.report, e, vec![]);
        return Err(());
    }
    let result =
        h.ra.activate(
            &id,
            Some(by.to_string()),
            s.auto_rollback,
            s.message.clone(),
        )
        .await;
    h.report.ms[2] = t.elapsed().as_millis() as u64;
    match result {
        Ok(a) => {
            h.report.outcome = "activated".into();
            if h.report.previous.is_none() {
                h.report.previous = a.previous;
            }
            Ok(())
        }
        Err(e) => {
            let log = e.release_log().to_vec();
            fail(&mut h.report, e.to_string(), log);
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pick_release;
    use blargh_proto::manifest::ReleaseManifest;

    fn manifest(id: &str, sha256: &str) -> ReleaseManifest {
        ReleaseManifest::from_json(&format!(
            r#"{{"id":"{id}","sha256":"{sha256}","size":1,"deployed_at":"t"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_release_is_named_by_its_id_or_a_long_enough_sha256_prefix() {
        let a = manifest(
            "20261205T090000Z-aaaa1111",
            &format!("aaaa1111{}", "0".repeat(56)),
        );
        let b = manifest(
            "20261205T091000Z-aaaa2222",
            &format!("aaaa2222{}", "1".repeat(56)),
        );
        let all = [&a, &b];
        assert_eq!(
            pick_release(&all, "20261205T091000Z-aaaa2222").unwrap().id,
            b.id
        );
        assert_eq!(pick_release(&all, "aaaa1111").unwrap().id, a.id);
        assert_eq!(pick_release(&all, "AAAA2222").unwrap().id, b.id, "any case");
        assert_eq!(
            pick_release(&all, &a.sha256).unwrap().id,
            a.id,
            "all 64 digits"
        );
        let e = pick_release(&all, "aaaa").unwrap_err();
        assert!(e.contains("8 or more hex digits"), "{e}");
        let e = pick_release(&all, "aaaa33333").unwrap_err();
        assert!(
            e.contains("no release has a sha256 starting with aaaa33333"),
            "{e}"
        );
        let twins = manifest(
            "20261205T092000Z-aaaa1111",
            &format!("aaaa1111{}", "2".repeat(56)),
        );
        let e = pick_release(&[&a, &twins], "aaaa1111").unwrap_err();
        assert!(
            e.contains("2 releases") && e.contains(twins.id.as_str()),
            "{e}"
        );
        let e = pick_release(&all, "../../etc").unwrap_err();
        assert!(e.contains("there is no release"), "{e}");
    }
}
