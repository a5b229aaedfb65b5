//! Batching a plan into few scripts: one script runs every step's read-only check and
//! reports each verdict; apply scripts run consecutive steps, stop at the first failure and
//! report which step failed with its output. Pure functions: they build text and read the
//! host's answer, [`crate::exec`] runs them.
//!
//! Every report line starts with `@@blargh `; a step's own output never reaches stdout
//! unreported (checks go to /dev/null, an apply's output is printed only after its
//! `failed` line), so it cannot forge a verdict.

use std::collections::{HashMap, HashSet};

use crate::plan::{Step, When};
use crate::shell::quote;
use crate::transfer::Payload;

/// The marker every report line starts with.
const MARK: &str = "@@blargh";

/// Runs `segment` as root from a script that runs as the SSH user.
fn as_root(segment: &str) -> String {
    format!("$blargh_sudo sh -c {}\n", quote(segment))
}

/// Sets `$blargh_sudo` to `sudo -n` unless the script already runs as root.
const SUDO_PRELUDE: &str = "blargh_sudo=; [ \"$(id -u)\" = 0 ] || blargh_sudo='sudo -n'\n";

/// The script that runs the checks of `steps` (index into the plan, step); each step
/// without a check is skipped. Returns the script and whether it must run as root.
///
/// When all checked steps share one `root` flag the script runs with that flag; when they
/// are mixed it runs as the SSH user and its root parts go through `sudo -n` (as one `sh`
/// each, not one `sudo` per step).
pub fn check_script(steps: &[(usize, &Step)]) -> (String, bool) {
    let checked: Vec<(usize, &Step, &str)> = steps
        .iter()
        .filter_map(|(i, s)| match (&s.when, &s.check) {
            (When::CheckFails, Some(c)) => Some((*i, *s, c.as_str())),
            _ => None,
        })
        .collect();
    let mixed = checked.windows(2).any(|w| w[0].1.root != w[1].1.root);
    let root = !mixed && checked.first().is_some_and(|(_, s, _)| s.root);
    let mut script = String::from(
        "# blargh: read-only checks, one verdict line per step (exit status 0 = nothing to do)\n",
    );
    if mixed {
        script.push_str(SUDO_PRELUDE);
    }
    let mut k = 0;
    while k < checked.len() {
        let run_root = checked[k].1.root;
        let mut segment = String::new();
        while k < checked.len() && checked[k].1.root == run_root {
            let (i, _, check) = checked[k];
            segment.push_str(&format!(
                "(\n{check}\n) </dev/null >/dev/null 2>&1; echo \"{MARK} check {i} $?\"\n"
            ));
            k += 1;
        }
        if mixed && run_root {
            script.push_str(&as_root(&segment));
        } else {
            script.push_str(&segment);
        }
    }
    (script, root)
}

/// Reads the check script's stdout: each step index with the check's exit status.
pub fn parse_checks(stdout: &str) -> HashMap<usize, i32> {
    let mut verdicts = HashMap::new();
    for line in stdout.lines() {
        let mut words = line.trim_end_matches('\r').split(' ');
        if words.next() != Some(MARK) || words.next() != Some("check") {
            continue;
        }
        if let (Some(Ok(i)), Some(Ok(status)), None) = (
            words.next().map(str::parse::<usize>),
            words.next().map(str::parse::<i32>),
            words.next(),
        ) {
            verdicts.insert(i, status);
        }
    }
    verdicts
}

/// What an apply script does with one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Apply it (its check failed, or it has none).
    Apply,
    /// Its check passed before any step changed; run the check again (an earlier step of
    /// this run may have undone it, e.g. restarted the agent) and apply if it now fails.
    Recheck,
    /// Report it unchanged without running anything.
    Keep,
    /// Apply it if one of these steps of the same script changed something (or `already`:
    /// one of its dependencies changed in an earlier script).
    IfChanged {
        /// Plan indices of dependencies that run in this script.
        deps: Vec<usize>,
        /// A dependency changed before this script.
        already: bool,
    },
}

/// One step of an apply script.
#[derive(Debug)]
pub struct ApplyItem<'a> {
    /// Its index in the plan.
    pub index: usize,
    /// The step.
    pub step: &'a Step,
    /// What to do.
    pub action: Action,
    /// How its stdin content travels (steps with content only).
    pub payload: Option<Payload>,
}

/// The script that applies `items` in order; it runs with `root` (all items share it).
/// At most one item's payload may be on the script's stdin (raw or gzip).
pub fn apply_script(items: &[ApplyItem<'_>]) -> String {
    let mut script =
        String::from("# blargh: apply steps in order; stop at the first failure and report it\n");
    for item in items {
        let i = item.index;
        let run = apply_fragment(item);
        let fragment = match &item.action {
            Action::Apply => run,
            Action::Keep => format!("echo '{MARK} ok {i}'\n"),
            Action::Recheck => {
                let check = item.step.check.as_deref().unwrap_or("false");
                format!(
                    "if (\n{check}\n) </dev/null >/dev/null 2>&1; then echo '{MARK} ok {i}'; else\n{run}fi\n"
                )
            }
            Action::IfChanged { deps, already } => {
                if *already {
                    run
                } else if deps.is_empty() {
                    format!("echo '{MARK} notneeded {i}'\n")
                } else {
                    let vars: String = deps.iter().map(|d| format!("${{blargh_c{d}:-}}")).collect();
                    format!(
                        "if [ -n \"{vars}\" ]; then\n{run}else echo '{MARK} notneeded {i}'; fi\n"
                    )
                }
            }
        };
        script.push_str(&fragment);
    }
    script
}

/// Runs one step's apply with its stdin, capturing its output, and reports the outcome.
fn apply_fragment(item: &ApplyItem<'_>) -> String {
    let i = item.index;
    let apply = &item.step.apply;
    let body = match &item.payload {
        None => format!("(\n{apply}\n) </dev/null 2>&1"),
        Some(Payload::Inline(text)) => {
            format!("printf '%s' {} | (\n{apply}\n) 2>&1", quote(text))
        }
        Some(Payload::Raw(_)) => format!("(\n{apply}\n) 2>&1"),
        Some(Payload::Gzip { .. }) => format!("gzip -dc | (\n{apply}\n) 2>&1"),
    };
    format!(
        "blargh_out=$( {body} ); blargh_st=$?\n\
         if [ $blargh_st -ne 0 ]; then echo \"{MARK} failed {i} $blargh_st\"; printf '%s\\n' \"$blargh_out\"; exit 0; fi\n\
         blargh_c{i}=1; echo '{MARK} changed {i}'\n"
    )
}

/// What an apply script reported for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Already as wanted.
    Ok,
    /// Applied.
    Changed,
    /// Its dependencies did not change.
    NotNeeded,
    /// Its apply exited with this status, printing this.
    Failed {
        /// Exit status.
        status: i32,
        /// Its stdout and stderr, interleaved.
        output: String,
    },
}

