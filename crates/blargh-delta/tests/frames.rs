//! Round trips, refusals and sizes of blargh-delta frames, through the public API only.
//!
//! Synthetic inputs come from a seeded xorshift generator, so every run sees the same bytes;
//! the "real binary" test edits a copy of `/bin/ls` (or, where there is none, of this test
//! executable's first 512 KiB).

use blargh_delta::{
    DeltaError, FORMAT_VERSION, HEADER_LEN, MAGIC, Method, decode, encode_delta, encode_whole,
    frame_info,
};
use sha2::{Digest, Sha256};

/// No limit worth mentioning, for tests that are not about `max_size`.
const NO_LIMIT: u64 = u64::MAX;

/// Deterministic pseudo-random bytes (xorshift64*).
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Encodes `new` against `base`, checks the header and the round trip, returns the frame.
fn delta_round_trip(base: &[u8], new: &[u8]) -> Vec<u8> {
    let frame = encode_delta(base, new);
    let info = frame_info(&frame).expect("header reads back");
    assert_eq!(info.method, Method::Delta);
    assert_eq!(info.version, FORMAT_VERSION);
    let b = info.base.expect("a delta names its base");
    assert_eq!(b.size, base.len() as u64);
    assert_eq!(b.sha256, sha(base));
    assert_eq!(info.new_size, new.len() as u64);
    assert_eq!(info.new_sha256, sha(new));
    assert_eq!(info.frame_len(), frame.len() as u64);
    let back = decode(Some(base), &frame, NO_LIMIT).expect("delta decodes");
    assert!(back == new, "round trip changed the file");
    frame
}

/// Rewrites a header field and recomputes the header's check bytes, as a forger would.
fn forge(frame: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[at..at + bytes.len()].copy_from_slice(bytes);
    let check = Sha256::digest(&f[..HEADER_LEN - 4]);
    f[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&check[..4]);
    f
}

#[test]
fn unrelated_random_files_round_trip_at_about_their_own_size() {
    let base = random(64 * 1024, 1);
    let new = random(64 * 1024, 2);
    let frame = delta_round_trip(&base, &new);
    // Nothing to share: the delta is the new file plus bookkeeping, never a blow-up.
    assert!(frame.len() < new.len() + 1024, "{} bytes", frame.len());
}

#[test]
fn shifted_file_costs_little() {
    let base = random(128 * 1024, 3);
    let mut new = random(100, 4);
    new.extend_from_slice(&base);
    let frame = delta_round_trip(&base, &new);
    assert!(frame.len() < 1024, "{} bytes", frame.len());
}

#[test]
fn appended_file_costs_about_the_append() {
    let base = random(128 * 1024, 5);
    let tail = random(4096, 6);
    let new = [&base[..], &tail[..]].concat();
    let frame = delta_round_trip(&base, &new);
    assert!(frame.len() < tail.len() + 1024, "{} bytes", frame.len());
}

#[test]
fn block_replaced_in_the_middle() {
    let base = random(128 * 1024, 7);
    let mut new = base.clone();
    new.splice(60_000..61_000, random(3000, 8));
    let frame = delta_round_trip(&base, &new);
    assert!(frame.len() < 3000 + 1024, "{} bytes", frame.len());
}

#[test]
fn empty_base_and_empty_new() {
    let data = random(10_000, 9);
    delta_round_trip(&[], &data);
    delta_round_trip(&data, &[]);
    delta_round_trip(&[], &[]);
}

#[test]
fn tiny_files_of_every_small_size_round_trip() {
    for base_len in 0..12 {
        for new_len in 0..12 {
            let base = random(base_len, 100 + base_len as u64);
            let mut new = random(new_len, 200 + new_len as u64);
            // Share a little, sometimes.
            let shared = base_len.min(new_len) / 2;
            new[..shared].copy_from_slice(&base[..shared]);
            delta_round_trip(&base, &new);
        }
    }
}

#[test]
fn identical_files_cost_almost_nothing() {
    let data = random(256 * 1024, 10);
    let frame = delta_round_trip(&data, &data);
    assert!(frame.len() < HEADER_LEN + 200, "{} bytes", frame.len());
}

#[test]
fn whole_file_round_trips_and_needs_no_base() {
    let text: Vec<u8> = b"fn main() { println!(\"hello\"); }\n".repeat(2000);
    let frame = encode_whole(&text);
    let info = frame_info(&frame).unwrap();
    assert_eq!(info.method, Method::Whole);
    assert_eq!(info.base, None);
    assert_eq!(info.new_size, text.len() as u64);
    assert_eq!(info.new_sha256, sha(&text));
    assert!(
        frame.len() < text.len() / 10,
        "compressed: {} bytes",
        frame.len()
    );
    assert_eq!(decode(None, &frame, NO_LIMIT).unwrap(), text);
    // A base, if given, is irrelevant to a whole-file frame.
    assert_eq!(decode(Some(b"other"), &frame, NO_LIMIT).unwrap(), text);
    assert_eq!(
        decode(None, &encode_whole(&[]), 0).unwrap(),
        Vec::<u8>::new()
    );
}

