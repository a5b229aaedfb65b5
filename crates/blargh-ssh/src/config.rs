//! Applying `~/.ssh/config` to a [`Destination`]: `Host` aliases, `HostName`, `User`,
//! `Port`, `IdentityFile`, `IdentitiesOnly`, `IdentityAgent`, `UserKnownHostsFile`,
//! `ProxyJump` and `Include`, parsed with the ssh2-config crate.
//!
//! As with `ssh`, the first value found for a setting wins (`IdentityFile`s add up
//! over all matching blocks), and a user or port written in the destination wins over
//! the file. `Match` blocks are not understood: in the
//! main file their settings are ignored rather than applied to the wrong hosts.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{HostParams, ParseRule};

use crate::destination::Destination;
use crate::error::SshError;
use crate::options::{ConnectOptions, SshConfigFile};

/// Where the ssh-agent is, according to `IdentityAgent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSetting {
    /// Not set: use `$SSH_AUTH_SOCK`.
    Default,
    /// `IdentityAgent none`: no agent.
    Disabled,
    /// `IdentityAgent PATH` (or `SSH_AUTH_SOCK` as the literal value).
    Socket(PathBuf),
}

/// One host to connect to, with everything the config file says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// The name that was asked for (a `Host` alias, or the host itself).
    pub alias: String,
    /// The name or address to connect to (`HostName`, else the alias).
    pub host_name: String,
    /// The TCP port.
    pub port: u16,
    /// The remote user.
    pub user: String,
    /// `IdentityFile`s, `~` and `%` tokens expanded.
    pub identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly yes`: use only the listed key files (agent keys only if they
    /// are one of those).
    pub identities_only: bool,
    /// `IdentityAgent`.
    pub agent: AgentSetting,
    /// `UserKnownHostsFile` (the first one).
    pub known_hosts: Option<PathBuf>,
    /// `ProxyJump` hosts, in order (empty for none).
    pub proxy_jump: Vec<Destination>,
}

impl HostSettings {
    /// `host` or `host:port` for messages.
    pub fn display_addr(&self) -> String {
        if self.port == 22 {
            self.host_name.clone()
        } else if self.host_name.contains(':') {
            format!("[{}]:{}", self.host_name, self.port)
        } else {
            format!("{}:{}", self.host_name, self.port)
        }
    }
}

/// A parsed ssh config (possibly empty).
#[derive(Debug, Clone)]
pub struct SshConfig {
    inner: ssh2_config::SshConfig,
    home: Option<PathBuf>,
}

const RULES: ParseRule = ParseRule::ALLOW_UNKNOWN_FIELDS.union(ParseRule::ALLOW_UNSUPPORTED_FIELDS);

impl SshConfig {
    /// An empty config: destinations are taken literally.
    pub fn empty(home: Option<PathBuf>) -> SshConfig {
        SshConfig {
            inner: ssh2_config::SshConfig::default(),
            home,
        }
    }

    /// Read the config file that `options` names.
    pub fn load(options: &ConnectOptions) -> Result<SshConfig, SshError> {
        let home = options.home_dir();
        let (path, must_exist) = match &options.ssh_config {
            SshConfigFile::Ignore => return Ok(SshConfig::empty(home)),
            SshConfigFile::Path(p) => (p.clone(), true),
            SshConfigFile::Default => match options.ssh_dir() {
                Some(dir) => (dir.join("config"), false),
                None => return Ok(SshConfig::empty(home)),
            },
        };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SshConfig::empty(home));
            }
            Err(e) => {
                return Err(SshError::Config {
                    path,
                    message: e.to_string(),
                });
            }
        };
        SshConfig::parse(&text, home).map_err(|message| SshError::Config { path, message })
    }

    /// Parse config text; `home` expands `~` and anchors relative `Include`s at
    /// `<home>/.ssh`.
    pub fn parse(text: &str, home: Option<PathBuf>) -> Result<SshConfig, String> {
        let text = neutralize_match_blocks(text);
        let mut config = ssh2_config::SshConfig::default();
        if let Some(home) = &home {
            config = config.home_dir(home.clone());
        }
        let inner = config
            .parse(&mut BufReader::new(text.as_bytes()), RULES)
            .map_err(|e| e.to_string())?;
        Ok(SshConfig { inner, home })
    }

    /// Apply the config to one destination (its `ProxyJump` hosts are listed, not
    /// resolved; see [`SshConfig::route`]).
    pub fn resolve(&self, dest: &Destination) -> Result<HostSettings, SshError> {
        let params = self.inner.query(&dest.host);
        let user = match dest.user.clone().or_else(|| params.user.clone()) {
            Some(user) => user,
            None => local_user().ok_or_else(|| SshError::NoUser {
                host: dest.host.clone(),
            })?,
        };
        let port = dest.port.or(params.port).unwrap_or(22);
        let tokens = Tokens {
            alias: &dest.host,
            host_name: params.host_name.as_deref().unwrap_or(&dest.host),
            port,
            user: &user,
            home: self.home.as_deref(),
        };
        let host_name = match &params.host_name {
            Some(h) => tokens.expand(h),
            None => dest.host.clone(),
        };
        let tokens = Tokens {
            host_name: &host_name,
            ..tokens
        };
        let identity_files = params
            .identity_file
            .iter()
            .flatten()
            .map(|p| PathBuf::from(tokens.expand(&p.to_string_lossy())))
            .collect();
        let proxy_jump = match &params.proxy_jump {
            Some(list) if !(list.len() == 1 && list[0].eq_ignore_ascii_case("none")) => list
                .iter()
                .map(|j| Destination::parse(j))
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        let identities_only = flag(&params, "identitiesonly");
        let agent = match first_arg(&params, "identityagent") {
            None => AgentSetting::Default,
            Some(a) if a.eq_ignore_ascii_case("none") => AgentSetting::Disabled,
            Some(a) if a == "SSH_AUTH_SOCK" => AgentSetting::Default,
            Some(a) => AgentSetting::Socket(PathBuf::from(tokens.expand(&self.tilde(&a)))),
        };
        let known_hosts = first_arg(&params, "userknownhostsfile")
            .filter(|p| p != "none")
            .map(|p| PathBuf::from(tokens.expand(&self.tilde(&p))));
        Ok(HostSettings {
            alias: dest.host.clone(),
            host_name,
            port,
            user,
            identity_files,
            identities_only,
            agent,
            known_hosts,
            proxy_jump,
        })
    }

    /// The hosts to go through to reach `dest`: its `ProxyJump` hosts (each resolved
    /// through the config too, their own `ProxyJump`s first), then `dest` itself.
    pub fn route(&self, dest: &Destination) -> Result<Vec<HostSettings>, SshError> {
        let mut hops = Vec::new();
        self.route_into(dest, &mut hops, 0)?;
        Ok(hops)
    }

    fn route_into(
        &self,
        dest: &Destination,
        hops: &mut Vec<HostSettings>,
        depth: usize,
    ) -> Result<(), SshError> {
        if depth > 8 {
            return Err(SshError::Config {
                path: PathBuf::from("~/.ssh/config"),
                message: format!("ProxyJump for {dest} nests more than 8 levels (a loop?)"),
            });
        }
        let settings = self.resolve(dest)?;
        for jump in &settings.proxy_jump {
            self.route_into(jump, hops, depth + 1)?;
        }
        hops.push(settings);
        Ok(())
    }

    fn tilde(&self, path: &str) -> String {
        match (path.strip_prefix('~'), &self.home) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                format!("{}{rest}", home.display())
            }
            _ => path.to_string(),
        }
    }
}

/// `%` tokens of ssh_config(5) that make sense here.
struct Tokens<'a> {
    alias: &'a str,
    host_name: &'a str,
    port: u16,
    user: &'a str,
    home: Option<&'a Path>,
}

impl Tokens<'_> {
    fn expand(&self, s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('h') => out.push_str(self.host_name),
                Some('n') => out.push_str(self.alias),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => out.push_str(self.user),
                Some('u') => out.push_str(&local_user().unwrap_or_default()),
                Some('d') => out.push_str(
                    &self
                        .home
                        .map(|h| h.display().to_string())
                        .unwrap_or_default(),
                ),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

fn first_arg(params: &HostParams, key: &str) -> Option<String> {
    params
        .unsupported_fields
        .get(key)
        .or_else(|| params.ignored_fields.get(key))
        .and_then(|args| args.first().cloned())
}

fn flag(params: &HostParams, key: &str) -> bool {
    first_arg(params, key).is_some_and(|v| v.eq_ignore_ascii_case("yes"))
}

/// Turn `Match …` lines into a `Host` block that matches nothing, so their settings
/// are not applied to the preceding `Host` block.
fn neutralize_match_blocks(text: &str) -> String {
    text.lines()
        .map(|line| {
            let t = line.trim_start();
            let keyword = t
                .split(|c: char| c.is_whitespace() || c == '=')
                .next()
                .unwrap_or("");
            if keyword.eq_ignore_ascii_case("match") {
                "Host blargh.unsupported-match-block.invalid".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The local user's name: `$USER`, `$LOGNAME`, else looked up in `/etc/passwd`.
pub(crate) fn local_user() -> Option<String> {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return Some(v);
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = fs::metadata("/proc/self").ok()?.uid();
        let passwd = fs::read_to_string("/etc/passwd").ok()?;
        for line in passwd.lines() {
            let mut f = line.split(':');
            let (Some(name), _, Some(id)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if id.parse::<u32>().ok() == Some(uid) {
                return Some(name.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> SshConfig {
        SshConfig::parse(text, Some(PathBuf::from("/home/dev"))).expect("config parses")
    }

    #[test]
    fn alias_with_everything() {
        let c = config(
            "Host web\n  HostName 203.0.113.10\n  Port 2222\n  User deploy\n  \
             IdentityFile ~/.ssh/deploy_%h\n  IdentitiesOnly yes\n\n\
             Host *\n  User fallback\n  IdentityFile ~/.ssh/id_other\n",
        );
        let s = c.resolve(&Destination::new("web")).unwrap();
        assert_eq!(s.alias, "web");
        assert_eq!(s.host_name, "203.0.113.10");
        assert_eq!(s.port, 2222);
        assert_eq!(s.user, "deploy");
        // IdentityFile adds up over every matching block, as in ssh_config(5).
        assert_eq!(
            s.identity_files,
            vec![
                PathBuf::from("/home/dev/.ssh/deploy_203.0.113.10"),
                PathBuf::from("/home/dev/.ssh/id_other")
            ]
        );
        assert!(s.identities_only);
        assert!(s.proxy_jump.is_empty());
        assert_eq!(s.display_addr(), "203.0.113.10:2222");
    }

    #[test]
    fn destination_user_and_port_win() {
        let c = config("Host web\n  HostName h.example\n  Port 2222\n  User deploy\n");
        let s = c
            .resolve(&Destination::parse("root@web:22").unwrap())
            .unwrap();
        assert_eq!((s.user.as_str(), s.port), ("root", 22));
        assert_eq!(s.host_name, "h.example");
    }

    #[test]
    fn unknown_host_is_literal() {
        let c = config("Host web\n  HostName h.example\n");
        let s = c
            .resolve(&Destination::parse("me@other.example").unwrap())
            .unwrap();
        assert_eq!(s.host_name, "other.example");
        assert_eq!(s.port, 22);
        assert!(!s.identities_only);
        assert_eq!(s.agent, AgentSetting::Default);
    }

    #[test]
    fn proxy_jump_route() {
        let c = config(
            "Host app\n  HostName 10.0.0.5\n  User deploy\n  ProxyJump bastion\n\n\
             Host bastion\n  HostName bastion.example\n  Port 2200\n  User jump\n",
        );
        let route = c.route(&Destination::new("app")).unwrap();
        assert_eq!(route.len(), 2);
        assert_eq!(route[0].host_name, "bastion.example");
        assert_eq!(route[0].port, 2200);
        assert_eq!(route[0].user, "jump");
        assert_eq!(route[1].host_name, "10.0.0.5");
        assert_eq!(route[1].proxy_jump, vec![Destination::new("bastion")]);
    }

    #[test]
    fn proxy_jump_list_and_none() {
        let c = config("Host a\n  ProxyJump u1@j1:2201,j2\nHost b\n  ProxyJump none\n");
        let route = c.route(&Destination::parse("x@a").unwrap()).unwrap();
        let names: Vec<_> = route.iter().map(|h| h.display_addr()).collect();
        assert_eq!(names, vec!["j1:2201", "j2", "a"]);
        assert_eq!(route[0].user, "u1");
        assert!(
            c.resolve(&Destination::new("b"))
                .unwrap()
                .proxy_jump
                .is_empty()
        );
    }

    #[test]
    fn proxy_jump_loop_is_an_error() {
        let c = config("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n");
        assert!(c.route(&Destination::parse("x@a").unwrap()).is_err());
    }

    #[test]
    fn agent_and_known_hosts_settings() {
        let c = config(
            "Host a\n  IdentityAgent none\n  UserKnownHostsFile ~/.ssh/kh_a\nHost b\n  IdentityAgent ~/agent.sock\n",
        );
        let a = c.resolve(&Destination::parse("x@a").unwrap()).unwrap();
        assert_eq!(a.agent, AgentSetting::Disabled);
        assert_eq!(a.known_hosts, Some(PathBuf::from("/home/dev/.ssh/kh_a")));
        let b = c.resolve(&Destination::parse("x@b").unwrap()).unwrap();
        assert_eq!(
            b.agent,
            AgentSetting::Socket(PathBuf::from("/home/dev/agent.sock"))
        );
    }

    #[test]
    fn include_is_followed() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        fs::create_dir_all(ssh.join("conf.d")).unwrap();
        fs::write(
            ssh.join("conf.d/web.conf"),
            "Host web\n  HostName included.example\n  User inc\n",
        )
        .unwrap();
        let c =
            SshConfig::parse("Include conf.d/*.conf\n", Some(home.path().to_path_buf())).unwrap();
        let s = c.resolve(&Destination::new("web")).unwrap();
        assert_eq!(s.host_name, "included.example");
        assert_eq!(s.user, "inc");
    }

    #[test]
    fn match_blocks_do_not_leak_into_hosts() {
        let c = config("Host web\n  HostName a.example\nMatch host web\n  User wrong\n");
        let s = c.resolve(&Destination::parse("me@web").unwrap()).unwrap();
        assert_eq!(s.user, "me");
        let s = c.resolve(&Destination::new("web")).unwrap();
        assert_ne!(s.user, "wrong");
    }

    #[test]
    fn tokens() {
        let t = Tokens {
            alias: "web",
            host_name: "h",
            port: 22,
            user: "r",
            home: Some(Path::new("/home/dev")),
        };
        assert_eq!(
            t.expand("%d/.ssh/%n-%h-%p-%r%%"),
            "/home/dev/.ssh/web-h-22-r%"
        );
    }
}
