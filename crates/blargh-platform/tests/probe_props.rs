//! Property tests of what a host sends back: arbitrary text, probe-shaped text with odd
//! section bodies, and mutated real probe outputs never panic the probe parser; arbitrary
//! and mutated bytes never panic the ELF reader. Case count: `PROPTEST_CASES` (256 by
//! default).

use blargh_platform::{GlibcVersion, binary_requirements, os_release, parse_probe};
use proptest::prelude::*;

const SECTIONS: &[&str] = &[
    "uname-s",
    "uname-m",
    "uname-r",
    "os-release",
    "sw-vers",
    "pid1",
    "init",
    "loaders",
    "commands",
    "ldd",
    "getconf",
    "id-u",
    "end",
    "probe 1",
    "probe 2",
    "probe",
];

fn fixtures() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|t| t.contains("@@blargh probe"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no probe fixtures in {dir}");
    out
}

/// Lines a host might print: markers, versions, odd Unicode, separators.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(SECTIONS).prop_map(|s| format!("@@blargh {s}")),
        1 => proptest::sample::select(&[
            "Linux", "Darwin", "FreeBSD", "x86_64", "aarch64", "armv7l", "é", "glibc 2.36",
            "glibc ", "glibc 2.", "glibc .", "glibc 2.é", "ldd (GNU libc) 2.36", "musl libc",
            "ID=\"debian", "ID='x'", "PRETTY_NAME=\"a\\", "ProductName:", ":", "sudo /usr/bin/sudo",
            "sudo ", " ", "\r", "0", "4294967296", "/sbin/init", "/lib/ld-musl-x86_64.so.1",
        ][..]).prop_map(str::to_string),
        2 => "\\PC{0,24}",
        1 => any::<String>(),
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_probe(&text);
        let _ = os_release::parse_distribution(&text);
        let _ = GlibcVersion::parse(&text);
    }

    #[test]
    fn probe_shaped_text_never_panics(
        sections in proptest::collection::vec(
            (proptest::sample::select(SECTIONS), proptest::collection::vec(line(), 0..4)),
            0..16,
        ),
    ) {
        let mut text = String::from("@@blargh probe 1\n");
        for (name, lines) in &sections {
            text.push_str(&format!("@@blargh {name}\n{}\n", lines.join("\n")));
        }
        text.push_str("@@blargh end\n");
        let _ = parse_probe(&text);
        let _ = parse_probe(&text.replace('\n', "\r\n"));
    }

    #[test]
    fn version_like_text_never_panics(text in "[0-9]{0,3}\\.?[0-9]{0,3}\\PC{0,4}") {
        let _ = GlibcVersion::parse(&text);
        let _ = parse_probe(&format!(
            "@@blargh probe 1\n@@blargh uname-s\nLinux\n@@blargh uname-m\nx86_64\n\
             @@blargh getconf\nglibc {text}\n@@blargh ldd\nldd (GNU libc) {text}\n@@blargh end\n"
        ));
    }

    #[test]
    fn mutated_probe_outputs_never_panic(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        with in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let all = fixtures();
        let mut bytes = all[which.index(all.len())].clone().into_bytes();
        let i = at.index(bytes.len());
        if cut { bytes.truncate(i) } else { bytes[i] = with }
        let _ = parse_probe(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_elf_reader(
        head in prop_oneof![Just(b"\x7fELF\x02\x01\x01".to_vec()), Just(b"\x7fELF\x01\x02\x01".to_vec()), Just(Vec::new())],
        rest in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = head;
        bytes.extend(rest);
        let _ = binary_requirements(&bytes);
    }

    #[test]
    fn mutated_executables_never_panic_the_elf_reader(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // The headers and the tables they point to are what the reader walks.
        let mut bytes = me[..me.len().min(256 * 1024)].to_vec();
        for (at, with) in flips {
            let i = at.index(bytes.len().min(8192));
            bytes[i] = with;
        }
        if let Some(c) = cut { bytes.truncate(c.index(bytes.len())); }
        let _ = binary_requirements(&bytes);
    }
}
