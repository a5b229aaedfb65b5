//! Which TCP connections exist on this machine, read from `/proc/net/tcp{,6}`: how many
//! clients are connected to a port, and how many of those connections a given process
//! holds, so tests can wait for "the load generator is connected" and "the load has moved
//! to the new release" instead of sleeping.

use std::collections::HashSet;
use std::io;

/// One established TCP connection as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conn {
    local_port: u16,
    remote_port: u16,
    inode: u64,
}

/// The kernel's `ESTABLISHED` state in `/proc/net/tcp`.
const ESTABLISHED: &str = "01";

/// Established connections, IPv4 and IPv6.
fn established() -> io::Result<Vec<Conn>> {
    let mut all = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(t) => t,
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound && table.ends_with('6') => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("reading {table}: {e}"))),
        };
        all.extend(parse_table(&text).map_err(|e| io::Error::other(format!("{table}: {e}")))?);
    }
    Ok(all)
}

/// Parses the established rows of a `/proc/net/tcp`-format table.
fn parse_table(text: &str) -> Result<Vec<Conn>, String> {
    let port = |addr: &str, line: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            .ok_or_else(|| format!("no port in {addr:?} (line {line:?})"))
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            return Err(format!("short line {line:?}"));
        }
        if f[3] != ESTABLISHED {
            continue;
        }
        out.push(Conn {
            local_port: port(f[1], line)?,
            remote_port: port(f[2], line)?,
            inode: f[9].parse().map_err(|_| format!("bad inode in {line:?}"))?,
        });
    }
    Ok(out)
}

/// Number of established client connections to `port` on this machine (sockets whose
/// remote end is `port`), e.g. a load generator's.
///
/// # Errors
/// When `/proc/net/tcp` cannot be read or parsed.
pub fn clients_of(port: u16) -> io::Result<usize> {
    Ok(established()?
        .iter()
        .filter(|c| c.remote_port == port)
        .count())
}

/// Number of established connections accepted on local `port` that process `pid` holds
/// (server side): who is serving the clients right now.
///
/// # Errors
/// When `/proc/PID/fd` cannot be read (no such process, or not ours and we are not root)
/// or `/proc/net/tcp` cannot be read.
pub fn served_by(pid: u32, port: u16) -> io::Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    let mut inodes = HashSet::new();
    let entries =
        std::fs::read_dir(&dir).map_err(|e| io::Error::new(e.kind(), format!("{dir}: {e}")))?;
    for entry in entries {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue; // closed meanwhile
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok())
        {
            inodes.insert(inode);
        }
    }
    Ok(established()?
        .iter()
        .filter(|c| c.local_port == port && inodes.contains(&c.inode))
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn parses_the_kernel_table() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 20 4 30 10 -1\n";
        let conns = parse_table(text).unwrap();
        assert_eq!(
            conns,
            vec![Conn {
                local_port: 8080,
                remote_port: 0xD431,
                inode: 222
            }]
        );
        assert!(parse_table("header\n 0: x y 01\n").is_err());
    }

    #[test]
    fn counts_real_connections_and_who_holds_them() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(clients_of(port).unwrap(), 0);
        let clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        assert_eq!(clients_of(port).unwrap(), 3);
        // Queued in the backlog, the server side belongs to no process yet.
        assert_eq!(served_by(std::process::id(), port).unwrap(), 0);
        let accepted: Vec<TcpStream> = (0..2).map(|_| listener.accept().unwrap().0).collect();
        assert_eq!(served_by(std::process::id(), port).unwrap(), 2);
        drop(accepted);
        drop(clients);
        assert!(served_by(u32::MAX, port).is_err(), "no such process");
    }
}
