//! A real ACME CA for tests: Pebble (Debian package `pebble`) with `pebble-challtestsrv` as
//! its DNS server, resolving every name to 127.0.0.1, so Pebble's validation connects to
//! the ports the test serves on (`http_port` for HTTP-01, `tls_port` for TLS-ALPN-01).
//! No `PEBBLE_VA_ALWAYS_VALID`: validation is real.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::agent::free_port;
use crate::wait::wait_for_or_explain;

/// A running Pebble plus challtestsrv, killed on drop.
pub struct Pebble {
    dir: tempfile::TempDir,
    pebble: Option<Child>,
    challtestsrv: Child,
    /// The ACME directory URL (`https://127.0.0.1:PORT/dir`).
    pub directory: String,
    /// The root the ACME client must trust for Pebble's own HTTPS (`BLARGH_ACME_CA_FILE`).
    pub ca_file: PathBuf,
    management: String,
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on 127.0.0.1:`http_port` and TLS-ALPN-01 on
    /// 127.0.0.1:`tls_port`, and waits until its directory answers.
    ///
    /// # Panics
    /// If Pebble is not installed (`apt-get install pebble`) or does not come up.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        Pebble::start_reachable_as(http_port, tls_port, &[])
    }

    /// [`Pebble::start`], with Pebble's HTTPS certificate valid for `names` too: a VM
    /// reaches Pebble at the QEMU gateway `10.0.2.2` (its user network's alias for this
    /// machine's loopback), and Pebble's directory answers with URLs on the host it was
    /// asked by (see [`Pebble::directory_via`]).
    pub fn start_reachable_as(http_port: u16, tls_port: u16, names: &[&str]) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        // Pebble's own HTTPS certificate, signed by a CA the client trusts.
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "blargh test: Pebble HTTPS CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        sans.extend(names.iter().map(|n| n.to_string()));
        let leaf_params = rcgen::CertificateParams::new(sans).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let ca_file = dir.path().join("pebble-https-ca.pem");
        fs::write(&ca_file, ca_cert.pem()).unwrap();
        fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();

        let (listen, management) = (free_port(), free_port());
        let (dns, chall_mgmt) = (free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.path().join("pebble.json");
        fs::write(&config_path, config.to_string()).unwrap();

        let log = |name: &str| Stdio::from(fs::File::create(dir.path().join(name)).unwrap());
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (apt-get install pebble)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (apt-get install pebble)");
        let p = Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            ca_file,
            management: format!("127.0.0.1:{management}"),
            pebble: Some(pebble),
            challtestsrv,
            dir,
        };
        for port in [listen, management, chall_mgmt] {
            wait_for_or_explain(
                Duration::from_secs(20),
                "Pebble to listen",
                || TcpStream::connect(("127.0.0.1", port)).ok(),
                || p.log(),
            );
        }
        p
    }

    /// Pebble's issuing root (random per run), fetched from its management API with curl,
    /// written to a file: what a client passes to `curl --cacert` to check what we serve.
    pub fn issuer_root(&self) -> PathBuf {
        let path = self.dir.path().join("issuer-root.pem");
        let out = Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(&self.ca_file)
            .arg(format!("https://{}/roots/0", self.management))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "fetching Pebble's root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(&path, &out.stdout).unwrap();
        path
    }

    /// The directory URL as seen from a machine that reaches this one as `host` (e.g.
    /// `10.0.2.2` from a QEMU guest): same port, same path.
    pub fn directory_via(&self, host: &str) -> String {
        self.directory.replacen("127.0.0.1", host, 1)
    }

    /// Stops Pebble (the CA is down from now on).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.pebble.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// Pebble's and challtestsrv's output so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        for name in [
            "pebble.log",
            "pebble.err",
            "challtestsrv.log",
            "challtestsrv.err",
        ] {
            let text = fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            s.push_str(&format!("--- {name}\n{text}"));
        }
        s
    }

    /// How many orders Pebble has accepted so far (its `Added order` log lines): an
    /// account of orders that does not rely on the code under test counting itself.
    pub fn orders(&self) -> usize {
        self.log().matches("Added order").count()
    }

    /// The directory holding the config, certificates and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.challtestsrv.kill();
        let _ = self.challtestsrv.wait();
    }
}

/// `curl --cacert ROOT https://DOMAIN:PORT/` with DOMAIN resolved to 127.0.0.1: the body,
/// or curl's complaint (a certificate the root does not vouch for fails verification).
pub fn https_get(root: &Path, domain: &str, port: u16) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "10", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{domain}:{port}:127.0.0.1")])
        .arg(format!("https://{domain}:{port}/"))
        .output()
        .expect("curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The serial (lower-case hex, no colons or leading zeros) and issuer of the certificate
/// served for `domain` on 127.0.0.1:`port`, as `openssl s_client` sees it (unverified).
pub fn served_certificate(domain: &str, port: u16) -> (String, String) {
    let sh = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {domain} </dev/null 2>/dev/null \
         | openssl x509 -noout -serial -issuer"
    );
    let out = Command::new("sh").args(["-c", &sh]).output().expect("sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    (normalized_serial(&field("serial=")), field("issuer="))
}

/// A serial as [`served_certificate`] gives it: lower-case hex, no colons, no leading zeros.
pub fn normalized_serial(serial: &str) -> String {
    let s: String = serial.replace(':', "").to_ascii_lowercase();
    s.trim_start_matches('0').to_string()
}
