//! `cargo xtask audit`: Cargo.lock against the RustSec advisory database, offline.
//!
//! CI machines reach crates.io but not GitHub, so the database is a snapshot kept in the
//! repository (`audit/advisory-db`, its commit in `audit/advisory-db/SNAPSHOT`) and
//! refreshed with `cargo xtask audit --update-db PATH-TO-A-CLONE`. Every advisory that
//! touches a locked version (vulnerabilities, and the informational ones: unmaintained,
//! unsound, notice) fails the check unless `audit/accepted.toml` lists it with a reason;
//! an accepted entry that no longer matches anything fails too, so the list stays true.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustsec::Collection;
use rustsec::advisory::Informational;
use rustsec::database::Query;
use rustsec::{Database, Lockfile};
use serde::Deserialize;

use test_support::hello::workspace_root;

/// One advisory that touches a locked package version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `RUSTSEC-YYYY-NNNN`.
    pub id: String,
    /// The affected package and its locked version, `name version`.
    pub package: String,
    /// "vulnerability", or the informational kind ("unmaintained", "unsound", …).
    pub kind: String,
    /// The advisory's title.
    pub title: String,
}

/// `audit/accepted.toml`: advisories the project lives with, each with why.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// The entries, in file order.
    #[serde(default)]
    pub accepted: Vec<AcceptedEntry>,
}

/// One accepted advisory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedEntry {
    /// `RUSTSEC-YYYY-NNNN`.
    pub id: String,
    /// Why it does not matter here, or what would have to change first.
    pub reason: String,
}

/// `cargo xtask audit [--update-db CLONE]`.
pub fn run(args: &[String]) -> Result<(), String> {
    run_in(&workspace_root(), args)
}

