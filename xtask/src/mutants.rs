//! `cargo xtask mutants`: mutation testing of the crates whose tests need no VM, with
//! cargo-mutants, and the score per crate (docs/testing.md, "Mutation testing").

use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::hello::workspace_root;

use crate::cargo;

/// The score every target must reach (caught / (caught + missed + timeout)).
const TARGET_SCORE: f64 = 90.0;

/// Seconds one mutant's tests may run before it counts as a timeout.
const TIMEOUT_S: &str = "60";

/// What one cargo-mutants run covers: a package, or some files of it, and the tests to run.
struct Target {
    /// Name in the report.
    label: &'static str,
    /// The package to mutate and test.
    package: &'static str,
    /// Only these files (relative to the workspace root); every file when empty.
    files: &'static [&'static str],
    /// Extra arguments for `cargo test` (after `--`).
    test_args: &'static [&'static str],
}

impl Target {
    /// The package's directory, relative to the workspace root.
    fn dir(&self) -> String {
        format!("crates/{}/", self.package)
    }

    /// Whether a path changed in a diff is mutated by this target.
    fn covers(&self, path: &str) -> bool {
        if self.files.is_empty() {
            path.starts_with(&self.dir()) && path.ends_with(".rs")
        } else {
            self.files.contains(&path)
        }
    }
}

const TARGETS: &[Target] = &[
    Target {
        label: "blargh-proto",
        package: "blargh-proto",
        files: &[],
        test_args: &[],
    },
    Target {
        label: "blargh-config",
        package: "blargh-config",
        files: &[],
        test_args: &[],
    },
    Target {
        label: "blargh-delta",
        package: "blargh-delta",
        files: &[],
        test_args: &[],
    },
    Target {
        label: "blargh-platform",
        package: "blargh-platform",
        files: &[],
        test_args: &[],
    },
    Target {
        label: "blargh-agent store+lock+env_file",
        package: "blargh-agent",
        files: &[
            "crates/blargh-agent/src/store.rs",
            "crates/blargh-agent/src/lock.rs",
            "crates/blargh-agent/src/env_file.rs",
        ],
        test_args: &["--lib"],
    },
];

const USAGE: &str = "usage: cargo xtask mutants [--in-diff [DIFF]] [CRATE…]
  Runs cargo-mutants (--timeout 60 -j 1) on blargh-proto, blargh-config, blargh-delta,
  blargh-platform and the agent's store.rs, lock.rs, env_file.rs (or only the CRATEs
  named), and prints caught/missed/timeout and the score of each. Fails when a score is
  below 90 %.
  --in-diff        only the mutants on lines changed since this branch left main (git
                   diff against the merge base), in the crates that diff touches: cheap
                   enough to run before every stop
  --in-diff DIFF   the same with a diff file of your own";

/// Counts of one cargo-mutants run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    caught: Vec<String>,
    missed: Vec<String>,
    timeout: Vec<String>,
    unviable: Vec<String>,
}

impl Counts {
    /// Caught over everything viable, in percent; `None` when nothing was tested.
    fn score(&self) -> Option<f64> {
        let tested = self.caught.len() + self.missed.len() + self.timeout.len();
        (tested > 0).then(|| 100.0 * self.caught.len() as f64 / tested as f64)
    }
}

