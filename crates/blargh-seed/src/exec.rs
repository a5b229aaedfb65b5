//! Running a plan: each step's read-only check, then its apply when needed, through an
//! [`Executor`] (SSH, or this machine). A dry run runs only the checks, so it reports what
//! would change and touches nothing.

use std::collections::HashSet;
use std::future::Future;
use std::io;

use crate::plan::{Plan, Step, When};

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
        if let (Some(bytes), Some(mut si)) = (stdin, child.stdin.take()) {
            si.write_all(bytes).await?;
        }
        let out = child.wait_with_output().await?;
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

/// Runs `plan` on `exec`; calls `report` after each step. Stops at the first failure.
pub async fn run_plan<E: Executor>(
    exec: &mut E,
    plan: &Plan,
    mode: Mode,
    mut report: impl FnMut(&Step, Outcome),
) -> Result<Vec<Outcome>, StepError> {
    let mut changed: HashSet<&str> = HashSet::new();
    let mut outcomes = Vec::new();
    for step in &plan.steps {
        let needed = match &step.when {
            When::CheckFails => match &step.check {
                Some(check) => {
                    let out = exec
                        .run(check, step.root, None)
                        .await
                        .map_err(|e| StepError {
                            step: step.title.clone(),
                            message: format!("cannot run its check: {e}"),
                        })?;
                    !out.success()
                }
                None => true,
            },
            When::Changed(keys) => keys.iter().any(|k| changed.contains(k.as_str())),
        };
        let outcome = match (needed, &step.when, mode) {
            (false, When::Changed(_), _) => Outcome::NotNeeded,
            (false, _, _) => Outcome::Unchanged,
            (true, _, Mode::DryRun) => Outcome::WouldChange,
            (true, _, Mode::Apply) => {
                let stdin = step.stdin.as_ref().map(|c| c.bytes.as_slice());
                let out = exec
                    .run(&step.apply, step.root, stdin)
                    .await
                    .map_err(|e| StepError {
                        step: step.title.clone(),
                        message: e.to_string(),
                    })?;
                if !out.success() {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    return Err(StepError {
                        step: step.title.clone(),
                        message: format!(
                            "exit status {}\n{}{}",
                            out.status,
                            stderr.trim_end(),
                            if stdout.trim().is_empty() {
                                String::new()
                            } else {
                                format!("\n{}", stdout.trim_end())
                            }
                        ),
                    });
                }
                Outcome::Changed
            }
        };
        if matches!(outcome, Outcome::Changed | Outcome::WouldChange) {
            changed.insert(step.key.as_str());
        }
        report(step, outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Content;

    fn plan_in(dir: &std::path::Path) -> Plan {
        let file = dir.join("conf");
        let mut plan = Plan::default();
        let me = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        let me = String::from_utf8(me.stdout).unwrap().trim().to_string();
        let grp = std::process::Command::new("id")
            .arg("-gn")
            .output()
            .unwrap();
        let grp = String::from_utf8(grp.stdout).unwrap().trim().to_string();
        plan.push(
            Step::file(
                "conf",
                file.to_str().unwrap(),
                Content::new(b"a=1\n".to_vec(), "config"),
                0o640,
                &me,
                &grp,
            )
            .as_user(),
        );
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

    #[tokio::test]
    async fn a_second_run_changes_nothing_and_a_dry_run_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_in(dir.path());
        let mut exec = LocalExecutor;

        let dry = run_plan(&mut exec, &plan, Mode::DryRun, |_, _| {})
            .await
            .unwrap();
        assert_eq!(dry, vec![Outcome::WouldChange, Outcome::WouldChange]);
        assert!(!dir.path().join("conf").exists(), "dry run wrote nothing");

        let first = run_plan(&mut exec, &plan, Mode::Apply, |_, _| {})
            .await
            .unwrap();
        assert_eq!(first, vec![Outcome::Changed, Outcome::Changed]);
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

        let second = run_plan(&mut exec, &plan, Mode::Apply, |_, _| {})
            .await
            .unwrap();
        assert_eq!(second, vec![Outcome::Unchanged, Outcome::NotNeeded]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("restarted")).unwrap(),
            "x\n"
        );

        // Someone edits the file by hand: the next run puts it back and restarts.
        std::fs::write(dir.path().join("conf"), "a=2\n").unwrap();
        let third = run_plan(&mut exec, &plan, Mode::Apply, |_, _| {})
            .await
            .unwrap();
        assert_eq!(third, vec![Outcome::Changed, Outcome::Changed]);
    }

    #[tokio::test]
    async fn a_failing_step_names_itself_and_shows_stderr() {
        let mut plan = Plan::default();
        plan.push(
            Step::ensure("x", "thing", "false", "echo 'no space left' >&2; exit 4").as_user(),
        );
        let err = run_plan(&mut LocalExecutor, &plan, Mode::Apply, |_, _| {})
            .await
            .unwrap_err();
        assert_eq!(err.step, "thing");
        assert!(
            err.to_string().contains("exit status 4\nno space left"),
            "{err}"
        );
    }
}