/// [`run`] on the workspace at `root` (its `audit/` and `Cargo.lock`).
fn run_in(root: &Path, args: &[String]) -> Result<(), String> {
    let db_dir = root.join("audit/advisory-db");
    match args {
        [] => {}
        [flag, clone] if flag == "--update-db" => {
            return update_db(Path::new(clone), &db_dir);
        }
        _ => {
            return Err(
                "usage: cargo xtask audit [--update-db PATH-TO-A-CLONE-OF-rustsec/advisory-db]"
                    .into(),
            );
        }
    }
    let accepted_path = root.join("audit/accepted.toml");
    let accepted = read_accepted(&accepted_path)?;
    let findings = scan(&db_dir, &root.join("Cargo.lock"))?;
    let snapshot = std::fs::read_to_string(db_dir.join("SNAPSHOT")).unwrap_or_default();
    let date = snapshot
        .lines()
        .find_map(|l| l.strip_prefix("date: "))
        .unwrap_or("unknown date");
    let verdict = judge(&findings, &accepted);
    for f in &findings {
        let mark = if verdict.unaccepted.contains(f) {
            "NOT ACCEPTED"
        } else {
            "accepted"
        };
        eprintln!(
            "audit: {} {} ({}): {} [{mark}]",
            f.id, f.package, f.kind, f.title
        );
    }
    eprintln!(
        "audit: {} advisories touch Cargo.lock ({} accepted) in the database of {date}",
        findings.len(),
        findings.len() - verdict.unaccepted.len()
    );
    let mut problems = Vec::new();
    if !verdict.unaccepted.is_empty() {
        let ids: Vec<&str> = verdict.unaccepted.iter().map(|f| f.id.as_str()).collect();
        problems.push(format!(
            "{} advisories are not accepted: {}. Upgrade the crate (`cargo update -p NAME`), or add \
             [[accepted]] id = \"…\" reason = \"…\" to {} saying why it does not matter here",
            ids.len(),
            ids.join(", "),
            accepted_path.display()
        ));
    }
    if !verdict.stale.is_empty() {
        problems.push(format!(
            "{} lists advisories that no longer touch Cargo.lock: {}; remove them",
            accepted_path.display(),
            verdict.stale.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Reads the accepted list; a missing file is an empty list, an entry without a reason an
/// error.
pub fn read_accepted(path: &Path) -> Result<Accepted, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Accepted::default()),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let accepted: Accepted =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for a in &accepted.accepted {
        if a.reason.trim().is_empty() {
            return Err(format!(
                "{}: {} is accepted without a reason; say why it does not matter here",
                path.display(),
                a.id
            ));
        }
    }
    Ok(accepted)
}

/// Every advisory in the database at `db_dir` that touches a version locked in `lock`,
/// sorted by id, one per (advisory, package version).
pub fn scan(db_dir: &Path, lock: &Path) -> Result<Vec<Finding>, String> {
    let db = Database::open(db_dir)
        .map_err(|e| format!("opening the advisory database {}: {e}", db_dir.display()))?;
    let lockfile = Lockfile::load(lock).map_err(|e| format!("reading {}: {e}", lock.display()))?;
    let mut found = BTreeMap::new();
    for package in &lockfile.packages {
        // Not `Query::crate_scope()`: it leaves out the informational advisories
        // (unmaintained, unsound), which are ours to judge too.
        let query = Query::new()
            .collection(Collection::Crates)
            .withdrawn(false)
            .package_name(package.name.clone())
            .package_version(package.version.clone());
        for advisory in db.query(&query) {
            let kind = match &advisory.metadata.informational {
                None => "vulnerability".to_string(),
                Some(Informational::Unmaintained) => "unmaintained".into(),
                Some(Informational::Unsound) => "unsound".into(),
                Some(Informational::Notice) => "notice".into(),
                Some(other) => other.as_str().to_string(),
            };
            let f = Finding {
                id: advisory.metadata.id.to_string(),
                package: format!("{} {}", package.name, package.version),
                kind,
                title: advisory.metadata.title.clone(),
            };
            found.insert((f.id.clone(), f.package.clone()), f);
        }
    }
    Ok(found.into_values().collect())
}

/// What the findings and the accepted list say together.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Findings the list does not accept.
    pub unaccepted: Vec<Finding>,
    /// Accepted ids that match no finding.
    pub stale: Vec<String>,
}

/// Compares findings with the accepted list.
pub fn judge(findings: &[Finding], accepted: &Accepted) -> Verdict {
    let unaccepted = findings
        .iter()
        .filter(|f| !accepted.accepted.iter().any(|a| a.id == f.id))
        .cloned()
        .collect();
    let stale = accepted
        .accepted
        .iter()
        .filter(|a| !findings.iter().any(|f| f.id == a.id))
        .map(|a| a.id.clone())
        .collect();
    Verdict { unaccepted, stale }
}

/// Replaces the snapshot's `crates/` with the one in `clone` (a git clone of
/// rustsec/advisory-db) and records the clone's commit.
fn update_db(clone: &Path, db_dir: &Path) -> Result<(), String> {
    let src = clone.join("crates");
    if !src.is_dir() {
        return Err(format!(
            "{} has no crates/ directory; give a clone of https://github.com/rustsec/advisory-db",
            clone.display()
        ));
    }
    let git = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(clone)
            .args(args)
            .output()
            .map_err(|e| format!("git: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "git {args:?} in {}: {}",
                clone.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let date = git(&["log", "-1", "--format=%cs"])?;
    let dest = db_dir.join("crates");
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    copy_tree(&src, &dest)?;
    std::fs::write(
        db_dir.join("SNAPSHOT"),
        format!("source: https://github.com/rustsec/advisory-db\ncommit: {commit}\ndate: {date}\n"),
    )
    .map_err(|e| e.to_string())?;
    eprintln!("audit: advisory database updated to {commit} ({date}); now run `cargo xtask audit`");
    Ok(())
}

/// Copies the regular files and directories under `from` to `to`.
fn copy_tree(from: &Path, to: &PathBuf) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let ty = entry.file_type().map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| format!("{}: {e}", target.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with one vulnerability (`demo-crate` < 1.2.0) and one unmaintained
    /// notice (`old-crate`, every version).
    fn fixture_db(dir: &Path) {
        let write = |rel: &str, text: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "crates/demo-crate/RUSTSEC-2099-0001.md",
            "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"demo-crate\"\n\
             date = \"2099-01-01\"\n\n[versions]\npatched = [\">= 1.2.0\"]\n```\n\n\
             # Demo crate reads out of bounds\n\nA made-up advisory.\n",
        );
        write(
            "crates/old-crate/RUSTSEC-2099-0002.md",
            "```toml\n[advisory]\nid = \"RUSTSEC-2099-0002\"\npackage = \"old-crate\"\n\
             date = \"2099-01-02\"\ninformational = \"unmaintained\"\n\n[versions]\npatched = []\n```\n\n\
             # old-crate is unmaintained\n\nA made-up notice.\n",
        );
    }

    fn fixture_lock(dir: &Path, demo_version: &str) -> PathBuf {
        let p = dir.join("Cargo.lock");
        std::fs::write(
            &p,
            format!(
                "version = 4\n\n\
                 [[package]]\nname = \"demo-crate\"\nversion = \"{demo_version}\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n\
                 [[package]]\nname = \"old-crate\"\nversion = \"0.3.0\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n\
                 [[package]]\nname = \"fine-crate\"\nversion = \"2.0.0\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
            ),
        )
        .unwrap();
        p
    }

    fn accepted(ids: &[&str]) -> Accepted {
        Accepted {
            accepted: ids
                .iter()
                .map(|id| AcceptedEntry {
                    id: id.to_string(),
                    reason: "test".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_vulnerable_version_and_an_unmaintained_crate_are_found() {
        let dir = tempfile::tempdir().unwrap();
        fixture_db(&dir.path().join("db"));
        let lock = fixture_lock(dir.path(), "1.1.9");
        let found = scan(&dir.path().join("db"), &lock).unwrap();
        let got: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|f| (f.id.as_str(), f.package.as_str(), f.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("RUSTSEC-2099-0001", "demo-crate 1.1.9", "vulnerability"),
                ("RUSTSEC-2099-0002", "old-crate 0.3.0", "unmaintained"),
            ]
        );
        assert_eq!(found[0].title, "Demo crate reads out of bounds");
    }

    #[test]
    fn a_patched_version_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        fixture_db(&dir.path().join("db"));
        let lock = fixture_lock(dir.path(), "1.2.0");
        let found = scan(&dir.path().join("db"), &lock).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, "RUSTSEC-2099-0002");
    }

    #[test]
    fn only_unaccepted_findings_and_stale_entries_fail() {
        let f = |id: &str| Finding {
            id: id.into(),
            package: "x 1.0.0".into(),
            kind: "vulnerability".into(),
            title: "t".into(),
        };
        let findings = [f("RUSTSEC-2099-0001"), f("RUSTSEC-2099-0002")];
        let v = judge(
            &findings,
            &accepted(&["RUSTSEC-2099-0001", "RUSTSEC-2000-0000"]),
        );
        assert_eq!(v.unaccepted, [f("RUSTSEC-2099-0002")]);
        assert_eq!(v.stale, ["RUSTSEC-2000-0000"]);
        assert_eq!(
            judge(
                &findings,
                &accepted(&["RUSTSEC-2099-0001", "RUSTSEC-2099-0002"])
            ),
            Verdict::default()
        );
    }

    #[test]
    fn an_entry_without_a_reason_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("accepted.toml");
        std::fs::write(
            &p,
            "[[accepted]]\nid = \"RUSTSEC-2099-0001\"\nreason = \" \"\n",
        )
        .unwrap();
        let e = read_accepted(&p).unwrap_err();
        assert!(e.contains("without a reason"), "{e}");
        std::fs::write(
            &p,
            "[[accepted]]\nid = \"RUSTSEC-2099-0001\"\nwhy = \"x\"\n",
        )
        .unwrap();
        assert!(read_accepted(&p).is_err());
        assert!(
            read_accepted(&dir.path().join("none.toml"))
                .unwrap()
                .accepted
                .is_empty()
        );
    }

    /// Runs git in `dir` with a fixed identity and clock, so the commit's date is known.
    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .env("GIT_AUTHOR_DATE", "2099-03-04T05:06:07Z")
            .env("GIT_COMMITTER_DATE", "2099-03-04T05:06:07Z")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A workspace root holding a copy of the repository's `audit/` (the real snapshot) and
    /// a Cargo.lock with the fixture's crates.
    fn workspace_copy(dir: &Path) -> PathBuf {
        let root = dir.join("ws");
        copy_tree(&workspace_root().join("audit"), &root.join("audit")).unwrap();
        fixture_lock(&root, "1.1.9");
        root
    }

    fn update(root: &Path, clone: &Path) -> Result<(), String> {
        run_in(
            root,
            &["--update-db".to_string(), clone.display().to_string()],
        )
    }

    /// `--update-db CLONE` swaps the snapshot's advisories for the clone's and records the
    /// clone's commit and date; the check then reads the new database.
    #[test]
    fn update_db_replaces_the_snapshot_and_records_the_clone_commit() {
        let dir = tempfile::tempdir().unwrap();
        let clone = dir.path().join("advisory-db");
        fixture_db(&clone);
        git(&clone, &["init", "-q"]);
        git(&clone, &["add", "."]);
        git(&clone, &["commit", "-q", "-m", "two made-up advisories"]);
        let commit = git(&clone, &["rev-parse", "HEAD"]);
        let root = workspace_copy(dir.path());
        let db_dir = root.join("audit/advisory-db");
        let before = std::fs::read_to_string(db_dir.join("SNAPSHOT")).unwrap();
        assert!(!before.contains(&commit), "{before}");
        assert!(db_dir.join("crates/hyper").is_dir(), "the real snapshot");

        update(&root, &clone).unwrap();

        assert_eq!(
            std::fs::read_to_string(db_dir.join("SNAPSHOT")).unwrap(),
            format!(
                "source: https://github.com/rustsec/advisory-db
commit: {commit}
date: 2099-03-04
"
            )
        );
        let mut crates: Vec<String> = std::fs::read_dir(db_dir.join("crates"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        crates.sort();
        assert!(
            crates == ["demo-crate", "old-crate"],
            "the old advisories stayed: {} crates, {:?}…",
            crates.len(),
            &crates[..crates.len().min(4)]
        );
        assert!(db_dir.join("LICENSE.txt").is_file(), "the rest stays");
        let ids: Vec<String> = scan(&db_dir, &root.join("Cargo.lock"))
            .unwrap()
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids, ["RUSTSEC-2099-0001", "RUSTSEC-2099-0002"]);
        // The repository's own snapshot was not touched.
        let ours =
            std::fs::read_to_string(workspace_root().join("audit/advisory-db/SNAPSHOT")).unwrap();
        assert!(!ours.contains(&commit), "{ours}");
    }

    /// A path that is not a clone of the database is refused with what to give instead, and
    /// the snapshot stays as it was.
    #[test]
    fn update_db_refuses_what_is_not_a_clone_and_keeps_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let root = workspace_copy(dir.path());
        let db_dir = root.join("audit/advisory-db");
        let snapshot = std::fs::read_to_string(db_dir.join("SNAPSHOT")).unwrap();
        let count = || std::fs::read_dir(db_dir.join("crates")).unwrap().count();
        let crates = count();

        let missing = dir.path().join("no-such-clone");
        let e = update(&root, &missing).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{} has no crates/ directory; give a clone of https://github.com/rustsec/advisory-db",
                missing.display()
            )
        );
        // Advisories, but not a git clone: no commit to record, nothing replaced.
        let copied = dir.path().join("copied");
        fixture_db(&copied);
        let e = update(&root, &copied).unwrap_err();
        assert!(
            e.starts_with("git [\"rev-parse\", \"HEAD\"] in ")
                && e.contains("not a git repository"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(db_dir.join("SNAPSHOT")).unwrap(),
            snapshot
        );
        assert_eq!(count(), crates);
        let e = run_in(&root, &["--update-db".to_string()]).unwrap_err();
        assert!(
            e.starts_with("usage: cargo xtask audit [--update-db "),
            "{e}"
        );
    }

    /// The snapshot in the repository opens, and finds a real advisory in an old hyper.
    #[test]
    fn the_snapshot_finds_a_known_advisory() {
        let db_dir = workspace_root().join("audit/advisory-db");
        let db = Database::open(&db_dir).unwrap();
        assert!(db.iter().count() > 500, "a snapshot of the whole database");
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("Cargo.lock");
        std::fs::write(
            &lock,
            "version = 4\n\n[[package]]\nname = \"hyper\"\nversion = \"0.14.9\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        )
        .unwrap();
        let ids: Vec<String> = scan(&db_dir, &lock)
            .unwrap()
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert!(ids.contains(&"RUSTSEC-2021-0078".to_string()), "{ids:?}");
    }
}
