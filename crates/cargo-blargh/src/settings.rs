//! Settings resolved once: the flags of one command plus `[package.metadata.blargh]`, into
//! the one [`Settings`] that seed, deploy and every day-to-day command use.
//!
//! The flags are "as parsed" ([`Overrides`], built by each command from its clap args); the
//! file is parsed by `blargh-config` into a `DeployConfig` with its defaults filled in;
//! [`Settings::resolve`] lets a flag win over the file, and the file over the defaults, which
//! live in one place: `blargh_config`'s `DEFAULT_*` constants.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use blargh_proto::control::AutoRollback;

use crate::deploy::DeploySettings;
use crate::remote::ConnectArgs;

/// What the agent on each host is tuned to: the keys of the configuration that the agent
/// applies itself (no root needed), so deploy can bring a host in line before it ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentTuning {
    /// How long a new release may take to say `READY=1`.
    pub ready_timeout: Duration,
    /// How long a replaced release may drain before SIGKILL.
    pub drain_timeout: Duration,
    /// Releases kept on disk per host (≥ 2).
    pub keep_releases: u32,
}

impl Default for AgentTuning {
    fn default() -> Self {
        AgentTuning {
            ready_timeout: blargh_config::DEFAULT_READY_TIMEOUT,
            drain_timeout: blargh_config::DEFAULT_DRAIN_TIMEOUT,
            keep_releases: blargh_config::DEFAULT_KEEP_RELEASES,
        }
    }
}

/// What to build: the package's directory, its name, the binary target, the target triple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Directory of the package's Cargo.toml.
    pub dir: PathBuf,
    /// `[package] name`.
    pub package: String,
    /// The binary target.
    pub bin: String,
    /// `--target`, if any.
    pub target: Option<String>,
}

/// Flags that override the configuration, as one command parsed them. Every field is
/// "not given" by default; commands fill in the ones they have.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-d NAME`.
    pub destination: Option<String>,
    /// `--host` (or seed's positional destination): replaces the configured hosts.
    pub hosts: Vec<String>,
    /// `--app`.
    pub app: Option<String>,
    /// `--listen NAME=ADDRESS` (seed): replaces the configured sockets whole.
    pub listen: Option<Vec<(String, String)>>,
    /// `--ready-timeout`.
    pub ready_timeout: Option<Duration>,
    /// `--drain-timeout`.
    pub drain_timeout: Option<Duration>,
    /// `--keep-releases`.
    pub keep_releases: Option<u32>,
    /// `--target` (deploy).
    pub target: Option<String>,
    /// `--parallel` (deploy).
    pub parallel: bool,
    /// `-m` (deploy).
    pub message: Option<String>,
    /// The app's Cargo.toml (`--manifest-path`).
    pub manifest_path: PathBuf,
    /// How to connect.
    pub connect: ConnectArgs,
}

/// Everything a command needs about the app and its hosts, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The app's name on the servers.
    pub app: String,
    /// SSH destinations, in the order configured.
    pub hosts: Vec<String>,
    /// The sockets the agent owns on each host, by name.
    pub listen: BTreeMap<String, SocketAddr>,
    /// What the agent applies itself.
    pub agent: AgentTuning,
    /// What a deploy needs (env, before_activate, auto_rollback, lock expiry, …).
    pub deploy: DeploySettings,
    /// What to build, when inside a package.
    pub build: Option<Build>,
    /// known_hosts lines pinned in the configuration.
    pub known_hosts: Vec<String>,
    /// How to connect: the flags, completed from the configuration.
    pub connect: ConnectArgs,
    /// The configuration file the settings came from, if one had a blargh section.
    pub config_file: Option<PathBuf>,
}

