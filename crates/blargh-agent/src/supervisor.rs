//! What runs: one current process per app, started and checked ready before the old one
//! drains; crashes restarted with backoff, and in a crash loop still retried, less often;
//! a process that stops sending `WATCHDOG=1` replaced as hung.
//!
//! Every change of the running process goes through one lock, so activations, rollbacks,
//! restarts and shutdown never interleave.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blargh_proto::control::{
    Activation, AgentSettings, AgentStatus, AppState, AutoRollback, CertStatus, ControlError,
    Encoding, KeptProcess, ListenerInfo, LockInfo, LockRequest, Readiness, Reply, Upgraded,
};
use blargh_proto::manifest::ReleaseMeta;
use blargh_proto::{ReleaseId, ReleaseManifest};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncRead;
use tokio::sync::{oneshot, watch};

use crate::audit::Audit;
use crate::config::AgentConfig;
use crate::handover::{HandoverInputs, parse_env_file, release_env};
use crate::layout::Layout;
use crate::lock::DeployLock;
use crate::logs::AppLog;
use crate::notify::{NotifyEvent, NotifySocket};
use crate::sockets::Listener;
use crate::spawn::{OutputPipes, SpawnSpec, capture_adopted, run_once, spawn};
use crate::store::{Launch, Store};
use crate::upgrade::{HandedListener, HandedProcess, Handover};

/// Longest wait for a draining release to say it stopped accepting before an activation
/// returns anyway (apps without the library never say so).
const STOP_WAIT: Duration = Duration::from_secs(2);
/// Wait between attempts once restarts look like a crash loop; it doubles after each
/// failed attempt up to [`LOOP_RETRY_MAX`]. A dependency outage (a database away for a
/// while) then costs one process start every minute at most, and the app comes back on
/// its own once the dependency does.
pub const LOOP_RETRY_FIRST: Duration = Duration::from_secs(2);
/// Longest wait between attempts in a crash loop.
pub const LOOP_RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a hung process gets between SIGTERM and SIGKILL once its replacement serves
/// (a process whose runtime is stuck cannot drain anyway).
const HUNG_STOP_WAIT: Duration = Duration::from_secs(1);

/// A process of the app that has become ready.
#[derive(Debug, Clone)]
struct Proc {
    release: ReleaseId,
    pid: u32,
    generation: u64,
    ready_at: Instant,
    /// True once it sent `STOPPING=1` or exited.
    stopped: watch::Receiver<bool>,
    /// True once it exited.
    exited: watch::Receiver<bool>,
    /// What the next agent needs to take it over; `None` if it could not be kept.
    handable: Option<Arc<Handable>>,
}

/// Copies of a process's notify socket and output pipes, kept so that an in-place upgrade
/// can hand the process to the next agent ([`crate::upgrade`]).
#[derive(Debug)]
struct Handable {
    notify: OwnedFd,
    notify_path: PathBuf,
    output: OutputPipes,
}

impl Handable {
    fn new(notify: &NotifySocket, output: OutputPipes) -> Option<Arc<Handable>> {
        Some(Arc::new(Handable {
            notify: notify.try_clone_fd().ok()?,
            notify_path: notify.path().to_path_buf(),
            output,
        }))
    }
}

/// The future that ends when a watched process exits, with how it ended.
type ExitFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<ExitStatus>> + Send>>;

#[derive(Debug)]
struct State {
    app: AppState,
    current: Option<Proc>,
    restarts: u32,
    /// Hung processes replaced by the watchdog.
    watchdog_restarts: u32,
    crashes: VecDeque<Instant>,
    /// In a crash loop: the wait before the next attempt.
    loop_delay: Option<Duration>,
    /// Watch over a fresh activation: roll back by itself if it crashes too soon.
    guard: Option<Guard>,
    /// The certificates the app last reported, by domain.
    certificates: std::collections::BTreeMap<String, CertStatus>,
}

/// The automatic rollback armed by an activation.
#[derive(Debug, Clone)]
struct Guard {
    release: ReleaseId,
    previous: ReleaseId,
    until: Instant,
    crashes: u32,
    allowed: u32,
}

/// Why a release did not become ready; it has been stopped.
#[derive(Debug)]
struct StartFailure {
    message: String,
    log: Vec<String>,
}

/// How an activation was asked for, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A deploy (or a restart on request).
    Activate,
    /// Back to an earlier release.
    Rollback,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Activate => "activate",
            Action::Rollback => "rollback",
        }
    }
}

/// The agent's heart. Shared as `Arc<Supervisor>` by the control server and its own tasks.
#[derive(Debug)]
pub struct Supervisor {
    cfg: AgentConfig,
    layout: Layout,
    store: Store,
    audit: Audit,
    log: Arc<AppLog>,
    listeners: Vec<Listener>,
    run_as: Option<(u32, u32)>,
    trampoline: PathBuf,
    activation: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    generation: AtomicU64,
    lock: DeployLock,
    /// The settings in effect: the command line's, overridden by `settings.json`.
    settings: Mutex<AgentSettings>,
    /// The control socket's listener, for an upgrade's handover.
    control_fd: std::sync::OnceLock<RawFd>,
    /// Uploads in progress (an upgrade waits for them).
    receiving: std::sync::atomic::AtomicUsize,
}

