//! The message header as FETCH, ENVELOPE, BINARY and SEARCH read it: where it ends, and the
//! unfolded values of a field. Raw bytes in; no decoding of encoded words. Pure.

/// Split at the blank line ending the header: `(header incl. blank line, body)`. Bare LF
/// line endings are accepted.
pub fn split(msg: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < msg.len() {
        let end = msg[i..].iter().position(|b| *b == b'\n').map_or(msg.len(), |p| i + p + 1);
        let line = &msg[i..end];
        if line == b"\r\n" || line == b"\n" {
            return (&msg[..end], &msg[end..]);
        }
        i = end;
    }
    (msg, &msg[msg.len()..])
}

/// The unfolded, trimmed values of every field called `name` (case-insensitive), in order.
pub fn values(header: &[u8], name: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(v) = current.as_mut() {
                v.extend_from_slice(line.trim_ascii_end());
            }
            continue;
        }
        out.extend(current.take());
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            if line[..colon].trim_ascii().eq_ignore_ascii_case(name) {
                current = Some(line[colon + 1..].trim_ascii().to_vec());
            }
        }
    }
    out.extend(current);
    out
}

/// The fields SORT and THREAD read (RFC 5256, RFC 5957).
pub const SORT_FIELDS: [&[u8]; 8] =
    [b"Date", b"Subject", b"From", b"To", b"Cc", b"Message-ID", b"References", b"In-Reply-To"];

/// The lines of `header` that belong to `fields` (each field whole, continuation lines
/// included, in order), then a blank line: what [`values`] finds for those fields is the
/// same as in the whole header.
pub fn only_fields(header: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keeping = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line.iter().position(|b| *b == b':').map(|colon| line[..colon].trim_ascii());
            keeping = name.is_some_and(|n| fields.iter().any(|f| n.eq_ignore_ascii_case(f)));
        }
        if keeping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_unfolds() {
        let msg = b"To: a\r\nSubject: hi\r\n there\r\nto: b\n\r\nbody\r\n";
        let (header, body) = split(msg);
        assert_eq!(body, b"body\r\n");
        assert_eq!(values(header, b"subject"), vec![b"hi there".to_vec()]);
        assert_eq!(values(header, b"TO"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(values(header, b"Cc").is_empty());
        assert_eq!(split(b"no blank line"), (&b"no blank line"[..], &b""[..]));
    }

    #[test]
    fn only_the_sort_fields_are_kept_whole() {
        let header = b"Received: from x\r\n by y\r\nSubject: long\r\n subject\r\nX-Mailer: m\r\n\
            References: <a@b>\r\n\t<c@d>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n";
        let kept = only_fields(header, &SORT_FIELDS);
        assert_eq!(
            kept,
            b"Subject: long\r\n subject\r\nReferences: <a@b>\r\n\t<c@d>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
        );
        for f in SORT_FIELDS {
            assert_eq!(values(&kept, f), values(header, f), "{}", String::from_utf8_lossy(f));
        }
        assert_eq!(only_fields(b"X: 1\r\n\r\n", &SORT_FIELDS), b"\r\n");
    }
}