impl Settings {
    /// Resolves `o` against the configuration at `o.manifest_path` (if any): flags win over
    /// the file, the file over the defaults. Fails on a broken configuration (always), on a
    /// missing app name, and on a bad flag value, naming the flag or the key.
    pub fn resolve(o: &Overrides) -> Result<Settings, String> {
        let manifest = &o.manifest_path;
        let mut s = Settings {
            app: String::new(),
            hosts: Vec::new(),
            listen: default_listen(),
            agent: AgentTuning::default(),
            deploy: DeploySettings {
                app: String::new(),
                hosts: Vec::new(),
                env: Vec::new(),
                before_activate: None,
                auto_rollback: Some(
                    auto_rollback(Some(blargh_config::DEFAULT_AUTO_ROLLBACK))
                        .expect("the default is on"),
                ),
                lock_expiry: blargh_config::DEFAULT_LOCK_EXPIRY,
                parallel: false,
                message: None,
                version: None,
                git_sha: None,
                cache_dir: PathBuf::new(),
                progress: false,
                wanted: Default::default(),
            },
            build: None,
            known_hosts: Vec::new(),
            connect: o.connect.clone(),
            config_file: None,
        };
        if manifest.exists() || o.destination.is_some() {
            s.read_manifest(manifest, o)?;
        }
        s.apply(o)?;
        Ok(s)
    }

