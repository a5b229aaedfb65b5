//! The systemd adapter: one `.socket` unit per listener (systemd owns the ports, so even an
//! agent restart queues connections, and ports below 1024 need no root), and a hardened
//! `Type=notify` service running the agent as the app's user, restarted always.

use crate::init::{AgentService, InitAdapter};
use crate::plan::{Content, Plan, Step};
use crate::shell::quote;

/// systemd.
#[derive(Debug, Clone, Copy)]
pub struct Systemd;

const UNIT_DIR: &str = "/etc/systemd/system";

/// What the agent user holds (and nothing more, not even in the bounding set): start the
/// app as its own user through the trampoline, and signal it. The trampoline clears them
/// all before the app runs. The same set as `blargh_agent::privilege::AGENT_CAPS`.
pub const AGENT_CAPABILITIES: &str = "CAP_SETUID CAP_SETGID CAP_KILL";

impl Systemd {
    /// The `.socket` unit for listener `name` at `addr`.
    pub fn socket_unit(svc: &AgentService, name: &str, addr: &str) -> String {
        format!(
            "# Installed by `cargo blargh seed`; changes are overwritten by the next seed.\n\
             [Unit]\n\
             Description=blargh {app}: socket {name}\n\
             \n\
             [Socket]\n\
             ListenStream={addr}\n\
             FileDescriptorName={name}\n\
             Service={unit}.service\n\
             Backlog=4096\n\
             \n\
             [Install]\n\
             WantedBy=sockets.target\n",
            app = svc.app,
            unit = svc.unit(),
        )
    }

    /// The agent's `.service` unit.
    pub fn service_unit(svc: &AgentService) -> String {
        let sockets: Vec<String> = svc
            .listen
            .iter()
            .map(|(name, _)| format!("{}-{name}.socket", svc.unit()))
            .collect();
        let args: Vec<String> = svc
            .agent_args(false, false)
            .iter()
            .map(|a| quote(a))
            .collect();
        format!(
            "# Installed by `cargo blargh seed`; changes are overwritten by the next seed.\n\
             [Unit]\n\
             Description=blargh agent for {app}\n\
             After=network.target {sockets}\n\
             Requires={sockets}\n\
             \n\
             [Service]\n\
             Type=notify\n\
             NotifyAccess=main\n\
             ExecStart={agent} {args}\n\
             Sockets={sockets}\n\
             User={agent_user}\n\
             Group={agent_user}\n\
             SupplementaryGroups={app}\n\
             AmbientCapabilities={caps}\n\
             CapabilityBoundingSet={caps}\n\
             Restart=always\n\
             RestartSec=1\n\
             WatchdogSec=30\n\
             OOMPolicy=continue\n\
             TimeoutStopSec={stop}\n\
             UMask=0077\n\
             NoNewPrivileges=yes\n\
             ProtectSystem=strict\n\
             ReadWritePaths={root}\n\
             ProtectHome=yes\n\
             PrivateTmp=yes\n\
             PrivateMounts=yes\n\
             PrivateDevices=yes\n\
             DevicePolicy=closed\n\
             ProtectKernelTunables=yes\n\
             ProtectKernelModules=yes\n\
             ProtectKernelLogs=yes\n\
             ProtectControlGroups=yes\n\
             ProtectClock=yes\n\
             ProtectHostname=yes\n\
             RestrictNamespaces=yes\n\
             RestrictRealtime=yes\n\
             RestrictSUIDSGID=yes\n\
             RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n\
             LockPersonality=yes\n\
             RemoveIPC=yes\n\
             SystemCallArchitectures=native\n\
             SystemCallFilter=@system-service\n\
             SystemCallErrorNumber=EPERM\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            app = svc.app,
            agent_user = svc.agent_user(),
            caps = AGENT_CAPABILITIES,
            sockets = sockets.join(" "),
            agent = quote(&svc.agent),
            args = args.join(" "),
            stop = svc.drain_timeout_s + 10,
            root = svc.root,
        )
    }

    /// A step that stops, disables and removes the app's socket units that `svc` no
    /// longer lists (a listener dropped from the configuration). A unit counts as the app's
    /// when its name is `blargh-<app>-*.socket` and it names the app's service, so another
    /// app whose name starts the same (`shop` and `shop-admin`) keeps its sockets.
    pub fn stale_sockets(svc: &AgentService) -> Step {
        Self::stale_sockets_in(svc, UNIT_DIR)
    }