/// Reads an apply script's stdout: the outcome of each step, in order. Stops after a
/// failure (the rest of stdout is the failed step's output).
pub fn parse_apply(stdout: &str) -> Vec<(usize, Applied)> {
    let mut out = Vec::new();
    let mut lines = stdout.lines();
    while let Some(line) = lines.next() {
        let words: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
        if words.first() != Some(&MARK) || words.len() < 3 {
            continue;
        }
        let Ok(i) = words[2].parse::<usize>() else {
            continue;
        };
        match (words[1], words.get(3)) {
            ("ok", None) => out.push((i, Applied::Ok)),
            ("changed", None) => out.push((i, Applied::Changed)),
            ("notneeded", None) => out.push((i, Applied::NotNeeded)),
            ("failed", Some(status)) => {
                let output: Vec<&str> = lines.collect();
                out.push((
                    i,
                    Applied::Failed {
                        status: status.parse().unwrap_or(-1),
                        output: output.join("\n"),
                    },
                ));
                break;
            }
            _ => {}
        }
    }
    out
}

/// For an on-change step at plan index `index`: its dependencies that run in the same
/// script (`in_script`: plan indices of the script's items before it), and whether one
/// changed before the script (`changed`: keys).
pub fn dependencies(
    step: &Step,
    keys: &HashMap<&str, usize>,
    in_script: &HashSet<usize>,
    changed: &HashSet<String>,
) -> Option<(Vec<usize>, bool)> {
    let When::Changed(deps) = &step.when else {
        return None;
    };
    let already = deps.iter().any(|k| changed.contains(k));
    let mut here: Vec<usize> = deps
        .iter()
        .filter_map(|k| keys.get(k.as_str()).copied())
        .filter(|d| in_script.contains(d))
        .collect();
    here.sort_unstable();
    Some((here, already))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Content;

    #[test]
    fn checks_of_mixed_steps_run_their_root_part_through_one_sudo() {
        let user = Step::ensure("k", "key", "grep -q k ~/.ssh/authorized_keys", "x").as_user();
        let a = Step::ensure("a", "a", "id -u shop", "useradd shop");
        let b = Step::ensure("b", "b", "getent group shop", "groupadd shop");
        let restart = Step::on_change("r", "r", vec!["a".into()], "systemctl restart x");
        let (script, root) = check_script(&[(0, &user), (1, &a), (2, &b), (3, &restart)]);
        assert!(!root, "runs as the SSH user");
        assert_eq!(script.matches("$blargh_sudo sh -c").count(), 1, "{script}");
        assert!(script.contains("echo \"@@blargh check 0 $?\""));
        assert!(!script.contains("check 3"), "on-change steps have no check");
        let (script, root) = check_script(&[(1, &a), (2, &b)]);
        assert!(root);
        assert!(!script.contains("sudo"), "{script}");
    }

    #[test]
    fn check_report_lines_are_read_and_noise_ignored() {
        let v =
            parse_checks("motd\n@@blargh check 0 0\n@@blargh check 4 1\r\n@@blargh check x 1\n");
        assert_eq!(v, HashMap::from([(0, 0), (4, 1)]));
    }

    #[test]
    fn apply_report_ends_at_the_failure_with_its_output() {
        let r = parse_apply(
            "@@blargh changed 2\n@@blargh ok 3\n@@blargh failed 4 7\ndisk full\n@@blargh changed 5\n",
        );
        assert_eq!(
            r,
            vec![
                (2, Applied::Changed),
                (3, Applied::Ok),
                (
                    4,
                    Applied::Failed {
                        status: 7,
                        output: "disk full\n@@blargh changed 5".into()
                    }
                )
            ]
        );
    }

    #[test]
    fn inline_content_is_piped_and_other_steps_read_nothing() {
        let f = Step::file(
            "u",
            "/etc/u",
            Content::new(b"it's\n".to_vec(), "unit"),
            0o644,
            "root",
            "root",
        );
        let g = Step::ensure("g", "g", "true", "groupadd shop");
        let s = apply_script(&[
            ApplyItem {
                index: 0,
                step: &f,
                action: Action::Apply,
                payload: Some(Payload::Inline("it's\n".into())),
            },
            ApplyItem {
                index: 1,
                step: &g,
                action: Action::Recheck,
                payload: None,
            },
        ]);
        assert!(s.contains("printf '%s' 'it'\\''s\n' | ("), "{s}");
        assert!(s.contains("groupadd shop\n) </dev/null 2>&1"), "{s}");
    }
}
