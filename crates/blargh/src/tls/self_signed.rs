//! Certificates made here rather than by the CA: the self-signed development certificate
//! served until (or instead of) an ACME one, and the TLS-ALPN-01 challenge certificate
//! (RFC 8737) carrying the `acmeIdentifier` extension.

use std::io;

use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair};

fn err(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("generating a certificate: {e}"))
}

/// A self-signed certificate for `domains`, as a PEM bundle (key, then certificate).
pub(crate) fn development(domains: &[String]) -> io::Result<String> {
    let mut params = CertificateParams::new(domains.to_vec()).map_err(err)?;
    params.distinguished_name.push(
        DnType::CommonName,
        "blargh self-signed development certificate",
    );
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(format!("{}{}", key.serialize_pem(), cert.pem()))
}

/// The TLS-ALPN-01 answer for `domain`: a self-signed certificate whose `acmeIdentifier`
/// extension holds the SHA-256 digest of the key authorization. PEM bundle (key, cert).
pub(crate) fn alpn_challenge(domain: &str, key_authorization_digest: &[u8]) -> io::Result<String> {
    let mut params = CertificateParams::new(vec![domain.to_string()]).map_err(err)?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(
        key_authorization_digest,
    )];
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(format!("{}{}", key.serialize_pem(), cert.pem()))
}
