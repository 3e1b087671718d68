//! Stored password hashes in the `{SCHEME}value` form Dovecot and OpenLDAP use, and their
//! verification. Never logs or returns a password; comparisons are constant-time.

use base64::Engine;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The digest of a `{SHA}`/`{SSHA*}` hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    Sha1,
    Sha256,
    Sha512,
}

impl Digest {
    fn len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    fn hash(self, password: &[u8], salt: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::new().chain_update(password).chain_update(salt).finalize().to_vec(),
            Self::Sha256 => Sha256::new().chain_update(password).chain_update(salt).finalize().to_vec(),
            Self::Sha512 => Sha512::new().chain_update(password).chain_update(salt).finalize().to_vec(),
        }
    }
}

/// The most memory an Argon2 hash may ask for per check (256 MiB), in KiB.
const ARGON2_MEMORY_KIB_MAX: u32 = 256 * 1024;
/// The most Argon2 passes per check.
const ARGON2_PASSES_MAX: u32 = 16;
/// Most SHA-crypt rounds a stored hash may ask for (glibc's default is 5,000; a hash
/// asking for the format's maximum, 999,999,999, would take minutes per login attempt).
const CRYPT_ROUNDS_MAX: u64 = 1_000_000;

/// A stored credential.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `{PLAIN}secret`: for tests and throwaway setups only.
    Plain(String),
    /// `{SHA512-CRYPT}$6$...`, `{SHA256-CRYPT}$5$...` or `{CRYPT}` with either (glibc
    /// crypt; SHA512-CRYPT is Dovecot's default scheme).
    Crypt(String),
    /// `{SHA}`, `{SSHA}`, `{SSHA256}`, `{SSHA512}` (OpenLDAP's slappasswd): base64 of the
    /// digest of password + salt, followed by the salt (empty for `{SHA}`).
    Salted { digest: Digest, hash: Vec<u8>, salt: Vec<u8> },
    /// `{ARGON2}`, `{ARGON2I}`, `{ARGON2ID}` with a PHC string (`$argon2id$v=19$...`).
    Argon2(String),
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, not even the hash.
        let scheme = match self {
            Self::Plain(_) => "Plain",
            Self::Crypt(_) => "Crypt",
            Self::Salted { .. } => "Salted",
            Self::Argon2(_) => "Argon2",
        };
        write!(f, "PasswordHash::{scheme}(..)")
    }
}

/// A stored hash that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password hash needs a {{SCHEME}} prefix")]
    NoScheme,
    #[error("unsupported password scheme {0}; use SHA512-CRYPT, SSHA512, ARGON2ID (or PLAIN for tests)")]
    Scheme(String),
    #[error("malformed {0} hash")]
    Malformed(&'static str),
}

