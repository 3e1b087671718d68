//! DKIM signing (RFC 6376) of mail users submit: one RSA key per signing domain, from
//! `[[dkim.keys]]`, used for every message whose From address is in that domain or below
//! it (`d=` then aligns with From for DMARC). Signatures are made with `mail-auth` over
//! ring's constant-time RSA; relaxed/relaxed canonicalization, so the hops after ours
//! (re-folding, trailing spaces) do not break them. What this must never do: sign a
//! message for a domain the From address is not in, or start with a key that does not load.

use std::collections::HashMap;

use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use crate::config::{ConfigError, DkimSection};

/// The fields signed when present (From twice, so a second From cannot be added unseen).
const SIGNED_FIELDS: [&str; 15] = [
    "From",
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
    "List-Unsubscribe",
];

/// The signing keys, by domain (lower case).
pub struct Signers {
    by_domain: HashMap<String, DkimSigner<RsaKey<Sha256>, Done>>,
}

impl std::fmt::Debug for Signers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signers").field("domains", &self.by_domain.keys().collect::<Vec<_>>()).finish()
    }
}

impl Signers {
    /// Load every key of `section`; a key that does not load is a configuration error.
    pub fn load(section: &DkimSection) -> Result<Self, ConfigError> {
        let mut by_domain = HashMap::new();
        for k in &section.keys {
            let bad = |why: String| ConfigError::Invalid(format!("[[dkim.keys]] {}: {why}", k.key_file.display()));
            let der = PrivateKeyDer::from_pem_file(&k.key_file).map_err(|e| bad(e.to_string()))?;
            let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| bad(e.to_string()))?;
            let signer = DkimSigner::from_key(key)
                .domain(k.domain.to_ascii_lowercase())
                .selector(k.selector.clone())
                .headers(SIGNED_FIELDS)
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            by_domain.insert(k.domain.to_ascii_lowercase(), signer);
        }
        Ok(Self { by_domain })
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The signer for `domain`: its own key, else the nearest parent domain's.
    fn for_domain(&self, domain: &str) -> Option<&DkimSigner<RsaKey<Sha256>, Done>> {
        let mut d = domain;
        loop {
            if let Some(s) = self.by_domain.get(d) {
                return Some(s);
            }
            d = d.split_once('.')?.1;
        }
    }

    /// The `DKIM-Signature:` field (CRLF-terminated) to put on top of `message`, if its
    /// From address is in a domain with a key.
    pub fn sign(&self, message: &[u8]) -> Option<String> {
        if self.by_domain.is_empty() {
            return None;
        }
        let from = crate::smtp::submission::from_addresses(message).into_iter().next()?;
        let signer = self.for_domain(from.rsplit_once('@')?.1)?;
        match signer.sign(message) {
            Ok(signature) => Some(signature.to_header()),
            Err(e) => {
                tracing::error!(error = %e, "DKIM signing failed; sending unsigned");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DkimKeySection;

    /// A 2048-bit test key (PKCS#8), made once with `openssl genpkey -algorithm RSA`.
    fn key_file(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("test.key");
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
            .arg(&path)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        path
    }

    #[test]
    fn mail_from_a_keyed_domain_or_below_is_signed_and_other_mail_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let section = DkimSection {
            keys: vec![DkimKeySection {
                domain: "Example.EDU".into(),
                selector: "s1".into(),
                key_file: key_file(dir.path()),
            }],
        };
        let signers = Signers::load(&section).unwrap();
        let msg = |from: &str| format!("From: {from}\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nbody\r\n");
        let sig = signers.sign(msg("Alice <alice@example.edu>").as_bytes()).expect("signed");
        assert!(sig.starts_with("DKIM-Signature:") && sig.ends_with("\r\n"), "{sig}");
        for tag in ["d=example.edu", "s=s1", "a=rsa-sha256", "c=relaxed/relaxed"] {
            assert!(sig.replace(['\r', '\n', '\t', ' '], "").contains(tag), "{tag} in {sig}");
        }
        assert!(signers.sign(msg("x@dept.example.edu").as_bytes()).is_some(), "a subdomain uses the parent's key");
        assert!(signers.sign(msg("x@example.edu.evil.test").as_bytes()).is_none());
        assert!(signers.sign(msg("x@notexample.edu").as_bytes()).is_none());
        assert!(signers.sign(b"Subject: no from\r\n\r\nx\r\n").is_none());
    }

    #[test]
    fn a_key_that_does_not_load_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not a key").unwrap();
        let section = DkimSection {
            keys: vec![DkimKeySection { domain: "example.edu".into(), selector: "s".into(), key_file: path }],
        };
        assert!(Signers::load(&section).is_err());
    }
}
