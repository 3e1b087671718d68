//! `mailctl dkim keygen DOMAIN`: a DKIM signing key for a domain (RSA, 2048 bits by
//! default, RFC 8301), written 0600 as PKCS#1 PEM where frontd's `[[dkim.keys]]` can
//! name it, and the DNS TXT record to publish, split into strings of at most 255
//! characters as zone files need. Never prints the private key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePublicKey;

/// What `keygen` made.
#[derive(Debug)]
pub struct Generated {
    pub key_file: PathBuf,
    /// `SELECTOR._domainkey.DOMAIN.`
    pub name: String,
    /// The record's text (`v=DKIM1; k=rsa; p=...`), whole.
    pub text: String,
}

impl Generated {
    /// The record as a zone file line, in strings of at most 255 characters.
    pub fn zone_line(&self) -> String {
        let chunks: Vec<String> =
            self.text.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
        format!("{} IN TXT ( {} )", self.name, chunks.join(" "))
    }
}

/// Make a key for `domain` with `selector` in `dir`.
pub fn keygen(domain: &str, selector: &str, dir: &Path, bits: usize) -> anyhow::Result<Generated> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    anyhow::ensure!(valid(domain) && valid(selector), "domain and selector must be DNS names");
    anyhow::ensure!(
        (1024..=4096).contains(&bits),
        "bits: 1024 to 4096 (RFC 8301 asks for at least 1024; 2048 is usual)"
    );
    let domain = domain.to_ascii_lowercase();
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).context("generating the key")?;
    let public = key.to_public_key().to_public_key_der().context("encoding the public key")?;
    let pem = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).context("encoding the private key")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key_file = dir.join(format!("{domain}.{selector}.key"));
    anyhow::ensure!(!key_file.exists(), "{} exists; choose another selector", key_file.display());
    clusterkit::write_private(&key_file, pem.as_str()).with_context(|| format!("writing {}", key_file.display()))?;
    use base64::Engine;
    let p = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
    Ok(Generated { key_file, name: format!("{selector}._domainkey.{domain}."), text: format!("v=DKIM1; k=rsa; p={p}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let g = keygen("Example.EDU", "s1", dir.path(), 1024).unwrap();
        assert_eq!(g.name, "s1._domainkey.example.edu.");
        assert!(g.text.starts_with("v=DKIM1; k=rsa; p=MI"), "{}", g.text);
        let line = g.zone_line();
        assert!(line.split('"').all(|s| s.len() <= 255), "{line}");
        let pem = std::fs::read_to_string(&g.key_file).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&g.key_file).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(keygen("example.edu", "s1", dir.path(), 1024).is_err(), "an existing key is never overwritten");
        assert!(keygen("bad domain", "s1", dir.path(), 1024).is_err());
    }
}
