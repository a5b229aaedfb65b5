//! Init adapters: how the agent is handed to a host's init system so it starts at boot and
//! comes back when it dies. systemd and OpenRC ship; see docs/adding-an-init-adapter.md.

mod openrc;
mod systemd;

use blargh_platform::{InitKind, Platform, Support};

pub use openrc::OpenRc;
pub use systemd::Systemd;

use crate::plan::Plan;

/// The agent service to install for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentService {
    /// App name (also the app's system user and group; the agent's are `_blargh-<app>`).
    pub app: blargh_proto::AppName,
    /// The app's root directory on the host.
    pub root: String,
    /// The agent executable on the host.
    pub agent: String,
    /// Named listen addresses, e.g. ("web", "0.0.0.0:80").
    pub listen: Vec<(blargh_proto::SocketName, String)>,
    /// Seconds a replaced release may drain.
    pub drain_timeout_s: u64,
    /// Seconds a new release may take to become ready.
    pub ready_timeout_s: u64,
    /// Releases kept on disk.
    pub keep_releases: u32,
}

impl AgentService {
    /// The init system's name for the agent: `blargh-<app>`.
    pub fn unit(&self) -> String {
        format!("blargh-{}", self.app)
    }

    /// The agent's user and group, `_blargh-<app>` ([`blargh_proto::AppName::agent_user`]).
    pub fn agent_user(&self) -> String {
        self.app.agent_user()
    }

    /// The agent's command line. The app always runs as `<app>` and the control socket
    /// belongs to the agent's group. `drop_to_agent_user` when the agent starts as root
    /// (OpenRC) and becomes its own user once the sockets are bound; `listen` when it binds
    /// the sockets itself.
    pub fn agent_args(&self, drop_to_agent_user: bool, listen: bool) -> Vec<String> {
        let mut args = vec![
            "agent".to_string(),
            "run".into(),
            "--root".into(),
            self.root.clone(),
            "--app".into(),
            self.app.to_string(),
            "--user".into(),
            self.app.to_string(),
            "--socket-group".into(),
            self.agent_user(),
            "--drain-timeout".into(),
            format!("{}s", self.drain_timeout_s),
            "--ready-timeout".into(),
            format!("{}s", self.ready_timeout_s),
            "--keep-releases".into(),
            self.keep_releases.to_string(),
        ];
        if drop_to_agent_user {
            args.extend(["--agent-user".to_string(), self.agent_user()]);
        }
        if listen {
            for (name, addr) in &self.listen {
                args.extend(["--listen".to_string(), format!("{name}={addr}")]);
            }
        }
        args
    }
}

/// How one init system runs the agent. Each method returns data; nothing here touches a host.
pub trait InitAdapter: Send + Sync {
    /// `systemd`, `openrc`.
    fn name(&self) -> &'static str;
    /// Writes the service definition(s) and makes them start at boot and run now;
    /// restarts the agent when its definition or `changed_binary_step` changed.
    fn install(&self, svc: &AgentService, changed_binary_step: &str) -> Plan;
    /// A command that stops the agent.
    fn stop_command(&self, svc: &AgentService) -> String;
    /// A command whose exit status says whether the agent runs.
    fn status_command(&self, svc: &AgentService) -> String;
    /// A command that prints the agent's last `lines` log lines.
    fn logs_command(&self, svc: &AgentService, lines: usize) -> String;
}

/// The adapter for a probed host, or why there is none.
pub fn for_platform(platform: &Platform) -> Result<Box<dyn InitAdapter>, Support> {
    match blargh_platform::support(platform) {
        Support::Supported(InitKind::Systemd) => Ok(Box::new(Systemd)),
        Support::Supported(InitKind::OpenRc) => Ok(Box::new(OpenRc)),
        other => Err(other),
    }
}

/// `agent ctl upgrade`'s exit code when the running agent does not know the request (it is
/// older than in-place upgrades); 3 means no agent answered. Either way the service is
/// restarted instead; any other failure changes nothing and stops the seed.
pub const UPGRADE_UNKNOWN_EXIT: i32 = 4;

/// The step that puts a new agent executable into service in place when only the executable
/// changed (`agent ctl upgrade`: the same process re-executes it and the release keeps
/// serving), or by `restart` when no agent answers or the running one predates in-place
/// upgrades. A refusal (the new executable cannot run here, a deploy is uploading) fails
/// the step with the agent's reason and leaves the running agent as it was.
pub(crate) fn upgrade_step(
    key: &str,
    svc: &AgentService,
    changed_binary_step: &str,
    restart: &str,
) -> crate::plan::Step {
    let ctl = format!(
        "timeout 120 {} agent ctl --root {} upgrade --by seed",
        crate::shell::quote(&svc.agent),
        crate::shell::quote(&svc.root)
    );
    crate::plan::Step::on_change(
        key,
        "put the new agent in place (the release keeps serving)",
        vec![changed_binary_step.to_string()],
        format!(
            "{ctl}; rc=$?; case $rc in 0) ;; 3|{UPGRADE_UNKNOWN_EXIT}) echo 'no agent could upgrade in place: restarting the service' >&2; {restart} ;; *) exit $rc ;; esac"
        ),
    )
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;

    /// Runs the upgrade step's command with an "agent" that exits with `code`; what the
    /// command exited with, and whether it restarted the service.
    fn run_with_agent_exiting(code: i32) -> (i32, bool) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("blargh");
        std::fs::write(&agent, format!("#!/bin/sh\nexit {code}\n")).unwrap();
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let marker = dir.path().join("restarted");
        let svc = AgentService {
            app: "shop".parse().unwrap(),
            root: dir.path().display().to_string(),
            agent: agent.display().to_string(),
            listen: vec![],
            drain_timeout_s: 30,
            ready_timeout_s: 60,
            keep_releases: 5,
        };
        let restart = format!(
            "touch {}",
            crate::shell::quote(&marker.display().to_string())
        );
        let step = upgrade_step("upgrade", &svc, "agent-binary", &restart);
        let st = std::process::Command::new("sh")
            .args(["-c", &step.apply])
            .status()
            .unwrap();
        (st.code().unwrap(), marker.exists())
    }

    #[test]
    fn an_upgrade_restarts_only_when_no_agent_could_do_it_in_place() {
        // Upgraded in place: nothing else.
        assert_eq!(run_with_agent_exiting(0), (0, false));
        // No agent answered (none running yet), or it predates in-place upgrades: restart.
        assert_eq!(run_with_agent_exiting(3), (0, true));
        assert_eq!(run_with_agent_exiting(UPGRADE_UNKNOWN_EXIT), (0, true));
        // The agent refused (the new executable cannot run here): no restart, the step fails.
        assert_eq!(run_with_agent_exiting(1), (1, false));
    }
}
