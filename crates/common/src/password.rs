//! Stored password hashes in the `{SCHEME}value` form Dovecot and OpenLDAP use, and their
//! verification. Never logs or returns a password; comparisons are constant-time.

use subtle::ConstantTimeEq;

/// A stored credential.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `{PLAIN}secret`: for tests and throwaway setups only.
    Plain(String),
    /// `{SHA512-CRYPT}$6$salt$hash` (glibc crypt, Dovecot's default scheme).
    Sha512Crypt(String),
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, not even the hash.
        match self {
            Self::Plain(_) => f.write_str("PasswordHash::Plain(..)"),
            Self::Sha512Crypt(_) => f.write_str("PasswordHash::Sha512Crypt(..)"),
        }
    }
}

/// A stored hash that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password hash needs a {{SCHEME}} prefix")]
    NoScheme,
    #[error("unsupported password scheme {0}; use SHA512-CRYPT (or PLAIN for tests)")]
    Scheme(String),
    #[error("malformed {0} hash")]
    Malformed(&'static str),
}

impl PasswordHash {
    /// Parse `{SCHEME}value`.
    pub fn parse(s: &str) -> Result<Self, PasswordError> {
        let rest = s.strip_prefix('{').ok_or(PasswordError::NoScheme)?;
        let (scheme, value) = rest.split_once('}').ok_or(PasswordError::NoScheme)?;
        match scheme.to_ascii_uppercase().as_str() {
            "PLAIN" | "CLEARTEXT" => Ok(Self::Plain(value.to_string())),
            "SHA512-CRYPT" | "CRYPT" if value.starts_with("$6$") => {
                if value.split('$').count() < 4 {
                    return Err(PasswordError::Malformed("SHA512-CRYPT"));
                }
                Ok(Self::Sha512Crypt(value.to_string()))
            }
            other => Err(PasswordError::Scheme(other.to_string())),
        }
    }

    /// Hash `password` with SHA512-CRYPT and a random salt (for tools and tests).
    pub fn sha512_crypt(password: &str) -> Self {
        let params = sha_crypt::Sha512Params::new(5000).expect("valid rounds");
        Self::Sha512Crypt(sha_crypt::sha512_simple(password, &params).expect("crypt"))
    }

    /// Whether `password` matches.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Self::Plain(stored) => bool::from(stored.as_bytes().ct_eq(password.as_bytes())),
            Self::Sha512Crypt(stored) => sha_crypt::sha512_check(password, stored).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_parse_and_verify() {
        let p = PasswordHash::parse("{PLAIN}s3cret").unwrap();
        assert!(p.verify("s3cret"));
        assert!(!p.verify("s3cre"));
        assert!(!p.verify(""));
        let h = PasswordHash::sha512_crypt("pw one");
        let PasswordHash::Sha512Crypt(text) = &h else { panic!() };
        let p = PasswordHash::parse(&format!("{{SHA512-CRYPT}}{text}")).unwrap();
        assert!(p.verify("pw one"));
        assert!(!p.verify("pw two"));
    }

    #[test]
    fn bad_hashes_are_refused_and_never_printed() {
        assert_eq!(PasswordHash::parse("secret"), Err(PasswordError::NoScheme));
        assert!(matches!(PasswordHash::parse("{MD5}x"), Err(PasswordError::Scheme(_))));
        assert!(PasswordHash::parse("{SHA512-CRYPT}$6$").is_err());
        assert!(!format!("{:?}", PasswordHash::parse("{PLAIN}hunter2").unwrap()).contains("hunter2"));
    }
}