    /// Fills in what the Cargo.toml at `manifest` says.
    fn read_manifest(&mut self, manifest: &Path, o: &Overrides) -> Result<(), String> {
        let dir = manifest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let text = std::fs::read_to_string(manifest)
            .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
        let (name, version) = package_name_version(&text);
        self.deploy.version = version;
        self.deploy.git_sha = git_sha(&dir);
        let cfg = match blargh_config::parse(&text, manifest, o.destination.as_deref()) {
            Ok(cfg) => cfg,
            // No blargh section (or a workspace's root manifest): flags may say everything.
            Err(e)
                if matches!(
                    e.kind(),
                    blargh_config::ErrorKind::NoSection | blargh_config::ErrorKind::NoPackage
                ) && o.destination.is_none() =>
            {
                if matches!(e.kind(), blargh_config::ErrorKind::NoSection) {
                    self.app = name.to_lowercase();
                    self.build = Some(Build {
                        dir,
                        package: name.clone(),
                        bin: name,
                        target: None,
                    });
                }
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        self.app = cfg.app.clone();
        self.hosts = cfg.hosts.clone();
        self.listen = cfg.listen.clone();
        self.agent = AgentTuning {
            ready_timeout: cfg.ready_timeout,
            drain_timeout: cfg.drain_timeout,
            keep_releases: cfg.keep_releases,
        };
        self.deploy.env = cfg
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.deploy.before_activate = cfg.before_activate.clone().filter(|a| !a.is_empty());
        self.deploy.auto_rollback = auto_rollback(cfg.auto_rollback);
        self.deploy.lock_expiry = cfg.lock_expiry;
        self.deploy.parallel = cfg.parallel;
        self.known_hosts = cfg.known_hosts.clone();
        self.build = Some(Build {
            dir,
            bin: cfg.bin.clone().unwrap_or_else(|| cfg.package.clone()),
            package: cfg.package.clone(),
            target: cfg.target.clone(),
        });
        self.config_file = Some(cfg.file.clone());
        Ok(())
    }

    /// Lets the flags win, then checks what only the combination can tell.
    fn apply(&mut self, o: &Overrides) -> Result<(), String> {
        if let Some(app) = &o.app {
            blargh_seed::seed_plan::check_app_name(app).map_err(|e| format!("--app {e}"))?;
            self.app = app.clone();
        }
        if !o.hosts.is_empty() {
            self.hosts = o.hosts.clone();
        }
        if let Some(listen) = &o.listen {
            self.listen = listen_flags(listen)?;
        }
        if let Some(t) = o.ready_timeout {
            self.agent.ready_timeout = positive("--ready-timeout", t)?;
        }
        if let Some(t) = o.drain_timeout {
            self.agent.drain_timeout = positive("--drain-timeout", t)?;
        }
        if let Some(k) = o.keep_releases {
            if k < blargh_config::MIN_KEEP_RELEASES {
                return Err(format!(
                    "--keep-releases {k}: keep at least {} (the current release and one to roll back to)",
                    blargh_config::MIN_KEEP_RELEASES
                ));
            }
            self.agent.keep_releases = k;
        }
        if let (Some(target), Some(build)) = (&o.target, &mut self.build) {
            build.target = Some(target.clone());
        }
        self.deploy.parallel |= o.parallel;
        self.deploy.message = o.message.clone();
        self.deploy.app = self.app.clone();
        self.deploy.hosts = self.hosts.clone();
        self.deploy.cache_dir = default_cache(&self.app);
        let seed = crate::drift::seed_command(o.destination.as_deref(), &o.hosts, &self.app);
        self.deploy.wanted = self.wanted(seed);
        Ok(())
    }

    /// Checks that an app was named, by the configuration or `--app`.
    pub fn require_app(&self, manifest: &Path) -> Result<(), String> {
        if self.app.is_empty() {
            return Err(format!(
                "which app? {} has no [package]: pass --app NAME, or run in the app's directory",
                manifest.display()
            ));
        }
        Ok(())
    }

    /// Checks that there are hosts to talk to.
    pub fn require_hosts(&self, manifest: &Path) -> Result<(), String> {
        if self.hosts.is_empty() {
            return Err(format!(
                "no hosts: add `hosts = [\"deploy@your-server\"]` under [package.metadata.blargh] in {}, or pass --host",
                manifest.display()
            ));
        }
        Ok(())
    }

    /// Makes the known_hosts lines pinned in the configuration the file SSH checks host
    /// keys against, unless a flag or `BLARGH_KNOWN_HOSTS` names one.
    pub fn pin_known_hosts(&mut self) -> Result<(), String> {
        if self.known_hosts.is_empty()
            || self.connect.known_hosts.is_some()
            || crate::remote::CiSecrets::is_set("BLARGH_KNOWN_HOSTS")
        {
            return Ok(());
        }
        let path = PathBuf::from("target/blargh")
            .join(&self.app)
            .join("known_hosts");
        std::fs::create_dir_all(path.parent().expect("has a parent"))
            .and_then(|()| std::fs::write(&path, self.known_hosts.join("\n") + "\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.connect.known_hosts = Some(path);
        Ok(())
    }

    /// What every host should run, for deploy to compare; `seed_command` applies what only
    /// root can.
    pub fn wanted(&self, seed_command: String) -> crate::drift::Wanted {
        crate::drift::Wanted {
            listen: self.listen.clone(),
            tuning: self.agent,
            seed_command,
        }
    }

    /// The sockets as `(name, address)` pairs, the form seed's units take.
    pub fn listen_pairs(&self) -> Vec<(String, String)> {
        self.listen
            .iter()
            .map(|(n, a)| (n.clone(), a.to_string()))
            .collect()
    }
}

/// `listen` when neither the file nor a flag sets it.
fn default_listen() -> BTreeMap<String, SocketAddr> {
    BTreeMap::from([(
        blargh_config::DEFAULT_LISTEN_NAME.to_string(),
        blargh_config::DEFAULT_LISTEN_ADDRESS
            .parse()
            .expect("the default address parses"),
    )])
}

/// `--listen` flags, checked by the rules the configuration's `listen` follows.
fn listen_flags(pairs: &[(String, String)]) -> Result<BTreeMap<String, SocketAddr>, String> {
    let mut out = BTreeMap::new();
    for (name, address) in pairs {
        blargh_seed::seed_plan::check_app_name(name).map_err(|_| {
            format!(
                "--listen {name}={address}: {name:?} cannot name a socket; use 1-24 lower-case letters, digits, '-' or '_', starting with a letter"
            )
        })?;
        let addr: SocketAddr = address.parse().map_err(|_| {
            format!(
                "--listen {name}={address}: {address:?} is not an IP address and port; write it like 0.0.0.0:80 or [::]:443"
            )
        })?;
        if let Some((other, _)) = out.iter().find(|(_, a)| **a == addr) {
            return Err(format!(
                "--listen {name}={address}: {addr} is already the address of {other}; each address is used once"
            ));
        }
        if out.insert(name.clone(), addr).is_some() {
            return Err(format!(
                "--listen {name}=…: the socket {name} is given twice"
            ));
        }
    }
    Ok(out)
}

fn positive(flag: &str, d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err(format!("{flag} 0: must be longer than zero"))
    } else {
        Ok(d)
    }
}

/// The configuration's `auto_rollback` in the control protocol's terms.
fn auto_rollback(a: Option<blargh_config::AutoRollback>) -> Option<AutoRollback> {
    a.map(|a| AutoRollback {
        window_s: a.window.as_secs(),
        crashes: a.crashes,
    })
}

/// Default cache of shipped binaries, under the target directory.
pub fn default_cache(app: &str) -> PathBuf {
    PathBuf::from("target/blargh").join(app).join("shipped")
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

/// The commit checked out in `dir`, if it is in a git work tree.
fn git_sha(dir: &Path) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path, section: &str) -> PathBuf {
        let path = dir.join("Cargo.toml");
        std::fs::write(
            &path,
            format!(
                "[package]\nname = \"Shop\"\nversion = \"1.2.3\"\nedition = \"2024\"\n{section}"
            ),
        )
        .unwrap();
        path
    }

    fn overrides(path: PathBuf) -> Overrides {
        Overrides {
            manifest_path: path,
            ..Default::default()
        }
    }

    const SECTION: &str = r#"
[package.metadata.blargh]
hosts = ["deploy@a", "deploy@b"]
listen = { web = "0.0.0.0:8080", admin = "127.0.0.1:9000" }
ready_timeout = "5s"
drain_timeout = "7s"
keep_releases = 3
env = { RUST_LOG = "info" }
[package.metadata.blargh.destinations.staging]
hosts = ["deploy@s"]
app = "shop-staging"
listen = { web = "0.0.0.0:8081" }
"#;

    #[test]
    fn the_file_reaches_every_setting() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::resolve(&overrides(manifest(dir.path(), SECTION))).unwrap();
        assert_eq!(s.app, "shop");
        assert_eq!(s.hosts, ["deploy@a", "deploy@b"]);
        assert_eq!(
            s.listen_pairs(),
            [
                ("admin".to_string(), "127.0.0.1:9000".to_string()),
                ("web".to_string(), "0.0.0.0:8080".to_string())
            ]
        );
        assert_eq!(
            s.agent,
            AgentTuning {
                ready_timeout: Duration::from_secs(5),
                drain_timeout: Duration::from_secs(7),
                keep_releases: 3
            }
        );
        assert_eq!(s.deploy.env, [("RUST_LOG".to_string(), "info".to_string())]);
        assert_eq!(s.deploy.app, "shop");
        assert_eq!(s.deploy.hosts, s.hosts);
        assert_eq!(s.deploy.version.as_deref(), Some("1.2.3"));
        assert_eq!(s.build.as_ref().unwrap().package, "Shop");
    }

    #[test]
    fn a_destination_overrides_the_top_level() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = overrides(manifest(dir.path(), SECTION));
        o.destination = Some("staging".into());
        let s = Settings::resolve(&o).unwrap();
        assert_eq!(s.app, "shop-staging");
        assert_eq!(s.hosts, ["deploy@s"]);
        assert_eq!(s.listen["web"].to_string(), "0.0.0.0:8081");
        assert_eq!(s.listen["admin"].to_string(), "127.0.0.1:9000");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = overrides(manifest(dir.path(), SECTION));
        o.app = Some("other".into());
        o.hosts = vec!["root@c".into()];
        o.listen = Some(vec![("api".into(), "0.0.0.0:3000".into())]);
        o.ready_timeout = Some(Duration::from_secs(9));
        o.drain_timeout = Some(Duration::from_secs(11));
        o.keep_releases = Some(4);
        o.parallel = true;
        let s = Settings::resolve(&o).unwrap();
        assert_eq!(s.app, "other");
        assert_eq!(s.deploy.app, "other");
        assert_eq!(s.hosts, ["root@c"]);
        assert_eq!(s.listen_pairs(), [("api".into(), "0.0.0.0:3000".into())]);
        assert_eq!(s.agent.ready_timeout, Duration::from_secs(9));
        assert_eq!(s.agent.drain_timeout, Duration::from_secs(11));
        assert_eq!(s.agent.keep_releases, 4);
        assert!(s.deploy.parallel);
        assert_eq!(s.deploy.cache_dir, default_cache("other"));
    }