impl PasswordHash {
    /// Parse `{SCHEME}value`.
    pub fn parse(s: &str) -> Result<Self, PasswordError> {
        let rest = s.strip_prefix('{').ok_or(PasswordError::NoScheme)?;
        let (scheme, value) = rest.split_once('}').ok_or(PasswordError::NoScheme)?;
        let salted = |digest: Digest, salt_allowed: bool, name: &'static str| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|_| PasswordError::Malformed(name))?;
            let n = digest.len();
            if raw.len() < n || (!salt_allowed && raw.len() != n) {
                return Err(PasswordError::Malformed(name));
            }
            Ok(Self::Salted { digest, hash: raw[..n].to_vec(), salt: raw[n..].to_vec() })
        };
        let crypt = |name: &'static str| {
            let ok = (value.starts_with("$6$") || value.starts_with("$5$")) && value.split('$').count() >= 4;
            let rounds = value.split('$').nth(2).and_then(|f| f.strip_prefix("rounds="));
            let rounds_ok = rounds.is_none_or(|r| r.parse::<u64>().is_ok_and(|r| r <= CRYPT_ROUNDS_MAX));
            if ok && rounds_ok {
                Ok(Self::Crypt(value.to_string()))
            } else {
                Err(PasswordError::Malformed(name))
            }
        };
        match scheme.to_ascii_uppercase().as_str() {
            "PLAIN" | "CLEARTEXT" => Ok(Self::Plain(value.to_string())),
            "SHA512-CRYPT" => crypt("SHA512-CRYPT"),
            "SHA256-CRYPT" => crypt("SHA256-CRYPT"),
            "CRYPT" => crypt("CRYPT (only $5$ and $6$ are supported)"),
            "SHA" => salted(Digest::Sha1, false, "SHA"),
            "SSHA" => salted(Digest::Sha1, true, "SSHA"),
            "SSHA256" => salted(Digest::Sha256, true, "SSHA256"),
            "SSHA512" => salted(Digest::Sha512, true, "SSHA512"),
            "ARGON2" | "ARGON2I" | "ARGON2ID" => {
                let phc =
                    argon2::password_hash::PasswordHash::new(value).map_err(|_| PasswordError::Malformed("ARGON2"))?;
                let params = argon2::Params::try_from(&phc).map_err(|_| PasswordError::Malformed("ARGON2"))?;
                // A hash names the memory and time its check takes: bound both.
                if params.m_cost() > ARGON2_MEMORY_KIB_MAX || params.t_cost() > ARGON2_PASSES_MAX {
                    return Err(PasswordError::Malformed("ARGON2 (cost above the limit)"));
                }
                Ok(Self::Argon2(value.to_string()))
            }
            other => Err(PasswordError::Scheme(other.to_string())),
        }
    }

    /// Hash `password` with SHA512-CRYPT and a random salt (for tools and tests).
    pub fn sha512_crypt(password: &str) -> Self {
        let params = sha_crypt::Sha512Params::new(5000).expect("valid rounds");
        Self::Crypt(sha_crypt::sha512_simple(password, &params).expect("crypt"))
    }

    /// Hash `password` as `{SSHA}`/`{SSHA256}`/`{SSHA512}` with a random 8-byte salt
    /// (what slappasswd makes; for tools and tests).
    pub fn salted(digest: Digest, password: &str) -> Self {
        let salt: [u8; 8] = rand::random();
        Self::Salted { digest, hash: digest.hash(password.as_bytes(), &salt), salt: salt.to_vec() }
    }

    /// The `{SCHEME}value` text of this hash, as stored in a directory.
    pub fn to_stored(&self) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        match self {
            Self::Plain(p) => format!("{{PLAIN}}{p}"),
            Self::Crypt(c) => format!("{{CRYPT}}{c}"),
            Self::Salted { digest, hash, salt } => {
                let scheme = match (digest, salt.is_empty()) {
                    (Digest::Sha1, true) => "SHA",
                    (Digest::Sha1, false) => "SSHA",
                    (Digest::Sha256, _) => "SSHA256",
                    (Digest::Sha512, _) => "SSHA512",
                };
                format!("{{{scheme}}}{}", b64(&[hash.as_slice(), salt.as_slice()].concat()))
            }
            Self::Argon2(a) => format!("{{ARGON2}}{a}"),
        }
    }

    /// Whether `password` matches.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Self::Plain(stored) => bool::from(stored.as_bytes().ct_eq(password.as_bytes())),
            Self::Crypt(stored) => crypt_matches(password, stored),
            Self::Salted { digest, hash, salt } => bool::from(digest.hash(password.as_bytes(), salt).ct_eq(hash)),
            Self::Argon2(stored) => {
                use argon2::password_hash::PasswordVerifier;
                argon2::password_hash::PasswordHash::new(stored)
                    .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            }
        }
    }
}

