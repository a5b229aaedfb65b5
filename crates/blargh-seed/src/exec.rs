//! Running a plan through an [`Executor`] (SSH, or this machine) in few round trips: all
//! read-only checks in one exec, then the applies batched (see [`run_plan`]). A dry run
//! runs only the checks, so it reports what would change and touches nothing.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;

use crate::batch::{self, Action, Applied, ApplyItem};
use crate::plan::{Plan, Step, When};
use crate::transfer::{self, Payload};

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit status (-1 when killed or unknown).
    pub status: i32,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Runs sh scripts on a host.
pub trait Executor {
    /// Runs `script` with `sh`, as root when `root` is set (through `sudo -n` if the
    /// executor's user is not root), with `stdin` as its standard input.
    fn run(
        &mut self,
        script: &str,
        root: bool,
        stdin: Option<&[u8]>,
    ) -> impl Future<Output = io::Result<Output>> + Send;
}

/// Runs scripts on this machine with `sh -c`, as the current user (no sudo).
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalExecutor;

impl Executor for LocalExecutor {
    async fn run(&mut self, script: &str, _root: bool, stdin: Option<&[u8]>) -> io::Result<Output> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        // Written while the output is read, so neither side waits on a full pipe; a script
        // that exits without reading all of it is not an error here (its status tells).
        let writer = match (stdin, child.stdin.take()) {
            (Some(bytes), Some(mut si)) => {
                let bytes = bytes.to_vec();
                Some(tokio::spawn(async move {
                    match si.write_all(&bytes).await {
                        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
                        _ => Ok(()),
                    }
                }))
            }
            _ => None,
        };
        let out = child.wait_with_output().await?;
        if let Some(w) = writer {
            w.await.map_err(io::Error::other)??;
        }
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// Whether a run may change the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run checks and applies.
    Apply,
    /// Run checks only.
    DryRun,
}

/// What happened to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Already as wanted.
    Unchanged,
    /// Applied.
    Changed,
    /// Would be applied (dry run).
    WouldChange,
    /// Tied to steps that did not change: not needed.
    NotNeeded,
}

/// A step that failed.
#[derive(Debug)]
pub struct StepError {
    /// Its title.
    pub step: String,
    /// What went wrong, with the host's stderr.
    pub message: String,
}

impl std::error::Error for StepError {}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step \"{}\" failed: {}", self.step, self.message)
    }
}

/// How content may travel to the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transport {
    /// The host has `gzip`: large content travels compressed.
    pub gzip: bool,
}

/// An apply script may not grow past this (it travels as one command-line argument, which
/// Linux limits to 128 KiB).
const SCRIPT_MAX: usize = 96 * 1024;

