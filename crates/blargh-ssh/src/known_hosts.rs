//! Reading and appending OpenSSH `known_hosts` files.
//!
//! Understood: plain host lists (`host,10.0.0.1`), `[host]:port` for ports other than
//! 22, wildcards (`*`, `?`) and negation (`!`), hashed entries
//! (`|1|base64(salt)|base64(HMAC-SHA1(salt, host))`, as written by
//! `HashKnownHosts yes`), and `@revoked` lines. `@cert-authority` lines are skipped
//! (host certificates are not used). New entries are appended in plain form, like
//! `ssh` with `HashKnownHosts no`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{PublicKey, PublicKeyBase64};
use sha1::Sha1;

use crate::error::SshError;

/// How a server's key compares with the entries of a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// This key is recorded for this host at `line` (1-based).
    Known {
        /// The matching line.
        line: usize,
    },
    /// The host has entries, but none with this key: refuse.
    Changed {
        /// The line of the recorded key (of the same type when there is one).
        line: usize,
        /// The algorithm of the recorded key, e.g. `ssh-ed25519`.
        known_type: String,
    },
    /// This key is marked `@revoked` at `line`.
    Revoked {
        /// The `@revoked` line.
        line: usize,
    },
    /// No entry for this host.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
}

#[derive(Debug, Clone)]
enum Hosts {
    /// `|1|salt|hash`.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// `pattern,!pattern,…`, lower-cased.
    Patterns(Vec<(bool, String)>),
}

#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    marker: Marker,
    hosts: Hosts,
    key_type: String,
    blob: Vec<u8>,
}

/// The parsed entries of one known_hosts file.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<Entry>,
}

/// The name a host has in known_hosts: `host` on port 22, `[host]:port` otherwise.
pub fn host_entry_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

impl KnownHosts {
    /// Read `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<KnownHosts, SshError> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(KnownHosts::parse(path, &text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KnownHosts {
                path: path.to_path_buf(),
                entries: Vec::new(),
            }),
            Err(source) => Err(SshError::KnownHostsFile {
                action: "read",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parse the text of a known_hosts file; lines that cannot be understood are
    /// skipped, as `ssh` does.
    pub fn parse(path: &Path, text: &str) -> KnownHosts {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| parse_line(i + 1, line))
            .collect();
        KnownHosts {
            path: path.to_path_buf(),
            entries,
        }
    }

    /// The file these entries came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Compare `key`, shown by `host` on `port`, with the entries.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let name = host_entry_name(host, port);
        let blob = key.public_key_bytes();
        let for_host: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.hosts.matches(&name))
            .collect();
        if let Some(e) = for_host
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.blob == blob)
        {
            return HostKeyStatus::Revoked { line: e.line };
        }
        let known: Vec<&&Entry> = for_host
            .iter()
            .filter(|e| e.marker == Marker::None)
            .collect();
        if let Some(e) = known.iter().find(|e| e.blob == blob) {
            return HostKeyStatus::Known { line: e.line };
        }
        let key_type = key.algorithm().as_str().to_string();
        let same_type = known
            .iter()
            .find(|e| e.key_type == key_type)
            .or(known.first());
        match same_type {
            Some(e) => HostKeyStatus::Changed {
                line: e.line,
                known_type: e.key_type.clone(),
            },
            None => HostKeyStatus::Unknown,
        }
    }

    /// The key algorithms recorded for `host` on `port` (e.g. `ssh-ed25519`), in file
    /// order, so the key exchange can ask the server for a key that can be checked.
    pub fn known_key_types(&self, host: &str, port: u16) -> Vec<String> {
        let name = host_entry_name(host, port);
        let mut types: Vec<String> = Vec::new();
        for e in &self.entries {
            if e.marker == Marker::None && e.hosts.matches(&name) && !types.contains(&e.key_type) {
                types.push(e.key_type.clone());
            }
        }
        types
    }
}

