//! `AUTH X-MAILSTORE-CLUSTER`: how a cluster member (a front, a queue runner, `mailctl`)
//! proves on a storage node's LMTP listener that it holds the cluster key, so nothing else
//! that reaches the port can deliver mail, pick a sender or name a mailhost.
//!
//! A SASL exchange (RFC 4954 framing) of one challenge: the server sends `334` with a fresh
//! random challenge (base64), the client answers with base64 of the lowercase hex of
//! `HMAC-SHA256(lmtp key, "mailstore-lmtp-auth" | challenge)`, where the LMTP key is
//! derived from the cluster key ([`ClusterKey::lmtp_key`]) and opens nothing else. A fresh
//! challenge per connection means a recorded answer is worth nothing; the key never
//! crosses the wire. HMAC-SHA256 rather than the RPC channel's keyed BLAKE3, once per
//! connection, so that any standard library (Python's `hmac`, say) can be a client given
//! the derived key. This module must never accept an answer it has not verified in
//! constant time.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::rpc_channel::ClusterKey;

/// The SASL mechanism name, advertised after `LHLO` as `AUTH X-MAILSTORE-CLUSTER`.
pub const MECHANISM: &str = "X-MAILSTORE-CLUSTER";
/// Random bytes in a challenge.
const CHALLENGE_BYTES: usize = 24;
/// What the MAC covers before the challenge: the purpose, so the tag means nothing elsewhere.
const CONTEXT: &[u8] = b"mailstore-lmtp-auth";

/// A fresh challenge, base64 (what follows `334 `).
pub fn challenge() -> String {
    let bytes: [u8; CHALLENGE_BYTES] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn tag_hex(lmtp_key: &[u8; 32], challenge_b64: &str) -> Option<String> {
    let challenge = base64::engine::general_purpose::STANDARD.decode(challenge_b64.trim()).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(lmtp_key).expect("HMAC takes any key length");
    mac.update(CONTEXT);
    mac.update(&challenge);
    let tag = mac.finalize().into_bytes();
    Some(tag.iter().map(|b| format!("{b:02x}")).collect())
}

/// The client's answer to `challenge_b64` (the text of the server's `334` line), base64;
/// `None` if the challenge is not base64.
pub fn response(key: &ClusterKey, challenge_b64: &str) -> Option<String> {
    let hex = tag_hex(&key.lmtp_key(), challenge_b64)?;
    Some(base64::engine::general_purpose::STANDARD.encode(hex))
}

/// Whether `response_b64` answers `challenge_b64` for `key`, compared in constant time.
pub fn verify(key: &ClusterKey, challenge_b64: &str, response_b64: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(expected) = response(key, challenge_b64) else { return false };
    expected.as_bytes().ct_eq(response_b64.trim().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_holder_answers_and_answers_do_not_replay() {
        let key = ClusterKey::from_secret("cluster secret");
        let other = ClusterKey::from_secret("another secret");
        let c = challenge();
        let answer = response(&key, &c).unwrap();
        assert!(verify(&key, &c, &answer));
        assert!(!verify(&key, &c, &response(&other, &c).unwrap()), "a wrong key fails");
        assert!(!verify(&key, &challenge(), &answer), "an answer is good for its challenge only");
        assert!(!verify(&key, &c, ""), "an empty answer fails");
        assert!(!verify(&key, "not base64!", &answer));
        assert_ne!(c, challenge(), "challenges are fresh");
    }

    #[test]
    fn the_answer_is_hmac_sha256_of_the_derived_key_in_hex() {
        // What a client in another language computes, given the derived key.
        let key = ClusterKey::from_secret("k");
        let c = base64::engine::general_purpose::STANDARD.encode(b"challenge");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.lmtp_key()).unwrap();
        mac.update(b"mailstore-lmtp-authchallenge");
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let decoded = base64::engine::general_purpose::STANDARD.decode(response(&key, &c).unwrap()).unwrap();
        assert_eq!(decoded, hex.as_bytes());
    }
}
