//! Names of the environment variables the agent sets for a release.
//!
//! The first four are the systemd socket-activation and readiness protocol, so any app
//! that supports socket activation works under blargh without linking the library.

/// Number of inherited listening sockets, starting at fd 3 (systemd protocol).
pub const LISTEN_FDS: &str = "LISTEN_FDS";
/// Pid the inherited sockets are meant for; other processes must ignore them.
pub const LISTEN_PID: &str = "LISTEN_PID";
/// Colon-separated names of the inherited sockets, in fd order.
pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// Datagram socket on which the app sends `READY=1` and `STOPPING=1`.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Id of the release this process runs (a directory name under `releases/`).
pub const RELEASE_ID: &str = "BLARGH_RELEASE_ID";
/// The app's root directory on the server (holds `releases/`, `data/`, `current`).
pub const ROOT: &str = "BLARGH_ROOT";
/// Directory that persists across releases, for the app's own files.
pub const DATA_DIR: &str = "BLARGH_DATA_DIR";
/// Milliseconds the app has to drain after SIGTERM before the agent sends SIGKILL.
pub const DRAIN_TIMEOUT_MS: &str = "BLARGH_DRAIN_TIMEOUT_MS";
/// Microseconds within which the app must send `WATCHDOG=1` again (systemd's protocol);
/// set only when the agent's watchdog is on.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// Pid `WATCHDOG_USEC` is meant for (set by the trampoline, like `LISTEN_PID`).
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";
/// Name of the app, as the agent knows it.
pub const APP: &str = "BLARGH_APP";

/// The name (in `LISTEN_FDNAMES`) of the private listener a process gets when readiness is
/// checked over HTTP (`ready = { http = "/up" }`): the last inherited socket, its own,
/// where the agent asks it alone whether it is ready.
pub const READY_LISTENER: &str = "blargh-ready";
/// First file descriptor of inherited sockets (systemd's `SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: i32 = 3;

/// Readiness message (sd_notify protocol).
pub const NOTIFY_READY: &str = "READY=1";
/// Sent by the app once it has stopped accepting new connections while draining.
pub const NOTIFY_STOPPING: &str = "STOPPING=1";

/// The domains of the app's ACME certificate, comma-separated (config key `tls.domains`).
pub const TLS_DOMAINS: &str = "BLARGH_TLS_DOMAINS";
/// The contact address given to the ACME CA (`tls.contact`).
pub const TLS_CONTACT: &str = "BLARGH_TLS_CONTACT";
/// The ACME directory URL (`tls.directory`; Let's Encrypt's when unset).
pub const ACME_DIRECTORY: &str = "BLARGH_ACME_DIRECTORY";
/// The root the app trusts for the ACME directory's HTTPS (`tls.ca_file`).
pub const ACME_CA_FILE: &str = "BLARGH_ACME_CA_FILE";

/// The pid of the process a readiness command (`ready = { exec = [...] }`) checks.
pub const READY_PID: &str = "BLARGH_READY_PID";

/// The sd_notify variable an app sends to report a certificate it serves:
/// `X_BLARGH_CERT={"domain":…,"not_after":…,"issuer":…}` (JSON of
/// [`crate::control::CertStatus`]); the agent shows the last report per domain in `status`.
pub const CERT_NOTIFY: &str = "X_BLARGH_CERT";