impl PasswordHash {
    /// What checking against this hash costs: its scheme and work parameters, never the
    /// hash or the salt. Two hashes of one cost take the same time to check.
    pub fn cost(&self) -> String {
        match self {
            Self::Plain(_) => "plain".into(),
            Self::Crypt(c) => {
                let mut f = c.split('$').skip(1);
                let id = f.next().unwrap_or("");
                let rounds = f.next().and_then(|r| r.strip_prefix("rounds=")).unwrap_or("5000");
                format!("crypt ${id}$ rounds={rounds}")
            }
            Self::Salted { digest, salt, .. } => format!("salted {digest:?} salt={}", salt.len()),
            Self::Argon2(a) => {
                let phc = argon2::password_hash::PasswordHash::new(a).ok();
                let params = phc.as_ref().map(|p| (p.algorithm.to_string(), p.version, p.params.to_string()));
                format!("argon2 {params:?}")
            }
        }
    }

    /// A hash of a random password with this hash's scheme and cost: what an unknown
    /// user's login is checked against, so it takes as long as a known user's.
    pub fn decoy_like(&self) -> Self {
        let password = format!("{:032x}", rand::random::<u128>());
        match self {
            Self::Plain(_) => Self::Plain(password),
            Self::Crypt(c) => {
                let mut f = c.split('$').skip(1);
                let id = f.next().unwrap_or("6");
                let rounds = f.next().and_then(|r| r.strip_prefix("rounds=")).and_then(|r| r.parse().ok());
                let rounds = rounds.unwrap_or(5000usize);
                let made = match id {
                    "5" => sha_crypt::Sha256Params::new(rounds)
                        .ok()
                        .and_then(|p| sha_crypt::sha256_simple(&password, &p).ok()),
                    _ => sha_crypt::Sha512Params::new(rounds)
                        .ok()
                        .and_then(|p| sha_crypt::sha512_simple(&password, &p).ok()),
                };
                made.map_or_else(|| Self::sha512_crypt(&password), Self::Crypt)
            }
            Self::Salted { digest, salt, .. } => {
                let salt: Vec<u8> = (0..salt.len()).map(|_| rand::random()).collect();
                Self::Salted { digest: *digest, hash: digest.hash(password.as_bytes(), &salt), salt }
            }
            Self::Argon2(a) => argon2_like(a, &password).map_or_else(|| Self::sha512_crypt(&password), Self::Argon2),
        }
    }
}

/// The hash an unknown user's password is checked against, kept at the scheme and cost
/// of the last real hash checked: both answers then take the same time.
#[derive(Debug)]
pub struct Decoy(std::sync::RwLock<PasswordHash>);

impl Default for Decoy {
    fn default() -> Self {
        Self(std::sync::RwLock::new(PasswordHash::sha512_crypt("decoy")))
    }
}

impl Decoy {
    /// The decoy hash now.
    pub fn hash(&self) -> PasswordHash {
        self.0.read().expect("decoy lock").clone()
    }

    /// Check `password` against the decoy (always false; blocking, like any check).
    pub fn verify(&self, password: &str) -> bool {
        self.hash().verify(password);
        false
    }

    /// Take `real`'s scheme and cost if the decoy has another (blocking: it hashes once).
    pub fn follow(&self, real: &PasswordHash) {
        let cost = real.cost();
        if self.0.read().expect("decoy lock").cost() != cost {
            let decoy = real.decoy_like();
            *self.0.write().expect("decoy lock") = decoy;
        }
    }
}

/// `password` hashed with the algorithm, version and parameters of the PHC string `model`.
fn argon2_like(model: &str, password: &str) -> Option<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let phc = argon2::password_hash::PasswordHash::new(model).ok()?;
    let algorithm = argon2::Algorithm::try_from(phc.algorithm).ok()?;
    let version = phc.version.and_then(|v| argon2::Version::try_from(v).ok()).unwrap_or_default();
    let params = argon2::Params::try_from(&phc).ok()?;
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).ok()?;
    let hasher = argon2::Argon2::new(algorithm, version, params);
    Some(hasher.hash_password(password.as_bytes(), &salt).ok()?.to_string())
}

