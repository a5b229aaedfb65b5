//! The OpenRC adapter: an `openrc-run` service supervised by `supervise-daemon` (respawned
//! when it dies), in the default runlevel. The agent starts as root so it can bind ports
//! below 1024, then becomes `_blargh-<app>` keeping only CAP_SETUID, CAP_SETGID and CAP_KILL
//! (`--agent-user`), and runs the app as the app's user.

use crate::init::{AgentService, InitAdapter};
use crate::plan::{Content, Plan, Step};
use crate::shell::quote;

/// OpenRC.
#[derive(Debug, Clone, Copy)]
pub struct OpenRc;

impl OpenRc {
    /// The `/etc/init.d/blargh-<app>` script.
    pub fn script(svc: &AgentService) -> String {
        let args: Vec<String> = svc
            .agent_args(true, true)
            .iter()
            .map(|a| quote(a))
            .collect();
        format!(
            "#!/sbin/openrc-run\n\
             # Installed by `cargo blargh seed`; changes are overwritten by the next seed.\n\
             name=\"blargh-{app}\"\n\
             description=\"blargh agent for {app}\"\n\
             supervisor=supervise-daemon\n\
             command={agent}\n\
             command_args=\"{args}\"\n\
             respawn_delay=1\n\
             respawn_max=0\n\
             retry=\"TERM/{stop}/KILL/5\"\n\
             output_log=/var/log/blargh-{app}.log\n\
             error_log=/var/log/blargh-{app}.log\n\
             \n\
             depend() {{\n\
             \tuse net\n\
             \tafter firewall\n\
             }}\n",
            app = svc.app,
            agent = quote(&svc.agent),
            args = args.join(" ").replace('"', "\\\""),
            stop = svc.drain_timeout_s + 5,
        )
    }
}

impl InitAdapter for OpenRc {
    fn name(&self) -> &'static str {
        "openrc"
    }

    fn install(&self, svc: &AgentService, changed_binary_step: &str) -> Plan {
        let unit = svc.unit();
        let mut plan = Plan::default();
        plan.push(Step::file(
            "openrc-script",
            &format!("/etc/init.d/{unit}"),
            Content::new(Self::script(svc).into_bytes(), "OpenRC service"),
            0o755,
            "root",
            "root",
        ));
        plan.push(Step::ensure(
            "openrc-enable",
            format!("{unit} starts at boot (runlevel default)"),
            format!("rc-update show default | grep -qw {unit}"),
            format!("rc-update add {unit} default"),
        ));
        plan.push(super::upgrade_step(
            "openrc-upgrade",
            svc,
            changed_binary_step,
            &format!("rc-service {unit} restart"),
        ));
        plan.push(Step::on_change(
            "openrc-restart",
            format!("restart {unit}"),
            vec!["openrc-script".into()],
            format!("rc-service {unit} restart"),
        ));
        plan.push(Step::ensure(
            "openrc-start",
            format!("{unit} is running"),
            format!("rc-service {unit} status"),
            format!("rc-service {unit} start"),
        ));
        plan
    }

    fn stop_command(&self, svc: &AgentService) -> String {
        format!("rc-service {} stop", svc.unit())
    }

    fn status_command(&self, svc: &AgentService) -> String {
        format!("rc-service {} status", svc.unit())
    }

    fn logs_command(&self, svc: &AgentService, lines: usize) -> String {
        format!("tail -n {lines} /var/log/{}.log", svc.unit())
    }
}
