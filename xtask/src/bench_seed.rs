//! `cargo xtask bench seed`: how long `cargo blargh seed` takes on a fresh systemd VM, from
//! connect to the agent answering (the VM's boot excluded), a second (no-op) seed and a dry
//! run, and how many packages it installed (goal: under 10 s, zero packages).

use std::time::Instant;

use test_support::remote::{Cli, text};
use test_support::vm::{Init, Vm};

/// Runs the seed benchmark.
pub fn run() -> Result<(), String> {
    crate::prereqs::ensure()?;
    let (bin, _, _) = crate::build_all(test_support::hello::Profile::Release)?;
    let size = std::fs::metadata(&bin).map_err(|e| e.to_string())?.len();
    let vm = Vm::boot(Init::Systemd).map_err(|e| e.to_string())?;
    let cli = Cli::for_vm(&bin, &vm).map_err(|e| e.to_string())?;
    let packages = || {
        vm.ssh_ok("dpkg-query -W | wc -l")
            .map(|s| s.trim().to_string())
    };
    let before = packages().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for (name, extra) in [
        ("seed (fresh server)", &[][..]),
        ("seed again (nothing to change)", &[][..]),
        ("seed --dry-run", &["--dry-run"][..]),
    ] {
        let mut args = vec!["--app", "hello"];
        args.extend_from_slice(extra);
        let t0 = Instant::now();
        let out = cli.run("seed", "admin", &args).map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        if !out.status.success() {
            return Err(format!("{name} failed:\n{}", text(&out)));
        }
        rows.push((name, took));
    }
    let after = packages().map_err(|e| e.to_string())?;
    println!("## Seed (systemd VM under QEMU/TCG, boot excluded)\n");
    println!(
        "machine: {}; agent executable {:.1} MB (release build)\n",
        crate::bench::machine(),
        size as f64 / 1e6
    );
    println!("| run | wall time (connect → agent answering) |\n|---|---|");
    for (name, took) in rows {
        println!("| {name} | {:.1} s |", took.as_secs_f64());
    }
    println!(
        "\npackages installed on the host: {} (dpkg packages before {before}, after {after})\n",
        after.parse::<i64>().unwrap_or(0) - before.parse::<i64>().unwrap_or(0)
    );
    Ok(())
}