/// Append `key` for `host`/`port` to the known_hosts file at `path`, creating the file
/// (and its directory, mode 0700) if needed.
pub fn append(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<(), SshError> {
    let fail = |source| SshError::KnownHostsFile {
        action: "append to",
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(fail)?;
    }
    let needs_newline = match fs::read(path) {
        Ok(bytes) => !bytes.is_empty() && !bytes.ends_with(b"\n"),
        Err(_) => false,
    };
    let line = format!(
        "{}{} {} {}\n",
        if needs_newline { "\n" } else { "" },
        host_entry_name(host, port),
        key.algorithm().as_str(),
        key.public_key_base64()
    );
    let existed = fs::symlink_metadata(path).is_ok();
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    file.write_all(line.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    // A file this created exists after a power cut only once its directory is flushed.
    if !existed {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        fs::File::open(dir.unwrap_or(Path::new(".")))
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
    }
    Ok(())
}

fn parse_line(line: usize, text: &str) -> Option<Entry> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let mut fields = text.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => {
            first = fields.next()?;
            Marker::Revoked
        }
        // Host certificates are not negotiated, so CA lines cannot apply.
        "@cert-authority" => return None,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    let hosts = parse_hosts(first)?;
    let key_type = fields.next()?.to_string();
    let blob = BASE64.decode(fields.next()?.as_bytes()).ok()?;
    Some(Entry {
        line,
        marker,
        hosts,
        key_type,
        blob,
    })
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    if let Some(rest) = field.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        return Some(Hosts::Hashed {
            salt: BASE64.decode(salt.as_bytes()).ok()?,
            hash: BASE64.decode(hash.as_bytes()).ok()?,
        });
    }
    let patterns = field
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix('!') {
            Some(p) => (true, p.to_ascii_lowercase()),
            None => (false, p.to_ascii_lowercase()),
        })
        .collect::<Vec<_>>();
    (!patterns.is_empty()).then_some(Hosts::Patterns(patterns))
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                let mut matched = false;
                for (negated, pattern) in patterns {
                    if wildcard_match(pattern.as_bytes(), name.as_bytes()) {
                        if *negated {
                            return false;
                        }
                        matched = true;
                    }
                }
                matched
            }
        }
    }
}

