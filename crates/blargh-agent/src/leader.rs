//! The agent's main thread (the thread-group leader) and the work only it may do: fork the
//! releases and exec a newer agent.
//!
//! A release's parent-death signal fires when the *thread* that forked it ends, and an
//! `execve` ends every thread but the one that calls it (which then takes the leader's
//! place). So the releases are forked by the leader, and the upgrade's exec is called by the
//! leader: across the exec no thread that forked a release ends, and the releases live on as
//! the new agent's children (same pid). [`lead`] makes the calling thread that leader;
//! without it (a library user, a unit test) a long-lived thread of its own forks, as before.

use std::io;
use std::ops::ControlFlow;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// A piece of work for the leader. `Break` ends [`Leader::serve`] with that result.
type Job = Box<dyn FnOnce() -> ControlFlow<Result<(), String>> + Send>;

static JOBS: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
static LEADING: AtomicBool = AtomicBool::new(false);

/// The receiving end of the leader's work queue; see [`lead`].
#[derive(Debug)]
pub struct Leader {
    jobs: mpsc::Receiver<Job>,
}

/// Makes the calling thread the one that forks and execs. Call it once, from the main
/// thread, before anything forks; then call [`Leader::serve`] on the same thread.
pub fn lead() -> io::Result<Leader> {
    let (tx, jobs) = mpsc::channel();
    JOBS.set(tx).map_err(|_| {
        io::Error::other("the agent's fork thread was started before the main thread could lead")
    })?;
    LEADING.store(true, Ordering::SeqCst);
    Ok(Leader { jobs })
}

/// True when the forks happen on the main thread ([`lead`] was called), which an in-place
/// upgrade requires.
pub fn leading() -> bool {
    LEADING.load(Ordering::SeqCst)
}

impl Leader {
    /// Runs jobs, within `runtime` (forked children are reaped by it), until one ends the
    /// loop; returns that job's result.
    pub fn serve(self, runtime: &tokio::runtime::Runtime) -> Result<(), String> {
        let _in_runtime = runtime.enter();
        for job in self.jobs {
            if let ControlFlow::Break(result) = job() {
                return result;
            }
        }
        Err("the agent's work queue closed".to_string())
    }
}

fn sender() -> &'static mpsc::Sender<Job> {
    JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("blargh-fork".into())
            .spawn(move || {
                for job in rx {
                    if job().is_break() {
                        return;
                    }
                }
            })
            .expect("start the agent's fork thread");
        tx
    })
}

/// Runs `f` on the leader and waits for its result.
pub fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let (reply, answer) = mpsc::sync_channel(1);
    let gone = || io::Error::other("the agent's main thread is gone; restart the agent");
    sender()
        .send(Box::new(move || {
            let _ = reply.send(f());
            ControlFlow::Continue(())
        }))
        .map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())
}

/// Ends [`Leader::serve`] with `result` once the jobs queued before it are done.
pub fn finish(result: Result<(), String>) {
    let _ = sender().send(Box::new(move || ControlFlow::Break(result)));
}