/// Runs `plan` on `exec`; calls `report` after each step. Stops at the first failure.
///
/// Few round trips: one exec runs every check and reports each verdict; then, from the
/// first step that needs applying, consecutive steps run in one apply script (a new one
/// only where the `root` flag changes, where a second content would need stdin, or where
/// the script would grow too long). In that script a step whose check failed is applied
/// (applies are idempotent); a step whose check passed is checked again, since an earlier
/// apply may have undone it (a restarted agent is not answering yet); a step tied to
/// others applies only if one of them changed. A dry run is the check exec alone.
pub async fn run_plan<E: Executor>(
    exec: &mut E,
    plan: &Plan,
    mode: Mode,
    transport: Transport,
    mut report: impl FnMut(&Step, Outcome),
) -> Result<Vec<Outcome>, StepError> {
    let steps: Vec<(usize, &Step)> = plan.steps.iter().enumerate().collect();
    let needed = run_checks(exec, &steps).await?;
    let mut outcomes = Vec::new();
    let mut changed: HashSet<String> = HashSet::new();

    // Steps up to the first one to apply (all of them in a dry run) follow from the checks.
    let first = match mode {
        Mode::DryRun => steps.len(),
        Mode::Apply => (0..steps.len())
            .find(|&i| steps[i].1.when == When::CheckFails && needed[i])
            .unwrap_or(steps.len()),
    };
    for &(i, step) in &steps[..first] {
        let outcome = match &step.when {
            When::CheckFails if needed[i] => Outcome::WouldChange,
            When::CheckFails => Outcome::Unchanged,
            When::Changed(keys) if keys.iter().any(|k| changed.contains(k)) => Outcome::WouldChange,
            When::Changed(_) => Outcome::NotNeeded,
        };
        if outcome == Outcome::WouldChange {
            changed.insert(step.key.clone());
        }
        report(step, outcome);
        outcomes.push(outcome);
    }

    let keys: HashMap<&str, usize> = steps.iter().map(|(i, s)| (s.key.as_str(), *i)).collect();
    let mut next = first;
    while next < steps.len() {
        let (items, end) = next_apply_script(&steps, &needed, next, transport)?;
        let mut in_script = HashSet::new();
        let items: Vec<ApplyItem<'_>> = items
            .into_iter()
            .map(|mut item| {
                if let Some((deps, already)) =
                    batch::dependencies(item.step, &keys, &in_script, &changed)
                {
                    item.action = Action::IfChanged { deps, already };
                }
                in_script.insert(item.index);
                item
            })
            .collect();
        let script = batch::apply_script(&items);
        let root = items[0].step.root;
        let stdin = items
            .iter()
            .filter_map(|it| it.payload.as_ref())
            .find(|p| p.on_stdin())
            .map(|p| p.stdin_bytes());
        let out = exec
            .run(&script, root, stdin)
            .await
            .map_err(|e| StepError {
                step: items[0].step.title.clone(),
                message: format!("cannot run it on the host: {e}"),
            })?;
        let reported = batch::parse_apply(&String::from_utf8_lossy(&out.stdout));
        for item in &items {
            let found = reported.iter().find(|(i, _)| *i == item.index);
            let outcome = match found.map(|(_, a)| a) {
                Some(Applied::Ok) => Outcome::Unchanged,
                Some(Applied::Changed) => Outcome::Changed,
                Some(Applied::NotNeeded) => Outcome::NotNeeded,
                Some(Applied::Failed { status, output }) => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    return Err(StepError {
                        step: item.step.title.clone(),
                        message: format!(
                            "exit status {status}\n{}{}",
                            output.trim_end(),
                            if stderr.trim().is_empty() {
                                String::new()
                            } else {
                                format!("\n{}", stderr.trim_end())
                            }
                        ),
                    });
                }
                None => {
                    return Err(StepError {
                        step: item.step.title.clone(),
                        message: format!(
                            "the host stopped before reporting it (the script ended with status {})\n{}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim_end()
                        ),
                    });
                }
            };
            if outcome == Outcome::Changed {
                changed.insert(item.step.key.clone());
            }
            report(item.step, outcome);
            outcomes.push(outcome);
        }
        next = end;
    }
    Ok(outcomes)
}

/// Runs every check in one exec; for each step, whether it needs applying (its check
/// failed, or it has none). On-change steps get `false` here.
async fn run_checks<E: Executor>(
    exec: &mut E,
    steps: &[(usize, &Step)],
) -> Result<Vec<bool>, StepError> {
    let mut needed: Vec<bool> = steps
        .iter()
        .map(|(_, s)| s.when == When::CheckFails && s.check.is_none())
        .collect();
    let checked: Vec<(usize, &Step)> = steps
        .iter()
        .filter(|(_, s)| s.when == When::CheckFails && s.check.is_some())
        .copied()
        .collect();
    let Some((_, first)) = checked.first() else {
        return Ok(needed);
    };
    let (script, root) = batch::check_script(&checked);
    let out = exec.run(&script, root, None).await.map_err(|e| StepError {
        step: first.title.clone(),
        message: format!("cannot run the checks on the host: {e}"),
    })?;
    let verdicts = batch::parse_checks(&String::from_utf8_lossy(&out.stdout));
    for (i, step) in checked {
        match verdicts.get(&i) {
            Some(status) => needed[i] = *status != 0,
            None => {
                return Err(StepError {
                    step: step.title.clone(),
                    message: format!(
                        "its check did not report: the check script ended early with status {}\n{}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim_end()
                    ),
                });
            }
        }
    }
    Ok(needed)
}

