//! `cargo xtask demo`: what blargh does, on this machine, in half a minute: an agent owns
//! a port, release v1 serves, wrk keeps 16 keep-alive connections busy, v2 takes over,
//! then a rollback; wrk's failure count is printed.

use std::process::Command;
use std::time::Duration;

use test_support::agent::{AgentOptions, TestAgent};
use test_support::hello::{self, Profile, workspace_root};
use test_support::http;
use test_support::load::Wrk;

/// Runs the demo.
pub fn run() -> Result<(), String> {
    crate::prereqs::ensure()?;
    eprintln!("demo: building cargo-blargh and two releases of examples/hello (v1, v2)");
    crate::run(
        Command::new(crate::cargo())
            .current_dir(workspace_root())
            .args(["build", "--quiet", "-p", "cargo-blargh"]),
    )?;
    let bin = workspace_root().join("target/debug/cargo-blargh");
    let v1 = hello::build("v1", Profile::Debug).map_err(|e| e.to_string())?;
    let v2 = hello::build("v2", Profile::Debug).map_err(|e| e.to_string())?;

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
