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
}
