//! A plan: the ordered, idempotent steps that bring a host to a desired state.
//!
//! Each step has a read-only `check` (exit 0 = already in the desired state) and an `apply`
//! script; a step may carry file content for `apply`'s stdin, and may be tied to earlier
//! steps so that it applies only when one of them changed something (a restart after a new
//! unit file). Running a plan twice changes nothing the second time.

use sha2::{Digest, Sha256};

use crate::shell::quote;

/// Content a step sends on `apply`'s stdin.
#[derive(Clone, PartialEq, Eq)]
pub struct Content {
    /// The bytes.
    pub bytes: std::sync::Arc<Vec<u8>>,
    /// Their sha256, lower-case hex.
    pub sha256: String,
    /// Shown instead of the bytes (secrets and binaries are never printed).
    pub label: String,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} ({} bytes)>", self.label, self.bytes.len())
    }
}

impl Content {
    /// Wraps `bytes`, described as `label` in output.
    pub fn new(bytes: Vec<u8>, label: impl Into<String>) -> Content {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Content {
            bytes: std::sync::Arc::new(bytes),
            sha256,
            label: label.into(),
        }
    }
}

/// When a step's `apply` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// When its check fails (or it has none).
    CheckFails,
    /// Only when one of these earlier steps (by key) changed something; no check.
    Changed(Vec<String>),
}

/// One idempotent step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// A stable name other steps refer to.
    pub key: String,
    /// What it ensures, for people: "agent executable /var/lib/blargh/shop/agent/blargh".
    pub title: String,
    /// Read-only sh script; exit 0 means nothing to do.
    pub check: Option<String>,
    /// sh script that makes it so.
    pub apply: String,
    /// stdin for `apply`.
    pub stdin: Option<Content>,
    /// When `apply` runs.
    pub when: When,
    /// Needs root (run through `sudo -n` when the SSH user is not root).
    pub root: bool,
}

impl Step {
    /// A step that runs `apply` when `check` fails.
    pub fn ensure(
        key: impl Into<String>,
        title: impl Into<String>,
        check: impl Into<String>,
        apply: impl Into<String>,
    ) -> Step {
        Step {
            key: key.into(),
            title: title.into(),
            check: Some(check.into()),
            apply: apply.into(),
            stdin: None,
            when: When::CheckFails,
            root: true,
        }
    }

    /// A step that runs `apply` only when one of `after` changed something.
    pub fn on_change(
        key: impl Into<String>,
        title: impl Into<String>,
        after: Vec<String>,
        apply: impl Into<String>,
    ) -> Step {
        Step {
            key: key.into(),
            title: title.into(),
            check: None,
            apply: apply.into(),
            stdin: None,
            when: When::Changed(after),
            root: true,
        }
    }

    /// A step that makes `path` hold exactly `content`, with `mode` and `owner:group`,
    /// replacing it atomically (written beside it, verified, renamed).
    pub fn file(
        key: impl Into<String>,
        path: &str,
        content: Content,
        mode: u32,
        owner: &str,
        group: &str,
    ) -> Step {
        let p = quote(path);
        let tmp = quote(&format!("{path}.blargh-new"));
        let check = format!(
            "[ -f {p} ] && [ \"$(sha256sum < {p} | cut -d' ' -f1)\" = {sha} ] && [ \"$(stat -c %a {p})\" = {mode:o} ] && [ \"$(stat -c %U:%G {p})\" = {og} ]",
            sha = content.sha256,
            og = quote(&format!("{owner}:{group}")),
        );
        let apply = format!(
            "set -e; cat > {tmp}; if [ \"$(sha256sum < {tmp} | cut -d' ' -f1)\" != {sha} ]; then rm -f {tmp}; echo 'upload of {path} corrupted in transit' >&2; exit 1; fi; chown {og} {tmp}; chmod {mode:o} {tmp}; mv -f {tmp} {p}",
            sha = content.sha256,
            og = quote(&format!("{owner}:{group}")),
        );
        Step {
            key: key.into(),
            title: format!("{} {path} ({mode:o} {owner}:{group})", content.label),
            check: Some(check),
            apply,
            stdin: Some(content),
            when: When::CheckFails,
            root: true,
        }
    }

    /// The same step, run without root.
    pub fn as_user(mut self) -> Step {
        self.root = false;
        self
    }
}

/// An ordered list of steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Appends a step.
    pub fn push(&mut self, step: Step) {
        debug_assert!(
            !self.steps.iter().any(|s| s.key == step.key),
            "duplicate step key {}",
            step.key
        );
        self.steps.push(step);
    }

    /// Appends every step of `other`.
    pub fn extend(&mut self, other: Plan) {
        for s in other.steps {
            self.push(s);
        }
    }

    /// Human listing, one step a line, for `--dry-run` and logs.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.steps.iter().enumerate() {
            let when = match &s.when {
                When::CheckFails => String::new(),
                When::Changed(keys) => format!("  [only if changed: {}]", keys.join(", ")),
            };
            out.push_str(&format!("{:>2}. {}{when}\n", i + 1, s.title));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_steps_verify_content_mode_and_owner() {
        let step = Step::file(
            "unit",
            "/etc/x y.conf",
            Content::new(b"hi".to_vec(), "unit file"),
            0o644,
            "root",
            "root",
        );
        let check = step.check.as_deref().unwrap();
        assert!(
            check.contains("'/etc/x y.conf'"),
            "paths are quoted: {check}"
        );
        assert!(check.contains("8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"));
        assert!(check.contains("= 644"));
        assert!(
            step.apply
                .contains("mv -f '/etc/x y.conf.blargh-new' '/etc/x y.conf'")
        );
        assert_eq!(
            format!("{:?}", step.stdin.unwrap()),
            "<unit file (2 bytes)>"
        );
    }

    #[test]
    fn describe_lists_every_step_in_order() {
        let mut plan = Plan::default();
        plan.push(Step::ensure("a", "user shop", "id -u shop", "useradd shop"));
        plan.push(Step::on_change(
            "b",
            "restart",
            vec!["a".into()],
            "systemctl restart x",
        ));
        assert_eq!(
            plan.describe(),
            " 1. user shop\n 2. restart  [only if changed: a]\n"
        );
    }
}
