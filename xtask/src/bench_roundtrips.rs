//! `cargo xtask bench roundtrips [--cli PATH]`: the wall time of the commands people run
//! every day, where SSH round trips dominate: on loopback (OpenSSH sshd and an agent on
//! this machine, no emulation) a no-op redeploy, a rollback and `status`; on a systemd VM
//! under QEMU/TCG also a fresh seed and a seed with nothing to change.
//!
//! `--cli PATH` measures another build of cargo-blargh (an older commit, for before/after
//! figures on the same machine); it is used as the CLI and as the agent it talks to.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use test_support::hello::Profile;
use test_support::remote::{Cli, text};
use test_support::sshd::{Keygen, Sshd};
use test_support::vm::{Init, Vm};

/// Runs of each command; the median is reported.
const RUNS: usize = 5;

/// One measured command: its median and slowest wall time.
struct Figure {
    what: &'static str,
    median: f64,
    max: f64,
}

fn measure(
    what: &'static str,
    runs: usize,
    mut f: impl FnMut() -> Result<Output, String>,
) -> Result<Figure, String> {
    let mut secs = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = f()?;
        secs.push(t0.elapsed().as_secs_f64());
        if !out.status.success() {
            return Err(format!("{what} failed:\n{}", text(&out)));
        }
    }
    secs.sort_by(f64::total_cmp);
    Ok(Figure {
        what,
        median: secs[secs.len() / 2],
        max: *secs.last().expect("runs > 0"),
    })
}

