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
use blargh_proto::{AppName, SocketName};

use crate::deploy::DeploySettings;
use crate::remote::ConnectArgs;

/// What the agent on each host is tuned to: the keys of the configuration that the agent
/// applies itself (no root needed), so deploy can bring a host in line before it ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTuning {
    /// How long a new release may take to say `READY=1`.
    pub ready_timeout: Duration,
    /// How long a replaced release may drain before SIGKILL.
    pub drain_timeout: Duration,
    /// Releases kept on disk per host (≥ 2).
    pub keep_releases: u32,
    /// How long a release may go without `WATCHDOG=1` before it is replaced as hung;
    /// `None`: no watchdog.
    pub watchdog_timeout: Option<Duration>,
    /// How a new release shows it is ready (`ready`).
    pub ready: blargh_proto::control::Readiness,
    /// Certificates from ACME for the app's HTTPS (`tls`).
    pub tls: Option<blargh_proto::control::TlsSettings>,
}

impl Default for AgentTuning {
    fn default() -> Self {
        AgentTuning {
            ready_timeout: blargh_config::DEFAULT_READY_TIMEOUT,
            drain_timeout: blargh_config::DEFAULT_DRAIN_TIMEOUT,
            keep_releases: blargh_config::DEFAULT_KEEP_RELEASES,
            watchdog_timeout: Some(blargh_config::DEFAULT_WATCHDOG_TIMEOUT),
            ready: Default::default(),
            tls: None,
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
    pub app: AppName,
    /// SSH destinations, in the order configured.
    pub hosts: Vec<String>,
    /// The sockets the agent owns on each host, by name.
    pub listen: BTreeMap<SocketName, SocketAddr>,
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
    /// What a release is made of (`include`, `release_dir` + `start`); a `release_dir`
    /// relative to the package's directory is made absolute here.
    pub content: blargh_config::ReleaseContent,
    /// A release bigger than this is refused before anything is sent.
    pub max_release_size: u64,
}

/// What the Cargo.toml says, before the flags: "as read", every field optional where the
/// file may be silent.
#[derive(Debug, Default)]
struct FromFile {
    app: Option<AppName>,
    hosts: Vec<String>,
    listen: Option<BTreeMap<SocketName, SocketAddr>>,
    agent: Option<AgentTuning>,
    config: Option<blargh_config::DeployConfig>,
    version: Option<String>,
    git_sha: Option<String>,
    build: Option<Build>,
}

impl FromFile {
    /// Reads the Cargo.toml at `manifest` for `destination`.
    fn read(manifest: &Path, destination: Option<&str>) -> Result<FromFile, String> {
        let dir = manifest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let text = std::fs::read_to_string(manifest)
            .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
        let (name, version) = package_name_version(&text);
        let mut f = FromFile {
            version,
            git_sha: git_sha(&dir),
            ..Default::default()
        };
        let cfg = match blargh_config::parse(&text, manifest, destination) {
            Ok(cfg) => cfg,
            // No blargh section (or a workspace's root manifest): flags may say everything.
            Err(e)
                if matches!(
                    e.kind(),
                    blargh_config::ErrorKind::NoSection | blargh_config::ErrorKind::NoPackage
                ) && destination.is_none() =>
            {
                if matches!(e.kind(), blargh_config::ErrorKind::NoSection) {
                    f.app = blargh_proto::names::lower_name_from(&name, blargh_config::MAX_APP_LEN)
                        .parse()
                        .ok();
                    f.build = Some(Build {
                        dir,
                        package: name.clone(),
                        bin: name,
                        target: None,
                    });
                }
                return Ok(f);
            }
            Err(e) => return Err(e.to_string()),
        };
        f.app = Some(cfg.app.clone());
        f.hosts = cfg.hosts.clone();
        f.listen = Some(cfg.listen.clone());
        f.agent = Some(AgentTuning {
            ready_timeout: cfg.ready_timeout,
            drain_timeout: cfg.drain_timeout,
            keep_releases: cfg.keep_releases,
            watchdog_timeout: cfg.watchdog_timeout,
            ready: cfg.ready.clone(),
            tls: cfg.tls.clone(),
        });
        f.build = Some(Build {
            dir,
            bin: cfg.bin.clone().unwrap_or_else(|| cfg.package.clone()),
            package: cfg.package.clone(),
            target: cfg.target.clone(),
        });
        f.config = Some(cfg);
        Ok(f)
    }
}

impl Settings {
    /// Resolves `o` against the configuration at `o.manifest_path` (if any): flags win over
    /// the file, the file over the defaults. Fails on a broken configuration (always), on a
    /// missing app name, and on a bad flag value, naming the flag or the key.
    pub fn resolve(o: &Overrides) -> Result<Settings, String> {
        let manifest = &o.manifest_path;
        let file = if manifest.exists() || o.destination.is_some() {
            FromFile::read(manifest, o.destination.as_deref())?
        } else {
            FromFile::default()
        };
        let app: AppName = match &o.app {
            Some(app) => app.parse().map_err(|e| format!("--app {e}"))?,
            None => file.app.clone().ok_or_else(|| {
                format!(
                    "which app? {} names none: pass --app NAME, or run in the app's directory",
                    manifest.display()
                )
            })?,
        };
        let hosts = if o.hosts.is_empty() {
            file.hosts.clone()
        } else {
            o.hosts.clone()
        };
        let listen = match &o.listen {
            Some(flags) => listen_flags(flags)?,
            None => file.listen.clone().unwrap_or_else(default_listen),
        };
        let mut agent = file.agent.unwrap_or_default();
        if let Some(t) = o.ready_timeout {
            agent.ready_timeout = positive("--ready-timeout", t)?;
        }
        if let Some(t) = o.drain_timeout {
            agent.drain_timeout = positive("--drain-timeout", t)?;
        }
        if let Some(k) = o.keep_releases {
            if k < blargh_config::MIN_KEEP_RELEASES {
                return Err(format!(
                    "--keep-releases {k}: keep at least {} (the current release and one to roll back to)",
                    blargh_config::MIN_KEEP_RELEASES
                ));
            }
            agent.keep_releases = k;
        }
        let mut build = file.build;
        if let (Some(target), Some(build)) = (&o.target, &mut build) {
            build.target = Some(target.clone());
        }
        let cfg = file.config.as_ref();
        let seed_command = crate::drift::seed_command(o.destination.as_deref(), &o.hosts, &app);
        let deploy = DeploySettings {
            app: app.to_string(),
            hosts: hosts.clone(),
            env: cfg
                .map(|c| c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            before_activate: cfg
                .and_then(|c| c.before_activate.clone())
                .filter(|a| !a.is_empty()),
            auto_rollback: auto_rollback(
                cfg.map_or(Some(blargh_config::DEFAULT_AUTO_ROLLBACK), |c| {
                    c.auto_rollback
                }),
            ),
            lock_expiry: cfg.map_or(blargh_config::DEFAULT_LOCK_EXPIRY, |c| c.lock_expiry),
            parallel: o.parallel || cfg.is_some_and(|c| c.parallel),
            message: o.message.clone(),
            version: file.version.clone(),
            git_sha: file.git_sha.clone(),
            cache_dir: default_cache(&app),
            progress: false,
            wanted: Default::default(),
            switch: Default::default(),
        };
        let content = match cfg.map(|c| &c.release) {
            Some(blargh_config::ReleaseContent::Dir { dir, start }) => {
                blargh_config::ReleaseContent::Dir {
                    dir: match &build {
                        Some(b) => b.dir.join(dir),
                        None => dir.clone(),
                    },
                    start: start.clone(),
                }
            }
            Some(other) => other.clone(),
            None => blargh_config::ReleaseContent::Binary {
                include: Vec::new(),
            },
        };
        let mut settings = Settings {
            app,
            hosts,
            listen,
            agent,
            deploy,
            build,
            known_hosts: cfg.map(|c| c.known_hosts.clone()).unwrap_or_default(),
            connect: o.connect.clone(),
            content,
            max_release_size: cfg.map_or(blargh_config::DEFAULT_MAX_RELEASE_SIZE, |c| {
                c.max_release_size
            }),
        };
        settings.deploy.wanted = settings.wanted(seed_command);
        Ok(settings)
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
            .join(self.app.as_str())
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
            tuning: self.agent.clone(),
            seed_command,
        }
    }

    /// The sockets as `(name, address)` pairs, the form seed's units take.
    pub fn listen_pairs(&self) -> Vec<(SocketName, String)> {
        self.listen
            .iter()
            .map(|(n, a)| (n.clone(), a.to_string()))
            .collect()
    }
}

/// `listen` when neither the file nor a flag sets it.
fn default_listen() -> BTreeMap<SocketName, SocketAddr> {
    BTreeMap::from([(
        blargh_config::DEFAULT_LISTEN_NAME
            .parse()
            .expect("the default name is valid"),
        blargh_config::DEFAULT_LISTEN_ADDRESS
            .parse()
            .expect("the default address parses"),
    )])
}

/// `--listen` flags, checked by the rules the configuration's `listen` follows.
fn listen_flags(pairs: &[(String, String)]) -> Result<BTreeMap<SocketName, SocketAddr>, String> {
    let mut out: BTreeMap<SocketName, SocketAddr> = BTreeMap::new();
    for (name, address) in pairs {
        let socket: SocketName = name
            .parse()
            .map_err(|e| format!("--listen {name}={address}: {e}"))?;
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
        if out.insert(socket, addr).is_some() {
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
pub fn default_cache(app: &AppName) -> PathBuf {
    PathBuf::from("target/blargh")
        .join(app.as_str())
        .join("shipped")
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

    fn pairs(s: &Settings) -> Vec<(String, String)> {
        s.listen_pairs()
            .into_iter()
            .map(|(n, a)| (n.to_string(), a))
            .collect()
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
watchdog_timeout = "4s"
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
            pairs(&s),
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
                keep_releases: 3,
                watchdog_timeout: Some(Duration::from_secs(4)),
                ready: Default::default(),
                tls: None,
            }
        );
        assert_eq!(s.deploy.env.len(), 1);
        assert_eq!(s.deploy.env[0].0.as_str(), "RUST_LOG");
        assert_eq!(s.deploy.env[0].1, "info");
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
        assert_eq!(pairs(&s), [("api".into(), "0.0.0.0:3000".into())]);
        assert_eq!(s.agent.ready_timeout, Duration::from_secs(9));
        assert_eq!(s.agent.drain_timeout, Duration::from_secs(11));
        assert_eq!(s.agent.keep_releases, 4);
        assert!(s.deploy.parallel);
        assert_eq!(s.deploy.cache_dir, default_cache(&"other".parse().unwrap()));
    }

    #[test]
    fn without_a_file_the_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = overrides(dir.path().join("Cargo.toml"));
        o.app = Some("shop".into());
        o.hosts = vec!["root@c".into()];
        let s = Settings::resolve(&o).unwrap();
        assert_eq!(pairs(&s), [("web".into(), "0.0.0.0:80".into())]);
        assert_eq!(s.agent, AgentTuning::default());
        assert_eq!(s.agent.keep_releases, blargh_config::DEFAULT_KEEP_RELEASES);
        assert!(s.deploy.auto_rollback.is_some());
        assert!(s.build.is_none());
        assert_eq!(s.app, "shop");
    }

    #[test]
    fn without_an_app_it_asks_for_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = overrides(dir.path().join("Cargo.toml"));
        o.hosts = vec!["root@c".into()];
        let e = Settings::resolve(&o).unwrap_err();
        assert!(e.contains("which app?") && e.contains("--app NAME"), "{e}");
    }

    #[test]
    fn a_package_name_becomes_a_valid_app_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Cargo.toml");
        std::fs::write(
            &path,
            "[package]\nname = \"My_Shop.Web\"\nversion = \"0.1.0\"\n",
        )
        .unwrap();
        let s = Settings::resolve(&overrides(path)).unwrap();
        assert_eq!(s.app, "my_shop-web");
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
        let base = Overrides {
            app: Some("shop".into()),
            ..overrides(dir.path().join("Cargo.toml"))
        };
        let cases: Vec<(Overrides, &str)> = vec![
            (
                Overrides {
                    listen: Some(vec![("Web".into(), "0.0.0.0:80".into())]),
                    ..base.clone()
                },
                "--listen Web=0.0.0.0:80",
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