    fn stale_sockets_in(svc: &AgentService, unit_dir: &str) -> Step {
        let unit = svc.unit();
        let keep: Vec<String> = svc
            .listen
            .iter()
            .map(|(name, _)| quote(&format!("{unit}-{name}.socket")))
            .collect();
        let keep = if keep.is_empty() {
            "''".to_string()
        } else {
            keep.join("|")
        };
        let service = quote(&format!("Service={unit}.service"));
        let each_stale = |action: &str| {
            format!(
                "for f in {unit_dir}/{unit}-*.socket; do \
                 [ -f \"$f\" ] && grep -qxF {service} \"$f\" || continue; \
                 u=${{f##*/}}; case \"$u\" in {keep}) continue;; esac; {action}; done"
            )
        };
        let names: Vec<&str> = svc.listen.iter().map(|(n, _)| n.as_str()).collect();
        Step::ensure(
            "systemd-stale-sockets",
            format!(
                "no socket units for {} other than {} (others are stopped, disabled, removed)",
                svc.app,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
            format!("{}; exit 0", each_stale("exit 1")),
            format!(
                "set -e; {}",
                each_stale(
                    "systemctl stop \"$u\"; systemctl disable -q \"$u\"; rm -f \"$f\"; echo \"removed $u\""
                )
            ),
        )
    }
}

impl InitAdapter for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn install(&self, svc: &AgentService, changed_binary_step: &str) -> Plan {
        let unit = svc.unit();
        let mut plan = Plan::default();
        let mut socket_keys = Vec::new();
        let mut socket_units = Vec::new();
        for (name, addr) in &svc.listen {
            let file = format!("{unit}-{name}.socket");
            let key = format!("systemd-socket-{name}");
            plan.push(Step::file(
                key.clone(),
                &format!("{UNIT_DIR}/{file}"),
                Content::new(
                    Self::socket_unit(svc, name, addr).into_bytes(),
                    "socket unit",
                ),
                0o644,
                "root",
                "root",
            ));
            socket_keys.push(key);
            socket_units.push(file);
        }
        plan.push(Step::file(
            "systemd-service",
            &format!("{UNIT_DIR}/{unit}.service"),
            Content::new(Self::service_unit(svc).into_bytes(), "service unit"),
            0o644,
            "root",
            "root",
        ));
        plan.push(Self::stale_sockets(svc));
        let mut all_units = socket_keys.clone();
        all_units.extend(["systemd-service".into(), "systemd-stale-sockets".into()]);
        plan.push(Step::on_change(
            "systemd-reload",
            "systemctl daemon-reload",
            all_units,
            "systemctl daemon-reload",
        ));
        let everything = format!("{unit}.service {}", socket_units.join(" "));
        plan.push(Step::ensure(
            "systemd-enable",
            format!("{unit}.service and its sockets start at boot"),
            socket_units
                .iter()
                .chain(std::iter::once(&format!("{unit}.service")))
                .map(|u| format!("systemctl is-enabled -q {u}"))
                .collect::<Vec<_>>()
                .join(" && "),
            format!("systemctl enable -q {everything}"),
        ));
        // Only the sockets whose unit changed are closed and opened again: connections to
        // the others keep queueing while the agent restarts.
        for ((name, addr), (key, file)) in
            svc.listen.iter().zip(socket_keys.iter().zip(&socket_units))
        {
            plan.push(Step::on_change(
                format!("systemd-rebind-{name}"),
                format!("listen on {addr} for {name} (stops the agent until its restart)"),
                vec![key.clone()],
                format!("systemctl stop {unit}.service; systemctl restart {file}"),
            ));
        }
        plan.push(super::upgrade_step(
            "systemd-upgrade",
            svc,
            changed_binary_step,
            &format!("systemctl restart {unit}.service"),
        ));
        // A new executable alone is put in place by the upgrade; a changed unit needs a
        // restart to take effect.
        let mut restart_after = vec!["systemd-service".to_string()];
        restart_after.extend(socket_keys);
        restart_after.push("systemd-stale-sockets".into());
        plan.push(Step::on_change(
            "systemd-restart",
            format!("restart {unit}.service (sockets stay open: connections queue)"),
            restart_after,
            format!("systemctl restart {unit}.service"),
        ));
        plan.push(Step::ensure(
            "systemd-start",
            format!("{unit}.service is running"),
            format!("systemctl is-active -q {unit}.service"),
            format!("systemctl start {everything}"),
        ));
        plan
    }

