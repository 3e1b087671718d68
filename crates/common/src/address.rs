//! Mail addresses as the directory and the command line may hold them: RFC 5321 mailbox
//! syntax checked before an address is stored, and RFC 4514 escaping of a value put into a
//! DN, so no name can carry a line break into a file or a log, or an extra RDN into a DN.
//! This module must never accept a control character, a space or `<>` in an address.

/// The longest address (RFC 5321 §4.5.3.1: a 256-octet path, less the brackets).
const ADDRESS_MAX: usize = 254;
/// The longest local part (RFC 5321 §4.5.3.1.1).
const LOCAL_MAX: usize = 64;
/// The longest domain label (RFC 1035).
const LABEL_MAX: usize = 63;

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not an address: it needs local@domain")]
    NoAt(String),
    #[error("{0:?} is longer than an address may be")]
    TooLong(String),
    #[error("{0:?}: the part before @ must be a dot-atom of letters, digits and !#$%&'*+-/=?^_`{{|}}~")]
    BadLocal(String),
    #[error("{0:?}: the domain must be dot-separated labels of letters, digits and hyphens")]
    BadDomain(String),
}

/// A non-ASCII character an address may hold (RFC 6531): nothing that prints as space or
/// as nothing (no-break and other spaces, zero-width and direction marks, BOM).
fn visible_utf8(c: char) -> bool {
    let invisible =
        matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}');
    !c.is_ascii() && !c.is_control() && !c.is_whitespace() && !invisible
}

fn atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || visible_utf8(c)
}

fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= LABEL_MAX
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || visible_utf8(c))
}

/// Check `address` is a mailbox (`local@domain`, a dot-atom local part, a host name; UTF-8
/// letters allowed as RFC 6531 does).
pub fn validate(address: &str) -> Result<(), AddressError> {
    let err = |f: fn(String) -> AddressError| Err(f(address.to_string()));
    if address.len() > ADDRESS_MAX {
        return err(AddressError::TooLong);
    }
    let Some((local, domain)) = address.rsplit_once('@') else { return err(AddressError::NoAt) };
    let local_ok = !local.is_empty()
        && local.len() <= LOCAL_MAX
        && local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(atext));
    if !local_ok {
        return err(AddressError::BadLocal);
    }
    if !domain.split('.').all(label_ok) {
        return err(AddressError::BadDomain);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_pass_and_injections_do_not() {
        for ok in ["dana@example.edu", "first.last+tag@mail.example.edu", "o'neil@x.org", "jörg@example.de"] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [
            "a\n@example.edu",
            "a b@example.edu",
            "<a>@example.edu",
            "a@exa mple.edu",
            "a@example.edu\r\nX-Forged: 1",
            "noat",
            "@example.edu",
            "a..b@example.edu",
            ".a@example.edu",
            "a@-example.edu",
            "a@example..edu",
            "a,dc=evil@example.edu",
            "a\u{0}@example.edu",
            "alic\u{a0}e@example.edu",
            "a\u{200b}b@example.edu",
            "a@exa\u{2028}mple.edu",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        assert!(validate(&format!("{}@example.edu", "a".repeat(65))).is_err());
    }
}