/// `*` and `?` globbing, as in OpenSSH's `match_pattern`.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO7Ngwt6n78BZCmvzsPAwKbll6aNOq1VtL90ZNsCoyya";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5jcGoI43VVmp1AMr+WTXqt1LNxKEtxC7ZROrqaAvZv";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLzkbQgPGPgRFiK8Hqbns0MUUMmPnuLrO2OwTYz4kKXnjUrHMkzanwXKSCl+8mdBmFoyzWE5DqayoS9OV11Dg/o=";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key parses")
    }

    fn kh(text: &str) -> KnownHosts {
        KnownHosts::parse(Path::new("/tmp/known_hosts"), text)
    }

    #[test]
    fn entry_names() {
        assert_eq!(host_entry_name("Example.COM", 22), "example.com");
        assert_eq!(host_entry_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
    }

    #[test]
    fn plain_entry_with_several_names() {
        let k = kh(&format!(
            "# comment\n\nother.example {ED2}\nhost.example,10.0.0.5 {ED}\n"
        ));
        assert_eq!(
            k.check("host.example", 22, &key(ED)),
            HostKeyStatus::Known { line: 4 }
        );
        assert_eq!(
            k.check("10.0.0.5", 22, &key(ED)),
            HostKeyStatus::Known { line: 4 }
        );
        assert_eq!(
            k.check("HOST.example", 22, &key(ED)),
            HostKeyStatus::Known { line: 4 }
        );
        assert_eq!(k.check("nowhere", 22, &key(ED)), HostKeyStatus::Unknown);
        // Port 22 entries do not cover other ports.
        assert_eq!(
            k.check("host.example", 2222, &key(ED)),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn bracketed_port_entry() {
        let k = kh(&format!("[127.0.0.1]:2222 {ED}\n"));
        assert_eq!(
            k.check("127.0.0.1", 2222, &key(ED)),
            HostKeyStatus::Known { line: 1 }
        );
        assert_eq!(k.check("127.0.0.1", 22, &key(ED)), HostKeyStatus::Unknown);
        assert_eq!(k.check("127.0.0.1", 2223, &key(ED)), HostKeyStatus::Unknown);
    }

    #[test]
    fn hashed_entry() {
        // The same construction as `ssh-keygen -H`, with a fixed salt.
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let line = format!("|1|{}|{} {ED}\n", BASE64.encode(salt), BASE64.encode(&hash));
        let k = kh(&line);
        assert_eq!(
            k.check("127.0.0.1", 2222, &key(ED)),
            HostKeyStatus::Known { line: 1 }
        );
        assert_eq!(k.check("127.0.0.2", 2222, &key(ED)), HostKeyStatus::Unknown);
        assert_eq!(
            k.check("127.0.0.1", 2222, &key(ED2)),
            HostKeyStatus::Changed {
                line: 1,
                known_type: "ssh-ed25519".into()
            }
        );
    }

    #[test]
    fn changed_key_points_at_the_same_type() {
        let k = kh(&format!("host {ECDSA}\nhost {ED2}\n"));
        assert_eq!(
            k.check("host", 22, &key(ED)),
            HostKeyStatus::Changed {
                line: 2,
                known_type: "ssh-ed25519".into()
            }
        );
        assert_eq!(
            k.known_key_types("host", 22),
            vec!["ecdsa-sha2-nistp256".to_string(), "ssh-ed25519".to_string()]
        );
    }

    #[test]
    fn other_type_only_is_refused_too() {
        let k = kh(&format!("host {ECDSA}\n"));
        assert_eq!(
            k.check("host", 22, &key(ED)),
            HostKeyStatus::Changed {
                line: 1,
                known_type: "ecdsa-sha2-nistp256".into()
            }
        );
    }

    #[test]
    fn wildcards_and_negation() {
        let k = kh(&format!(
            "*.example.com,!bad.example.com {ED}\n[10.0.0.?]:2222 {ED}\n"
        ));
        assert_eq!(
            k.check("a.example.com", 22, &key(ED)),
            HostKeyStatus::Known { line: 1 }
        );
        assert_eq!(
            k.check("bad.example.com", 22, &key(ED)),
            HostKeyStatus::Unknown
        );
        assert_eq!(k.check("example.com", 22, &key(ED)), HostKeyStatus::Unknown);
        assert_eq!(
            k.check("10.0.0.7", 2222, &key(ED)),
            HostKeyStatus::Known { line: 2 }
        );
        assert!(wildcard_match(b"a*b*c", b"aXXbYYc"));
        assert!(!wildcard_match(b"a*b*c", b"aXXbYY"));
        assert!(wildcard_match(b"*", b""));
    }

    #[test]
    fn revoked_wins() {
        let k = kh(&format!("host {ED}\n@revoked * {ED}\n"));
        assert_eq!(
            k.check("host", 22, &key(ED)),
            HostKeyStatus::Revoked { line: 2 }
        );
    }

    #[test]
    fn malformed_and_ca_lines_are_skipped() {
        let k = kh(&format!(
            "garbage\nhost ssh-ed25519 !!!notbase64\n@cert-authority * {ED}\nhost {ED}\n"
        ));
        assert_eq!(
            k.check("host", 22, &key(ED)),
            HostKeyStatus::Known { line: 4 }
        );
    }

    #[test]
    fn append_creates_and_extends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        append(&path, "127.0.0.1", 2222, &key(ED)).unwrap();
        fs::write(
            &path,
            format!("{}host {ED2}", fs::read_to_string(&path).unwrap()),
        )
        .unwrap();
        append(&path, "Host.Example", 22, &key(ED)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("[127.0.0.1]:2222 {ED}\nhost {ED2}\nhost.example {ED}\n")
        );
        let k = KnownHosts::load(&path).unwrap();
        assert_eq!(
            k.check("127.0.0.1", 2222, &key(ED)),
            HostKeyStatus::Known { line: 1 }
        );
        assert_eq!(
            k.check("host.example", 22, &key(ED)),
            HostKeyStatus::Known { line: 3 }
        );
    }

    #[test]
    fn missing_file_is_empty() {
        let k = KnownHosts::load(Path::new("/nonexistent/known_hosts")).unwrap();
        assert_eq!(k.check("h", 22, &key(ED)), HostKeyStatus::Unknown);
    }
}
