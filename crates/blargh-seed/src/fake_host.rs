//! A simulated host for plan tests: the executor's real scripts run under `sh` on this
//! machine, with each step's check answered from a chosen set of failing steps and each
//! apply replaced by a line in a log, so a test sees which steps a plan applies on a host
//! in a given state, and how many execs it took, without touching the machine.

use std::collections::HashSet;
use std::io;

use crate::exec::{Executor, LocalExecutor, Output};
use crate::plan::Plan;
use crate::shell::quote;

/// A host whose state is "these steps' checks fail".
pub struct FakeHost {
    plan: Plan,
    failing: HashSet<String>,
    log: tempfile::NamedTempFile,
    /// Every exec: the script as the executor received it, and whether it ran as root.
    pub execs: Vec<(String, bool)>,
}

impl FakeHost {
    /// A host running `plan` where the checks of `failing` (step keys) fail.
    pub fn new(plan: &Plan, failing: &[&str]) -> FakeHost {
        for key in failing {
            assert!(
                plan.steps.iter().any(|s| s.key == *key),
                "no step {key} in the plan"
            );
        }
        let mut seen = HashSet::new();
        for s in &plan.steps {
            assert!(seen.insert(s.apply.clone()), "two steps apply {}", s.apply);
            if let Some(c) = &s.check {
                assert!(seen.insert(c.clone()), "two steps check {c}");
            }
        }
        FakeHost {
            plan: plan.clone(),
            failing: failing.iter().map(|k| k.to_string()).collect(),
            log: tempfile::NamedTempFile::new().unwrap(),
            execs: Vec::new(),
        }
    }

    /// The keys of the steps applied so far, in order.
    pub fn applied(&self) -> Vec<String> {
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Executor for FakeHost {
    async fn run(&mut self, script: &str, root: bool, stdin: Option<&[u8]>) -> io::Result<Output> {
        self.execs.push((script.to_string(), root));
        let mut s = script.to_string();
        let log = quote(self.log.path().to_str().unwrap());
        for step in &self.plan.steps {
            if let Some(check) = &step.check {
                let verdict = if self.failing.contains(&step.key) {
                    "false"
                } else {
                    "true"
                };
                s = s.replace(&format!("(\n{check}\n)"), &format!("(\n{verdict}\n)"));
            }
            s = s.replace(
                &format!("(\n{}\n)", step.apply),
                &format!("(\necho {} >> {log}\n)", quote(&step.key)),
            );
        }
        LocalExecutor.run(&s, root, stdin).await
    }
}
