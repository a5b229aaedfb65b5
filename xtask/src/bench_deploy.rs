//! `cargo xtask bench deploy`: a deploy the blargh way against the way users do it today,
//! on a systemd VM: bytes sent, wall time, failed requests under keep-alive load.
//!
//! blargh: first deploy (whole file), a no-op redeploy (same build), a one-literal change
//! (delta) under wrk, a rollback under wrk. Today's way: `scp` the binary and
//! `systemctl restart` a plain service binding its own port, under wrk.

use std::process::Command;
use std::time::{Duration, Instant};

use test_support::hello::Profile;
use test_support::load::{Wrk, WrkReport};
use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm};

struct Row {
    what: &'static str,
    bytes: String,
    secs: f64,
    load: Option<WrkReport>,
}

/// Runs the deploy benchmark.
pub fn run() -> Result<(), String> {
    crate::prereqs::ensure()?;
    let (bin, v1, v2) = crate::build_all(Profile::Release)?;
    let size = std::fs::metadata(&v1).map_err(|e| e.to_string())?.len();
    let vm = Vm::boot(Init::Systemd).map_err(|e| e.to_string())?;
    let cli = Cli::for_vm(&bin, &vm).map_err(|e| e.to_string())?;
    let out = cli
        .run("seed", "admin", &["--app", "hello"])
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("seed failed:\n{}", text(&out)));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dest = cli.destination("admin");
    let blargh = |args: &[&str]| -> Result<(String, f64), String> {
        let t0 = Instant::now();
        let out = cli
            .command(args)
            .current_dir(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        let secs = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(format!("{args:?} failed:\n{}", text(&out)));
        }
        Ok((text(&out), secs))
    };
    let deploy = |binary: &std::path::Path| {
        blargh(&[
            "deploy",
            "--host",
            &dest,
            "--app",
            "hello",
            "--binary",
            binary.to_str().unwrap(),
        ])
    };
    let sent = |out: &str| -> String {
        out.split("sent ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .map(|s| format!("{s})"))
            .unwrap_or_default()
    };
    let under_load = |port: u16, f: &mut dyn FnMut() -> Result<(String, f64), String>| {
        let wrk =
            Wrk::start(&format!("http://127.0.0.1:{port}/"), 8, 1).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(2));
        let r = f()?;
        std::thread::sleep(Duration::from_secs(2));
        let report = wrk.finish().map_err(|e| e.to_string())?;
        Ok::<_, String>((r, report))
    };

    let mut rows = Vec::new();
    let (out, secs) = deploy(&v1)?;
    rows.push(Row {
        what: "blargh: first deploy",
        bytes: sent(&out),
        secs,
        load: None,
    });
    let (out, secs) = deploy(&v1)?;
    rows.push(Row {
        what: "blargh: redeploy, same build",
        bytes: sent(&out),
        secs,
        load: None,
    });
    let port = vm.http_port(80);
    let ((out, secs), load) = under_load(port, &mut || deploy(&v2))?;
    rows.push(Row {
        what: "blargh: one-literal change, under load",
        bytes: sent(&out),
        secs,
        load: Some(load),
    });
    let ((_, secs), load) = under_load(port, &mut || {
        blargh(&["rollback", "--host", &dest, "--app", "hello"])
    })?;
    rows.push(Row {
        what: "blargh: rollback, under load",
        bytes: "0".into(),
        secs,
        load: Some(load),
    });

    // Today's way: a plain unit that binds its own port, replaced with scp + restart.
    vm.ssh_ok(
        "printf '[Service]\\nExecStart=/usr/local/bin/hello-plain\\nEnvironment=HELLO_ADDR=0.0.0.0:8080\\nUser=nobody\\n' \
         > /etc/systemd/system/hello-plain.service && systemctl daemon-reload",
    )
    .map_err(|e| e.to_string())?;
    let scp = |binary: &std::path::Path| -> Result<(String, f64), String> {
        let t0 = Instant::now();
        let mut args = vm.ssh_args("root");
        let target = args.pop().unwrap();
        // ssh's -p is scp's -P.
        let args: Vec<String> = args
            .into_iter()
            .map(|a| if a == "-p" { "-P".into() } else { a })
            .collect();
        let st = Command::new("scp")
            .args(&args)
            .arg(binary)
            .arg(format!("{target}:/usr/local/bin/hello-plain.new"))
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("scp failed".into());
        }
        vm.ssh_ok("mv /usr/local/bin/hello-plain.new /usr/local/bin/hello-plain && systemctl restart hello-plain")
            .map_err(|e| e.to_string())?;
        Ok((String::new(), t0.elapsed().as_secs_f64()))
    };
    scp(&v1)?;
    std::thread::sleep(Duration::from_secs(2));
    let ((_, secs), load) = under_load(vm.http_port(8080), &mut || scp(&v2))?;
    rows.push(Row {
        what: "scp + systemctl restart, under load",
        bytes: format!("{size} bytes"),
        secs,
        load: Some(load),
    });

    println!(
        "## Deploys on a systemd VM (QEMU/TCG; examples/hello --release, {:.1} MB)\n",
        size as f64 / 1e6
    );
    println!("machine: {}\n", crate::bench::machine());
    println!("| what | sent | wall time | requests | failed |\n|---|---|---|---|---|");
    for r in rows {
        let (req, failed) = match &r.load {
            Some(l) => (l.requests.to_string(), l.failures().to_string()),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {:.1} s | {req} | {failed} |",
            r.what, r.bytes, r.secs
        );
    }
    println!();
    Ok(())
}
