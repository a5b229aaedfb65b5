//! From the app's Cargo.toml (`[package.metadata.blargh]`, see docs/config.md) to what the
//! commands need: the app, its hosts, the deploy settings, what to build.

use std::path::Path;

use crate::app_cmd::{Target, default_cache};
use crate::deploy::DeploySettings;

/// Reads `manifest` for `destination` with `blargh-config`. A missing Cargo.toml, or one
/// without a `[package.metadata.blargh]` section when `flag_hosts` name the hosts, is not an
/// error here (flags may say everything); a broken or incomplete section always is.
pub fn from_manifest(
    manifest: &Path,
    destination: Option<&str>,
    flag_hosts: bool,
) -> Result<Target, String> {
    let mut settings = DeploySettings {
        app: String::new(),
        hosts: Vec::new(),
        env: Vec::new(),
        before_activate: None,
        auto_rollback: Some(blargh_proto::control::AutoRollback {
            window_s: blargh_config::DEFAULT_AUTO_ROLLBACK.window.as_secs(),
            crashes: blargh_config::DEFAULT_AUTO_ROLLBACK.crashes,
        }),
        lock_expiry: blargh_config::DEFAULT_LOCK_EXPIRY,
        parallel: false,
        message: None,
        version: None,
        git_sha: git_sha(manifest),
        cache_dir: default_cache("app"),
        progress: false,
    };
    if !manifest.exists() && destination.is_none() {
        return Ok(Target {
            app: String::new(),
            hosts: Vec::new(),
            settings,
            build: None,
            known_hosts: Vec::new(),
            connect: Default::default(),
        });
    }
    let dir = manifest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let (name, version) = package_name_version(&text);
    settings.version = version;
    let cfg = match blargh_config::parse(&text, manifest, destination) {
        Ok(cfg) => cfg,
        // No blargh section (or a workspace's root manifest): the flags say everything.
        Err(e)
            if flag_hosts
                && matches!(
                    e.kind(),
                    blargh_config::ErrorKind::NoSection | blargh_config::ErrorKind::NoPackage
                ) =>
        {
            let package = matches!(e.kind(), blargh_config::ErrorKind::NoSection);
            let app = if package {
                name.to_lowercase()
            } else {
                String::new()
            };
            settings.app = app.clone();
            settings.cache_dir = default_cache(&app);
            return Ok(Target {
                app,
                hosts: Vec::new(),
                build: package.then(|| (dir, name.clone(), name, None)),
                settings,
                known_hosts: Vec::new(),
                connect: Default::default(),
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    settings.app = cfg.app.to_string();
    settings.hosts = cfg.hosts.clone();
    settings.env = cfg
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    settings.before_activate = cfg.before_activate.clone().filter(|a| !a.is_empty());
    settings.auto_rollback = cfg
        .auto_rollback
        .map(|a| blargh_proto::control::AutoRollback {
            window_s: a.window.as_secs(),
            crashes: a.crashes,
        });
    settings.lock_expiry = cfg.lock_expiry;
    settings.parallel = cfg.parallel;
    settings.cache_dir = default_cache(&cfg.app);
    let bin = cfg.bin.clone().unwrap_or_else(|| cfg.package.clone());
    Ok(Target {
        app: cfg.app.to_string(),
        hosts: cfg.hosts.clone(),
        settings,
        build: Some((dir, cfg.package.clone(), bin, cfg.target.clone())),
        known_hosts: cfg.known_hosts.clone(),
        connect: Default::default(),
    })
}

/// `[package] name` and `version`, for when there is no blargh section.
fn package_name_version(text: &str) -> (String, Option<String>) {
    let doc: toml::Table = text.parse().unwrap_or_default();
    let package = doc.get("package");
    let get = |k: &str| {
        package
            .and_then(|p| p.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    (get("name").unwrap_or_else(|| "app".into()), get("version"))
}

/// The commit checked out next to the manifest, if it is in a git work tree.
fn git_sha(manifest: &Path) -> Option<String> {
    let dir = manifest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
