//! Hostile frames: arbitrary bytes, frames with a valid header and an arbitrary payload,
//! and mutated real frames never panic the decoder and fail cleanly; the result is never
//! larger than `max_size`, Rust-side allocations stay within `max_size` plus a fixed
//! slack, and a payload that decompresses to an endless patch of empty steps is refused
//! quickly instead of burning CPU. Case count: `PROPTEST_CASES` (256 by default).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blargh_delta::{FORMAT_VERSION, HEADER_LEN, MAGIC, decode, encode_delta, encode_whole};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// Counts the bytes the Rust side holds, and the most it held since the last reset.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the most bytes allocated meanwhile beyond what was
/// held before. Tests in this file run one at a time through this lock.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// The most a decode may allocate on the Rust side beyond `max_size`.
const SLACK: usize = 256 * 1024;

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A frame with a valid header (check included) around `payload`.
fn frame_with(method: u8, new_size: u64, base: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_LEN + payload.len());
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    f.push(method);
    f.push(0);
    f.extend_from_slice(&new_size.to_le_bytes());
    f.extend_from_slice(&[0x11; 32]);
    match base {
        Some(b) => {
            f.extend_from_slice(&(b.len() as u64).to_le_bytes());
            f.extend_from_slice(&sha(b));
        }
        None => f.extend_from_slice(&[0; 40]),
    }
    f.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let check = sha(&f[..100]);
    f.extend_from_slice(&check[..4]);
    assert_eq!(f.len(), HEADER_LEN);
    f.extend_from_slice(payload);
    f
}

fn assert_clean(base: Option<&[u8]>, frame: &[u8], max_size: u64) -> Result<(), TestCaseError> {
    let (result, peak) = peak_during(|| decode(base, frame, max_size));
    if let Ok(out) = &result {
        prop_assert!(out.len() as u64 <= max_size);
    }
    if let Err(e) = &result {
        prop_assert!(!e.to_string().is_empty());
    }
    prop_assert!(
        peak <= max_size as usize + SLACK,
        "decoding allocated {peak} bytes for max_size {max_size}"
    );
    Ok(())
}

const BASE: &[u8] = b"the base release, the one the host holds, with some length to it";

proptest! {
    #[test]
    fn arbitrary_bytes_fail_cleanly(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        magic in any::<bool>(),
    ) {
        let mut frame = if magic { MAGIC.to_vec() } else { Vec::new() };
        frame.extend(bytes);
        assert_clean(None, &frame, 1 << 20)?;
        assert_clean(Some(BASE), &frame, 1 << 20)?;
    }

    #[test]
    fn valid_headers_with_arbitrary_payloads_fail_cleanly(
        delta in any::<bool>(),
        new_size in prop_oneof![0u64..4096, Just(1 << 20), Just(u64::MAX)],
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        zstd_magic in any::<bool>(),
    ) {
        let mut p = if zstd_magic { vec![0x28, 0xb5, 0x2f, 0xfd] } else { Vec::new() };
        p.extend(payload);
        let frame = frame_with(if delta { 2 } else { 1 }, new_size, delta.then_some(BASE), &p);
        assert_clean(Some(BASE), &frame, 1 << 20)?;
    }

    #[test]
    fn mutated_real_frames_fail_cleanly(
        delta in any::<bool>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        keep_header in any::<bool>(),
    ) {
        let new: Vec<u8> = BASE.iter().rev().cycle().take(3000).copied().collect();
        let mut frame = if delta { encode_delta(BASE, &new) } else { encode_whole(&new) };
        let from = if keep_header { HEADER_LEN } else { 0 };
        for (at, with) in flips {
            let i = from + at.index(frame.len() - from);
            frame[i] = with;
        }
        if let Some(c) = cut { frame.truncate(c.index(frame.len())); }
        assert_clean(Some(BASE), &frame, 1 << 20)?;
        assert_clean(Some(BASE), &frame, 100)?;
    }
}

/// zstd of a bipatch patch that is `steps` empty steps (add 0, copy 0, seek 0): it
/// decompresses to 3 bytes a step and produces nothing.
fn empty_steps_patch(steps: usize) -> Vec<u8> {
    let mut raw = Vec::with_capacity(8 + 3 * steps);
    raw.extend_from_slice(&0xB1DFu32.to_le_bytes());
    raw.extend_from_slice(&0x1000u32.to_le_bytes());
    raw.resize(8 + 3 * steps, 0);
    // A 1 MiB window, which a file of 1 KiB's patch may use: only the length gives it away.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    enc.window_log(20).unwrap();
    std::io::Write::write_all(&mut enc, &raw).unwrap();
    enc.finish().unwrap()
}

#[test]
fn a_patch_of_empty_steps_is_refused_quickly() {
    // 256 MiB of patch for a 1 KiB file, from a few kilobytes of payload.
    let payload = empty_steps_patch((256 << 20) / 3);
    assert!(payload.len() < 64 * 1024, "{}", payload.len());
    let frame = frame_with(2, 1024, Some(BASE), &payload);
    let t0 = Instant::now();
    let (result, peak) = peak_during(|| decode(Some(BASE), &frame, 1 << 20));
    let took = t0.elapsed();
    let e = result.expect_err("an empty patch decoded to something");
    eprintln!("refused in {took:?}, {peak} bytes allocated: {e}");
    assert!(took < Duration::from_secs(2), "took {took:?}: {e}");
    assert!(e.to_string().contains("decompresses to more than"), "{e}");
    assert!(peak <= (1 << 20) + SLACK, "{peak}");
}
