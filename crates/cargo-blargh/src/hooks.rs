//! Local hooks, like Kamal's: executables in the app's `.blargh/hooks/` run on the
//! developer's machine (or CI) before the build (`pre-build`), before anything reaches a
//! server (`pre-deploy`), and after the deploy whatever its result (`post-deploy`), with
//! what is happening in `BLARGH_*` environment variables. A failing pre-hook stops the
//! deploy; a failing post-hook is reported.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where hook `name` lives for the app in `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(".blargh").join("hooks").join(name)
}

/// Runs hook `name` if it exists, with `env`. `Ok(false)`: there is none.
pub fn run(dir: &Path, name: &str, env: &[(String, String)]) -> Result<bool, String> {
    let p = path(dir, name);
    if !p.exists() {
        return Ok(false);
    }
    let status = Command::new(&p)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("BLARGH_HOOK", name)
        .status()
        .map_err(|e| {
            format!(
                "cannot run the hook {}: {e} (is it executable? chmod +x it)",
                p.display()
            )
        })?;
    if status.success() {
        Ok(true)
    } else {
        Err(format!("the hook {} failed ({status})", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn hook(dir: &Path, name: &str, body: &str) {
        let p = path(dir, name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn hooks_get_the_environment_and_can_stop_a_deploy() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            run(dir.path(), "pre-deploy", &[]),
            Ok(false),
            "no hook, nothing to run"
        );
        hook(
            dir.path(),
            "pre-deploy",
            "echo \"$BLARGH_HOOK $BLARGH_APP $BLARGH_HOSTS\" > seen",
        );
        let env = vec![
            ("BLARGH_APP".to_string(), "shop".to_string()),
            ("BLARGH_HOSTS".to_string(), "a,b".to_string()),
        ];
        assert_eq!(run(dir.path(), "pre-deploy", &env), Ok(true));
        let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
        assert_eq!(seen, "pre-deploy shop a,b\n");
        hook(dir.path(), "pre-build", "exit 3");
        let err = run(dir.path(), "pre-build", &env).unwrap_err();
        assert!(
            err.contains("pre-build failed") && err.contains("3"),
            "{err}"
        );
    }
}
