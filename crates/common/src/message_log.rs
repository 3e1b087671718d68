//! The one log line per message per recipient that every hop writes (the front's SMTP
//! listeners, the storage node's LMTP, the queue runner): Message-ID, queue id, sender,
//! recipient, size, fate, the reply and the latency, under the target `mail` so that
//! `RUST_LOG=mail=info` (or a JSON log's `target`) selects exactly these. Field values come
//! from the network: they are cut to a bound and their control characters replaced, so a
//! sender cannot forge or split log lines. Never logs message content or credentials.

use std::time::Duration;

/// Longest field value logged (a Message-ID or address past this is cut).
pub const FIELD_MAX_CHARS: usize = 256;
/// How far into a message the Message-ID is looked for.
const HEADER_SCAN_MAX_BYTES: usize = 64 * 1024;

/// `value` fit for a log line: control characters as `?`, at most [`FIELD_MAX_CHARS`].
pub fn clean(value: &str) -> String {
    value.chars().take(FIELD_MAX_CHARS).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// The Message-ID field's value of `message` (its header section only, unfolded), if any.
pub fn message_id(message: &[u8]) -> Option<String> {
    header_field(message, "message-id")
}

/// The first `name` field's value of `message` (header section only, unfolded, trimmed,
/// cleaned like a log field); `None` if absent or empty.
pub fn header_field(message: &[u8], name: &str) -> Option<String> {
    header_fields(message)
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, raw)| clean(unfold(raw).trim()))
        .filter(|v| !v.is_empty())
}

/// The fields of `message`'s header section, in order: each name (trimmed) and its raw
/// value, continuation lines included (see [`unfold`]); nothing is copied. Scans at most
/// the first 64 KiB; lines without a colon are skipped.
pub fn header_fields(message: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let head = &message[..message.len().min(HEADER_SCAN_MAX_BYTES)];
    let mut at = 0;
    std::iter::from_fn(move || loop {
        if at >= head.len() {
            return None;
        }
        let line_end = |from: usize| head[from..].iter().position(|b| *b == b'\n').map_or(head.len(), |k| from + k + 1);
        let start = at;
        let mut end = line_end(start);
        let line = head[start..end].strip_suffix(b"\n").unwrap_or(&head[start..end]);
        if line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
            return None;
        }
        while end < head.len() && matches!(head[end], b' ' | b'\t') {
            end = line_end(end);
        }
        at = end;
        let Some(colon) = head[start..end].iter().position(|b| *b == b':') else { continue };
        return Some((head[start..start + colon].trim_ascii(), &head[start + colon + 1..end]));
    })
}

/// A raw field value as one line: line breaks removed (lossy UTF-8, untrimmed).
pub fn unfold(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

/// One recipient's outcome at one hop.
#[derive(Debug, Clone, Copy)]
pub struct MessageLine<'a> {
    /// Where: `smtp`, `submission`, `lmtp`, `queue`.
    pub hop: &'a str,
    /// The client that sent it, at a hop that has one from outside.
    pub peer: Option<std::net::IpAddr>,
    pub message_id: Option<&'a str>,
    /// The hop's own id of the transaction: the `Received:` id at a front, `GROUP/ID` of a
    /// queue entry, `GROUP@INDEX` of the Raft entry that committed a delivery.
    pub queue_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub size_bytes: usize,
    /// The reply given for this recipient (its first digit is the fate).
    pub reply: &'a str,
    pub latency: Duration,
}

impl MessageLine<'_> {
    /// Write the line (INFO, target `mail`).
    pub fn log(&self) {
        tracing::info!(
            target: "mail",
            hop = self.hop,
            peer = %self.peer.map(|p| p.to_string()).unwrap_or_default(),
            message_id = %clean(self.message_id.unwrap_or("")),
            queue_id = %clean(self.queue_id),
            from = %clean(self.from),
            to = %clean(self.to),
            size = self.size_bytes,
            fate = crate::metrics::fate_of(self.reply),
            reply = %clean(self.reply),
            latency_ms = self.latency.as_millis() as u64,
            "message"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_read_from_the_header_only() {
        let m = b"Subject: x\r\nMessage-Id:\r\n <abc@example.org>\r\nFrom: a@b\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(message_id(m).as_deref(), Some("<abc@example.org>"));
        assert_eq!(message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"), None);
        assert_eq!(message_id(b"Message-ID: <a\x1b[31m@x>\r\n\r\n").as_deref(), Some("<a?[31m@x>"));
    }

    #[test]
    fn log_fields_cannot_split_lines_or_grow_without_bound() {
        assert_eq!(clean("a\r\nfake line"), "a??fake line");
        assert_eq!(clean(&"x".repeat(10_000)).len(), FIELD_MAX_CHARS);
    }
}
