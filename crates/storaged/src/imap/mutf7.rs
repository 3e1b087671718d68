//! Modified UTF-7 (RFC 3501 §5.1.3), the mailbox-name encoding of IMAP4rev1, which is also
//! how names are stored (as Dovecot stores them in Maildir++ folder names). An IMAP4rev2
//! session (RFC 9051 §5.1) speaks UTF-8 instead: [`encode`] turns its names into the stored
//! form and [`decode`] turns stored names back. Pure.

use base64::alphabet::IMAP_MUTF7;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Printable US-ASCII other than `&` stands for itself.
fn direct(c: char) -> bool {
    (' '..='~').contains(&c) && c != '&'
}

/// The modified UTF-7 form of a UTF-8 name.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if !run.is_empty() {
            let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&ENGINE.encode(bytes));
            out.push('-');
            run.clear();
        }
    };
    for c in name.chars() {
        if direct(c) {
            flush(&mut run, &mut out);
            out.push(c);
        } else if c == '&' {
            flush(&mut run, &mut out);
            out.push_str("&-");
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The UTF-8 form of a stored name; `None` if it is not valid modified UTF-7 (a name a
/// client stored in raw 8-bit, say), which callers then show as it is.
pub fn decode(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after.find('-')?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = ENGINE.decode(encoded).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
            let text = String::from_utf16(&units).ok()?;
            // Printable ASCII must not be encoded (RFC 3501 §5.1.3): a second spelling of a name.
            if text.chars().any(direct) || text.contains('&') {
                return None;
            }
            out.push_str(&text);
        }
        rest = &after[end + 1..];
    }
    if !rest.is_ascii() {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_modified_utf7() {
        // RFC 3501 §5.1.3's example, and the usual suspects.
        let cases = [
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("INBOX", "INBOX"),
            ("Привет мир", "&BB8EQAQ4BDIENQRC- &BDwEOARA-"),
            ("😀", "&2D3eAA-"),
        ];
        for (utf8, utf7) in cases {
            assert_eq!(encode(utf8), utf7, "{utf8}");
            assert_eq!(decode(utf7).as_deref(), Some(utf8), "{utf7}");
        }
    }

    #[test]
    fn malformed_names_are_not_decoded() {
        for bad in ["&", "&AOQ", "&A-", "&AGE-", "Entwürfe", "&2D0-"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