fn print(title: &str, cli: &Path, figures: &[Figure]) {
    println!("## {title}\n");
    println!("cli: {}\n", cli.display());
    println!("| command | median | slowest | runs |\n|---|---|---|---|");
    for f in figures {
        println!(
            "| {} | {:.2} s | {:.2} s | {} |",
            f.what,
            f.median,
            f.max,
            if f.what.contains("fresh") { 1 } else { RUNS }
        );
    }
    println!();
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<(), String> {
    let cli_flag = match args {
        [flag, path] if flag == "--cli" => Some(PathBuf::from(path)),
        [] => None,
        _ => return Err("usage: cargo xtask bench roundtrips [--cli PATH]".into()),
    };
    crate::prereqs::ensure()?;
    let (bin, v1, v2) = crate::build_all(Profile::Release)?;
    let cli = cli_flag.unwrap_or(bin);
    println!("# Round trips of everyday commands\n");
    println!("machine: {}\n", crate::bench::machine());
    let figures = loopback(&cli, &v1, &v2)?;
    print(
        "Loopback: OpenSSH sshd and the agent on this machine",
        &cli,
        &figures,
    );
    let figures = on_vm(&cli, &v1, &v2)?;
    print("A systemd VM under QEMU/TCG (emulated)", &cli, &figures);
    Ok(())
}

/// An agent run by hand under /var/lib/blargh/<app> (the path the CLI reaches over SSH),
/// as root with the app as `nobody`, killed and removed on drop.
struct LocalAgent {
    child: Child,
    root: PathBuf,
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn local_agent(cli: &Path, app: &str, port: u16) -> Result<LocalAgent, String> {
    let root = PathBuf::from("/var/lib/blargh").join(app);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("agent")).map_err(|e| e.to_string())?;
    let agent = root.join("agent/blargh");
    std::fs::copy(cli, &agent).map_err(|e| format!("copying the agent: {e}"))?;
    let child = Command::new(&agent)
        .args(["agent", "run", "--root"])
        .arg(&root)
        .args(["--app", app, "--user", "nobody", "--listen"])
        .arg(format!("web=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the agent: {e}"))?;
    let sock = root.join("agent.sock");
    let t0 = Instant::now();
    while !sock.exists() {
        if t0.elapsed() > Duration::from_secs(20) {
            return Err("the agent did not create its control socket".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(LocalAgent { child, root })
}

fn loopback(cli: &Path, v1: &Path, v2: &Path) -> Result<Vec<Figure>, String> {
    if !test_support::agent::running_as_root() {
        return Err(
            "the loopback round-trip benchmark runs as root (sshd, /var/lib/blargh)".into(),
        );
    }
    let app = "rtbench";
    let port = test_support::agent::free_port();
    let _agent = local_agent(cli, app, port)?;
    let sshd = Sshd::builder().start();
    let key = Keygen::ed25519(sshd.dir(), "id_ed25519").generate();
    sshd.authorize(&key);
    let kh = sshd.dir().join("known_hosts_client");
    std::fs::write(&kh, sshd.known_hosts_line() + "\n").map_err(|e| e.to_string())?;
    let empty = sshd.dir().join("ssh_config_empty");
    std::fs::write(&empty, "").map_err(|e| e.to_string())?;
    let dest = format!("root@127.0.0.1:{}", sshd.port());
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Deploy compares the host with the configuration: say where this agent listens.
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"{app}\"\nversion = \"0.1.0\"\n\n[package.metadata.blargh]\n\
             hosts = [\"{dest}\"]\nlisten = {{ web = \"127.0.0.1:{port}\" }}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let run = |args: &[&str]| -> Result<Output, String> {
        Command::new(cli)
            .args(args)
            .args(["--host", &dest, "--app", app, "-i"])
            .arg(&key.private)
            .arg("--known-hosts")
            .arg(&kh)
            .arg("--ssh-config")
            .arg(&empty)
            .env_remove("SSH_AUTH_SOCK")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())
    };
    let deploy = |bin: &Path| run(&["deploy", "--binary", bin.to_str().expect("utf-8 path")]);
    let out = deploy(v1)?;
    if !out.status.success() {
        return Err(format!("first deploy on loopback failed:\n{}", text(&out)));
    }
    let mut figures = vec![measure("no-op redeploy (same build)", RUNS, || deploy(v1))?];
    let out = deploy(v2)?;
    if !out.status.success() {
        return Err(format!("deploy v2 on loopback failed:\n{}", text(&out)));
    }
    // Rollback flips between v1 and v2: each run is a real switch.
    figures.push(measure("rollback", RUNS, || run(&["rollback"]))?);
    figures.push(measure("status", RUNS, || run(&["status"]))?);
    Ok(figures)
}

fn on_vm(cli: &Path, v1: &Path, v2: &Path) -> Result<Vec<Figure>, String> {
    let vm = Vm::boot(Init::Systemd).map_err(|e| e.to_string())?;
    let c = Cli::for_vm(cli, &vm).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dest = c.destination("admin");
    let seed = || {
        c.run("seed", "admin", &["--app", "hello"])
            .map_err(|e| e.to_string())
    };
    let run = |args: &[&str]| -> Result<Output, String> {
        let mut full = args.to_vec();
        full.extend(["--host", &dest, "--app", "hello"]);
        c.command(&full)
            .current_dir(dir.path())
            .output()
            .map_err(|e| e.to_string())
    };
    let deploy = |bin: &Path| run(&["deploy", "--binary", bin.to_str().expect("utf-8 path")]);
    let mut figures = vec![measure("fresh seed", 1, seed)?];
    figures.push(measure("seed, nothing to change", RUNS, seed)?);
    let out = deploy(v1)?;
    if !out.status.success() {
        return Err(format!("first deploy on the VM failed:\n{}", text(&out)));
    }
    figures.push(measure("no-op redeploy (same build)", RUNS, || deploy(v1))?);
    let out = deploy(v2)?;
    if !out.status.success() {
        return Err(format!("deploy v2 on the VM failed:\n{}", text(&out)));
    }
    figures.push(measure("rollback", RUNS, || run(&["rollback"]))?);
    figures.push(measure("status", RUNS, || run(&["status"]))?);
    Ok(figures)
}
