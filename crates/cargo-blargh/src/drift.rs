//! What a host runs against what the configuration says: the differences, split into the
//! ones the agent applies itself (timeouts, retention) and the ones that need root and
//! `cargo blargh seed` (the sockets, which belong to the init system's units).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use blargh_proto::SocketName;
use blargh_proto::control::{AgentSettings, AgentStatus, Readiness};

use crate::settings::AgentTuning;

/// What the configuration wants of every host: its sockets and the agent's tuning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The sockets, by name.
    pub listen: BTreeMap<SocketName, SocketAddr>,
    /// The agent's tuning.
    pub tuning: AgentTuning,
    /// The command that applies socket changes (`cargo blargh seed …`).
    pub seed_command: String,
}

/// What a host's agent reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The sockets it owns, by name, as it reports their addresses.
    pub listeners: BTreeMap<String, String>,
    /// Its effective tuning.
    pub tuning: AgentTuning,
}

/// One way a host differs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The configuration has a socket the host lacks.
    ListenerAdded {
        /// Socket name.
        name: String,
        /// Configured address.
        address: SocketAddr,
    },
    /// The host has a socket the configuration no longer has.
    ListenerRemoved {
        /// Socket name.
        name: String,
        /// The host's address for it.
        address: String,
    },
    /// A socket listens elsewhere than configured.
    ListenerMoved {
        /// Socket name.
        name: String,
        /// The host's address.
        from: String,
        /// The configured address.
        to: SocketAddr,
    },
    /// `ready_timeout` differs.
    ReadyTimeout {
        /// The host's.
        from: Duration,
        /// The configuration's.
        to: Duration,
    },
    /// `drain_timeout` differs.
    DrainTimeout {
        /// The host's.
        from: Duration,
        /// The configuration's.
        to: Duration,
    },
    /// `watchdog_timeout` differs (`None`: off).
    WatchdogTimeout {
        /// The host's.
        from: Option<Duration>,
        /// The configuration's.
        to: Option<Duration>,
    },
    /// `ready` differs.
    Ready {
        /// The host's.
        from: Readiness,
        /// The configuration's.
        to: Readiness,
    },
    /// `tls` differs.
    Tls {
        /// The host's.
        from: Option<blargh_proto::control::TlsSettings>,
        /// The configuration's.
        to: Option<blargh_proto::control::TlsSettings>,
    },
    /// `keep_releases` differs.
    KeepReleases {
        /// The host's.
        from: u32,
        /// The configuration's.
        to: u32,
    },
}

impl Difference {
    /// True when only root can apply it (through `cargo blargh seed`).
    pub fn needs_root(&self) -> bool {
        match self {
            Difference::ListenerAdded { .. }
            | Difference::ListenerRemoved { .. }
            | Difference::ListenerMoved { .. } => true,
            Difference::ReadyTimeout { .. }
            | Difference::DrainTimeout { .. }
            | Difference::KeepReleases { .. }
            | Difference::Ready { .. }
            | Difference::Tls { .. }
            | Difference::WatchdogTimeout { .. } => false,
        }
    }
}

fn human(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::ListenerAdded { name, address } => write!(
                f,
                "listen.{name} = \"{address}\" is configured; the host has no socket {name}"
            ),
            Difference::ListenerRemoved { name, address } => write!(
                f,
                "the host listens on {address} as {name}; the configuration has no listen.{name}"
            ),
            Difference::ListenerMoved { name, from, to } => write!(
                f,
                "listen.{name}: the host listens on {from}, the configuration says {to}"
            ),
            Difference::ReadyTimeout { from, to } => {
                write!(f, "ready_timeout {} → {}", human(from), human(to))
            }
            Difference::DrainTimeout { from, to } => {
                write!(f, "drain_timeout {} → {}", human(from), human(to))
            }
            Difference::KeepReleases { from, to } => write!(f, "keep_releases {from} → {to}"),
            Difference::Ready { from, to } => write!(f, "ready {from} → {to}"),
            Difference::Tls { from, to } => {
                let show = |t: &Option<blargh_proto::control::TlsSettings>| {
                    t.as_ref()
                        .map_or("off".to_string(), |t| t.domains.join(","))
                };
                write!(f, "tls {} → {}", show(from), show(to))
            }
            Difference::WatchdogTimeout { from, to } => {
                let show = |d: &Option<Duration>| d.as_ref().map_or("off".to_string(), human);
                write!(f, "watchdog_timeout {} → {}", show(from), show(to))
            }
        }
    }
}

impl HostFacts {
    /// The facts in an agent's status answer.
    pub fn of(status: &AgentStatus) -> HostFacts {
        HostFacts {
            listeners: status
                .listeners
                .iter()
                .map(|l| (l.name.to_string(), l.address.clone()))
                .collect(),
            tuning: AgentTuning::from(status.settings.clone()),
        }
    }
}

