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
             User={app}\n\
             Group={app}\n\
             Restart=always\n\
             RestartSec=1\n\
             TimeoutStopSec={stop}\n\
             UMask=0077\n\
             NoNewPrivileges=yes\n\
             ProtectSystem=strict\n\
             ReadWritePaths={root}\n\
             ProtectHome=yes\n\
             PrivateTmp=yes\n\
             PrivateDevices=yes\n\
             ProtectKernelTunables=yes\n\
             ProtectKernelModules=yes\n\
             ProtectControlGroups=yes\n\
             RestrictSUIDSGID=yes\n\
             LockPersonality=yes\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            app = svc.app,
            sockets = sockets.join(" "),
            agent = quote(&svc.agent),
            args = args.join(" "),
            stop = svc.drain_timeout_s + 10,
            root = svc.root,
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
        let mut all_units = socket_keys.clone();
        all_units.push("systemd-service".into());
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
        plan.push(Step::on_change(
            "systemd-rebind",
            "re-open changed sockets (stops the agent briefly)",
            socket_keys,
            format!(
                "systemctl stop {unit}.service; systemctl restart {}",
                socket_units.join(" ")
            ),
        ));
        plan.push(Step::on_change(
            "systemd-restart",
            format!("restart {unit}.service (sockets stay open: connections queue)"),
            vec!["systemd-service".into(), changed_binary_step.to_string()],
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