/// The items of the apply script that starts at plan index `start`, and the index after
/// its last item. Dependencies are filled in later (they depend on earlier scripts).
fn next_apply_script<'a>(
    steps: &[(usize, &'a Step)],
    needed: &[bool],
    start: usize,
    transport: Transport,
) -> Result<(Vec<ApplyItem<'a>>, usize), StepError> {
    let root = steps[start].1.root;
    let mut items = Vec::new();
    let mut stdin_used = false;
    let mut size = 0;
    let mut i = start;
    while i < steps.len() {
        let step = steps[i].1;
        if step.root != root {
            break;
        }
        let action = match (&step.when, needed[i]) {
            (When::Changed(_), _) => Action::IfChanged {
                deps: Vec::new(),
                already: false,
            },
            (When::CheckFails, true) => Action::Apply,
            // Content is sent only for steps known to need it; only its own step writes
            // a file, so no earlier apply can undo it.
            (When::CheckFails, false) if step.stdin.is_some() => Action::Keep,
            (When::CheckFails, false) => Action::Recheck,
        };
        let payload = match (&action, &step.stdin) {
            (Action::Apply, Some(content)) => Some(
                transfer::payload(content, transport.gzip).map_err(|e| StepError {
                    step: step.title.clone(),
                    message: format!("cannot prepare its content for sending: {e}"),
                })?,
            ),
            _ => None,
        };
        let on_stdin = payload.as_ref().is_some_and(Payload::on_stdin);
        let grows = 400
            + step.apply.len()
            + step.check.as_ref().map_or(0, String::len)
            + match &payload {
                Some(Payload::Inline(t)) => t.len() + t.len() / 8,
                _ => 0,
            };
        if !items.is_empty() && ((on_stdin && stdin_used) || size + grows > SCRIPT_MAX) {
            break;
        }
        stdin_used |= on_stdin;
        size += grows;
        items.push(ApplyItem {
            index: steps[i].0,
            step,
            action,
            payload,
        });
        i += 1;
    }
    Ok((items, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Content;

    /// Runs scripts on this machine and records each exec (script, root, stdin).
    #[derive(Default)]
    struct Recorder {
        execs: Vec<(String, bool, Vec<u8>)>,
    }

    impl Executor for Recorder {
        async fn run(
            &mut self,
            script: &str,
            root: bool,
            stdin: Option<&[u8]>,
        ) -> io::Result<Output> {
            self.execs
                .push((script.to_string(), root, stdin.unwrap_or_default().to_vec()));
            LocalExecutor.run(script, root, stdin).await
        }
    }

    fn me() -> (String, String) {
        let id = |flag: &str| {
            let out = std::process::Command::new("id").arg(flag).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        (id("-un"), id("-gn"))
    }

    fn file_step(key: &str, path: &std::path::Path, bytes: Vec<u8>) -> Step {
        let (user, group) = me();
        Step::file(
            key,
            path.to_str().unwrap(),
            Content::new(bytes, key),
            0o640,
            &user,
            &group,
        )
        .as_user()
    }

    fn plan_in(dir: &std::path::Path) -> Plan {
        let mut plan = Plan::default();
        plan.push(file_step("conf", &dir.join("conf"), b"a=1\n".to_vec()));
        let marker = dir.join("restarted");
        plan.push(
            Step::on_change(
                "restart",
                "restart",
                vec!["conf".into()],
                format!("echo x >> {}", marker.display()),
            )
            .as_user(),
        );
        plan
    }

    async fn run(exec: &mut Recorder, plan: &Plan, mode: Mode, gzip: bool) -> Vec<Outcome> {
        run_plan(exec, plan, mode, Transport { gzip }, |_, _| {})
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_second_run_changes_nothing_and_a_dry_run_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_in(dir.path());
        let mut exec = Recorder::default();

        let dry = run(&mut exec, &plan, Mode::DryRun, false).await;
        assert_eq!(dry, vec![Outcome::WouldChange, Outcome::WouldChange]);
        assert!(!dir.path().join("conf").exists(), "dry run wrote nothing");
        assert_eq!(exec.execs.len(), 1, "a dry run is one exec of checks");

        let first = run(&mut exec, &plan, Mode::Apply, false).await;
        assert_eq!(first, vec![Outcome::Changed, Outcome::Changed]);
        assert_eq!(exec.execs.len(), 3, "checks, then one apply script");
        assert!(
            exec.execs[2].2.is_empty(),
            "short text travels in the script"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("conf")).unwrap(),
            "a=1\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("conf"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);

        let second = run(&mut exec, &plan, Mode::Apply, false).await;
        assert_eq!(second, vec![Outcome::Unchanged, Outcome::NotNeeded]);
        assert_eq!(exec.execs.len(), 4, "nothing to change: the checks alone");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("restarted")).unwrap(),
            "x\n"
        );

        // Someone edits the file by hand: the next run puts it back and restarts.
        std::fs::write(dir.path().join("conf"), "a=2\n").unwrap();
        let third = run(&mut exec, &plan, Mode::Apply, false).await;
        assert_eq!(third, vec![Outcome::Changed, Outcome::Changed]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("restarted")).unwrap(),
            "x\nx\n"
        );
    }

    #[tokio::test]
    async fn a_failing_step_names_itself_shows_its_output_and_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let before = dir.path().join("before");
        let after = dir.path().join("after");
        let mut plan = Plan::default();
        plan.push(
            Step::ensure(
                "a",
                "first",
                format!("[ -f {} ]", before.display()),
                format!("touch {}", before.display()),
            )
            .as_user(),
        );
        plan.push(
            Step::ensure(
                "x",
                "thing",
                "false",
                "echo 'trying'; echo 'no space left' >&2; exit 4",
            )
            .as_user(),
        );
        plan.push(
            Step::ensure(
                "b",
                "last",
                format!("[ -f {} ]", after.display()),
                format!("touch {}", after.display()),
            )
            .as_user(),
        );
        let mut seen = Vec::new();
        let mut exec = Recorder::default();
        let err = run_plan(
            &mut exec,
            &plan,
            Mode::Apply,
            Transport::default(),
            |s, o| seen.push((s.key.clone(), o)),
        )
        .await
        .unwrap_err();
        assert_eq!(err.step, "thing");
        assert!(
            err.to_string()
                .contains("exit status 4\ntrying\nno space left"),
            "{err}"
        );
        assert_eq!(seen, vec![("a".to_string(), Outcome::Changed)]);
        assert!(before.exists(), "the steps before it stay applied");
        assert!(!after.exists(), "the steps after it do not run");
        assert_eq!(exec.execs.len(), 2, "checks, then one apply script");
    }

    #[tokio::test]
    async fn a_step_undone_by_an_earlier_apply_is_applied_again() {
        // `b` holds when the checks run, but `a`'s apply undoes it (as a restart makes an
        // agent stop answering for a moment): the apply script checks `b` again.
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = (dir.path().join("x"), dir.path().join("y"));
        std::fs::write(&y, "").unwrap();
        let mut plan = Plan::default();
        plan.push(
            Step::ensure(
                "a",
                "a",
                format!("[ -f {} ]", x.display()),
                format!("rm {}; touch {}", y.display(), x.display()),
            )
            .as_user(),
        );
        plan.push(
            Step::ensure(
                "b",
                "b",
                format!("[ -f {} ]", y.display()),
                format!("touch {}", y.display()),
            )
            .as_user(),
        );
        let mut exec = Recorder::default();
        let outcomes = run(&mut exec, &plan, Mode::Apply, false).await;
        assert_eq!(outcomes, vec![Outcome::Changed, Outcome::Changed]);
        assert!(y.exists());
        // And when `a` leaves it alone, it is reported unchanged.
        std::fs::remove_file(&x).unwrap();
        let mut plan = plan.clone();
        plan.steps[0].apply = format!("touch {}", x.display());
        let outcomes = run(&mut exec, &plan, Mode::Apply, false).await;
        assert_eq!(outcomes, vec![Outcome::Changed, Outcome::Unchanged]);
    }

    #[tokio::test]
    async fn on_change_steps_follow_changes_across_scripts() {
        // A user step, then root steps: two apply scripts; the restart in the second runs
        // only when the first changed the file it depends on.
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("restarted");
        let mut plan = Plan::default();
        plan.push(file_step(
            "conf",
            &dir.path().join("conf"),
            b"a=1\n".to_vec(),
        ));
        plan.push(Step::ensure("other", "other", "false", "true"));
        plan.push(Step::on_change(
            "restart",
            "restart",
            vec!["conf".into()],
            format!("echo x >> {}", marker.display()),
        ));
        let mut exec = Recorder::default();
        let outcomes = run(&mut exec, &plan, Mode::Apply, false).await;
        assert_eq!(
            outcomes,
            vec![Outcome::Changed, Outcome::Changed, Outcome::Changed]
        );
        assert_eq!(exec.execs.len(), 3, "checks, user script, root script");
        assert!(!exec.execs[1].1 && exec.execs[2].1);
        let outcomes = run(&mut exec, &plan, Mode::Apply, false).await;
        assert_eq!(
            outcomes,
            vec![Outcome::Unchanged, Outcome::Changed, Outcome::NotNeeded]
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x\n");
    }

    fn binary(len: usize, seed: u8) -> Vec<u8> {
        let mut b = vec![0x7f, b'E', b'L', b'F', 0, seed];
        b.extend((0..len).map(|i| (i % 251) as u8 ^ seed));
        b
    }

    #[tokio::test]
    async fn binaries_travel_on_stdin_compressed_one_per_script() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (binary(300_000, 1), binary(200_000, 2));
        let mut plan = Plan::default();
        plan.push(file_step("one", &dir.path().join("one"), one.clone()));
        plan.push(file_step(
            "unit",
            &dir.path().join("unit"),
            b"[Unit]\n".to_vec(),
        ));
        plan.push(file_step("two", &dir.path().join("two"), two.clone()));
        let mut exec = Recorder::default();
        let outcomes = run(&mut exec, &plan, Mode::Apply, true).await;
        assert_eq!(outcomes, vec![Outcome::Changed; 3]);
        assert_eq!(std::fs::read(dir.path().join("one")).unwrap(), one);
        assert_eq!(std::fs::read(dir.path().join("two")).unwrap(), two);
        assert_eq!(exec.execs.len(), 3, "checks, then one script per binary");
        let sent = &exec.execs[1].2;
        assert_eq!(&sent[..2], &[0x1f, 0x8b], "gzip on the wire");
        assert!(sent.len() < one.len() / 10, "{} bytes", sent.len());
        assert!(exec.execs[1].0.contains("gzip -dc | ("));

        // Without gzip on the host: the bytes as they are.
        let mut plan = Plan::default();
        plan.push(file_step(
            "three",
            &dir.path().join("three"),
            binary(100_000, 3),
        ));
        let outcomes = run(&mut exec, &plan, Mode::Apply, false).await;
        assert_eq!(outcomes, vec![Outcome::Changed]);
        assert_eq!(exec.execs.last().unwrap().2, binary(100_000, 3));
        assert_eq!(
            std::fs::read(dir.path().join("three")).unwrap(),
            binary(100_000, 3)
        );
    }

    #[tokio::test]
    async fn a_check_script_cut_short_names_the_first_step_without_a_verdict() {
        let mut plan = Plan::default();
        plan.push(Step::ensure("a", "a", "true", "true").as_user());
        plan.push(Step::ensure("b", "b", "kill -9 $$", "true").as_user());
        let err = run_plan(
            &mut Recorder::default(),
            &plan,
            Mode::DryRun,
            Transport::default(),
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert_eq!(err.step, "b");
        assert!(err.message.contains("did not report"), "{err}");
    }
}