/// `cargo xtask mutants [--in-diff [DIFF]] [CRATE…]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let mut in_diff: Option<Option<PathBuf>> = None;
    let mut only: Vec<&str> = Vec::new();
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--in-diff" => {
                let file = args
                    .next_if(|a| !a.starts_with('-') && !is_target(a))
                    .map(PathBuf::from);
                in_diff = Some(file);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            name if is_target(name) => only.push(name),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    ensure_cargo_mutants()?;

    let out_dir = root.join("target").join("mutants");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let diff = match in_diff {
        None => None,
        Some(Some(file)) => Some(
            std::fs::canonicalize(&file)
                .map_err(|e| format!("cannot read the diff {}: {e}", file.display()))?,
        ),
        Some(None) => Some(diff_against_main(&root, &out_dir)?),
    };
    let changed = match &diff {
        Some(file) => Some(changed_files(file)?),
        None => None,
    };

    let mut rows = Vec::new();
    for target in TARGETS {
        if !only.is_empty() && !only.contains(&target.package) {
            continue;
        }
        if let Some(changed) = &changed
            && !changed.iter().any(|p| target.covers(p))
        {
            eprintln!("xtask: {}: not touched by the diff, skipped", target.label);
            continue;
        }
        let output = out_dir.join(target.label.replace(['+', ' '], "_"));
        let counts = run_target(&root, target, &output, diff.as_deref())?;
        rows.push((target.label, counts));
    }

    println!();
    println!(
        "{:<34} {:>7} {:>7} {:>8} {:>9} {:>7}",
        "target", "caught", "missed", "timeout", "unviable", "score"
    );
    let mut below = Vec::new();
    for (label, c) in &rows {
        let score = match c.score() {
            Some(s) => format!("{s:.1} %"),
            None => "-".to_string(),
        };
        println!(
            "{label:<34} {:>7} {:>7} {:>8} {:>9} {score:>7}",
            c.caught.len(),
            c.missed.len(),
            c.timeout.len(),
            c.unviable.len()
        );
        if c.score().is_some_and(|s| s < TARGET_SCORE) {
            below.push(*label);
        }
    }
    for (label, c) in &rows {
        for m in c.missed.iter().chain(&c.timeout) {
            println!("survived ({label}): {m}");
        }
    }
    if rows.is_empty() {
        println!("(no target to run)");
    }
    if below.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "mutation score below {TARGET_SCORE} % for {}: kill the survivors listed above with \
             tests, or list them in docs/testing.md (\"Mutation testing\") with why they are \
             equivalent",
            below.join(", ")
        ))
    }
}

fn is_target(name: &str) -> bool {
    TARGETS.iter().any(|t| t.package == name)
}

/// Installs cargo-mutants with `cargo install --locked` when `cargo mutants` is missing.
fn ensure_cargo_mutants() -> Result<(), String> {
    let works = Command::new(cargo())
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Ok(());
    }
    eprintln!(
        "xtask: cargo-mutants is missing; installing it (cargo install --locked cargo-mutants)"
    );
    crate::run(Command::new(cargo()).args(["install", "--locked", "cargo-mutants"]))
        .map_err(|e| format!("cannot install cargo-mutants: {e}"))
}

