//! The Sender Rewriting Scheme for mail a user's filter forwards: the envelope sender
//! `local@origin` becomes `SRS0=HHHH=TT=origin=local@forwarding-domain`, so the receiving
//! server's SPF check looks at our domain, not the origin's; a bounce to that address
//! comes back to our MX, which checks the hash (a keyed MAC of the rest) and the age (at
//! most `MAX_AGE_DAYS`) and sends it on to the original sender. The null sender is never
//! rewritten. `HHHH` and `TT` are base32, so a local part lower-cased on the way is still
//! verified. This module must never accept an address whose hash it did not make.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a rewritten address is accepted back (libsrs2's default).
pub const MAX_AGE_DAYS: u64 = 21;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const DAY_S: u64 = 86_400;

/// Rewriting and reversing with one key.
#[derive(Clone)]
pub struct Srs {
    key: [u8; 32],
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Srs(<key>)")
    }
}

fn base32(mut n: u64, len: usize) -> String {
    let mut out = vec![b'a'; len];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 32) as usize];
        n /= 32;
    }
    String::from_utf8(out).expect("ASCII")
}

fn unbase32(text: &str) -> Option<u64> {
    text.bytes().try_fold(0u64, |n, b| {
        let d = ALPHABET.iter().position(|a| *a == b.to_ascii_lowercase())?;
        Some(n * 32 + d as u64)
    })
}

impl Srs {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn hash(&self, stamp: &str, domain: &str, local: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(
            format!("{}\0{}\0{}", stamp.to_ascii_lowercase(), domain.to_ascii_lowercase(), local.to_ascii_lowercase())
                .as_bytes(),
        );
        let bytes = mac.finalize().into_bytes();
        base32(u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")) >> 44, 4)
    }

    /// `sender` rewritten into `domain` at `now_s`; the null sender, and an address
    /// without a domain, stay as they are.
    pub fn forward(&self, sender: &str, domain: &str, now_s: u64) -> String {
        let Some((local, origin)) = sender.rsplit_once('@') else { return sender.to_string() };
        if local.is_empty() || origin.is_empty() {
            return sender.to_string();
        }
        let stamp = base32((now_s / DAY_S) % 1024, 2);
        format!("SRS0={}={stamp}={origin}={local}@{domain}", self.hash(&stamp, origin, local))
    }

    /// The original sender of a rewritten `address`, if this key made it and it is at most
    /// `MAX_AGE_DAYS` old at `now_s`; `None` for anything else.
    pub fn reverse(&self, address: &str, now_s: u64) -> Option<String> {
        let (local, _) = address.rsplit_once('@')?;
        let rest = local.get(..5).filter(|p| p.eq_ignore_ascii_case("SRS0="))?;
        let mut fields = local[rest.len()..].splitn(4, '=');
        let (hash, stamp, origin, original_local) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        if hash.len() != 4 || stamp.len() != 2 || origin.is_empty() || original_local.is_empty() {
            return None;
        }
        let expected = self.hash(stamp, origin, original_local);
        let same = expected.bytes().zip(hash.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b.to_ascii_lowercase())) == 0;
        let today = (now_s / DAY_S) % 1024;
        let age = (today + 1024 - unbase32(stamp)?) % 1024;
        (same && age <= MAX_AGE_DAYS).then(|| format!("{original_local}@{origin}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000;

    #[test]
    fn rewrites_and_reverses_within_its_age() {
        let srs = Srs::new([7; 32]);
        let rewritten = srs.forward("Bob.Smith@Example.ORG", "example.edu", NOW);
        assert!(
            rewritten.starts_with("SRS0=") && rewritten.ends_with("=Example.ORG=Bob.Smith@example.edu"),
            "{rewritten}"
        );
        assert_eq!(srs.reverse(&rewritten, NOW).as_deref(), Some("Bob.Smith@Example.ORG"));
        assert_eq!(srs.reverse(&rewritten.to_lowercase(), NOW + 3 * DAY_S).as_deref(), Some("bob.smith@example.org"));
        assert_eq!(srs.reverse(&rewritten, NOW + 22 * DAY_S), None, "too old");
        assert_eq!(Srs::new([8; 32]).reverse(&rewritten, NOW), None, "another key");
        let forged = rewritten.replacen("=Example.ORG=", "=evil.test=", 1);
        assert_eq!(srs.reverse(&forged, NOW), None);
        assert_eq!(srs.forward("", "example.edu", NOW), "", "the null sender stays");
        assert_eq!(srs.reverse("alice@example.edu", NOW), None);
        assert_eq!(srs.reverse("SRS0=x@example.edu", NOW), None);
    }
}
