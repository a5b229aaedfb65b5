//! `cargo xtask demo`: blargh's main job on a throwaway server: boot a Debian 12 VM
//! (systemd, under QEMU), `cargo blargh seed` it, deploy examples/hello v1, then deploy v2
//! while wrk keeps keep-alive connections busy, then roll back; print requests, failures,
//! switch times and bytes sent.
//!
//! `cargo xtask demo --local` does the switch with an agent on this machine instead (half
//! a minute, no VM).

use std::time::Duration;

use test_support::agent::{AgentOptions, TestAgent};
use test_support::hello::Profile;
use test_support::http;
use test_support::load::Wrk;

/// Runs the demo (`--local`: without a VM).
pub fn run(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("--local") {
        return local();
    }
    vm()
}

fn vm() -> Result<(), String> {
    use test_support::remote::{Cli, text};
    use test_support::vm::{Init, Vm};
    crate::prereqs::ensure()?;
    let (bin, v1, v2) = crate::build_all(Profile::Debug)?;
    eprintln!("demo: booting a Debian 12 server (systemd) under QEMU …");
    let vm = Vm::boot(Init::Systemd).map_err(|e| e.to_string())?;
    println!(
        "server: ssh on 127.0.0.1:{}, its port 80 on 127.0.0.1:{}",
        vm.ssh_port(),
        vm.http_port(80)
    );
    let cli = Cli::for_vm(&bin, &vm).map_err(|e| e.to_string())?;
    let dest = cli.destination("admin");
    let step = |title: &str, args: &[&str]| -> Result<String, String> {
        println!("\n$ cargo blargh {}", args.join(" "));
        let t0 = std::time::Instant::now();
        let out = cli.command(args).output().map_err(|e| e.to_string())?;
        let shown = text(&out);
        for line in shown.lines() {
            println!("  {line}");
        }
        if !out.status.success() {
            return Err(format!("{title} failed"));
        }
        println!("  ({title}: {:.1} s)", t0.elapsed().as_secs_f64());
        Ok(shown)
    };
    step("seed", &["seed", &dest, "--app", "hello"])?;
    let deploy = |binary: &std::path::Path, msg: &str| {
        step(
            "deploy",
            &[
                "deploy",
                "--host",
                &dest,
                "--app",
                "hello",
                "--binary",
                binary.to_str().unwrap(),
                "-m",
                msg,
            ],
        )
    };
    deploy(&v1, "first release")?;
    println!("  → {}", body(vm.http_port(80)));
    let wrk = Wrk::start(&format!("http://127.0.0.1:{}/", vm.http_port(80)), 8, 1)
        .map_err(|e| e.to_string())?;
    println!("\nwrk: 8 keep-alive connections against the server's port 80, no retries");
    std::thread::sleep(Duration::from_secs(2));
    deploy(&v2, "v2 under load")?;
    println!("  → {}", body(vm.http_port(80)));
    std::thread::sleep(Duration::from_secs(2));
    step("rollback", &["rollback", "--host", &dest, "--app", "hello"])?;
    println!("  → {}", body(vm.http_port(80)));
    std::thread::sleep(Duration::from_secs(2));
    let r = wrk.finish().map_err(|e| e.to_string())?;
    println!(
        "\nrequests: {}   failed: {}   (non-2xx {}, connect {}, read {}, write {}, timeout {})",
        r.requests,
        r.failures(),
        r.non_2xx,
        r.connect_errors,
        r.read_errors,
        r.write_errors,
        r.timeouts
    );
    if r.failures() > 0 {
        return Err("some requests failed".into());
    }
    Ok(())
}

fn local() -> Result<(), String> {
    crate::prereqs::ensure()?;
    let (bin, v1, v2) = crate::build_all(Profile::Debug)?;

    let agent = TestAgent::start(&bin, AgentOptions::default());
    let port = agent.port();
    println!(
        "agent: owns 127.0.0.1:{port}, root {}",
        agent.root().display()
    );
    let r1 = agent.receive(&v1, "v1");
    let r2 = agent.receive(&v2, "v2");
    println!("stored releases {r1} (v1) and {r2} (v2)");
    let a = agent.activate(&r1).map_err(|e| e.message)?;
    println!("activated v1: ready in {} ms → {}", a.ready_ms, body(port));

    let wrk = Wrk::start(&format!("http://127.0.0.1:{port}/"), 16, 1).map_err(|e| e.to_string())?;
    println!("wrk: 16 keep-alive connections, no retries");
    std::thread::sleep(Duration::from_secs(2));
    let a = agent.activate(&r2).map_err(|e| e.message)?;
    println!(
        "activated v2 under load: ready in {} ms, switch call {} ms → {}",
        a.ready_ms,
        a.total_ms,
        body(port)
    );
    std::thread::sleep(Duration::from_secs(2));
    let a = agent.rollback(None).map_err(|e| e.message)?;
    println!(
        "rolled back to {}: {} ms → {}",
        a.release,
        a.total_ms,
        body(port)
    );
    std::thread::sleep(Duration::from_secs(2));
    let r = wrk.finish().map_err(|e| e.to_string())?;
    println!(
        "\nrequests: {}   failed: {}   (non-2xx {}, connect {}, read {}, write {}, timeout {})",
        r.requests,
        r.failures(),
        r.non_2xx,
        r.connect_errors,
        r.read_errors,
        r.write_errors,
        r.timeouts
    );
    println!("\naudit log:");
    for e in agent.audit() {
        println!(
            "  {} {:<9} {}",
            e.at,
            e.event,
            e.release.unwrap_or_default()
        );
    }
    if r.failures() > 0 {
        return Err("some requests failed".into());
    }
    Ok(())
}

fn body(port: u16) -> String {
    http::get(port, "/")
        .map(|r| r.body.trim().to_string())
        .unwrap_or_else(|e| format!("error: {e}"))
}
