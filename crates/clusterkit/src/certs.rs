//! Certificates for local clusters and tests, made with rcgen: a self-signed end-entity
//! certificate (what a test server presents and its client trusts directly), or a private
//! CA and a certificate it signed (what `mailctl up` gives clients to trust). Keys are
//! written owner-only. Names that parse as IP addresses become IP subject alternative
//! names, the rest DNS names. What this must never do: make a CA certificate that a server
//! presents as its own (rustls refuses those).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Where the PEM files are.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// What clients trust: the private CA, or the certificate itself when self-signed.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A self-signed end-entity certificate for `names` (the first is the common name), as
/// `dir/cert.pem` and `dir/key.pem`.
pub fn self_signed(dir: &Path, names: &[&str]) -> Result<CertFiles, CertError> {
    let key = KeyPair::generate()?;
    let cert = end_entity(names)?.self_signed(&key)?;
    let files = CertFiles { ca: dir.join("cert.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    write(&files.cert, &cert.pem(), false)?;
    write(&files.key, &key.serialize_pem(), true)?;
    Ok(files)
}

/// A private CA (`dir/ca.pem`) and a certificate for `names` signed by it (`dir/cert.pem`,
/// `dir/key.pem`).
pub fn with_private_ca(dir: &Path, ca_name: &str, names: &[&str]) -> Result<CertFiles, CertError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let cert = end_entity(names)?.signed_by(&key, &issuer)?;
    let files = CertFiles { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    write(&files.ca, &ca_cert.pem(), false)?;
    write(&files.cert, &cert.pem(), false)?;
    write(&files.key, &key.serialize_pem(), true)?;
    Ok(files)
}

fn end_entity(names: &[&str]) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params.is_ca = IsCa::ExplicitNoCa;
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    Ok(params)
}

fn write(path: &Path, pem: &str, private: bool) -> Result<(), CertError> {
    let written = if private { crate::write_private(path, pem) } else { std::fs::write(path, pem) };
    written.map_err(|source| CertError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_pem_and_the_key_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let files = self_signed(tmp.path(), &["127.0.0.1", "localhost"]).unwrap();
        assert!(std::fs::read_to_string(&files.cert).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o077, 0);
        let files = with_private_ca(tmp.path(), "test CA", &["localhost"]).unwrap();
        assert_ne!(std::fs::read(&files.ca).unwrap(), std::fs::read(&files.cert).unwrap());
    }
}
