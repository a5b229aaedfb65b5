//! The one error type of this crate: it names the file and line, the key by its full dotted
//! path (`package.metadata.blargh.destinations.staging.hostz`), what was found there and
//! what to write instead, the way cargo does.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What kind of mistake a [`ConfigError`] reports, for callers that act on it (exit codes,
/// offering `cargo blargh init`). The message says everything a person needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The Cargo.toml could not be read.
    Io,
    /// The file is not valid TOML.
    Syntax,
    /// The file has no `[package]` with a `name` (a workspace's root manifest, say).
    NoPackage,
    /// There is no `[package.metadata.blargh]`: `cargo blargh init` adds one.
    NoSection,
    /// A key blargh does not know, most often a typo.
    UnknownKey,
    /// A known key with a value of the wrong type or shape.
    InvalidValue,
    /// No `hosts` for the chosen destination.
    MissingHosts,
    /// `-d NAME` names no configured destination.
    UnknownDestination,
    /// `cargo blargh init` on a Cargo.toml that already has the section.
    SectionExists,
}

/// A line and column in the Cargo.toml, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text` (clamped to the text's end).
    pub fn of(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// A configuration mistake, with where it is and how to fix it.
///
/// `Display` writes one line (or two, for a syntax error's caret) like
/// `Cargo.toml:14:17: package.metadata.blargh.drain_timeout = "soon": not a duration; write
/// it like "30s", "500ms" or "2m"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ErrorKind,
    file: PathBuf,
    location: Option<Location>,
    key: Option<String>,
    message: String,
}

impl ConfigError {
    /// An error about `file` as a whole.
    pub(crate) fn new(kind: ErrorKind, file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            kind,
            file: file.to_path_buf(),
            location: None,
            key: None,
            message: message.into(),
        }
    }

    /// The same error, located at byte range `span` of `text`.
    pub(crate) fn at(mut self, text: &str, span: Range<usize>) -> ConfigError {
        self.location = Some(Location::of(text, span.start));
        self
    }

    /// The same error, about the key with full dotted path `key`.
    pub(crate) fn key(mut self, key: &str) -> ConfigError {
        self.key = Some(key.to_string());
        self
    }

    /// What kind of mistake this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The Cargo.toml it is about.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Where in the file, when the mistake has a place.
    pub fn location(&self) -> Option<Location> {
        self.location
    }

    /// The full dotted path of the key at fault, like
    /// `package.metadata.blargh.destinations.staging.hosts`, when there is one.
    pub fn key_path(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The message without the file and line: what is wrong, then the fix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(at) = self.location {
            write!(f, ":{}:{}", at.line, at.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Location::of(text, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of(text, 6), Location { line: 2, column: 1 });
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(Location::of(text, 12), Location { line: 2, column: 6 });
        assert_eq!(Location::of(text, 999).line, 3);
    }

    #[test]
    fn display_puts_file_and_line_first() {
        let e = ConfigError::new(ErrorKind::InvalidValue, Path::new("app/Cargo.toml"), "bad")
            .at("x\ny = 1", 2..3)
            .key("package.metadata.blargh.y");
        assert_eq!(e.to_string(), "app/Cargo.toml:2:1: bad");
        assert_eq!(e.key_path(), Some("package.metadata.blargh.y"));
        let e = ConfigError::new(ErrorKind::NoSection, Path::new("Cargo.toml"), "none");
        assert_eq!(e.to_string(), "Cargo.toml: none");
    }
}
