//! `cargo xtask bench`: figures for the agent's promises, printed as a table with ratios.
//! No assertions: this measures. Record the output in docs/benchmarks.md.
//!
//! 1. Throughput and latency of examples/hello through agent-owned sockets vs binding its
//!    own socket (goal: ratio ≥ 0.98).
//! 2. Activation overhead: activate call → first response from the new release, minus the
//!    release's own start (spawn → READY) (goal ≤ 50 ms).
//! 3. p99 and slowest request during a burst of activations vs steady state, warm-up 0 s
//!    and 3 s (goal ≤ 2×).
//! 4. Agent RSS idle and under load (goal ≤ 15 MB).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use test_support::agent::{AgentOptions, TestAgent, free_port};
use test_support::hello::Profile;
use test_support::http;
use test_support::load::{Wrk, WrkReport};

const CONNECTIONS: u32 = 16;

struct Ctx {
    bin: std::path::PathBuf,
    v1: std::path::PathBuf,
    v2: std::path::PathBuf,
    secs: u64,
}

/// Runs every benchmark; `--seconds N` sets each load phase's length (default 8).
/// `cargo xtask bench seed` times seeding a systemd VM instead; `cargo xtask bench deploy`
/// compares deploys with scp + systemctl restart on one; `cargo xtask bench roundtrips`
/// times everyday commands on loopback and on a VM; `cargo xtask bench tls` compares HTTPS
/// served by the library with nginx terminating TLS.
pub fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("seed") => return crate::bench_seed::run(),
        Some("deploy") => return crate::bench_deploy::run(),
        Some("roundtrips") => return crate::bench_roundtrips::run(&args[1..]),
        Some("tls") => return crate::bench_tls::run(8),
        _ => {}
    }
    let secs = match args {
        [flag, n] if flag == "--seconds" => n
            .parse()
            .map_err(|_| format!("--seconds {n:?}: not a number"))?,
        [] => 8,
        _ => return Err("usage: cargo xtask bench [--seconds N]".into()),
    };
    crate::prereqs::ensure()?;
    let (bin, v1, v2) = crate::build_all(Profile::Release)?;
    let ctx = Ctx { bin, v1, v2, secs };
    let machine = machine();
    println!(
        "# blargh benchmarks\n\nmachine: {machine}\nload: wrk, 1 thread, {CONNECTIONS} keep-alive connections, {secs} s per phase; examples/hello built --release\n"
    );

    let (direct, via, rss_idle, rss_load) = throughput(&ctx)?;
    println!("## 1. Serving through agent-owned sockets\n");
    println!("| | requests/s | p50 | p99 | failed |\n|---|---|---|---|---|");
    println!(
        "| hello binds its own socket | {:.0} | {:.2} ms | {:.2} ms | {} |",
        direct.rps,
        direct.p50_ms,
        direct.p99_ms,
        direct.failures()
    );
    println!(
        "| hello on the agent's socket | {:.0} | {:.2} ms | {:.2} ms | {} |",
        via.rps,
        via.p50_ms,
        via.p99_ms,
        via.failures()
    );
    println!(
        "\nratio (agent / own socket): **{:.3}** requests/s (goal ≥ 0.98)\n",
        via.rps / direct.rps
    );

    println!("## 2. Agent memory\n");
    println!(
        "agent RSS idle: **{:.1} MB**; under load: **{:.1} MB** (goal ≤ 15 MB)\n",
        rss_idle as f64 / 1e6,
        rss_load as f64 / 1e6
    );

    let act = activation_times(&ctx)?;
    println!("## 3. Activation time\n");
    println!(
        "{} activations alternating two releases (median / max):\n",
        act.len()
    );
    println!(
        "| call → first response from new release | release's own start (spawn → READY=1) | difference (agent overhead) | whole activate call (incl. ctl process, drain hand-off) |\n|---|---|---|---|"
    );
    let med = |f: &dyn Fn(&Act) -> f64| median(act.iter().map(f).collect());
    let max = |f: &dyn Fn(&Act) -> f64| act.iter().map(f).fold(0.0, f64::max);
    println!(
        "| {:.1} / {:.1} ms | {:.1} / {:.1} ms | **{:.1}** / {:.1} ms (goal ≤ 50 ms) | {:.1} / {:.1} ms |\n",
        med(&|a| a.first_ms),
        max(&|a| a.first_ms),
        med(&|a| a.ready_ms),
        max(&|a| a.ready_ms),
        med(&|a| a.first_ms - a.ready_ms),
        max(&|a| a.first_ms - a.ready_ms),
        med(&|a| a.call_ms),
        max(&|a| a.call_ms),
    );

    println!("## 4. Latency during a burst of activations\n");
    println!(
        "| warm-up | phase | requests | failed | p99 | slowest | activations |\n|---|---|---|---|---|---|---|"
    );
    for warmup_ms in [0u64, 3000] {
        let (steady, burst, n) = burst(&ctx, warmup_ms)?;
        for (name, r, k) in [("steady", &steady, 0), ("activations", &burst, n)] {
            println!(
                "| {} s | {name} | {} | {} | {:.2} ms | {:.2} ms | {k} |",
                warmup_ms / 1000,
                r.requests,
                r.failures(),
                r.p99_ms,
                r.max_ms
            );
        }
        println!(
            "| {} s | ratio | | | **{:.2}×** | **{:.2}×** | (goal ≤ 2×) |",
            warmup_ms / 1000,
            burst.p99_ms / steady.p99_ms,
            burst.max_ms / steady.max_ms
        );
    }
    println!();
    Ok(())
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/")
}

