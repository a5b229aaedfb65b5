//! Reading a PEM bundle (private key and certificate chain) into what rustls serves and
//! what [`CertInfo`] reports.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// What a served certificate is: see [`Tls::certificates`](super::Tls::certificates).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertInfo {
    /// The DNS names the certificate covers (its subject alternative names).
    pub domains: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity: the expiry `cargo blargh status` shows.
    pub not_after: SystemTime,
    /// The issuer's distinguished name, e.g. `CN=Pebble Intermediate CA 2b1c3d`.
    pub issuer: String,
    /// True for the development certificate made here (no CA signed it).
    pub self_signed: bool,
    /// The serial number, hex: changes with every new certificate.
    pub serial: String,
}

impl CertInfo {
    /// True when less than a third of the certificate's lifetime is left at `now`.
    pub fn near_expiry(&self, now: SystemTime) -> bool {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        match self.not_after.duration_since(now) {
            Ok(left) => left < life / 3,
            Err(_) => true,
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A parsed bundle: what rustls serves and what it is.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) info: CertInfo,
}

/// Parses a PEM bundle holding a private key and a certificate chain (leaf first).
pub(crate) fn load(pem: &[u8], self_signed: bool) -> io::Result<Loaded> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("certificate PEM: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid("no certificate in the PEM bundle".into()))?;
    let key_der =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| invalid(format!("private key PEM: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| invalid(format!("private key: {e}")))?;
    let info = info(leaf, self_signed)?;
    Ok(Loaded {
        key: Arc::new(CertifiedKey::new(chain, signing)),
        info,
    })
}

fn info(leaf: &CertificateDer<'_>, self_signed: bool) -> io::Result<CertInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| invalid(format!("certificate: {e}")))?;
    let time = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH
        }
    };
    let mut domains = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = name {
                domains.push(d.to_string());
            }
        }
    }
    Ok(CertInfo {
        domains,
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        issuer: cert.issuer().to_string(),
        self_signed,
        serial: cert.raw_serial_as_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_certificate_parses() {
        let pem = super::super::self_signed::development(&["a.example".into()]).unwrap();
        let loaded = load(pem.as_bytes(), true).unwrap();
        assert_eq!(loaded.info.domains, vec!["a.example".to_string()]);
        assert!(loaded.info.self_signed);
        assert!(!loaded.info.near_expiry(SystemTime::now()));
        assert!(loaded.info.near_expiry(loaded.info.not_after));
    }
}