    #[test]
    fn without_a_file_the_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = overrides(dir.path().join("Cargo.toml"));
        o.app = Some("shop".into());
        o.hosts = vec!["root@c".into()];
        let s = Settings::resolve(&o).unwrap();
        assert_eq!(s.listen_pairs(), [("web".into(), "0.0.0.0:80".into())]);
        assert_eq!(s.agent, AgentTuning::default());
        assert_eq!(s.agent.keep_releases, blargh_config::DEFAULT_KEEP_RELEASES);
        assert!(s.deploy.auto_rollback.is_some());
        assert!(s.build.is_none());
        s.require_app(&o.manifest_path).unwrap();
    }

    #[test]
    fn without_a_section_the_package_names_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::resolve(&overrides(manifest(dir.path(), ""))).unwrap();
        assert_eq!(s.app, "shop");
        assert!(s.hosts.is_empty());
        assert!(
            s.require_hosts(Path::new("Cargo.toml"))
                .unwrap_err()
                .contains("--host")
        );
    }

    #[test]
    fn a_broken_file_is_an_error_even_with_flags() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = overrides(manifest(
            dir.path(),
            "[package.metadata.blargh]\nhosts = [\"a@b\"]\nkeep_release = 3\n",
        ));
        o.hosts = vec!["root@c".into()];
        let e = Settings::resolve(&o).unwrap_err();
        assert!(e.contains("keep_release"), "{e}");
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let base = overrides(dir.path().join("Cargo.toml"));
        let cases: Vec<(Overrides, &str)> = vec![
            (
                Overrides {
                    listen: Some(vec![("Web".into(), "0.0.0.0:80".into())]),
                    ..base.clone()
                },
                "cannot name a socket",
            ),
            (
                Overrides {
                    listen: Some(vec![("web".into(), "localhost:80".into())]),
                    ..base.clone()
                },
                "not an IP address and port",
            ),
            (
                Overrides {
                    listen: Some(vec![
                        ("web".into(), "0.0.0.0:80".into()),
                        ("api".into(), "0.0.0.0:80".into()),
                    ]),
                    ..base.clone()
                },
                "already the address of",
            ),
            (
                Overrides {
                    listen: Some(vec![
                        ("web".into(), "0.0.0.0:80".into()),
                        ("web".into(), "0.0.0.0:81".into()),
                    ]),
                    ..base.clone()
                },
                "given twice",
            ),
            (
                Overrides {
                    keep_releases: Some(1),
                    ..base.clone()
                },
                "--keep-releases 1",
            ),
            (
                Overrides {
                    drain_timeout: Some(Duration::ZERO),
                    ..base.clone()
                },
                "--drain-timeout 0",
            ),
            (
                Overrides {
                    ready_timeout: Some(Duration::ZERO),
                    ..base.clone()
                },
                "--ready-timeout 0",
            ),
            (
                Overrides {
                    app: Some("Bad App".into()),
                    ..base.clone()
                },
                "--app",
            ),
        ];
        for (o, want) in cases {
            let e = Settings::resolve(&o).unwrap_err();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }
}
