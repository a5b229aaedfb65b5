//! Compares ways of shipping NEW to a host that holds OLD: sizes, ratios, encode and decode
//! times, and the extra peak memory of each step.
//!
//! ```text
//! cargo run --release -p blargh-delta --example measure -- OLD NEW
//! ```
//!
//! Every candidate is round-tripped and its result compared with NEW; the last rows are the
//! crate's own frames ([`blargh_delta::encode_delta`] / [`blargh_delta::encode_whole`]). Peak
//! memory is read from Linux's `VmHWM`, reset through `/proc/self/clear_refs` before each
//! step, and shown as the growth over what was resident before the step ("n/a" elsewhere).

use std::io::{Cursor, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// One candidate method: encode OLD → NEW into a patch, and decode it back.
struct Candidate {
    name: &'static str,
    encode: fn(&[u8], &[u8]) -> Vec<u8>,
    decode: fn(&[u8], &[u8]) -> Vec<u8>,
}

/// Pinning glibc's mmap threshold makes every large buffer its own mapping, returned to the
/// system when freed, so one step's leftovers do not hide the next step's peak.
const MMAP_THRESHOLD_ENV: &str = "MALLOC_MMAP_THRESHOLD_";

fn main() -> ExitCode {
    if std::env::var_os(MMAP_THRESHOLD_ENV).is_none() && cfg!(target_os = "linux") {
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env(MMAP_THRESHOLD_ENV, "131072")
            .status()
            .expect("re-run self");
        return ExitCode::from(status.code().map_or(1, |c| c as u8));
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 3;
    if args.first().is_some_and(|a| a == "--runs") && args.len() > 1 {
        runs = args[1].parse().expect("--runs N");
        args.drain(..2);
    }
    let [old_path, new_path] = args.as_slice() else {
        eprintln!("usage: measure [--runs N] OLD NEW   (two builds of the same release binary)");
        return ExitCode::from(2);
    };
    let old = std::fs::read(old_path).expect("read OLD");
    let new = std::fs::read(new_path).expect("read NEW");
    let differing =
        old.iter().zip(&new).filter(|(a, b)| a != b).count() + old.len().abs_diff(new.len());
    println!("OLD {old_path}: {} bytes", old.len());
    println!(
        "NEW {new_path}: {} bytes ({differing} bytes differ position by position)",
        new.len()
    );
    println!();
    println!(
        "times: the fastest of {runs} runs (wall clock), and the CPU time of that run (all threads)"
    );
    println!(
        "{:<36} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "method", "bytes", "% of NEW", "encode", "enc cpu", "decode", "enc +MiB", "dec +MiB"
    );

    let candidates = [
        whole("whole file, zstd -3", |_, n| {
            zstd::bulk::compress(n, 3).unwrap()
        }),
        whole("whole file, zstd -9", |_, n| {
            zstd::bulk::compress(n, 9).unwrap()
        }),
        whole("whole file, zstd -12", |_, n| {
            zstd::bulk::compress(n, 12).unwrap()
        }),
        whole("whole file, zstd -19", |_, n| {
            zstd::bulk::compress(n, 19).unwrap()
        }),
        patch_from("zstd patch-from -3", |o, n| {
            patch_from_encode(o, n, 3, false)
        }),
        patch_from("zstd patch-from -3, long", |o, n| {
            patch_from_encode(o, n, 3, true)
        }),
        patch_from("zstd patch-from -19, long", |o, n| {
            patch_from_encode(o, n, 19, true)
        }),
        bidiff("bidiff alone (uncompressed)", |o, n| {
            bidiff_encode(o, n, None, &bidiff::DiffParams::default())
        }),
        bidiff("bidiff + zstd -3", |o, n| {
            bidiff_encode(o, n, Some(3), &bidiff::DiffParams::default())
        }),
        bidiff("bidiff + zstd -9", |o, n| {
            bidiff_encode(o, n, Some(9), &bidiff::DiffParams::default())
        }),
        bidiff("bidiff + zstd -12", |o, n| {
            bidiff_encode(o, n, Some(12), &bidiff::DiffParams::default())
        }),
        bidiff("bidiff + zstd -15", |o, n| {
            bidiff_encode(o, n, Some(15), &bidiff::DiffParams::default())
        }),
        bidiff("bidiff + zstd -19", |o, n| {
            bidiff_encode(o, n, Some(19), &bidiff::DiffParams::default())
        }),
        bidiff("bidiff parallel + zstd -19", |o, n| {
            let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
            let chunk = n.len().div_ceil(jobs).max(1);
            let params = bidiff::DiffParams::new(jobs, Some(chunk)).unwrap();
            bidiff_encode(o, n, Some(19), &params)
        }),
        Candidate {
            name: "qbsdiff (bsdiff 4, bzip2)",
            encode: |o, n| {
                let mut p = Vec::new();
                qbsdiff::Bsdiff::new(o, n).compare(&mut p).unwrap();
                p
            },
            decode: qbsdiff_decode,
        },
        Candidate {
            name: "blargh-delta encode_whole (frame)",
            encode: |_, n| blargh_delta::encode_whole(n),
            decode: |_, f| blargh_delta::decode(None, f, u64::MAX).unwrap(),
        },
        Candidate {
            name: "blargh-delta encode_delta (frame)",
            encode: blargh_delta::encode_delta,
            decode: |o, f| blargh_delta::decode(Some(o), f, u64::MAX).unwrap(),
        },
    ];

    let mut ok = true;
    for c in &candidates {
        // One run for the result and its memory, then `runs` more for the times.
        let (patch, m_enc) = peak_growth(|| (c.encode)(&old, &new));
        let (back, m_dec) = peak_growth(|| (c.decode)(&old, &patch));
        let t_enc = best_of(runs, || (c.encode)(&old, &new));
        let t_dec = best_of(runs, || (c.decode)(&old, &patch));
        let good = back == new;
        ok &= good;
        println!(
            "{:<36} {:>10} {:>7.3}% {:>9} {:>9} {:>9} {:>9} {:>9}{}",
            c.name,
            patch.len(),
            100.0 * patch.len() as f64 / new.len().max(1) as f64,
            secs(t_enc.wall),
            t_enc.cpu.map_or_else(|| "n/a".to_string(), secs),
            secs(t_dec.wall),
            mib(m_enc),
            mib(m_dec),
            if good { "" } else { "  ROUND TRIP FAILED" }
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn whole(name: &'static str, encode: fn(&[u8], &[u8]) -> Vec<u8>) -> Candidate {
    Candidate {
        name,
        encode,
        decode: |_, p| zstd_decode(p),
    }
}

fn patch_from(name: &'static str, encode: fn(&[u8], &[u8]) -> Vec<u8>) -> Candidate {
    Candidate {
        name,
        encode,
        decode: patch_from_decode,
    }
}

fn bidiff(name: &'static str, encode: fn(&[u8], &[u8]) -> Vec<u8>) -> Candidate {
    Candidate {
        name,
        encode,
        decode: bidiff_decode,
    }
}

fn zstd_decode(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(p)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Smallest window log that covers `len` bytes, plus one (as `zstd --patch-from` does).
fn window_log_for(len: usize) -> u32 {
    let bits = usize::BITS - len.max(1).leading_zeros();
    (bits + 1).clamp(10, 31)
}

fn patch_from_encode(old: &[u8], new: &[u8], level: i32, long: bool) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), level, old).unwrap();
    e.window_log(window_log_for(old.len().max(new.len())))
        .unwrap();
    e.long_distance_matching(long).unwrap();
    e.set_pledged_src_size(Some(new.len() as u64)).unwrap();
    e.write_all(new).unwrap();
    e.finish().unwrap()
}

fn patch_from_decode(old: &[u8], p: &[u8]) -> Vec<u8> {
    let mut d = zstd::stream::read::Decoder::with_ref_prefix(p, old).unwrap();
    d.window_log_max(31).unwrap();
    let mut out = Vec::new();
    d.read_to_end(&mut out).unwrap();
    out
}

/// bidiff's patch, zstd-compressed at `level` (`None`: left uncompressed).
fn bidiff_encode(
    old: &[u8],
    new: &[u8],
    level: Option<i32>,
    params: &bidiff::DiffParams,
) -> Vec<u8> {
    let mut raw = Vec::new();
    bidiff::simple_diff_with_params(old, new, &mut raw, params).unwrap();
    match level {
        Some(level) => zstd::bulk::compress(&raw, level).unwrap(),
        None => raw,
    }
}

fn bidiff_decode(old: &[u8], p: &[u8]) -> Vec<u8> {
    let mut r = if p.starts_with(&0xFD2F_B528_u32.to_le_bytes()) {
        let z = zstd::stream::read::Decoder::new(p).unwrap();
        bipatch::Reader::new(Box::new(z) as Box<dyn Read>, Cursor::new(old)).unwrap()
    } else {
        bipatch::Reader::new(Box::new(p) as Box<dyn Read>, Cursor::new(old)).unwrap()
    };
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

fn qbsdiff_decode(old: &[u8], p: &[u8]) -> Vec<u8> {
    let patcher = qbsdiff::Bspatch::new(p).unwrap();
    let mut out = Vec::with_capacity(patcher.hint_target_size() as usize);
    patcher.apply(old, &mut out).unwrap();
    out
}

/// Wall-clock and CPU time (all threads) of one run.
#[derive(Clone, Copy)]
struct Timing {
    wall: Duration,
    cpu: Option<Duration>,
}

/// Runs `f` `runs` times (at least once) and returns the timing of the fastest run.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Timing {
    let mut best: Option<Timing> = None;
    for _ in 0..runs.max(1) {
        let cpu0 = process_cpu();
        let start = Instant::now();
        drop(f());
        let wall = start.elapsed();
        let cpu = process_cpu().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
        if best.is_none_or(|b| wall < b.wall) {
            best = Some(Timing { wall, cpu });
        }
    }
    best.expect("ran at least once")
}

/// User + system CPU time of this process so far, from `/proc/self/stat` (Linux; ticks of
/// 10 ms).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Runs `f` and returns how far the resident set grew above its size before `f`, at peak.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let before = status_kib("VmRSS:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let t = f();
    let peak = status_kib("VmHWM:");
    let growth = match (reset, before, peak) {
        (true, Some(b), Some(p)) => Some(p.saturating_sub(b) * 1024),
        _ => None,
    };
    (t, growth)
}

fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "n/a".to_string(),
        |b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)),
    )
}
