//! How a step's content travels to the host: small text inline in the script, anything
//! else on the script's stdin, gzip-compressed when the host has `gzip` (the step's apply
//! verifies the sha256 of what it wrote, so a bad decompression is caught there).

use std::io::Write;
use std::sync::Arc;

use crate::plan::Content;

/// Text content up to this size travels inside the script (which goes on a command line,
/// so it must stay well below Linux's 128 KiB limit for one argument).
pub const INLINE_MAX: usize = 16 * 1024;

/// Content below this size is not worth compressing.
const GZIP_MIN: usize = 4 * 1024;

/// Content as it travels.
#[derive(Clone, PartialEq, Eq)]
pub enum Payload {
    /// In the script, as a quoted sh word (text without NUL, up to [`INLINE_MAX`]).
    Inline(String),
    /// The bytes, as they are, on stdin.
    Raw(Arc<Vec<u8>>),
    /// gzip of the bytes on stdin; the script runs `gzip -dc`.
    Gzip {
        /// The compressed bytes.
        bytes: Vec<u8>,
        /// The size before compression.
        original: usize,
    },
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Inline(t) => write!(f, "Inline({} bytes)", t.len()),
            Payload::Raw(b) => write!(f, "Raw({} bytes)", b.len()),
            Payload::Gzip { bytes, original } => {
                write!(f, "Gzip({} bytes of {original})", bytes.len())
            }
        }
    }
}

impl Payload {
    /// Whether it travels on stdin (at most one such payload per script).
    pub fn on_stdin(&self) -> bool {
        !matches!(self, Payload::Inline(_))
    }

    /// The bytes sent on stdin (empty for inline content).
    pub fn stdin_bytes(&self) -> &[u8] {
        match self {
            Payload::Inline(_) => &[],
            Payload::Raw(b) => b,
            Payload::Gzip { bytes, .. } => bytes,
        }
    }
}

/// How `content` travels: inline when it is short text, else on stdin, compressed when
/// `gzip` (the host has `gzip`) and it is large enough to gain.
pub fn payload(content: &Content, gzip: bool) -> std::io::Result<Payload> {
    let bytes = &content.bytes;
    if bytes.len() <= INLINE_MAX
        && !bytes.contains(&0)
        && let Ok(text) = std::str::from_utf8(bytes)
    {
        return Ok(Payload::Inline(text.to_string()));
    }
    if gzip && bytes.len() >= GZIP_MIN {
        return Ok(Payload::Gzip {
            bytes: compress(bytes)?,
            original: bytes.len(),
        });
    }
    Ok(Payload::Raw(content.bytes.clone()))
}

/// gzip of `bytes` at level 1: an executable shrinks to about a third either way, and
/// level 1 costs the client a third of level 6's time (the upload is what it shortens).
pub fn compress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3),
        flate2::Compression::fast(),
    );
    enc.write_all(bytes)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_goes_inline_and_binaries_on_stdin() {
        let unit = Content::new(b"[Unit]\n".to_vec(), "unit");
        assert_eq!(
            payload(&unit, true).unwrap(),
            Payload::Inline("[Unit]\n".into())
        );
        let mut elf = vec![0x7f, b'E', b'L', b'F', 0];
        elf.resize(100_000, 7);
        let elf = Content::new(elf, "agent");
        assert!(matches!(payload(&elf, false).unwrap(), Payload::Raw(b) if b.len() == 100_000));
        let Payload::Gzip { bytes, original } = payload(&elf, true).unwrap() else {
            panic!("a large binary is compressed when the host has gzip");
        };
        assert_eq!(original, 100_000);
        assert!(bytes.len() < 1_000, "{}", bytes.len());
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut back)
            .unwrap();
        assert_eq!(back, *elf.bytes);
    }

    #[test]
    fn long_text_is_not_inlined() {
        let big = Content::new(vec![b'a'; INLINE_MAX + 1], "text");
        assert!(payload(&big, true).unwrap().on_stdin());
    }
}
