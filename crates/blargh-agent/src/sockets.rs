//! The listening sockets the agent owns: inherited from the init system (systemd's
//! `.socket` unit) or bound by the agent itself. They stay open for the agent's whole life,
//! so connections queue in their backlog whenever no release is accepting.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};

use crate::config::ListenSpec;

/// Backlog for sockets the agent binds: room for a burst while a release restarts.
const BACKLOG: i32 = 4096;

/// A named listening socket.
#[derive(Debug)]
pub struct Listener {
    /// Name handed to the app.
    pub name: String,
    /// The socket.
    pub socket: TcpListener,
}

impl Listener {
    /// Local address, for status output.
    pub fn address(&self) -> String {
        self.socket
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into())
    }
}

/// Sockets handed to the agent by its init system, if any (systemd socket activation).
pub fn inherited() -> io::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for (fd, name) in sd_notify::listen_fds_with_names()? {
        // SAFETY: LISTEN_PID matched our pid, so these fds were opened for us.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        out.push(Listener {
            name,
            socket: TcpListener::from(owned),
        });
    }
    Ok(out)
}

/// Binds each spec with `SO_REUSEADDR` and a deep backlog.
pub fn bind(specs: &[ListenSpec]) -> io::Result<Vec<Listener>> {
    specs
        .iter()
        .map(|spec| {
            let addr = resolve(&spec.address)?;
            let socket = bind_retrying(addr).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot listen on {} for {:?}: {e}{}",
                        spec.address,
                        spec.name,
                        if e.kind() == io::ErrorKind::PermissionDenied {
                            " (ports below 1024 need the systemd socket unit or CAP_NET_BIND_SERVICE)"
                        } else {
                            ""
                        }
                    ),
                )
            })?;
            Ok(Listener {
                name: spec.name.to_string(),
                socket,
            })
        })
        .collect()
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{address:?} resolves to no address"),
        )
    })
}

/// Binds, retrying for a while when the address is in use: after an agent crash, the
/// release it ran may still be draining with the old socket for a few seconds.
fn bind_retrying(addr: SocketAddr) -> io::Result<TcpListener> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut said = false;
    loop {
        match bind_one(addr) {
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline =>
            {
                if !said {
                    eprintln!(
                        "blargh-agent: {addr} is in use; waiting up to 30 s for it to be released"
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