/// The SHA-crypt (`$5$`/`$6$`) check, done by encoding the computed hash and comparing
/// text, never by decoding the stored hash: sha-crypt 0.5's `sha256_check` panics on a
/// stored hash that is not valid crypt base64 (found by fuzzing the directory inputs).
fn crypt_matches(password: &str, stored: &str) -> bool {
    let mut fields = stored.split('$');
    let (Some(""), Some(id)) = (fields.next(), fields.next()) else { return false };
    let mut next = fields.next();
    let rounds = match next.and_then(|f| f.strip_prefix("rounds=")) {
        Some(r) => {
            next = fields.next();
            match r.parse::<usize>() {
                Ok(r) => r,
                Err(_) => return false,
            }
        }
        None => 5000,
    };
    let (Some(salt), Some(hash), None) = (next, fields.next(), fields.next()) else { return false };
    let (password, salt) = (password.as_bytes(), salt.as_bytes());
    let computed = match id {
        "5" => {
            sha_crypt::Sha256Params::new(rounds).ok().and_then(|p| sha_crypt::sha256_crypt_b64(password, salt, &p).ok())
        }
        "6" => {
            sha_crypt::Sha512Params::new(rounds).ok().and_then(|p| sha_crypt::sha512_crypt_b64(password, salt, &p).ok())
        }
        _ => None,
    };
    computed.is_some_and(|c| bool::from(c.as_bytes().ct_eq(hash.as_bytes())))
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
        let PasswordHash::Crypt(text) = &h else { panic!() };
        let p = PasswordHash::parse(&format!("{{SHA512-CRYPT}}{text}")).unwrap();
        assert!(p.verify("pw one"));
        assert!(!p.verify("pw two"));
    }

    #[test]
    fn crypt_rounds_are_bounded() {
        let cheap = sha_crypt::sha512_simple("pw", &sha_crypt::Sha512Params::new(10_000).unwrap()).unwrap();
        assert!(PasswordHash::parse(&format!("{{CRYPT}}{cheap}")).unwrap().verify("pw"));
        let cheap256 = sha_crypt::sha256_simple("pw", &sha_crypt::Sha256Params::new(5000).unwrap()).unwrap();
        assert!(PasswordHash::parse(&format!("{{CRYPT}}{cheap256}")).unwrap().verify("pw"));
        assert!(!PasswordHash::parse(&format!("{{CRYPT}}{cheap256}")).unwrap().verify("pw2"));
        // Malformed hashes (sha-crypt's own check panicked on the `$5$` ones) just fail.
        for stored in ["$5$salt$hash", "$5$salt$!!!!", "$6$salt$hash", "$5$rounds=5000$s$", "$6$s$h$extra"] {
            assert!(!PasswordHash::parse(&format!("{{CRYPT}}{stored}")).unwrap().verify("pw"), "{stored}");
        }
        for rounds in ["999999999", "1000001", "x", ""] {
            let stored = format!("{{SHA512-CRYPT}}$6$rounds={rounds}$salt$hash");
            assert!(PasswordHash::parse(&stored).is_err(), "{stored}");
        }
    }

    #[test]
    fn openldap_and_dovecot_schemes_verify() {
        // Salted SHA: digest(password + salt) + salt, base64.
        for (scheme, digest) in [("SSHA", Digest::Sha1), ("SSHA256", Digest::Sha256), ("SSHA512", Digest::Sha512)] {
            let salt = b"saltsalt";
            let stored = [digest.hash(b"pw one", salt), salt.to_vec()].concat();
            let text = format!("{{{scheme}}}{}", base64::engine::general_purpose::STANDARD.encode(&stored));
            let p = PasswordHash::parse(&text).unwrap();
            assert!(p.verify("pw one"), "{scheme}");
            assert!(!p.verify("pw two"), "{scheme}");
            assert_eq!(p.to_stored(), text);
            let made = PasswordHash::salted(digest, "pw three");
            assert!(PasswordHash::parse(&made.to_stored()).unwrap().verify("pw three"), "{scheme}");
        }
        // "secret" as `slappasswd -h {SSHA}` printed it.
        let ssha = PasswordHash::parse("{SSHA}uWHa1HtmZdpPYQlf+oTmm+fyVuwsan3w").unwrap();
        assert!(ssha.verify("secret") && !ssha.verify("secreT"));
        // {SHA} of "secret" as slappasswd -h {SHA} prints it.
        let sha = PasswordHash::parse("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=").unwrap();
        assert!(sha.verify("secret") && !sha.verify("Secret"));
        // glibc crypt(3) SHA-256 and SHA-512, as `openssl passwd -5/-6 -salt saltstring` prints them.
        let c5 = PasswordHash::parse("{CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5").unwrap();
        assert!(c5.verify("Hello world!"));
        let c6 = PasswordHash::parse(
            "{CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        )
        .unwrap();
        assert!(c6.verify("Hello world!") && !c6.verify("Hello world"));
        // Argon2id PHC string, as `argon2 somesaltsalt -id -t 2 -m 16 -p 1 -e` prints it.
        let a = PasswordHash::parse(
            "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzYWx0$Zt72hmN2tp7WAUKEVrazetzpi/UbMW3ckl5gMwyN5Eg",
        )
        .unwrap();
        assert!(a.verify("password") && !a.verify("passwort"));
    }

    /// An unknown user's login is checked against a decoy of the same scheme and cost as
    /// the real users' hashes, so its answer takes as long (no oracle for who exists).
    #[test]
    fn decoys_have_the_scheme_and_cost_of_their_model() {
        let models = [
            PasswordHash::parse("{PLAIN}x").unwrap(),
            PasswordHash::sha512_crypt("x"),
            PasswordHash::parse(&format!(
                "{{CRYPT}}{}",
                sha_crypt::sha256_simple("x", &sha_crypt::Sha256Params::new(20_000).unwrap()).unwrap()
            ))
            .unwrap(),
            PasswordHash::salted(Digest::Sha256, "x"),
            PasswordHash::parse(
                "{ARGON2ID}$argon2id$v=19$m=4096,t=3,p=1$c29tZXNhbHRzYWx0$Zt72hmN2tp7WAUKEVrazetzpi/UbMW3ckl5gMwyN5Eg",
            )
            .unwrap(),
        ];
        for model in models {
            let decoy = model.decoy_like();
            assert_eq!(decoy.cost(), model.cost(), "{model:?}");
            assert_ne!(decoy, model);
            assert!(!decoy.verify("x"));
            assert!(PasswordHash::parse(&decoy.to_stored()).is_ok(), "{}", decoy.cost());
        }
        assert_ne!(PasswordHash::sha512_crypt("x").cost(), PasswordHash::salted(Digest::Sha512, "x").cost());
    }

    #[test]
    fn bad_hashes_are_refused_and_never_printed() {
        assert!(PasswordHash::parse("{SSHA}bm90LWxvbmctZW5vdWdo").is_err(), "shorter than a SHA-1 digest");
        assert!(PasswordHash::parse("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQAAAA=").is_err(), "SHA has no salt");
        assert!(PasswordHash::parse("{CRYPT}abJnggxhB/yWI").is_err(), "DES crypt is refused");
        assert!(PasswordHash::parse("{ARGON2}nonsense").is_err());
        assert!(
            PasswordHash::parse("{ARGON2ID}$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHRzYWx0$Zt72hmN2tp7WAUKEVrazetzpi/UbMW3ckl5gMwyN5Eg")
                .is_err(),
            "4 GiB per check is refused"
        );
        assert_eq!(PasswordHash::parse("secret"), Err(PasswordError::NoScheme));
        assert!(matches!(PasswordHash::parse("{MD5}x"), Err(PasswordError::Scheme(_))));
        assert!(!format!("{:?}", PasswordHash::sha512_crypt("hunter2")).contains('$'));
        assert!(PasswordHash::parse("{SHA512-CRYPT}$6$").is_err());
        assert!(!format!("{:?}", PasswordHash::parse("{PLAIN}hunter2").unwrap()).contains("hunter2"));
    }
}