/// Counts an upload in progress while it lives.
struct Receiving<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Supervisor {
    /// A supervisor for the app in `cfg`, holding `listeners`. Starts nothing yet.
    pub fn new(
        cfg: AgentConfig,
        listeners: Vec<Listener>,
        run_as: Option<(u32, u32)>,
        trampoline: PathBuf,
    ) -> std::io::Result<Arc<Self>> {
        let layout = Layout::new(&cfg.root);
        let store = Store::open(layout.clone())?;
        let log = AppLog::open(&layout.logs())?;
        let layout_lock = layout.lock();
        let settings = load_settings(&layout.settings())?.unwrap_or_else(|| cfg.settings());
        Ok(Arc::new(Supervisor {
            settings: Mutex::new(settings),
            audit: Audit::new(layout.audit_log()),
            cfg,
            layout,
            store,
            log,
            listeners,
            run_as,
            trampoline,
            activation: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                app: AppState::Empty,
                current: None,
                restarts: 0,
                watchdog_restarts: 0,
                crashes: VecDeque::new(),
                loop_delay: None,
                guard: None,
                certificates: Default::default(),
            }),
            generation: AtomicU64::new(0),
            lock: DeployLock::new(layout_lock),
            control_fd: std::sync::OnceLock::new(),
            receiving: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// The settings in effect.
    pub fn settings(&self) -> AgentSettings {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the settings in effect without copying them.
    fn read_settings<T>(&self, f: impl FnOnce(&AgentSettings) -> T) -> T {
        f(&self.settings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn ready_timeout(&self) -> Duration {
        Duration::from_millis(self.read_settings(|s| s.ready_timeout_ms))
    }

    fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.read_settings(|s| s.drain_timeout_ms))
    }

    /// The watchdog timeout, when the watchdog is on.
    fn watchdog_timeout(&self) -> Option<Duration> {
        match self.read_settings(|s| s.watchdog_timeout_ms) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Checks `new`, writes it to `settings.json` (atomically), puts it in effect, audits
    /// the change and prunes releases beyond the new `keep_releases`. Returns the settings
    /// now in effect.
    pub async fn configure(
        &self,
        new: AgentSettings,
        by: &str,
    ) -> Result<AgentSettings, ControlError> {
        new.check().map_err(plain_error)?;
        // No activation runs while the settings change (it reads them as it goes).
        let _guard = self.activation.lock().await;
        let path = self.layout.settings();
        let json = serde_json::to_string_pretty(&new).expect("settings serialize") + "\n";
        write_atomic(&path, json.as_bytes())
            .map_err(|e| plain_error(format!("cannot write {}: {e}", path.display())))?;
        let old = std::mem::replace(
            &mut *self.settings.lock().unwrap_or_else(|e| e.into_inner()),
            new.clone(),
        );
        if old != new {
            self.audit.record(
                "configure",
                None,
                None,
                Some(by),
                Some(&format!("{old} -> {new}")),
            );
        }
        self.prune();
        Ok(new)
    }

    /// Deletes releases beyond `keep_releases` (never current or previous) and audits it.
    fn prune(&self) {
        if let Ok(removed) = self
            .store
            .prune(self.settings().keep_releases as usize, &[])
        {
            for r in removed {
                self.audit.record("prune", Some(&r), None, None, None);
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The uid the app runs as, when it is not the agent's own: the control socket
    /// refuses it (an app may not control its agent).
    pub fn app_uid(&self) -> Option<u32> {
        self.run_as
            .map(|(uid, _)| uid)
            .filter(|&uid| uid != nix::unistd::geteuid().as_raw())
    }

    /// The release store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The audit log.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The app log.
    pub fn app_log(&self) -> &AppLog {
        &self.log
    }

    /// Starts the current release, if there is one (after a reboot or an agent restart), or
    /// takes over the process an earlier agent handed over (an in-place upgrade); and pings
    /// systemd's watchdog when systemd watches the agent (`WatchdogSec=`).
    pub fn boot(self: &Arc<Self>, handed: Option<HandedProcess>) {
        if let Some(timeout) = sd_notify::watchdog_enabled() {
            tokio::spawn(self.clone().ping_systemd(timeout));
        }
        if let Some(p) = handed {
            let (pid, release) = (p.pid, p.release.clone());
            match self.adopt(p) {
                Ok(()) => return,
                Err(e) => {
                    // Unwatched, it would hold the sockets with nobody to restart it.
                    self.log.write(
                        &release,
                        "agent",
                        &format!(
                            "cannot take over pid {pid} ({e}): stopping it and starting afresh"
                        ),
                    );
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    let _ = crate::upgrade::children();
                }
            }
        }
        if let Some(current) = self.store.current() {
            self.state().app = AppState::Starting;
            tokio::spawn(self.clone().recover(current));
        }
    }

    /// Watches a process an earlier agent handed over as the current one.
    fn adopt(self: &Arc<Self>, p: HandedProcess) -> std::io::Result<()> {
        // SAFETY: fds named by the handover just taken, each taken once, here.
        let own = |fd: RawFd| unsafe { crate::upgrade::own(fd) };
        let notify = NotifySocket::adopt(own(p.notify_fd), &p.notify_path)?;
        let output = OutputPipes {
            stdout: p.stdout.map(own),
            stderr: p.stderr.map(own),
        };
        let kept = OutputPipes {
            stdout: output.stdout.as_ref().map(|f| f.try_clone()).transpose()?,
            stderr: output.stderr.as_ref().map(|f| f.try_clone()).transpose()?,
        };
        let recent = Arc::new(crate::logs::RecentLines::default());
        capture_adopted(output, &p.release, self.log.clone(), recent)?;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let (stopped_tx, stopped) = watch::channel(false);
        let (exited_tx, exited) = watch::channel(false);
        let ready_at = Instant::now()
            .checked_sub(Duration::from_millis(p.ready_for_ms))
            .unwrap_or_else(Instant::now);
        let proc = Proc {
            release: p.release.clone(),
            pid: p.pid,
            generation,
            ready_at,
            stopped,
            exited,
            handable: Handable::new(&notify, kept),
        };
        {
            let mut st = self.state();
            st.current = Some(proc);
            st.app = AppState::Running;
        }
        self.log.write(
            &p.release,
            "agent",
            &format!(
                "pid {} taken over from the earlier agent; it keeps serving",
                p.pid
            ),
        );
        self.watch(
            generation,
            p.release,
            p.pid,
            notify,
            Box::pin(crate::upgrade::wait_exit(p.pid)),
            (stopped_tx, exited_tx),
        );
        Ok(())
    }

    /// Audits an in-place upgrade that brought this agent in, and says what it kept.
    pub fn took_over(&self, h: &Handover) -> Upgraded {
        let kept = self.state().current.as_ref().map(|p| KeptProcess {
            release: p.release.clone(),
            pid: p.pid,
        });
        let report = Upgraded {
            from_version: h.from_version.clone(),
            to_version: env!("CARGO_PKG_VERSION").to_string(),
            agent_pid: std::process::id(),
            kept: kept.clone(),
            took_ms: crate::upgrade::now_ms().saturating_sub(h.asked_at_ms),
        };
        let detail = format!(
            "agent {} -> {} in place (pid {}, {} ms); {}",
            report.from_version,
            report.to_version,
            report.agent_pid,
            report.took_ms,
            match &kept {
                Some(k) => format!("pid {} kept serving", k.pid),
                None => "no release was serving".to_string(),
            }
        );
        self.audit.record(
            "upgrade",
            kept.as_ref().map(|k| k.release.as_str()),
            None,
            Some(&h.by),
            Some(&detail),
        );
        report
    }

    /// Keeps the app's latest report of a certificate it serves, for `status`.
    fn note_certificate(&self, c: CertStatus) {
        self.state().certificates.insert(c.domain.clone(), c);
    }

    /// Records the control socket's listener, which an upgrade hands over.
    pub fn set_control_fd(&self, fd: RawFd) {
        let _ = self.control_fd.set(fd);
    }

    /// Replaces this agent in place with the executable now at its path (see
    /// [`crate::upgrade`]): no activation runs meanwhile, the release that serves is handed
    /// over and keeps serving, and the new agent answers on `reply_to`. Returns only when
    /// the upgrade could not happen, with the agent as it was.
    pub async fn upgrade(
        self: &Arc<Self>,
        by: &str,
        reply_to: OwnedFd,
    ) -> Result<std::convert::Infallible, ControlError> {
        if !crate::leader::leading() {
            return Err(plain_error(
                "this agent cannot upgrade in place (it was not started by `agent run`); restart it instead".into(),
            ));
        }
        let control = *self.control_fd.get().ok_or_else(|| {
            plain_error(
                "this agent's control socket is not its own to hand over; restart it instead"
                    .into(),
            )
        })?;
        let exe = crate::upgrade::executable_path()
            .map_err(|e| plain_error(format!("cannot find the agent's executable: {e}")))?;
        crate::upgrade::check_executable(&exe)
            .await
            .map_err(plain_error)?;
        let _guard = self.activation.lock().await;
        // A draining release or a one-off `exec` would be left unwatched, and an upload
        // cut off: wait for them.
        let deadline = Instant::now() + self.drain_timeout() + Duration::from_secs(2);
        loop {
            let current = self.state().current.as_ref().map(|p| p.pid);
            let others: Vec<u32> = crate::upgrade::children()
                .map_err(|e| plain_error(format!("cannot list the agent's processes: {e}")))?
                .into_iter()
                .filter(|&pid| Some(pid) != current)
                .collect();
            let uploads = self.receiving.load(Ordering::SeqCst);
            if others.is_empty() && uploads == 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(plain_error(if uploads > 0 {
                    format!("{uploads} upload(s) in progress; try again once the deploy is done")
                } else {
                    format!(
                        "processes {others:?} (a draining release or a one-off `exec`) still \
                         run; try again once they end"
                    )
                }));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let current = self.state().current.clone();
        let handed = match &current {
            None => None,
            Some(p) => {
                let h = p.handable.as_ref().ok_or_else(|| {
                    plain_error(format!(
                        "pid {} of release {} cannot be handed over; restart the agent instead",
                        p.pid, p.release
                    ))
                })?;
                Some(HandedProcess {
                    release: p.release.clone(),
                    pid: p.pid,
                    ready_for_ms: p.ready_at.elapsed().as_millis() as u64,
                    notify_fd: h.notify.as_raw_fd(),
                    notify_path: h.notify_path.clone(),
                    stdout: h.output.stdout.as_ref().map(|f| f.as_raw_fd()),
                    stderr: h.output.stderr.as_ref().map(|f| f.as_raw_fd()),
                })
            }
        };
        let handover = Handover {
            version: crate::upgrade::HANDOVER_VERSION,
            from_version: env!("CARGO_PKG_VERSION").to_string(),
            by: by.to_string(),
            asked_at_ms: crate::upgrade::now_ms(),
            listeners: self
                .listeners
                .iter()
                .map(|l| HandedListener {
                    name: l.name.clone(),
                    fd: l.socket.as_raw_fd(),
                })
                .collect(),
            control,
            reply_to: reply_to.as_raw_fd(),
            current: handed,
        };
        let target = exe.clone();
        let err = crate::leader::run(move || crate::upgrade::exec(&target, &handover))
            .unwrap_or_else(|e| e);
        drop(reply_to);
        drop(current);
        Err(plain_error(format!(
            "cannot execute {}: {err}; the agent keeps running as it was",
            exe.display()
        )))
    }

    /// Sends `WATCHDOG=1` to systemd every half `timeout`, from a task on the agent's runtime
    /// that also takes the state lock: a stuck runtime or a deadlocked agent stops the pings,
    /// and systemd restarts the agent (the release keeps serving meanwhile only if it
    /// survives the agent; see spawn's parent-death signal).
    async fn ping_systemd(self: Arc<Self>, timeout: Duration) {
        let mut tick = tokio::time::interval(timeout / 2);
        loop {
            tick.tick().await;
            drop(self.state());
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }

    /// Stores a release received on `reader` (see [`Store::receive`]) and audits it. A
    /// [`Encoding::Frame`] body is decoded first (a delta against a release this host has,
    /// or a compressed whole file), and the result checked against `sha256` all the same.
    pub async fn receive(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
        sha256: &str,
        size: u64,
        meta: ReleaseMeta,
        encoding: Encoding,
        by: &str,
    ) -> Result<(ReleaseManifest, bool), ControlError> {
        self.receiving.fetch_add(1, Ordering::SeqCst);
        let _receiving = Receiving(&self.receiving);
        let result = match encoding {
            Encoding::Raw => self.store.receive(reader, sha256, size, meta).await,
            Encoding::Frame => match self.decode_frame(reader, size).await {
                Ok(bytes) => {
                    let n = bytes.len() as u64;
                    self.store.receive(&mut &bytes[..], sha256, n, meta).await
                }
                Err(message) => {
                    self.audit
                        .record("failure", None, None, Some(by), Some(&message));
                    return Err(plain_error(message));
                }
            },
        };
        match result {
            Ok((m, already)) => {
                let detail = format!(
                    "sha256 {} size {}{}",
                    m.sha256,
                    m.size,
                    if already { " (already stored)" } else { "" }
                );
                self.audit
                    .record("receive", Some(&m.id), None, Some(by), Some(&detail));
                Ok((m, already))
            }
            Err(e) => {
                let message = e.to_string();
                self.audit
                    .record("failure", None, None, Some(by), Some(&message));
                Err(plain_error(message))
            }
        }
    }

    /// Reads a `blargh-delta` frame of `size` bytes and decodes it against the release it
    /// names as its base.
    async fn decode_frame(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
        size: u64,
    ) -> Result<Vec<u8>, String> {
        use tokio::io::AsyncReadExt;
        const MAX: u64 = 1 << 30;
        if size > MAX {
            return Err(format!(
                "an upload of {size} bytes is more than this agent accepts (1 GiB)"
            ));
        }
        let mut frame = Vec::with_capacity(size as usize);
        reader
            .take(size)
            .read_to_end(&mut frame)
            .await
            .map_err(|e| format!("reading the upload: {e}"))?;
        if (frame.len() as u64) < size {
            return Err(crate::store::ReceiveError::Truncated {
                got: frame.len() as u64,
                expected: size,
            }
            .to_string());
        }
        let info = blargh_delta::frame_info(&frame).map_err(|e| e.to_string())?;
        let base = match info.base {
            None => None,
            Some(b) => {
                let sha = hex::encode(b.sha256);
                let m = self
                    .store
                    .find_by_sha(&sha)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        format!(
                            "this delta was made against a release with sha256 {sha}, which this host does not have; send the whole file"
                        )
                    })?;
                // A tree release's base is the archive it arrived as.
                let base = match m.tree {
                    None => self.layout.binary(&m.id),
                    Some(_) => self.layout.archive(&m.id),
                };
                Some(
                    std::fs::read(base)
                        .map_err(|e| format!("cannot read the base release {}: {e}", m.id))?,
                )
            }
        };
        tokio::task::block_in_place(|| blargh_delta::decode(base.as_deref(), &frame, MAX))
            .map_err(|e| e.to_string())
    }

    /// Starts release `id`, waits until it is ready, then drains what served before.
    /// On failure the new process is stopped and what served keeps serving.
    pub async fn activate(
        self: &Arc<Self>,
        id: &ReleaseId,
        action: Action,
        by: &str,
        auto_rollback: Option<AutoRollback>,
    ) -> Result<Activation, ControlError> {
        self.activate_with(id, action, by, auto_rollback, None)
            .await
    }

    /// [`Self::activate`] with a message (why) for the audit log.
    pub async fn activate_with(
        self: &Arc<Self>,
        id: &ReleaseId,
        action: Action,
        by: &str,
        auto_rollback: Option<AutoRollback>,
        message: Option<&str>,
    ) -> Result<Activation, ControlError> {
        let t0 = Instant::now();
        let _guard = self.activation.lock().await;
        self.store.get(id).map_err(|e| plain_error(e.to_string()))?;
        let serving = self.state().current.as_ref().map(|p| p.release.clone());
        let (proc, ready_ms) = match self.start(id).await {
            Ok(ok) => ok,
            Err(f) => {
                let still = match &serving {
                    Some(s) => format!("release {s} keeps serving"),
                    None => "nothing was serving and nothing changed".to_string(),
                };
                let message = format!("{}; {still}", f.message);
                self.audit.record(
                    "failure",
                    Some(id),
                    serving.as_deref(),
                    Some(by),
                    Some(&f.message),
                );
                return Err(ControlError {
                    message,
                    release_log: f.log,
                });
            }
        };
        let pid = proc.pid;
        let old = {
            let mut st = self.state();
            st.app = AppState::Running;
            st.restarts = 0;
            st.crashes.clear();
            st.loop_delay = None;
            let old = st.current.replace(proc);
            let previous = old
                .as_ref()
                .map(|o| o.release.clone())
                .or_else(|| self.store.current());
            st.guard = match (auto_rollback, previous) {
                (Some(ar), Some(prev)) if prev != *id && ar.crashes > 0 => Some(Guard {
                    release: id.clone(),
                    previous: prev,
                    // The window was checked on decoding (at most a day); saturate anyway.
                    until: Instant::now()
                        .checked_add(Duration::from_secs(ar.window_s))
                        .unwrap_or_else(|| {
                            Instant::now()
                                + Duration::from_secs(blargh_proto::control::MAX_WINDOW_S)
                        }),
                    crashes: 0,
                    allowed: ar.crashes,
                }),
                _ => None,
            };
            old
        };
        if let Err(e) = self.store.set_current(id) {
            self.log.write(
                id,
                "agent",
                &format!("cannot record the current release (it would not start at boot): {e}"),
            );
        }
        if let Some(old) = &old {
            self.drain(old.clone()).await;
        }
        let previous = old.map(|o| o.release).or_else(|| self.store.previous());
        self.audit.record(
            action.name(),
            Some(id),
            previous.as_deref(),
            Some(by),
            Some(&match message {
                Some(m) => format!("pid {pid}, ready in {ready_ms} ms: {m}"),
                None => format!("pid {pid}, ready in {ready_ms} ms"),
            }),
        );
        let protect: Vec<&str> = [Some(id.as_str()), previous.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if let Ok(removed) = self
            .store
            .prune(self.settings().keep_releases as usize, &protect)
        {
            for r in removed {
                self.audit.record("prune", Some(&r), None, None, None);
            }
        }
        Ok(Activation {
            release: id.clone(),
            previous,
            pid,
            ready_ms,
            total_ms: t0.elapsed().as_millis() as u64,
        })
    }

    /// Activates the previous release, or `id`.
    pub async fn rollback(
        self: &Arc<Self>,
        id: Option<&ReleaseId>,
        by: &str,
    ) -> Result<Activation, ControlError> {
        let target = match id {
            Some(id) => id.clone(),
            None => self.store.previous().ok_or_else(|| {
                plain_error(
                    "there is no previous release to roll back to; name one (see `releases`)"
                        .to_string(),
                )
            })?,
        };
        self.activate(&target, Action::Rollback, by, None).await
    }

    /// Applies a deploy-lock request.
    pub fn lock(&self, req: &LockRequest) -> Result<Option<LockInfo>, ControlError> {
        let result = self.lock.apply(req).map_err(plain_error)?;
        if let LockRequest::Acquire {
            holder, message, ..
        } = req
        {
            self.audit
                .record("lock", None, None, Some(holder), Some(message));
        }
        Ok(result)
    }

    /// Refuses `what` (activate, rollback, env set, …) while the deploy lock is held by
    /// someone other than `claim` (the request's `by`). The holder itself passes, so a
    /// deploy's own steps go through its lock. The lock coordinates people and deploys; it
    /// is not access control (anyone who may use the control socket may claim a name).
    pub fn lock_allows(&self, claim: Option<&str>, what: &str) -> Result<(), ControlError> {
        let held = self
            .lock
            .apply(&LockRequest::Status)
            .map_err(|e| plain_error(format!("{what} refused: {e}")))?;
        match crate::lock::refusal(held.as_ref(), claim, crate::lock::unix_now(), what) {
            Some(why) => Err(plain_error(why)),
            None => Ok(()),
        }
    }

    /// Sets (`Some`) or removes (`None`) one variable of the app's env file, then restarts
    /// the app with zero downtime when it runs. Values are never logged.
    pub async fn env_change(
        self: &Arc<Self>,
        key: &blargh_proto::EnvKey,
        value: Option<&str>,
        by: &str,
        restart: bool,
    ) -> Result<Reply, ControlError> {
        let path = self.layout.env_file();
        let text = crate::env_file::read(&path)
            .map_err(|e| plain_error(format!("cannot read {}: {e}", path.display())))?;
        let next = match value {
            Some(v) => crate::env_file::with_set(&text, key, v).map_err(plain_error)?,
            None => crate::env_file::without(&text, key),
        };
        crate::env_file::write(&path, &next)
            .map_err(|e| plain_error(format!("cannot write {}: {e}", path.display())))?;
        let event = if value.is_some() {
            "env_set"
        } else {
            "env_unset"
        };
        self.audit
            .record(event, None, None, Some(by), Some(key.as_str()));
        let running = self
            .state()
            .current
            .as_ref()
            .filter(|_| restart)
            .map(|p| p.release.clone());
        let restarted = match running {
            Some(id) => Some(self.activate(&id, Action::Activate, by, None).await?),
            None => None,
        };
        Ok(Reply::Env {
            names: crate::env_file::names(&next),
            restarted,
        })
    }

    /// The names in the app's env file.
    pub fn env_names(&self) -> Result<Vec<blargh_proto::EnvKey>, ControlError> {
        let text = crate::env_file::read(&self.layout.env_file())
            .map_err(|e| plain_error(format!("cannot read the env file: {e}")))?;
        Ok(crate::env_file::names(&text))
    }

    /// Runs a command once with a release's env (migrations, one-off tasks); `{bin}` in
    /// `args` is the release's executable.
    pub async fn exec(
        &self,
        release: Option<&ReleaseId>,
        args: &[String],
        timeout: Duration,
        by: &str,
    ) -> Result<Reply, ControlError> {
        let id = match release {
            Some(r) => r.clone(),
            None => self.store.current().ok_or_else(|| {
                plain_error("no release is current on this host; name one (see `releases`)".into())
            })?,
        };
        let manifest = self
            .store
            .get(&id)
            .map_err(|e| plain_error(e.to_string()))?;
        let launch = Launch::of(&self.layout, &manifest);
        let env = self.release_env(&id, None).map_err(plain_error)?;
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| !k.starts_with("LISTEN_") && !k.starts_with("WATCHDOG_"))
            .collect();
        // `{bin}` in an argument stands for the release's executable; the first word is
        // the program (`{bin}` itself, or e.g. `sh`).
        let bin = launch.program.display().to_string();
        let argv: Vec<String> = args.iter().map(|a| a.replace("{bin}", &bin)).collect();
        let Some((program, rest)) = argv.split_first() else {
            return Err(plain_error(
                "nothing to run: give a command, e.g. [\"{bin}\", \"migrate\"]".into(),
            ));
        };
        let out = run_once(
            SpawnSpec {
                release: &id,
                app: program,
                binary: std::path::PathBuf::from(program),
                args: Vec::new(),
                verify: std::path::PathBuf::from(program),
                workdir: launch.workdir,
                listeners: &[],
                env,
                run_dir: self.layout.run(),
                run_as: self.run_as,
                trampoline: self.trampoline.clone(),
            },
            rest,
            timeout,
        )
        .await
        .map_err(|e| plain_error(format!("cannot run release {id}: {e}")))?;
        for line in out.stdout.lines() {
            self.log.write(&id, "exec", line);
        }
        for line in out.stderr.lines() {
            self.log.write(&id, "exec", line);
        }
        let detail = match (out.status, out.timed_out) {
            (_, true) => format!("{args:?} killed after {} s", timeout.as_secs()),
            (Some(c), _) => format!("{args:?} exited with {c}"),
            (None, _) => format!("{args:?} killed by a signal"),
        };
        self.audit
            .record("exec", Some(&id), None, Some(by), Some(&detail));
        Ok(Reply::Exec {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// What runs and how it is doing.
    pub fn status(&self) -> AgentStatus {
        let st = self.state();
        let current_id = st
            .current
            .as_ref()
            .map(|p| p.release.clone())
            .or_else(|| self.store.current());
        AgentStatus {
            app: self.cfg.app.clone(),
            settings: self.settings(),
            certificates: st.certificates.values().cloned().collect(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            agent_pid: std::process::id(),
            state: st.app,
            current: current_id.and_then(|id| self.store.get(&id).ok()),
            previous: self.store.previous(),
            pid: st.current.as_ref().map(|p| p.pid),
            uptime_ms: st
                .current
                .as_ref()
                .map(|p| p.ready_at.elapsed().as_millis() as u64),
            restarts: st.restarts,
            watchdog_restarts: st.watchdog_restarts,
            retry_every_ms: st
                .loop_delay
                .filter(|_| st.app == AppState::CrashLoop)
                .map(|d| d.as_millis() as u64),
            rss_bytes: st.current.as_ref().and_then(|p| rss_bytes(p.pid)),
            listeners: self
                .listeners
                .iter()
                .map(|l| ListenerInfo {
                    name: l.name.clone(),
                    address: l.address(),
                })
                .collect(),
        }
    }

    /// Drains the running release and waits for it to exit (agent shutdown).
    pub async fn shutdown(self: &Arc<Self>) {
        let _guard = self.activation.lock().await;
        let current = self.state().current.take();
        if let Some(p) = current {
            let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
            let mut exited = p.exited.clone();
            if tokio::time::timeout(self.drain_timeout(), exited.wait_for(|e| *e))
                .await
                .is_err()
            {
                let _ = killpg(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
            }
        }
    }

    /// The environment of a process of release `id` (without `NOTIFY_SOCKET`, which
    /// belongs to the spawn). `extra` names a socket passed after the shared ones (the
    /// private readiness listener).
    fn release_env(&self, id: &str, extra: Option<&str>) -> Result<Vec<(String, String)>, String> {
        let app_env = match std::fs::read_to_string(self.layout.env_file()) {
            Ok(text) => parse_env_file(&text).map_err(|e| {
                format!(
                    "release {id} was not started: {} ({})",
                    e,
                    self.layout.env_file().display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("cannot read the app's env file: {e}")),
        };
        let names: Vec<String> = self
            .listeners
            .iter()
            .map(|l| l.name.clone())
            .chain(extra.map(str::to_string))
            .collect();
        let path =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_string());
        let settings = self.settings();
        Ok(release_env(&HandoverInputs {
            listener_names: &names,
            notify_socket: std::path::Path::new(""),
            release: id,
            app: &self.cfg.app,
            root: self.layout.root(),
            data_dir: &self.layout.data(),
            drain_timeout: self.drain_timeout(),
            app_env: &app_env,
            path: &path,
            watchdog: self.watchdog_timeout(),
            tls: settings.tls.as_ref(),
        })
        .into_iter()
        .filter(|(k, _)| k != blargh_proto::env::NOTIFY_SOCKET)
        .collect())
    }

    /// The readiness command of release `id` (`ready = { exec = [...] }`), with the
    /// release's environment (no sockets); the caller adds `BLARGH_READY_PID`.
    fn ready_command(
        &self,
        id: &ReleaseId,
        argv: &[String],
    ) -> Result<crate::readiness::ReadyCommand, String> {
        let env: Vec<(String, String)> = self
            .release_env(id, None)?
            .into_iter()
            .filter(|(k, _)| !k.starts_with("LISTEN_") && !k.starts_with("WATCHDOG_"))
            .collect();
        let launch = Launch::of(
            &self.layout,
            &self.store.get(id).map_err(|e| e.to_string())?,
        );
        let bin = launch.program.display().to_string();
        Ok(crate::readiness::ReadyCommand {
            release: id.to_string(),
            argv: argv.iter().map(|a| a.replace("{bin}", &bin)).collect(),
            env,
            workdir: launch.workdir,
            run_dir: self.layout.run(),
            run_as: self.run_as,
            trampoline: self.trampoline.clone(),
        })
    }

    /// Spawns release `id` and waits for `READY=1`. On success the process is watched: a
    /// later exit goes to [`Self::on_exit`].
    async fn start(self: &Arc<Self>, id: &ReleaseId) -> Result<(Proc, u64), StartFailure> {
        let fail = |message: String| StartFailure {
            message,
            log: Vec::new(),
        };
        let ready = self.settings().ready;
        // Checked over HTTP: the process gets a listener of its own, after the shared
        // ones, and only it can answer there. The agent's copy closes once it is passed.
        let (private, check_at) = match &ready {
            Readiness::Notify | Readiness::Exec(_) => (None, None),
            Readiness::Http(_) => {
                let (l, addr) = crate::readiness::private_listener().map_err(|e| {
                    fail(format!(
                        "release {id} was not started: no private listener for its readiness check: {e}"
                    ))
                })?;
                (Some(l), Some(addr))
            }
        };
        let env = self
            .release_env(id, private.as_ref().map(|l| l.name.as_str()))
            .map_err(fail)?;
        // Prepared before the process starts, so that nothing fails between the two.
        let ready_command = match &ready {
            Readiness::Exec(argv) => Some(self.ready_command(id, argv).map_err(fail)?),
            _ => None,
        };
        let manifest = self
            .store
            .get(id)
            .map_err(|e| fail(format!("release {id} could not be started: {e}")))?;
        let launch = Launch::of(&self.layout, &manifest);
        let run_dir = self.layout.run();
        let with_private: Vec<Listener>;
        let listeners: &[Listener] = match private {
            None => &self.listeners,
            Some(p) => {
                let mut all = Vec::with_capacity(self.listeners.len() + 1);
                for l in &self.listeners {
                    let socket = l
                        .socket
                        .try_clone()
                        .map_err(|e| fail(format!("release {id} could not be started: {e}")))?;
                    all.push(Listener {
                        name: l.name.clone(),
                        socket,
                    });
                }
                all.push(p);
                with_private = all;
                &with_private
            }
        };
        let spawned = spawn(
            SpawnSpec {
                release: id,
                app: &self.cfg.app,
                binary: launch.program,
                args: launch.args,
                verify: launch.verify,
                workdir: launch.workdir,
                listeners,
                env,
                run_dir,
                run_as: self.run_as,
                trampoline: self.trampoline.clone(),
            },
            self.log.clone(),
        )
        .map_err(|e| fail(format!("release {id} could not be started: {e}")))?;

        let t0 = Instant::now();
        let pid = spawned.pid;
        let mut notify = spawned.notify;
        let mut child = spawned.child;
        let (exit_tx, mut exit_rx) = oneshot::channel::<std::io::Result<ExitStatus>>();
        tokio::spawn(async move {
            let _ = exit_tx.send(child.wait().await);
        });
        let waiting_for = match (&ready, check_at) {
            (Readiness::Http(path), Some(addr)) => {
                format!("GET {path} to answer 2xx on its private listener {addr}")
            }
            (Readiness::Exec(argv), _) => format!("{argv:?} to exit 0"),
            _ => "READY=1".to_string(),
        };
        self.log.write(
            id,
            "agent",
            &format!("started pid {pid}, waiting for {waiting_for}"),
        );
        // The HTTP check runs beside the wait below and ends with it.
        let checker = match (&ready, check_at) {
            (Readiness::Http(path), Some(addr)) => {
                let path = path.clone();
                Some(tokio::spawn(async move {
                    crate::readiness::wait_until_ready(addr, &path).await
                }))
            }
            (Readiness::Exec(_), _) => ready_command.map(|mut check| {
                check
                    .env
                    .push((blargh_proto::env::READY_PID.to_string(), pid.to_string()));
                tokio::spawn(check.wait_until_ready())
            }),
            _ => None,
        };
        let by_notify = checker.is_none();
        let stop_checking = checker.as_ref().map(|h| h.abort_handle());
        let by_http = async move {
            let finished = match checker {
                Some(h) => h.await.is_ok(),
                None => false,
            };
            if !finished {
                std::future::pending::<()>().await
            }
        };
        tokio::pin!(by_http);

        enum Outcome {
            Ready,
            Exited(String),
            Timeout,
        }
        let deadline = tokio::time::sleep(self.ready_timeout());
        tokio::pin!(deadline);
        let outcome = loop {
            tokio::select! {
                ev = notify.recv() => match ev {
                    Some(NotifyEvent::Ready) if by_notify => break Outcome::Ready,
                    Some(NotifyEvent::Certificate(c)) => self.note_certificate(c),
                    _ => {}
                },
                _ = &mut by_http => break Outcome::Ready,
                st = &mut exit_rx => break Outcome::Exited(describe_exit(st.ok().and_then(Result::ok))),
                _ = &mut deadline => break Outcome::Timeout,
            }
        };
        if let Some(h) = stop_checking {
            h.abort();
        }
        let ready_ms = t0.elapsed().as_millis() as u64;
        let failure = match outcome {
            Outcome::Ready => None,
            Outcome::Exited(how) => Some(format!("release {id} {how} before it was ready")),
            Outcome::Timeout => {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut exit_rx).await;
                Some(format!(
                    "release {id} did not signal readiness ({}) within {} s and was stopped; \
                     if it needs longer, raise the ready timeout",
                    match &ready {
                        Readiness::Notify => "READY=1 on NOTIFY_SOCKET".to_string(),
                        Readiness::Http(path) => format!(
                            "a 2xx answer to GET {path} on the listener named {}",
                            blargh_proto::env::READY_LISTENER
                        ),
                        Readiness::Exec(argv) => format!("{argv:?} exiting 0"),
                    },
                    self.ready_timeout().as_secs_f32()
                ))
            }
        };
        if let Some(message) = failure {
            // Let the output copiers catch the last lines the process wrote.
            for c in spawned.capture {
                let _ = tokio::time::timeout(Duration::from_secs(1), c).await;
            }
            self.log.write(id, "agent", &message);
            return Err(StartFailure {
                message,
                log: spawned.recent.lines(),
            });
        }
        self.log
            .write(id, "agent", &format!("pid {pid} ready after {ready_ms} ms"));

        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let (stopped_tx, stopped) = watch::channel(false);
        let (exited_tx, exited) = watch::channel(false);
        let proc = Proc {
            release: id.clone(),
            pid,
            generation,
            ready_at: Instant::now(),
            stopped,
            exited,
            handable: Handable::new(&notify, spawned.output),
        };
        self.watch(
            generation,
            id.clone(),
            pid,
            notify,
            Box::pin(async move { exit_rx.await.ok().and_then(Result::ok) }),
            (stopped_tx, exited_tx),
        );
        Ok((proc, ready_ms))
    }

    /// Watches a ready process until it exits: its `STOPPING=1` and `WATCHDOG=1` (a silent
    /// one is replaced as hung), then its exit, which goes to [`Self::on_exit`].
    fn watch(
        self: &Arc<Self>,
        generation: u64,
        release: ReleaseId,
        pid: u32,
        mut notify: NotifySocket,
        mut exit: ExitFuture,
        (stopped_tx, exited_tx): (watch::Sender<bool>, watch::Sender<bool>),
    ) {
        let me = self.clone();
        let watchdog = self.watchdog_timeout();
        tokio::spawn(async move {
            let mut notify_open = true;
            // The watchdog is armed by the first `WATCHDOG=1`: an app that never pings
            // (one without the library, which ignores WATCHDOG_USEC) is not watched.
            let mut last_ping: Option<Instant> = None;
            let mut hung = false;
            let status = loop {
                let expiry = match (watchdog, last_ping) {
                    (Some(w), Some(t)) if !hung => Some(t + w),
                    _ => None,
                };
                let expired = async move {
                    match expiry {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    ev = notify.recv(), if notify_open => match ev {
                        Some(NotifyEvent::Stopping) => { stopped_tx.send_replace(true); }
                        Some(NotifyEvent::Watchdog) => last_ping = Some(Instant::now()),
                        Some(NotifyEvent::Certificate(c)) => me.note_certificate(c),
                        Some(_) => {}
                        None => notify_open = false,
                    },
                    st = &mut exit => break st,
                    _ = expired => {
                        hung = true;
                        let silent = last_ping.map(|t| t.elapsed()).unwrap_or_default();
                        me.spawn_replace_hung(generation, release.clone(), pid, silent);
                    }
                }
            };
            stopped_tx.send_replace(true);
            exited_tx.send_replace(true);
            me.on_exit(generation, &release, pid, status);
        });
    }

    /// Tells `old` to drain and waits (briefly) until it stops accepting; SIGKILL follows at
    /// the drain deadline if it is still running.
    async fn drain(&self, old: Proc) {
        if *old.exited.borrow() {
            return;
        }
        let _ = kill(Pid::from_raw(old.pid as i32), Signal::SIGTERM);
        let mut stopped = old.stopped.clone();
        let _ = tokio::time::timeout(
            STOP_WAIT.min(self.drain_timeout()),
            stopped.wait_for(|s| *s),
        )
        .await;
        let mut exited = old.exited.clone();
        let deadline = self.drain_timeout();
        let log = self.log.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(deadline, exited.wait_for(|e| *e))
                .await
                .is_err()
            {
                log.write(
                    &old.release,
                    "agent",
                    &format!(
                        "pid {} still running at the drain deadline ({} s): SIGKILL",
                        old.pid,
                        deadline.as_secs_f32()
                    ),
                );
                let _ = killpg(Pid::from_raw(old.pid as i32), Signal::SIGKILL);
            }
        });
    }

    /// A watched process exited. If it was the current one, that is a crash: restart it
    /// with backoff, or give up when crashes come too fast.
    fn on_exit(
        self: &Arc<Self>,
        generation: u64,
        release: &ReleaseId,
        pid: u32,
        status: Option<ExitStatus>,
    ) {
        let how = describe_exit(status);
        self.log
            .write(release, "agent", &format!("pid {pid} {how}"));
        let mut st = self.state();
        if st.current.as_ref().map(|p| p.generation) != Some(generation) {
            return; // drained, replaced, or shut down: expected
        }
        let crashed = st.current.take();
        // A process that served for a whole crash window ended any crash loop before it.
        if crashed.is_some_and(|p| p.ready_at.elapsed() > self.cfg.crash_window) {
            st.loop_delay = None;
        }
        self.audit.record(
            "crash",
            Some(release),
            None,
            None,
            Some(&format!("pid {pid} {how}")),
        );
        if let Some(previous) = self.guard_tripped(&mut st, release) {
            st.app = AppState::Starting;
            drop(st);
            self.spawn_auto_rollback(release.clone(), previous);
            return;
        }
        self.note_crash(&mut st, release);
        drop(st);
        self.spawn_recover(release.clone());
    }

    /// Replaces process `pid` (generation `generation`) of `release`, which sent no
    /// `WATCHDOG=1` for `silent`: a fresh process of the same release is started and made
    /// current once ready (as an activation does, so the listening socket never lacks an
    /// acceptor), then the hung one is stopped. If no fresh process becomes ready, the hung
    /// one is stopped all the same and restarts go on as after a crash.
    async fn replace_hung(
        self: Arc<Self>,
        generation: u64,
        release: ReleaseId,
        pid: u32,
        silent: Duration,
    ) {
        let why = format!(
            "pid {pid} sent no WATCHDOG=1 for {:.1} s (hung)",
            silent.as_secs_f32()
        );
        let _guard = self.activation.lock().await;
        let current = |st: &State| {
            st.current
                .as_ref()
                .filter(|p| p.generation == generation)
                .cloned()
        };
        let Some(hung) = current(&self.state()) else {
            return; // it exited, or was replaced meanwhile
        };
        self.log.write(
            &release,
            "agent",
            &format!("{why}: starting a fresh process of release {release} to replace it"),
        );
        let started = self.start(&release).await;
        let detail = {
            let mut st = self.state();
            let still = current(&st).is_some();
            match started {
                Ok((proc, ready_ms)) => {
                    let detail = format!(
                        "{why}; replaced by pid {}, ready in {ready_ms} ms",
                        proc.pid
                    );
                    // Had it exited while the fresh one started, crash handling's restart
                    // finds the fresh one current and stands down.
                    st.current = Some(proc);
                    st.app = AppState::Running;
                    st.watchdog_restarts += 1;
                    detail
                }
                Err(f) => {
                    if still {
                        st.current = None;
                        self.note_crash(&mut st, &release);
                        self.spawn_recover(release.clone());
                    }
                    format!("{why}; a fresh process did not start: {}", f.message)
                }
            }
        };
        self.log.write(&release, "agent", &detail);
        self.audit.record(
            "watchdog",
            Some(&release),
            None,
            Some("agent"),
            Some(&detail),
        );
        stop_hung(&hung).await;
    }

    /// Counts a crash against the activation's guard; the release to go back to when the
    /// guard trips.
    fn guard_tripped(&self, st: &mut State, release: &str) -> Option<ReleaseId> {
        let g = st.guard.as_mut()?;
        if g.release != release || Instant::now() > g.until {
            st.guard = None;
            return None;
        }
        g.crashes += 1;
        if g.crashes < g.allowed {
            return None;
        }
        let previous = g.previous.clone();
        st.guard = None;
        Some(previous)
    }

    fn spawn_recover(self: &Arc<Self>, release: ReleaseId) {
        tokio::spawn(self.clone().recover(release));
    }

    fn spawn_replace_hung(
        self: &Arc<Self>,
        generation: u64,
        release: ReleaseId,
        pid: u32,
        silent: Duration,
    ) {
        tokio::spawn(self.clone().replace_hung(generation, release, pid, silent));
    }

    fn spawn_auto_rollback(self: &Arc<Self>, release: ReleaseId, previous: ReleaseId) {
        tokio::spawn(self.clone().auto_rollback(release, previous));
    }

    /// Goes back to `previous` after `release` crashed too soon after its activation.
    async fn auto_rollback(self: Arc<Self>, release: ReleaseId, previous: ReleaseId) {
        let why = format!("release {release} crashed soon after its activation");
        self.log.write(
            &release,
            "agent",
            &format!("{why}: rolling back to {previous}"),
        );
        match self
            .activate(
                &previous,
                Action::Rollback,
                "agent (automatic rollback)",
                None,
            )
            .await
        {
            Ok(_) => self.audit.record(
                "auto_rollback",
                Some(&previous),
                Some(&release),
                Some("agent"),
                Some(&why),
            ),
            Err(e) => {
                self.audit.record(
                    "failure",
                    Some(&previous),
                    Some(&release),
                    Some("agent (automatic rollback)"),
                    Some(&e.message),
                );
                // Keep trying the release that was current, as for any crash.
                let restart = {
                    let mut st = self.state();
                    let restart = st.current.is_none();
                    if restart {
                        self.note_crash(&mut st, &release);
                    }
                    restart
                };
                if restart {
                    tokio::spawn(self.clone().recover(release));
                }
            }
        }
    }

    /// Counts a crash and sets the state: `Starting`, or `CrashLoop` when there were too
    /// many too fast (then restarts go on every [`LOOP_RETRY_FIRST`], doubling up to
    /// [`LOOP_RETRY_MAX`]). True in a crash loop.
    fn note_crash(&self, st: &mut State, release: &str) -> bool {
        let now = Instant::now();
        st.crashes.push_back(now);
        while st
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.cfg.crash_window)
        {
            st.crashes.pop_front();
        }
        if st.loop_delay.is_none() && st.crashes.len() <= self.cfg.max_restarts {
            st.app = AppState::Starting;
            return false;
        }
        st.app = AppState::CrashLoop;
        let Some(delay) = st.loop_delay.map(next_loop_delay) else {
            st.loop_delay = Some(LOOP_RETRY_FIRST);
            let detail = format!(
                "{} crashes within {} s: a crash loop; retrying every {} s, then less often \
                 (up to every {} s) until it starts. Deploy a fix or roll back; see its \
                 output with `logs`",
                st.crashes.len(),
                self.cfg.crash_window.as_secs(),
                LOOP_RETRY_FIRST.as_secs(),
                LOOP_RETRY_MAX.as_secs()
            );
            self.log.write(release, "agent", &detail);
            self.audit
                .record("crash_loop", Some(release), None, None, Some(&detail));
            return true;
        };
        st.loop_delay = Some(delay);
        self.log.write(
            release,
            "agent",
            &format!("still crashing; next attempt in {} s", delay.as_secs()),
        );
        true
    }

    /// Restarts `release` until it is ready, backing off between attempts (in a crash loop,
    /// every [`LOOP_RETRY_FIRST`] doubling up to [`LOOP_RETRY_MAX`]), unless another
    /// activation takes over.
    async fn recover(self: Arc<Self>, release: ReleaseId) {
        loop {
            let delay = {
                let st = self.state();
                st.loop_delay.unwrap_or_else(|| backoff(st.crashes.len()))
            };
            tokio::time::sleep(delay).await;
            let _guard = self.activation.lock().await;
            {
                let st = self.state();
                if st.current.is_some()
                    || !matches!(st.app, AppState::Starting | AppState::CrashLoop)
                {
                    return;
                }
            }
            match self.start(&release).await {
                Ok((proc, ready_ms)) => {
                    let pid = proc.pid;
                    let mut st = self.state();
                    let first = st.crashes.is_empty();
                    st.current = Some(proc);
                    st.app = AppState::Running;
                    if !first {
                        st.restarts += 1;
                    }
                    drop(st);
                    let event = if first { "start" } else { "restart" };
                    self.audit.record(
                        event,
                        Some(&release),
                        None,
                        None,
                        Some(&format!("pid {pid}, ready in {ready_ms} ms")),
                    );
                    return;
                }
                Err(f) => {
                    self.audit
                        .record("failure", Some(&release), None, None, Some(&f.message));
                    let mut st = self.state();
                    if let Some(previous) = self.guard_tripped(&mut st, &release) {
                        drop(st);
                        self.spawn_auto_rollback(release, previous);
                        return;
                    }
                    self.note_crash(&mut st, &release);
                }
            }
        }
    }
}

/// Delay before restart attempt after `crashes` recent crashes: the first at once, then
/// 250 ms doubling up to 10 s.
pub fn backoff(crashes: usize) -> Duration {
    match crashes {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(250u64.saturating_mul(1 << (n - 2).min(6)))
            .min(Duration::from_secs(10)),
    }
}

/// The crash-loop wait after `delay`: doubled, at most [`LOOP_RETRY_MAX`].
pub fn next_loop_delay(delay: Duration) -> Duration {
    (delay * 2).min(LOOP_RETRY_MAX)
}

/// Stops a hung process: SIGTERM, and SIGKILL to its group if it has not exited within
/// [`HUNG_STOP_WAIT`].
async fn stop_hung(p: &Proc) {
    if *p.exited.borrow() {
        return;
    }
    let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
    let mut exited = p.exited.clone();
    if tokio::time::timeout(HUNG_STOP_WAIT, exited.wait_for(|e| *e))
        .await
        .is_err()
    {
        let _ = killpg(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
    }
}

fn describe_exit(status: Option<ExitStatus>) -> String {
    match status {
        None => "exited (status unknown)".to_string(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => {
                let name = Signal::try_from(sig)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| sig.to_string());
                format!("was killed by signal {sig} ({name})")
            }
            _ => format!("ended ({s})"),
        },
    }
}

fn plain_error(message: String) -> ControlError {
    ControlError {
        message,
        release_log: Vec::new(),
    }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The settings saved by `configure`, if any: `None` when the file does not exist.
fn load_settings(path: &std::path::Path) -> std::io::Result<Option<AgentSettings>> {
    let bad = |why: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}: {why}; fix it, or delete it to use the agent's command-line settings \
                 (the next deploy writes it again)",
                path.display()
            ),
        )
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let settings: AgentSettings = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    settings.check().map_err(bad)?;
    Ok(Some(settings))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename: readers see the
/// old file or the new one, never a part.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.new");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_settings_override_the_flags_and_bad_ones_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        assert_eq!(
            load_settings(&path).unwrap(),
            None,
            "no file: the flags' settings"
        );
        let s = AgentSettings {
            ready_timeout_ms: 1_500,
            drain_timeout_ms: 700,
            keep_releases: 3,
            watchdog_timeout_ms: 0,
            ready: blargh_proto::control::Readiness::Http("/up".into()),
            tls: Some(blargh_proto::control::TlsSettings {
                domains: vec!["shop.example".into()],
                contact: Some("ops@shop.example".into()),
                directory: None,
                ca_file: Some("/etc/ssl/ca.pem".into()),
            }),
        };
        write_atomic(&path, serde_json::to_string(&s).unwrap().as_bytes()).unwrap();
        assert_eq!(load_settings(&path).unwrap(), Some(s.clone()));
        assert!(!dir.path().join("settings.json.new").exists());
        let bad = AgentSettings {
            keep_releases: 1,
            ..s.clone()
        };
        write_atomic(&path, serde_json::to_string(&bad).unwrap().as_bytes()).unwrap();
        let e = load_settings(&path).unwrap_err().to_string();
        assert!(
            e.contains("settings.json") && e.contains("keep_releases = 1"),
            "{e}"
        );
        assert!(e.contains("delete it"), "{e}");
    }

    #[test]
    fn backoff_starts_at_once_and_is_capped() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(250));
        assert_eq!(backoff(3), Duration::from_millis(500));
        assert_eq!(backoff(40), Duration::from_secs(10));
    }

    #[test]
    fn crash_loop_retries_double_up_to_a_minute() {
        let mut d = LOOP_RETRY_FIRST;
        let mut seen = vec![d.as_secs()];
        for _ in 0..7 {
            d = next_loop_delay(d);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, [2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn exits_are_described_for_people() {
        assert_eq!(
            describe_exit(Some(ExitStatus::from_raw(3 << 8))),
            "exited with status 3"
        );
        assert_eq!(
            describe_exit(Some(ExitStatus::from_raw(9))),
            "was killed by signal 9 (SIGKILL)"
        );
    }
}
