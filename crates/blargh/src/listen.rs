//! Named listening sockets inherited through `LISTEN_FDS` / `LISTEN_PID` / `LISTEN_FDNAMES`.

use std::collections::HashMap;
use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

/// Sockets handed over by the agent (or systemd), by name, not yet taken by the app.
fn inherited() -> &'static Mutex<HashMap<String, OwnedFd>> {
    static FDS: OnceLock<Mutex<HashMap<String, OwnedFd>>> = OnceLock::new();
    FDS.get_or_init(|| {
        let mut map = HashMap::new();
        // `listen_fds_with_names` checks LISTEN_PID against our pid and sets close-on-exec,
        // so a child we start neither inherits the fds nor mistakes the variables for its own.
        if let Ok(fds) = sd_notify::listen_fds_with_names() {
            for (fd, name) in fds {
                // SAFETY: the fds named by a LISTEN_PID that matches our pid were opened for
                // us by our parent and nothing else in this process owns them.
                map.insert(name, unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        Mutex::new(map)
    })
}

/// Takes the inherited TCP listener named `name`, if the agent handed one over.
///
/// Each socket can be taken once; a second call for the same name returns `Ok(None)`.
/// The returned listener is in blocking mode unless the caller changes it (the mode is
/// shared with every process holding the socket; async runtimes set non-blocking).
pub fn listener(name: &str) -> io::Result<Option<TcpListener>> {
    let fd = inherited()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
    Ok(fd.map(TcpListener::from))
}

/// Names of the inherited sockets not taken yet.
pub fn inherited_names() -> Vec<String> {
    let mut names: Vec<String> = inherited()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

/// The inherited listener named `name`, or a fresh one bound to `dev_addr` when the app
/// runs outside blargh (for `cargo run`).
///
/// When sockets were inherited but none is called `name`, this is an error rather than a
/// silent bind, since the agent's configuration and the app disagree.
pub fn listen(name: &str, dev_addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    if let Some(l) = listener(name)? {
        return Ok(l);
    }
    if std::env::var_os(blargh_proto::env::RELEASE_ID).is_some() {
        let have = inherited_names();
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no listening socket named {name:?} was handed to this release (inherited: {have:?}); \
                 add `--listen {name}=ADDR` to the agent or use one of the inherited names"
            ),
        ));
    }
    TcpListener::bind(dev_addr)
}
