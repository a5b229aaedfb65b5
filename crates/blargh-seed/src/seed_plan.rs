//! The seed plan: everything that makes a bare host a deploy target for one app: its user
//! and group, its directories, the agent executable, the env file, the init service, and a
//! final check that the agent answers.

use blargh_proto::{AppName, SocketName};

use crate::init::{AgentService, InitAdapter};
use crate::plan::{Content, Plan, Step};
use crate::shell::quote;

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    /// App name: its system user, group, and service name `blargh-<app>`.
    pub app: AppName,
    /// Named listen addresses, e.g. ("web", "0.0.0.0:80").
    pub listen: Vec<(SocketName, String)>,
    /// The SSH user; when not root it joins the app's group to reach the control socket,
    /// so later deploys need no sudo.
    pub ssh_user: String,
    /// The agent executable to install.
    pub agent: Content,
    /// Seconds a replaced release may drain.
    pub drain_timeout_s: u64,
    /// Seconds a new release may take to become ready.
    pub ready_timeout_s: u64,
    /// Releases kept on disk (≥ 2).
    pub keep_releases: u32,
}

/// Where an app lives on the host ([`blargh_proto::paths::app_root`], as text for scripts).
pub fn app_root(app: &AppName) -> String {
    blargh_proto::paths::app_root(app).display().to_string()
}

/// Where the agent executable lives on the host ([`blargh_proto::paths::agent_path`]).
pub fn agent_path(app: &AppName) -> String {
    blargh_proto::paths::agent_path(app).display().to_string()
}

