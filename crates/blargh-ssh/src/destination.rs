//! Destinations as people type them: `user@host`, `user@host:port`,
//! `user@[2001:db8::1]:port`, `ssh://user@host:port`, or a bare `Host` alias from
//! `~/.ssh/config`. Parsing only; [`crate::config`] resolves aliases.

use std::fmt;
use std::str::FromStr;

use crate::error::SshError;

/// Where to connect, before `~/.ssh/config` is applied.
///
/// `host` may be a name, an address, or a `Host` alias from `~/.ssh/config`; `user`
/// and `port`, when given here, win over the config file (as with `ssh`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Remote user, if given (`user@…`).
    pub user: Option<String>,
    /// Host name, address (IPv6 without brackets), or `Host` alias.
    pub host: String,
    /// Port, if given (`…:port`).
    pub port: Option<u16>,
}

impl Destination {
    /// A destination with only a host (or alias).
    pub fn new(host: impl Into<String>) -> Destination {
        Destination {
            user: None,
            host: host.into(),
            port: None,
        }
    }

    /// The same destination with `user` set.
    pub fn with_user(mut self, user: impl Into<String>) -> Destination {
        self.user = Some(user.into());
        self
    }

    /// The same destination with `port` set.
    pub fn with_port(mut self, port: u16) -> Destination {
        self.port = Some(port);
        self
    }

    /// Parse `[ssh://][user@]host[:port]` (IPv6 addresses in brackets when a port
    /// follows; a bare IPv6 address without a port is accepted too).
    pub fn parse(input: &str) -> Result<Destination, SshError> {
        let invalid = |reason: &str| SshError::InvalidDestination {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let mut s = input.trim();
        if s.is_empty() {
            return Err(invalid("it is empty"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains spaces or control characters"));
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            s = rest.strip_suffix('/').unwrap_or(rest);
        } else if s.contains("://") {
            return Err(invalid("only ssh:// URLs are understood"));
        }

        let (user, hostport) = match s.rsplit_once('@') {
            Some((user, hostport)) => {
                if user.is_empty() {
                    return Err(invalid("the user before '@' is empty"));
                }
                (Some(user.to_string()), hostport)
            }
            None => (None, s),
        };

        let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("'[' without a closing ']'"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid("expected ':port' after ']'"))?,
                ),
            };
            (host, port)
        } else {
            match hostport.matches(':').count() {
                0 => (hostport, None),
                1 => {
                    let (host, port) = hostport.split_once(':').unwrap_or((hostport, ""));
                    (host, Some(port))
                }
                // A bare IPv6 address: no port possible without brackets.
                _ => (hostport, None),
            }
        };

        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if host.starts_with('-') {
            return Err(invalid("a host cannot start with '-'"));
        }
        if host.contains(['/', '@', '[', ']']) {
            return Err(invalid("the host contains '/', '@', '[' or ']'"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) => return Err(invalid("port 0 is not a valid port")),
                Ok(p) => Some(p),
                Err(_) => {
                    return Err(invalid(&format!("{p:?} is not a port number (1-65535)")));
                }
            },
        };
        Ok(Destination {
            user,
            host: host.to_string(),
            port,
        })
    }
}

impl FromStr for Destination {
    type Err = SshError;

    fn from_str(s: &str) -> Result<Destination, SshError> {
        Destination::parse(s)
    }
}

impl fmt::Display for Destination {
    /// Writes the destination back in the form [`Destination::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        match (self.port, self.host.contains(':')) {
            (Some(port), true) => write!(f, "[{}]:{port}", self.host),
            (Some(port), false) => write!(f, "{}:{port}", self.host),
            (None, _) => write!(f, "{}", self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Destination {
        Destination::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn host_only_is_an_alias_or_name() {
        assert_eq!(parse("myserver"), Destination::new("myserver"));
        assert_eq!(parse("  example.com "), Destination::new("example.com"));
    }

    #[test]
    fn user_host_port() {
        assert_eq!(
            parse("deploy@203.0.113.10"),
            Destination::new("203.0.113.10").with_user("deploy")
        );
        assert_eq!(
            parse("deploy@example.com:2222"),
            Destination::new("example.com")
                .with_user("deploy")
                .with_port(2222)
        );
        assert_eq!(
            parse("example.com:22"),
            Destination::new("example.com").with_port(22)
        );
    }

    #[test]
    fn last_at_separates_the_user() {
        assert_eq!(
            parse("me@corp@host"),
            Destination::new("host").with_user("me@corp")
        );
    }

    #[test]
    fn ipv6() {
        assert_eq!(
            parse("root@[2001:db8::1]:2200"),
            Destination::new("2001:db8::1")
                .with_user("root")
                .with_port(2200)
        );
        assert_eq!(parse("[::1]"), Destination::new("::1"));
        assert_eq!(parse("root@::1"), Destination::new("::1").with_user("root"));
    }

    #[test]
    fn ssh_url() {
        assert_eq!(
            parse("ssh://deploy@host:2222/"),
            Destination::new("host").with_user("deploy").with_port(2222)
        );
        assert!(Destination::parse("https://host").is_err());
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "   ",
            "@host",
            "user@",
            "user@host:",
            "user@host:0",
            "user@host:65536",
            "user@host:ssh",
            "user@[::1",
            "user@[::1]2222",
            "-oProxyCommand=x",
            "user@ho st",
            "a/b",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "host",
            "user@host",
            "user@host:2222",
            "user@[2001:db8::1]:22",
            "::1",
        ] {
            assert_eq!(parse(s).to_string(), s);
            assert_eq!(parse(&parse(s).to_string()), parse(s));
        }
    }

    #[test]
    fn error_names_the_input_and_the_forms() {
        let err = Destination::parse("user@host:x").unwrap_err().to_string();
        assert!(err.contains("user@host:x"), "{err}");
        assert!(err.contains("user@host:port"), "{err}");
    }
}
