//! What the scanning stage reads from strangers and from its scanners: the header section
//! of every incoming message (our own fields taken out), clamd's and rspamd's replies,
//! and the header fields a quarantine digest lists. Whatever the bytes: stripping is
//! idempotent, never lengthens, leaves no field of ours in the header section and agrees
//! with its one-buffer form; a clamd virus name and rspamd symbols are printable; a digest
//! field stays within its bound.

use frontd::scan::{clamd, headers, rspamd};

/// Whether a field of ours starts a line of `message`'s header section (which ends at the
/// first empty line, CRLF or bare LF).
fn has_our_field(message: &[u8]) -> bool {
    let text = String::from_utf8_lossy(message).to_ascii_lowercase();
    for line in text.split('\n') {
        if line.is_empty() || line == "\r" {
            return false;
        }
        let Some((name, _)) = line.split_once(':') else { continue };
        let name = name.trim_end();
        let ours = name == "x-spam" || name.starts_with("x-spam-") || name.starts_with("x-virus-");
        if ours && !line.starts_with([' ', '\t']) {
            return true;
        }
    }
    false
}

pub fn run(data: &[u8]) {
    let stripped = headers::strip(data);
    assert!(stripped.len() <= data.len());
    assert_eq!(&*headers::strip(&stripped), &*stripped, "stripping twice changes nothing");
    assert!(!has_our_field(&stripped), "a field of ours survived: {:?}", String::from_utf8_lossy(&stripped));
    let prefixed = headers::prefixed_and_stripped(b"Received: x\r\n", data);
    assert_eq!(&prefixed[..13], b"Received: x\r\n");
    assert_eq!(&prefixed[13..], &*stripped);

    if let Ok(clamd::AvVerdict::Virus(name)) = clamd::parse_reply(data) {
        assert!(name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{name:?}");
    }
    if let Ok(report) = rspamd::parse_check(data) {
        assert!(report.score.is_finite());
        assert!(report
            .symbols
            .iter()
            .all(|(n, s)| s.is_finite() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')));
    }
    for name in ["Subject", "From", "X-Spam-Score"] {
        let value = storaged::mailstore::digest::header(data, name);
        assert!(value.chars().count() <= 80 && !value.chars().any(char::is_control), "{value:?}");
    }
}