    fn stop_command(&self, svc: &AgentService) -> String {
        format!("systemctl stop {}.service", svc.unit())
    }

    fn status_command(&self, svc: &AgentService) -> String {
        format!("systemctl is-active -q {}.service", svc.unit())
    }

    fn logs_command(&self, svc: &AgentService, lines: usize) -> String {
        format!("journalctl -u {}.service -n {lines} --no-pager", svc.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(listen: &[(&str, &str)]) -> AgentService {
        AgentService {
            app: "shop".parse().unwrap(),
            root: "/var/lib/blargh/shop".into(),
            agent: "/var/lib/blargh/shop/agent/blargh".into(),
            listen: listen
                .iter()
                .map(|(n, a)| (n.parse().unwrap(), a.to_string()))
                .collect(),
            drain_timeout_s: 30,
            ready_timeout_s: 60,
            keep_releases: 5,
        }
    }

    fn sh(script: &str, path: &std::path::Path) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env(
                "PATH",
                format!("{}:{}", path.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap()
    }

    #[test]
    fn systemd_watches_the_agent() {
        // The agent pings WATCHDOG=1 every half of it from its runtime; a stuck agent is
        // restarted.
        let unit = Systemd::service_unit(&svc(&[("web", "0.0.0.0:80")]));
        assert!(unit.contains("\nWatchdogSec=30\n"), "{unit}");
    }

    #[test]
    fn an_oom_kill_of_the_app_leaves_the_agent_running() {
        // systemd's default OOMPolicy=stop stops the whole service, agent included, when
        // the kernel OOM-kills any process in it (the app, which runs in the agent's
        // cgroup); power_vm.rs saw the agent's pid change. The agent restarts the app.
        let unit = Systemd::service_unit(&svc(&[("web", "0.0.0.0:80")]));
        assert!(unit.contains("\nOOMPolicy=continue\n"), "{unit}");
    }

    #[test]
    fn only_the_apps_dropped_socket_units_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let units = dir.path().join("units");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        // systemctl records what it is asked to do.
        let calls = dir.path().join("calls");
        std::fs::write(
            bin.join("systemctl"),
            format!("#!/bin/sh\necho \"$*\" >> {}\n", calls.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            bin.join("systemctl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let old = svc(&[("web", "0.0.0.0:80"), ("admin", "127.0.0.1:9000")]);
        for (name, addr) in &old.listen {
            std::fs::write(
                units.join(format!("blargh-shop-{name}.socket")),
                Systemd::socket_unit(&old, name, addr),
            )
            .unwrap();
        }
        // Another app whose name starts like this one's keeps its sockets.
        let mut other = svc(&[("web", "0.0.0.0:81")]);
        other.app = "shop-admin".parse().unwrap();
        std::fs::write(
            units.join("blargh-shop-admin-web.socket"),
            Systemd::socket_unit(&other, "web", "0.0.0.0:81"),
        )
        .unwrap();

        let unit_dir = units.to_str().unwrap();
        let keep_both = Systemd::stale_sockets_in(&old, unit_dir);
        assert!(
            sh(keep_both.check.as_deref().unwrap(), &bin)
                .status
                .success()
        );

        let step = Systemd::stale_sockets_in(&svc(&[("web", "0.0.0.0:80")]), unit_dir);
        assert!(!sh(step.check.as_deref().unwrap(), &bin).status.success());
        let out = sh(&step.apply, &bin);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "removed blargh-shop-admin.socket\n"
        );
        assert_eq!(
            std::fs::read_to_string(&calls).unwrap(),
            "stop blargh-shop-admin.socket\ndisable -q blargh-shop-admin.socket\n"
        );
        assert!(!units.join("blargh-shop-admin.socket").exists());
        assert!(units.join("blargh-shop-web.socket").exists());
        assert!(units.join("blargh-shop-admin-web.socket").exists());
        assert!(sh(step.check.as_deref().unwrap(), &bin).status.success());
    }
}