/// Writes the diff of the working tree against where it left `main` (`git diff
/// $(git merge-base main HEAD)`, so changes landed on main since are not counted) to a
/// file and returns its path.
fn diff_against_main(root: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    let git = |args: &[&str]| -> Result<Vec<u8>, String> {
        let output = Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git {}: {e}", args.join(" ")))?;
        if !output.status.success() {
            return Err(format!(
                "git {} failed ({}): {}; --in-diff needs a branch named main",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(output.stdout)
    };
    let base = String::from_utf8_lossy(&git(&["merge-base", "main", "HEAD"])?)
        .trim()
        .to_string();
    let diff = git(&["diff", &base, "--", "crates"])?;
    let file = out_dir.join("diff-main.patch");
    std::fs::write(&file, &diff).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(file)
}

/// The paths a unified diff changes (its `+++ b/…` lines).
fn changed_files(diff: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(diff)
        .map_err(|e| format!("cannot read the diff {}: {e}", diff.display()))?;
    Ok(parse_changed_files(&text))
}

fn parse_changed_files(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("+++ b/"))
        .map(|p| p.trim_end().to_string())
        .collect()
}

/// Runs cargo-mutants on one target, its output under `output`, and reads the counts.
fn run_target(
    root: &Path,
    target: &Target,
    output: &Path,
    diff: Option<&Path>,
) -> Result<Counts, String> {
    // A run that finds no mutant writes no report: never read an earlier run's.
    if output.exists() {
        std::fs::remove_dir_all(output)
            .map_err(|e| format!("cannot remove the old report {}: {e}", output.display()))?;
    }
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args([
        "mutants",
        "--package",
        target.package,
        "--timeout",
        TIMEOUT_S,
        "--jobs",
        "1",
        "--no-shuffle",
        "--output",
    ]);
    cmd.arg(output);
    for file in target.files {
        cmd.args(["--file", file]);
    }
    if let Some(diff) = diff {
        cmd.arg("--in-diff").arg(diff);
    }
    if !target.test_args.is_empty() {
        cmd.arg("--").args(target.test_args);
    }
    // One target directory for every run: dependencies are built once, not per crate.
    cmd.env(
        "CARGO_TARGET_DIR",
        root.join("target").join("mutants").join("build"),
    );
    eprintln!("xtask: {}: {cmd:?}", target.label);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo mutants: {e}"))?;
    // cargo-mutants exits 0 when all were caught, 2 when some were missed, 3 on timeouts,
    // 4 when the tests fail without any mutation.
    match status.code() {
        Some(0 | 2 | 3) => {}
        Some(4) => {
            return Err(format!(
                "{}: the tests fail before any mutation; fix them first (`cargo test -p {}`)",
                target.label, target.package
            ));
        }
        _ => {
            return Err(format!(
                "{}: cargo mutants failed ({status}); see {}",
                target.label,
                output.join("mutants.out").display()
            ));
        }
    }
    read_counts(&output.join("mutants.out"))
}

/// Reads `caught.txt`, `missed.txt`, `timeout.txt` and `unviable.txt` of a run.
fn read_counts(dir: &Path) -> Result<Counts, String> {
    let list = |name: &str| -> Result<Vec<String>, String> {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("cannot read {}: {e}", dir.join(name).display())),
        }
    };
    Ok(Counts {
        caught: list("caught.txt")?,
        missed: list("missed.txt")?,
        timeout: list("timeout.txt")?,
        unviable: list("unviable.txt")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_counts_timeouts_as_survivors_and_skips_unviable() {
        let n = |k: usize| vec!["m".to_string(); k];
        let c = Counts {
            caught: n(9),
            missed: n(0),
            timeout: n(1),
            unviable: n(5),
        };
        assert_eq!(c.score(), Some(90.0));
        assert_eq!(Counts::default().score(), None);
    }

    #[test]
    fn diff_paths_select_targets() {
        let diff = "diff --git a/crates/blargh-agent/src/lock.rs b/crates/blargh-agent/src/lock.rs\n\
                    --- a/crates/blargh-agent/src/lock.rs\n\
                    +++ b/crates/blargh-agent/src/lock.rs\n\
                    @@ -1 +1 @@\n\
                    +++ b/crates/blargh-delta/README.md\n";
        let changed = parse_changed_files(diff);
        let hit: Vec<&str> = TARGETS
            .iter()
            .filter(|t| changed.iter().any(|p| t.covers(p)))
            .map(|t| t.label)
            .collect();
        assert_eq!(hit, ["blargh-agent store+lock+env_file"]);
        let agent = TARGETS.last().unwrap();
        assert!(!agent.covers("crates/blargh-agent/src/supervisor.rs"));
        assert!(TARGETS[3].covers("crates/blargh-platform/tests/fit.rs"));
    }

    #[test]
    fn missing_lists_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("caught.txt"),
            "a.rs:1:1: x\n\nb.rs:2:2: y\n",
        )
        .unwrap();
        let c = read_counts(dir.path()).unwrap();
        assert_eq!(c.caught.len(), 2);
        assert!(c.missed.is_empty() && c.timeout.is_empty() && c.unviable.is_empty());
    }
}