fn load(port: u16, secs: u64) -> Result<WrkReport, String> {
    let wrk = Wrk::start(&url(port), CONNECTIONS, 1).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(secs));
    wrk.finish().map_err(|e| e.to_string())
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn wait_until_serving(port: u16) -> Result<(), String> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if http::get(port, "/").is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing answers on port {port}"))
}

fn throughput(ctx: &Ctx) -> Result<(WrkReport, WrkReport, u64, u64), String> {
    // Alternate twice and keep each side's better run, so neither pays for a cold machine.
    let mut direct: Option<WrkReport> = None;
    let mut via: Option<WrkReport> = None;
    let mut rss_idle = 0;
    let mut rss_load = 0;
    for _ in 0..2 {
        let port = free_port();
        let mut app = Command::new(&ctx.v1)
            .env("HELLO_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        wait_until_serving(port)?;
        let r = load(port, ctx.secs)?;
        let _ = app.kill();
        let _ = app.wait();
        if direct.as_ref().is_none_or(|d| r.rps > d.rps) {
            direct = Some(r);
        }

        let agent = TestAgent::start(&ctx.bin, AgentOptions::default());
        let id = agent.receive(&ctx.v1, "v1");
        agent.activate(&id).map_err(|e| e.message)?;
        std::thread::sleep(Duration::from_millis(300));
        rss_idle = rss_idle.max(rss(agent.pid()));
        let wrk = Wrk::start(&url(agent.port()), CONNECTIONS, 1).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(ctx.secs / 2));
        rss_load = rss_load.max(rss(agent.pid()));
        std::thread::sleep(Duration::from_secs(ctx.secs - ctx.secs / 2));
        let r = wrk.finish().map_err(|e| e.to_string())?;
        if via.as_ref().is_none_or(|d| r.rps > d.rps) {
            via = Some(r);
        }
    }
    Ok((direct.unwrap(), via.unwrap(), rss_idle, rss_load))
}

struct Act {
    first_ms: f64,
    ready_ms: f64,
    call_ms: f64,
}

fn activation_times(ctx: &Ctx) -> Result<Vec<Act>, String> {
    let agent = TestAgent::start(&ctx.bin, AgentOptions::default());
    let ids = [agent.receive(&ctx.v1, "v1"), agent.receive(&ctx.v2, "v2")];
    agent.activate(&ids[0]).map_err(|e| e.message)?;
    let port = agent.port();
    let mut out = Vec::new();
    for i in 1..=10 {
        let (id, version) = (&ids[i % 2], if i % 2 == 0 { "v1" } else { "v2" });
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let probe = {
            let stop = stop.clone();
            let want = format!("hello from {version} ");
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(r) = http::get(port, "/")
                        && r.body.starts_with(&want)
                    {
                        return Some(t0.elapsed());
                    }
                }
                None
            })
        };
        let a = agent.activate(id).map_err(|e| e.message)?;
        let call = t0.elapsed();
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        let first = probe.join().unwrap().unwrap_or(call);
        out.push(Act {
            first_ms: first.as_secs_f64() * 1000.0,
            ready_ms: a.ready_ms as f64,
            call_ms: call.as_secs_f64() * 1000.0,
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(out)
}

fn burst(ctx: &Ctx, warmup_ms: u64) -> Result<(WrkReport, WrkReport, usize), String> {
    let agent = TestAgent::start(
        &ctx.bin,
        AgentOptions {
            env: vec![("HELLO_WARMUP_MS".into(), warmup_ms.to_string())],
            ..Default::default()
        },
    );
    let ids = [agent.receive(&ctx.v1, "v1"), agent.receive(&ctx.v2, "v2")];
    agent.activate(&ids[0]).map_err(|e| e.message)?;
    let steady = load(agent.port(), ctx.secs)?;
    let wrk = Wrk::start(&url(agent.port()), CONNECTIONS, 1).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_secs(ctx.secs) {
        n += 1;
        agent.activate(&ids[n % 2]).map_err(|e| e.message)?;
        std::thread::sleep(Duration::from_millis(250));
    }
    let burst = wrk.finish().map_err(|e| e.to_string())?;
    Ok((steady, burst, n))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {:.0} GiB RAM, Linux {}",
        mem as f64 / 1048576.0,
        kernel.trim()
    )
}