/// Checks an app name: it becomes a user, a group and a service name (the rule of
/// [`AppName`]).
pub fn check_app_name(app: &str) -> Result<(), String> {
    app.parse::<AppName>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The service description for `spec`.
pub fn service(spec: &SeedSpec) -> AgentService {
    AgentService {
        app: spec.app.clone(),
        root: app_root(&spec.app),
        agent: agent_path(&spec.app),
        listen: spec.listen.clone(),
        drain_timeout_s: spec.drain_timeout_s,
        ready_timeout_s: spec.ready_timeout_s,
        keep_releases: spec.keep_releases,
    }
}

/// Builds the seed plan for `spec` on a host using `init`.
///
/// Who owns what (docs/security.md): `<root>` is root's, group-writable by the agent's group
/// with the sticky bit (1775), so the agent user can create and replace its own entries
/// (`current`, `agent.sock`, …) but can neither rename nor remove root's `agent/`; the app's
/// user owns `data/` and nothing else, and so cannot write anywhere else under `<root>`.
pub fn seed_plan(spec: &SeedSpec, init: &dyn InitAdapter) -> Plan {
    let app = quote(&spec.app);
    let agent_user = spec.app.agent_user();
    let agent = quote(&agent_user);
    let root = app_root(&spec.app);
    let layout = blargh_proto::paths::Layout::new(&root);
    let r = quote(&root);
    let svc = service(spec);
    let nologin = "nologin=$(command -v nologin || echo /sbin/nologin); ";
    let mut plan = Plan::default();
    plan.push(Step::ensure(
        "group",
        format!("group {}", spec.app),
        format!("getent group {app}"),
        format!("if command -v groupadd; then groupadd --system {app}; else addgroup -S {app}; fi"),
    ));
    plan.push(Step::ensure(
        "user",
        format!("system user {} (no login, no password; runs the app)", spec.app),
        format!("id -u {app}"),
        format!(
            "{nologin}if command -v useradd; then useradd --system --gid {app} --home-dir {r} --no-create-home --shell \"$nologin\" {app}; \
             else adduser -S -D -H -h {r} -s \"$nologin\" -G {app} {app}; fi"
        ),
    ));
    plan.push(Step::ensure(
        "agent-group",
        format!("group {agent_user}"),
        format!("getent group {agent}"),
        format!(
            "if command -v groupadd; then groupadd --system {agent}; else addgroup -S {agent}; fi"
        ),
    ));
    plan.push(Step::ensure(
        "agent-user",
        format!(
            "system user {agent_user} (no login; runs the agent; member of group {} for the notify sockets)",
            spec.app
        ),
        format!("id -u {agent} && id -nG {agent} | tr ' ' '\\n' | grep -qx {app}"),
        format!(
            "{nologin}if id -u {agent}; then \
               if command -v usermod; then usermod -aG {app} {agent}; else addgroup {agent} {app}; fi; \
             elif command -v useradd; then useradd --system --gid {agent} --groups {app} --home-dir {r} --no-create-home --shell \"$nologin\" {agent}; \
             else adduser -S -D -H -h {r} -s \"$nologin\" -G {agent} {agent} && addgroup {agent} {app}; fi"
        ),
    ));
    if spec.ssh_user != "root" {
        let u = quote(&spec.ssh_user);
        plan.push(Step::ensure(
            "deployer-group",
            format!(
                "{} may use the agent's control socket (member of group {agent_user})",
                spec.ssh_user
            ),
            format!("id -nG {u} | tr ' ' '\\n' | grep -qx {agent}"),
            format!(
                "if command -v usermod; then usermod -aG {agent} {u}; else addgroup {u} {agent}; fi"
            ),
        ));
    }
    let dir_check = |d: &str, mode: u32, owner: &str| {
        format!(
            "[ -d {d} ] && [ ! -L {d} ] && [ \"$(stat -c %a:%U:%G {d})\" = {} ]",
            quote(&format!("{mode:o}:{owner}"))
        )
    };
    // The base and the root live in root's /var/lib: nobody else can plant anything there.
    for (key, dir, mode, owner) in [
        (
            "dir-base",
            blargh_proto::paths::APPS_DIR.to_string(),
            0o755,
            "root:root".to_string(),
        ),
        (
            "dir-root",
            root.clone(),
            0o1775,
            format!("root:{agent_user}"),
        ),
    ] {
        let d = quote(&dir);
        plan.push(Step::ensure(
            key,
            format!("directory {dir} ({mode:o} {owner})"),
            dir_check(&d, mode, &owner),
            format!("mkdir -p {d} && chown {owner} {d} && chmod {mode:o} {d}"),
        ));
    }
    // From here on only root and the agent user can add entries under the root. An
    // `agent` that is not root's own directory (an older layout let the app swap it) is
    // removed, never followed.
    let agent_dir = layout.agent_dir().display().to_string();
    let d = quote(&agent_dir);
    plan.push(Step::ensure(
        "dir-agent",
        format!("directory {agent_dir} (755 root:root; only root writes the agent)"),
        dir_check(&d, 0o755, "root:root"),
        format!(
            "if [ -L {d} ] || {{ [ -e {d} ] && {{ [ ! -d {d} ] || [ \"$(stat -c %U:%G {d})\" != root:root ]; }}; }}; then \
               rm -rf {d}; echo 'removed an agent directory root did not own'; fi; \
             mkdir -p {d} && chown -h root:root {d} && chmod 755 {d}"
        ),
    ));
    plan.push(Step::file(
        "agent-binary",
        &svc.agent,
        spec.agent.clone(),
        0o755,
        "root",
        "root",
    ));
    let data = layout.data().display().to_string();
    let d = quote(&data);
    plan.push(Step::ensure(
        "dir-data",
        format!(
            "directory {data} (700 {0}:{0}; the only place the app writes)",
            spec.app
        ),
        dir_check(&d, 0o700, &format!("{0}:{0}", spec.app)),
        format!(
            "if [ -L {d} ] || {{ [ -e {d} ] && [ ! -d {d} ]; }}; then rm -f {d}; fi; \
             mkdir -p {d} && chown -h {app}:{app} {d} && chmod 700 {d}"
        ),
    ));
    let env = layout.env_file().display().to_string();
    let e = quote(&env);
    plan.push(Step::ensure(
        "env-file",
        format!("{env} exists (600 {agent_user}; `cargo blargh env` fills it)"),
        format!("[ -f {e} ] && [ ! -L {e} ]"),
        format!(
            "if [ -L {e} ]; then rm -f {e}; fi; [ -e {e} ] || (umask 077 && : > {e}); \
             chown -h {agent}:{agent} {e} && chmod 600 {e}"
        ),
    ));
    // Everything else belongs to the agent user. An older seed gave the whole root to the
    // app's user: those entries move over, with `chown -h` from a `find` that follows no
    // symlink, so a link the app planted is changed itself and never its target. The
    // notify sockets in `run/` keep their group (`<app>`, so the running release can write
    // READY/WATCHDOG/STOPPING to them): only their owner moves.
    let prune = format!(
        "find {r} -mindepth 1 \\( -path {a} -o -path {dd} \\) -prune -o",
        a = quote(&agent_dir),
        dd = quote(&data),
    );
    let ns = quote(&format!("{}/*", layout.run().display()));
    let sockets = format!("-path {ns} ! -user {agent}");
    let rest = format!("! -path {ns} \\( ! -user {agent} -o ! -group {agent} \\)");
    plan.push(Step::ensure(
        "state-owner",
        format!(
            "everything under {root} but agent/ and data/ belongs to {agent_user} \
             (an older seed's entries owned by {} are moved over; no symlink is followed)",
            spec.app
        ),
        format!("[ -z \"$({prune} \\( \\( {sockets} \\) -o \\( {rest} \\) \\) -print -quit)\" ]"),
        format!(
            "n=$({prune} \\( \\( {sockets} \\) -o \\( {rest} \\) \\) -print | wc -l); \
             {prune} \\( {rest} \\) -exec chown -h {agent}:{agent} {{}} +; \
             {prune} \\( {sockets} \\) -exec chown -h {agent} {{}} +; \
             echo \"gave $n entries under {root} to {agent_user} (chown -h, no symlink followed)\""
        ),
    ));
    plan.extend(init.install(&svc, "agent-binary"));
    let ctl = format!(
        "{} agent ctl --root {} status",
        quote(&svc.agent),
        quote(&root)
    );
    plan.push(Step::ensure(
        "agent-answers",
        "the agent answers on its control socket",
        format!("{ctl} >/dev/null"),
        format!(
            "i=0; while [ $i -lt 100 ]; do {ctl} >/dev/null 2>&1 && exit 0; i=$((i+1)); sleep 0.1; done; \
             echo 'the agent did not answer within 10 s; its service says:' >&2; {} >&2; {} >&2; exit 1",
            init.status_command(&svc),
            init.logs_command(&svc, 20)
        ),
    ));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{Mode, Transport, run_plan};
    use crate::fake_host::FakeHost;
    use crate::init::{OpenRc, Systemd};
    use crate::plan::When;

    /// The steps `plan` applies on a host where the checks of `failing` fail, and the
    /// number of execs it took.
    fn applied(plan: &Plan, failing: &[&str]) -> (Vec<String>, usize) {
        let mut host = FakeHost::new(plan, failing);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_plan(
            &mut host,
            plan,
            Mode::Apply,
            Transport { gzip: true },
            |_, _| {},
        ))
        .unwrap();
        (host.applied(), host.execs.len())
    }

    fn two_listeners() -> SeedSpec {
        let mut s = spec("admin");
        s.listen
            .push(("admin".parse().unwrap(), "127.0.0.1:9000".into()));
        s
    }

    #[test]
    fn a_fresh_systemd_host_gets_everything_in_two_execs() {
        let plan = seed_plan(&spec("admin"), &Systemd);
        let all: Vec<&str> = plan.steps.iter().map(|s| s.key.as_str()).collect();
        let checked: Vec<&str> = plan
            .steps
            .iter()
            .filter(|s| s.check.is_some())
            .map(|s| s.key.as_str())
            .collect();
        let (done, execs) = applied(&plan, &checked);
        assert_eq!(done, all, "every step, in order");
        assert_eq!(execs, 2, "one exec of checks, one of applies");
    }

    #[test]
    fn a_seeded_host_is_checked_in_one_exec_and_left_alone() {
        let plan = seed_plan(&spec("admin"), &Systemd);
        assert_eq!(applied(&plan, &[]), (vec![], 1));
        let plan = seed_plan(&spec("admin"), &OpenRc);
        assert_eq!(applied(&plan, &[]), (vec![], 1));
    }

    #[test]
    fn a_new_agent_is_put_in_place_without_a_restart_and_nothing_else() {
        let plan = seed_plan(&two_listeners(), &Systemd);
        let (done, _) = applied(&plan, &["agent-binary"]);
        assert_eq!(done, ["agent-binary", "systemd-upgrade"]);
        let plan = seed_plan(&two_listeners(), &OpenRc);
        let (done, _) = applied(&plan, &["agent-binary"]);
        assert_eq!(done, ["agent-binary", "openrc-upgrade"]);
    }

    #[test]
    fn a_changed_address_rebinds_that_socket_and_restarts_the_agent() {
        let mut s = two_listeners();
        let before = Systemd::socket_unit(&service(&s), "admin", "127.0.0.1:9000");
        s.listen[1].1 = "127.0.0.1:9001".into();
        let after = Systemd::socket_unit(&service(&s), "admin", "127.0.0.1:9001");
        assert_ne!(before, after, "the unit file changes, so its check fails");
        let plan = seed_plan(&s, &Systemd);
        let (done, _) = applied(&plan, &["systemd-socket-admin"]);
        assert_eq!(
            done,
            [
                "systemd-socket-admin",
                "systemd-reload",
                "systemd-rebind-admin",
                "systemd-restart"
            ],
            "the web socket stays open"
        );
    }

    #[test]
    fn a_removed_listener_is_stopped_and_removed_and_the_agent_restarted() {
        // systemd: the service unit no longer names the socket, and the stale unit goes.
        let plan = seed_plan(&spec("admin"), &Systemd);
        let unit = Systemd::service_unit(&service(&spec("admin")));
        let both = Systemd::service_unit(&service(&two_listeners()));
        assert!(!unit.contains("admin.socket") && both.contains("blargh-shop-admin.socket"));
        let (done, _) = applied(&plan, &["systemd-service", "systemd-stale-sockets"]);
        assert_eq!(
            done,
            [
                "systemd-service",
                "systemd-stale-sockets",
                "systemd-reload",
                "systemd-restart"
            ]
        );
        // A leftover socket unit alone (the service unit already right) still goes, and the
        // agent restarts without it.
        let (done, _) = applied(&plan, &["systemd-stale-sockets"]);
        assert_eq!(
            done,
            ["systemd-stale-sockets", "systemd-reload", "systemd-restart"]
        );
        // OpenRC: the listeners are the agent's arguments, in the script.
        let script = OpenRc::script(&service(&spec("admin")));
        assert!(!script.contains("admin=127.0.0.1:9000"));
        assert!(
            OpenRc::script(&service(&two_listeners())).contains("--listen admin=127.0.0.1:9000")
        );
        let plan = seed_plan(&spec("admin"), &OpenRc);
        let (done, _) = applied(&plan, &["openrc-script"]);
        assert_eq!(done, ["openrc-script", "openrc-restart"]);
    }

    #[test]
    fn a_dry_run_reports_what_would_change_in_one_exec() {
        let plan = seed_plan(&spec("admin"), &Systemd);
        let mut host = FakeHost::new(&plan, &["systemd-stale-sockets"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut would = Vec::new();
        rt.block_on(run_plan(
            &mut host,
            &plan,
            Mode::DryRun,
            Transport::default(),
            |s, o| {
                if o == crate::exec::Outcome::WouldChange {
                    would.push(s.key.clone())
                }
            },
        ))
        .unwrap();
        assert_eq!(
            would,
            ["systemd-stale-sockets", "systemd-reload", "systemd-restart"]
        );
        assert!(host.applied().is_empty());
        assert_eq!(host.execs.len(), 1);
    }

    fn spec(user: &str) -> SeedSpec {
        SeedSpec {
            app: "shop".parse().unwrap(),
            listen: vec![("web".parse().unwrap(), "0.0.0.0:80".into())],
            ssh_user: user.into(),
            agent: Content::new(vec![0x7f, b'E', b'L', b'F'], "agent executable"),
            drain_timeout_s: 30,
            ready_timeout_s: 60,
            keep_releases: 7,
        }
    }

    #[test]
    fn systemd_seed_plan_in_order() {
        let plan = seed_plan(&spec("admin"), &Systemd);
        let keys: Vec<&str> = plan.steps.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "group",
                "user",
                "agent-group",
                "agent-user",
                "deployer-group",
                "dir-base",
                "dir-root",
                "dir-agent",
                "agent-binary",
                "dir-data",
                "env-file",
                "state-owner",
                "systemd-socket-web",
                "systemd-service",
                "systemd-stale-sockets",
                "systemd-reload",
                "systemd-enable",
                "systemd-rebind-web",
                "systemd-upgrade",
                "systemd-restart",
                "systemd-start",
                "agent-answers"
            ]
        );
        let restart = plan
            .steps
            .iter()
            .find(|s| s.key == "systemd-restart")
            .unwrap();
        assert_eq!(
            restart.when,
            When::Changed(vec![
                "systemd-service".into(),
                "systemd-socket-web".into(),
                "systemd-stale-sockets".into()
            ])
        );
        assert!(
            plan.describe()
                .contains("/var/lib/blargh/shop/agent/blargh")
        );
    }

    #[test]
    fn root_needs_no_group_membership() {
        let plan = seed_plan(&spec("root"), &Systemd);
        assert!(!plan.steps.iter().any(|s| s.key == "deployer-group"));
    }

    #[test]
    fn systemd_units_own_the_ports_and_run_the_agent_unprivileged() {
        let s = service(&spec("root"));
        let socket = Systemd::socket_unit(&s, "web", "0.0.0.0:80");
        assert!(socket.contains(
            "ListenStream=0.0.0.0:80\nFileDescriptorName=web\nService=blargh-shop.service"
        ));
        let unit = Systemd::service_unit(&s);
        assert!(unit.contains("Type=notify"));
        assert!(
            unit.contains("User=_blargh-shop\nGroup=_blargh-shop\nSupplementaryGroups=shop\n"),
            "the agent has its own user, in the app's group for the notify sockets: {unit}"
        );
        assert!(unit.contains(
            "AmbientCapabilities=CAP_SETUID CAP_SETGID CAP_KILL\nCapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_KILL\n"
        ));
        for hardening in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "SystemCallFilter=@system-service",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "ProtectKernelLogs=yes",
            "RestrictNamespaces=yes",
        ] {
            assert!(unit.contains(&format!("\n{hardening}\n")), "{hardening}");
        }
        assert!(
            !unit.contains("MemoryDenyWriteExecute"),
            "the app inherits it, and JIT runtimes need W+X memory"
        );
        assert!(unit.contains("Restart=always"));
        assert!(unit.contains("Sockets=blargh-shop-web.socket"));
        assert!(unit.contains("ExecStart=/var/lib/blargh/shop/agent/blargh agent run --root /var/lib/blargh/shop --app shop --user shop --socket-group _blargh-shop"));
        assert!(!unit.contains("--listen"), "systemd hands the sockets over");
        assert!(
            !unit.contains("--agent-user"),
            "systemd starts the agent as its user"
        );
        assert!(unit.contains("ReadWritePaths=/var/lib/blargh/shop"));
        assert!(
            unit.contains("--drain-timeout 30s --ready-timeout 60s --keep-releases 7"),
            "the configured timeouts and retention reach the agent: {unit}"
        );
        assert!(OpenRc::script(&s).contains("--keep-releases 7"));
    }

    #[test]
    fn openrc_script_is_supervised_and_drops_to_the_agent_user() {
        let s = service(&spec("root"));
        let script = OpenRc::script(&s);
        assert!(script.starts_with("#!/sbin/openrc-run\n"));
        assert!(script.contains("supervisor=supervise-daemon"));
        assert!(script.contains("respawn_max=0"));
        assert!(script.contains("--user shop"));
        assert!(
            script.contains("--socket-group _blargh-shop"),
            "the deploy user reaches the socket through the agent's group, the app does not"
        );
        assert!(
            script.contains("--agent-user _blargh-shop"),
            "the root agent drops to its own user once the sockets are bound"
        );
        assert!(script.contains("--listen web=0.0.0.0:80"));
        let plan = seed_plan(&spec("root"), &OpenRc);
        assert!(plan.steps.iter().any(|s| s.key == "openrc-enable" && s.apply == "rc-update add blargh-shop default"));
    }

    #[test]
    fn the_root_is_roots_and_only_data_is_the_apps() {
        let plan = seed_plan(&spec("admin"), &Systemd);
        let step = |k: &str| plan.steps.iter().find(|s| s.key == k).unwrap().clone();
        let root = step("dir-root");
        assert!(
            root.apply.ends_with(
                "chown root:_blargh-shop /var/lib/blargh/shop && chmod 1775 /var/lib/blargh/shop"
            ),
            "{}",
            root.apply
        );
        assert!(root.check.unwrap().contains("= 1775:root:_blargh-shop"));
        let data = step("dir-data");
        assert!(
            data.apply
                .contains("chown -h shop:shop /var/lib/blargh/shop/data && chmod 700")
        );
        let agent = step("dir-agent");
        assert!(
            agent.apply.contains("rm -rf /var/lib/blargh/shop/agent"),
            "an agent directory root does not own is replaced, not followed"
        );
        let owner = step("state-owner");
        assert!(
            owner
                .apply
                .contains("-exec chown -h _blargh-shop:_blargh-shop {} +")
        );
        assert!(
            owner.apply.contains(
                "-path /var/lib/blargh/shop/agent -o -path /var/lib/blargh/shop/data \\) -prune"
            ),
            "agent/ and data/ are left alone: {}",
            owner.apply
        );
        assert!(
            owner.apply.contains(
                "\\( -path '/var/lib/blargh/shop/run/*' ! -user _blargh-shop \\) -exec chown -h _blargh-shop {} +"
            ),
            "the notify sockets change owner but keep their group (shop, so the app can write them): {}",
            owner.apply
        );
        let deployer = step("deployer-group");
        assert!(
            deployer.apply.contains("usermod -aG _blargh-shop admin"),
            "the deploy user joins the agent's group, not the app's: {}",
            deployer.apply
        );
        assert!(step("agent-user").apply.contains("--groups shop"));
    }

    #[test]
    fn every_script_of_both_plans_is_valid_sh() {
        for plan in [
            seed_plan(&two_listeners(), &Systemd),
            seed_plan(&two_listeners(), &OpenRc),
        ] {
            for step in &plan.steps {
                for script in step.check.iter().chain([&step.apply]) {
                    let out = std::process::Command::new("sh")
                        .args(["-n", "-c", script])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}: {script}\n{}",
                        step.key,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
    }

    #[test]
    fn app_names_become_users_so_they_are_checked() {
        assert!(check_app_name("shop-2").is_ok());
        for bad in [
            "",
            "Shop",
            "2shop",
            "a b",
            "x;rm",
            "averyveryveryverylongappname",
        ] {
            assert!(check_app_name(bad).is_err(), "{bad}");
        }
    }
}