#[test]
fn delta_against_the_wrong_base_is_refused() {
    let base = random(32 * 1024, 11);
    let mut new = base.clone();
    new[100] ^= 1;
    let frame = encode_delta(&base, &new);

    let mut other = base.clone();
    other[5] ^= 0x80;
    let err = decode(Some(&other), &frame, NO_LIMIT).unwrap_err();
    assert_eq!(
        err,
        DeltaError::WrongBase {
            expected: hex::encode(sha(&base)),
            found: hex::encode(sha(&other)),
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("the host's current release is not the base this delta was made against"),
        "{msg}"
    );
    assert!(msg.contains("send the whole file"), "{msg}");

    // Same content but a byte shorter: still the wrong base.
    let err = decode(Some(&base[..base.len() - 1]), &frame, NO_LIMIT).unwrap_err();
    assert!(matches!(err, DeltaError::WrongBase { .. }), "{err}");

    let err = decode(None, &frame, NO_LIMIT).unwrap_err();
    assert_eq!(
        err,
        DeltaError::MissingBase {
            base_sha256: hex::encode(sha(&base)),
        }
    );
    assert!(err.to_string().contains("send the whole file"), "{err}");
}

#[test]
fn damaged_payload_is_refused() {
    let base = random(32 * 1024, 12);
    let mut new = base.clone();
    new.splice(1000..1000, random(500, 13));
    for frame in [encode_delta(&base, &new), encode_whole(&new)] {
        // Every payload byte, each flipped in a few ways: refused, never a panic.
        for (at, flip) in
            (HEADER_LEN..frame.len()).flat_map(|at| [(at, 0x01), (at, 0x80), (at, 0xFF)])
        {
            let mut bad = frame.clone();
            bad[at] ^= flip;
            let err = decode(Some(&base), &bad, NO_LIMIT).unwrap_err();
            assert!(
                matches!(
                    err,
                    DeltaError::Corrupt { .. } | DeltaError::Mismatch { .. }
                ),
                "byte {at} ^ {flip:#x}: {err:?}"
            );
        }
    }
}

#[test]
fn damaged_header_is_refused() {
    let base = random(16 * 1024, 14);
    let frame = encode_delta(&base, &random(16 * 1024, 15));
    for at in 10..HEADER_LEN {
        let mut bad = frame.clone();
        bad[at] ^= 0x01;
        assert_eq!(
            frame_info(&bad).unwrap_err(),
            DeltaError::CorruptHeader,
            "byte {at}"
        );
        assert_eq!(
            decode(Some(&base), &bad, NO_LIMIT).unwrap_err(),
            DeltaError::CorruptHeader
        );
    }
}

#[test]
fn not_a_frame_other_versions_and_unknown_methods_are_refused() {
    let frame = encode_whole(b"release");
    assert_eq!(
        decode(None, b"\x7fELF\x02\x01\x01\0 not a frame", NO_LIMIT).unwrap_err(),
        DeltaError::NotAFrame
    );
    assert_eq!(frame_info(b"BLRX").unwrap_err(), DeltaError::NotAFrame);

    let mut v2 = frame.clone();
    v2[8..10].copy_from_slice(&2u16.to_le_bytes());
    let err = decode(None, &v2, NO_LIMIT).unwrap_err();
    assert_eq!(
        err,
        DeltaError::UnsupportedVersion {
            found: 2,
            supported: FORMAT_VERSION
        }
    );
    // Recognised from the first ten bytes, before the rest of a (possibly longer) header.
    assert_eq!(frame_info(&v2[..10]).unwrap_err(), err);

    let m9 = forge(&frame, 10, &[9]);
    assert_eq!(
        decode(None, &m9, NO_LIMIT).unwrap_err(),
        DeltaError::UnknownMethod(9)
    );
}

#[test]
fn truncated_and_overlong_frames_are_refused() {
    let base = random(16 * 1024, 16);
    let new = random(16 * 1024, 17);
    let frame = encode_delta(&base, &new);
    let n = frame.len() as u64;
    for cut in [0, 5, HEADER_LEN - 1, HEADER_LEN, frame.len() - 1] {
        let err = decode(Some(&base), &frame[..cut], NO_LIMIT).unwrap_err();
        let needed = if cut < HEADER_LEN {
            HEADER_LEN as u64
        } else {
            n
        };
        assert_eq!(
            err,
            DeltaError::Truncated {
                needed,
                got: cut as u64
            }
        );
    }
    let mut long = frame.clone();
    long.push(0);
    assert_eq!(
        decode(Some(&base), &long, NO_LIMIT).unwrap_err(),
        DeltaError::TrailingBytes {
            expected: n,
            got: n + 1
        }
    );
}

#[test]
fn frame_info_needs_only_the_header() {
    let base = random(8 * 1024, 18);
    let new = random(9 * 1024, 19);
    let frame = encode_delta(&base, &new);
    assert_eq!(&frame[..8], &MAGIC);
    let info = frame_info(&frame[..HEADER_LEN]).unwrap();
    assert_eq!(info, frame_info(&frame).unwrap());
    assert_eq!(info.new_size, new.len() as u64);
    assert_eq!(info.frame_len(), frame.len() as u64);
}

#[test]
fn max_size_is_enforced() {
    let base = random(20_000, 20);
    let mut new = base.clone();
    new.extend_from_slice(&random(1000, 21));
    let n = new.len() as u64;
    for frame in [encode_delta(&base, &new), encode_whole(&new)] {
        assert_eq!(
            decode(Some(&base), &frame, n - 1).unwrap_err(),
            DeltaError::TooLarge {
                size: n,
                max: n - 1
            }
        );
        assert_eq!(decode(Some(&base), &frame, n).unwrap(), new);
    }
}

#[test]
fn a_frame_understating_its_size_decodes_no_further() {
    // A forged header (valid check bytes) announcing fewer bytes than the payload holds:
    // decoding stops one byte past the announced size and refuses, or refuses at once the
    // zstd window the real size needed (larger than 100 bytes can need).
    let base = random(20_000, 22);
    let new = [&base[..], &random(5000, 23)[..]].concat();
    for frame in [encode_delta(&base, &new), encode_whole(&new)] {
        let small = forge(&frame, 12, &100u64.to_le_bytes());
        let err = decode(Some(&base), &small, 100).unwrap_err();
        assert!(
            matches!(&err, DeltaError::Corrupt { detail }
                if detail.contains("more than 100 bytes") || detail.contains("too much memory")),
            "{err:?}"
        );
        // And one overstating it is refused too, not padded out.
        let big = forge(&frame, 12, &(n(&new) + 10).to_le_bytes());
        let err = decode(Some(&base), &big, NO_LIMIT).unwrap_err();
        assert!(matches!(&err, DeltaError::Corrupt { .. }), "{err:?}");
    }
}

fn n(data: &[u8]) -> u64 {
    data.len() as u64
}

#[test]
fn a_frame_whose_sha256_is_forged_is_refused_after_decoding() {
    let base = random(10_000, 24);
    let new = random(10_000, 25);
    let frame = encode_whole(&new);
    let forged = forge(&frame, 20, &[0xAB; 32]);
    let err = decode(Some(&base), &forged, NO_LIMIT).unwrap_err();
    assert_eq!(
        err,
        DeltaError::Mismatch {
            expected: hex::encode([0xAB; 32]),
            got: hex::encode(sha(&new)),
        }
    );
}

/// A real executable: `/bin/ls`, or this test binary's first 512 KiB where there is none.
fn real_binary() -> Vec<u8> {
    if let Ok(ls) = std::fs::read("/bin/ls") {
        return ls;
    }
    let mut exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    exe.truncate(512 * 1024);
    exe
}

#[test]
fn real_binary_with_edits_ships_a_small_delta() {
    let old = real_binary();
    assert!(old.len() > 64 * 1024, "{} bytes", old.len());
    let mut new = old.clone();
    // A few bytes changed, as a changed literal would...
    for at in [old.len() / 7, old.len() / 3, old.len() / 2 + 11] {
        new[at] = new[at].wrapping_add(0x41);
    }
    // ...and a block inserted, shifting everything after it.
    let at = old.len() / 4;
    new.splice(at..at, random(2000, 26));

    let frame = delta_round_trip(&old, &new);
    let whole = encode_whole(&new);
    assert_eq!(decode(None, &whole, NO_LIMIT).unwrap(), new);
    println!(
        "file {} bytes: delta frame {} bytes, whole frame {} bytes",
        new.len(),
        frame.len(),
        whole.len()
    );
    assert!(
        frame.len() * 20 < new.len() && frame.len() * 5 < whole.len(),
        "delta {} bytes, whole {} bytes, file {} bytes",
        frame.len(),
        whole.len(),
        new.len()
    );
}