impl From<AgentSettings> for AgentTuning {
    fn from(s: AgentSettings) -> Self {
        AgentTuning {
            ready_timeout: Duration::from_millis(s.ready_timeout_ms),
            drain_timeout: Duration::from_millis(s.drain_timeout_ms),
            keep_releases: s.keep_releases,
            watchdog_timeout: match s.watchdog_timeout_ms {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            ready: s.ready,
            tls: s.tls,
        }
    }
}

impl From<AgentTuning> for AgentSettings {
    fn from(t: AgentTuning) -> Self {
        AgentSettings {
            ready_timeout_ms: t.ready_timeout.as_millis() as u64,
            drain_timeout_ms: t.drain_timeout.as_millis() as u64,
            keep_releases: t.keep_releases,
            watchdog_timeout_ms: t.watchdog_timeout.map_or(0, |d| d.as_millis() as u64),
            ready: t.ready,
            tls: t.tls,
        }
    }
}

/// Every difference between what `host` reports and `want`, sockets first, by name.
pub fn compare(want: &Wanted, host: &HostFacts) -> Vec<Difference> {
    compare_parts(&want.listen, &want.tuning, host)
}

fn compare_parts(
    listen: &BTreeMap<SocketName, SocketAddr>,
    tuning: &AgentTuning,
    host: &HostFacts,
) -> Vec<Difference> {
    let mut out = Vec::new();
    for (name, address) in listen {
        match host.listeners.get(name.as_str()) {
            None => out.push(Difference::ListenerAdded {
                name: name.to_string(),
                address: *address,
            }),
            Some(have) if have.parse::<SocketAddr>().ok() != Some(*address) => {
                out.push(Difference::ListenerMoved {
                    name: name.to_string(),
                    from: have.clone(),
                    to: *address,
                })
            }
            Some(_) => {}
        }
    }
    for (name, address) in &host.listeners {
        if !listen.keys().any(|k| k.as_str() == name) {
            out.push(Difference::ListenerRemoved {
                name: name.clone(),
                address: address.clone(),
            });
        }
    }
    let have = &host.tuning;
    if have.ready_timeout != tuning.ready_timeout {
        out.push(Difference::ReadyTimeout {
            from: have.ready_timeout,
            to: tuning.ready_timeout,
        });
    }
    if have.drain_timeout != tuning.drain_timeout {
        out.push(Difference::DrainTimeout {
            from: have.drain_timeout,
            to: tuning.drain_timeout,
        });
    }
    if have.keep_releases != tuning.keep_releases {
        out.push(Difference::KeepReleases {
            from: have.keep_releases,
            to: tuning.keep_releases,
        });
    }
    if have.watchdog_timeout != tuning.watchdog_timeout {
        out.push(Difference::WatchdogTimeout {
            from: have.watchdog_timeout,
            to: tuning.watchdog_timeout,
        });
    }
    if have.tls != tuning.tls {
        out.push(Difference::Tls {
            from: have.tls.clone(),
            to: tuning.tls.clone(),
        });
    }
    if have.ready != tuning.ready {
        out.push(Difference::Ready {
            from: have.ready.clone(),
            to: tuning.ready.clone(),
        });
    }
    out
}

/// The refusal for differences only root can apply: each difference, and the command that
/// applies them. `seed_command` is that command (see [`seed_command`]).
pub fn refusal(host: &str, diffs: &[Difference], seed_command: &str) -> String {
    let mut s =
        format!("{host} does not run what the configuration says, and only root can change it:\n");
    for d in diffs.iter().filter(|d| d.needs_root()) {
        s.push_str(&format!("  - {d}\n"));
    }
    s.push_str(&format!(
        "nothing was sent; apply it with `{seed_command}` (as a user with root or sudo), then deploy again"
    ));
    s
}

/// The `cargo blargh seed` command that brings the hosts of this configuration in line.
pub fn seed_command(destination: Option<&str>, flag_hosts: &[String], app: &str) -> String {
    let mut cmd = "cargo blargh seed".to_string();
    if let Some(d) = destination {
        cmd.push_str(&format!(" -d {d}"));
    }
    if let [one] = flag_hosts {
        cmd.push_str(&format!(" {one} --app {app}"));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning(ready: u64, drain: u64, keep: u32) -> AgentTuning {
        AgentTuning {
            ready_timeout: Duration::from_secs(ready),
            drain_timeout: Duration::from_secs(drain),
            keep_releases: keep,
            watchdog_timeout: Some(Duration::from_secs(30)),
            ready: Default::default(),
            tls: None,
        }
    }

    fn listen(pairs: &[(&str, &str)]) -> BTreeMap<SocketName, SocketAddr> {
        pairs
            .iter()
            .map(|(n, a)| (n.parse().unwrap(), a.parse().unwrap()))
            .collect()
    }

    fn facts(pairs: &[(&str, &str)], t: AgentTuning) -> HostFacts {
        HostFacts {
            listeners: pairs
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect(),
            tuning: t,
        }
    }

    #[test]
    fn a_host_as_configured_has_no_difference() {
        let host = facts(&[("web", "0.0.0.0:80")], tuning(60, 30, 5));
        assert!(
            compare_parts(&listen(&[("web", "0.0.0.0:80")]), &tuning(60, 30, 5), &host).is_empty()
        );
    }

    #[test]
    fn sockets_added_moved_and_removed_need_root() {
        let host = facts(
            &[("web", "0.0.0.0:80"), ("old", "127.0.0.1:9000")],
            tuning(60, 30, 5),
        );
        let want = listen(&[("web", "0.0.0.0:8080"), ("admin", "127.0.0.1:9001")]);
        let diffs = compare_parts(&want, &tuning(60, 30, 5), &host);
        assert_eq!(
            diffs,
            [
                Difference::ListenerAdded {
                    name: "admin".into(),
                    address: "127.0.0.1:9001".parse().unwrap()
                },
                Difference::ListenerMoved {
                    name: "web".into(),
                    from: "0.0.0.0:80".into(),
                    to: "0.0.0.0:8080".parse().unwrap()
                },
                Difference::ListenerRemoved {
                    name: "old".into(),
                    address: "127.0.0.1:9000".into()
                },
            ]
        );
        assert!(diffs.iter().all(Difference::needs_root));
        let text = refusal(
            "admin@h",
            &diffs,
            &seed_command(Some("staging"), &[], "shop"),
        );
        assert!(
            text.contains("listen.admin = \"127.0.0.1:9001\" is configured"),
            "{text}"
        );
        assert!(
            text.contains(
                "listen.web: the host listens on 0.0.0.0:80, the configuration says 0.0.0.0:8080"
            ),
            "{text}"
        );
        assert!(
            text.contains("the host listens on 127.0.0.1:9000 as old"),
            "{text}"
        );
        assert!(text.contains("`cargo blargh seed -d staging`"), "{text}");
        assert!(text.contains("nothing was sent"), "{text}");
    }

    #[test]
    fn the_same_address_written_otherwise_is_no_difference() {
        let host = facts(&[("web", "[::]:80")], tuning(60, 30, 5));
        assert!(
            compare_parts(&listen(&[("web", "[0::0]:80")]), &tuning(60, 30, 5), &host).is_empty()
        );
    }

    #[test]
    fn tuning_differences_are_the_agents_to_apply() {
        let host = facts(&[], tuning(60, 30, 5));
        let diffs = compare_parts(&listen(&[]), &tuning(2, 1, 3), &host);
        assert_eq!(
            diffs,
            [
                Difference::ReadyTimeout {
                    from: Duration::from_secs(60),
                    to: Duration::from_secs(2)
                },
                Difference::DrainTimeout {
                    from: Duration::from_secs(30),
                    to: Duration::from_secs(1)
                },
                Difference::KeepReleases { from: 5, to: 3 },
            ]
        );
        assert!(!diffs.iter().any(Difference::needs_root));
        assert_eq!(diffs[0].to_string(), "ready_timeout 1m → 2s");
        assert_eq!(diffs[2].to_string(), "keep_releases 5 → 3");
    }

    #[test]
    fn a_watchdog_turned_off_or_changed_is_a_difference() {
        let host = facts(&[], tuning(60, 30, 5));
        let off = AgentTuning {
            watchdog_timeout: None,
            ..tuning(60, 30, 5)
        };
        let diffs = compare_parts(&listen(&[]), &off, &host);
        assert_eq!(
            diffs,
            [Difference::WatchdogTimeout {
                from: Some(Duration::from_secs(30)),
                to: None
            }]
        );
        assert_eq!(diffs[0].to_string(), "watchdog_timeout 30s → off");
        assert!(!diffs[0].needs_root());
        // The contract's 0 ms is off, both ways.
        let wire = AgentSettings::from(off.clone());
        assert_eq!(wire.watchdog_timeout_ms, 0);
        assert_eq!(AgentTuning::from(wire), off);
    }

    #[test]
    fn a_readiness_check_changed_is_a_difference_deploy_applies() {
        let host = facts(&[], tuning(60, 30, 5));
        let http = AgentTuning {
            ready: Readiness::Http("/up".into()),
            ..tuning(60, 30, 5)
        };
        let diffs = compare_parts(&listen(&[]), &http, &host);
        assert_eq!(
            diffs,
            [Difference::Ready {
                from: Readiness::Notify,
                to: Readiness::Http("/up".into())
            }]
        );
        assert_eq!(diffs[0].to_string(), "ready READY=1 → http /up");
        assert!(!diffs[0].needs_root());
        let wire = AgentSettings::from(http.clone());
        assert_eq!(wire.ready, Readiness::Http("/up".into()));
        assert_eq!(AgentTuning::from(wire), http);
    }

    #[test]
    fn the_seed_command_names_the_host_given_by_flag() {
        assert_eq!(seed_command(None, &[], "shop"), "cargo blargh seed");
        assert_eq!(
            seed_command(None, &["root@h".into()], "shop"),
            "cargo blargh seed root@h --app shop"
        );
    }
}
