//! SASL PLAIN (RFC 4616) message decoding: `[authzid] NUL authcid NUL passwd`, base64
//! on the wire. Pure; the decoded password lives only as long as the caller keeps it.

use base64::Engine;

/// The three parts of a PLAIN message.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Who to act as; empty means the authentication identity itself.
    pub authzid: String,
    /// Who is proving their identity.
    pub authcid: String,
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .finish_non_exhaustive()
    }
}

/// Why a PLAIN message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaslError {
    #[error("invalid base64")]
    Base64,
    #[error("malformed PLAIN message")]
    Malformed,
    #[error("authentication cancelled")]
    Cancelled,
}

/// Longest PLAIN message accepted (each part is at most 255 octets in RFC 4616).
pub const PLAIN_MAX: usize = 3 * 256;

/// Decode a base64 PLAIN response (`*` cancels).
pub fn decode_plain(b64: &str) -> Result<PlainCredentials, SaslError> {
    let b64 = b64.trim();
    if b64 == "*" {
        return Err(SaslError::Cancelled);
    }
    if b64.len() > PLAIN_MAX * 4 / 3 + 4 {
        return Err(SaslError::Malformed);
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| SaslError::Base64)?;
    parse_plain(&raw)
}

/// Split a decoded PLAIN message.
pub fn parse_plain(raw: &[u8]) -> Result<PlainCredentials, SaslError> {
    let mut parts = raw.split(|b| *b == 0);
    let (Some(z), Some(c), Some(p), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed);
    let creds = PlainCredentials { authzid: text(z)?, authcid: text(c)?, password: text(p)? };
    if creds.authcid.is_empty() || creds.password.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(raw: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    #[test]
    fn plain_messages_decode() {
        let c = decode_plain(&b64(b"\0alice@example.edu\0pw")).unwrap();
        assert_eq!((c.authzid.as_str(), c.authcid.as_str(), c.password.as_str()), ("", "alice@example.edu", "pw"));
        let c = decode_plain(&b64(b"bob@example.edu\0proxy\0secret")).unwrap();
        assert_eq!((c.authzid.as_str(), c.authcid.as_str()), ("bob@example.edu", "proxy"));
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert_eq!(decode_plain("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_plain("!!!"), Err(SaslError::Base64));
        assert_eq!(decode_plain(&b64(b"alice\0pw")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&b64(b"a\0b\0c\0d")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&b64(b"\0\0pw")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&b64(b"\0alice\0")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&b64(b"\0al\xffice\0pw")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&"QUFB".repeat(400)), Err(SaslError::Malformed));
    }
}
