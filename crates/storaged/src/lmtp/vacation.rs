//! The message a vacation reply sends (RFC 5230 §5, RFC 3834 §3): from the recipient, to
//! the sender, `Auto-Submitted: auto-replied`, threaded on the original. This module must
//! never decide whether to reply (the engine and `filter` do).

use sieve::Reply;

/// The reply as a whole message.
pub fn reply_message(reply: &Reply, recipient: &str, now_s: i64) -> Vec<u8> {
    let date = chrono::DateTime::from_timestamp(now_s, 0).unwrap_or_default().to_rfc2822();
    let from = reply.from.as_deref().map_or_else(|| format!("<{recipient}>"), clean);
    let domain = recipient.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut head = format!(
        "From: {from}\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {date}\r\n\
         Message-ID: <vacation.{now_s}.{hash:016x}@{domain}>\r\nAuto-Submitted: auto-replied (vacation)\r\n",
        to = clean(&reply.to),
        subject = encode(&clean(&reply.subject)),
        hash = id_hash(&reply.handle, &reply.to),
    );
    if let Some(id) = &reply.in_reply_to {
        let id = clean(id);
        head.push_str(&format!("In-Reply-To: {id}\r\nReferences: {id}\r\n"));
    }
    head.push_str("MIME-Version: 1.0\r\n");
    if reply.mime {
        // :mime: the reason is a MIME entity, its own header fields first.
        return [head.as_bytes(), &crlf(&reply.body)].concat();
    }
    head.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    [head.as_bytes(), &crlf(&reply.body)].concat()
}

/// A header value without line breaks or control characters.
fn clean(value: &str) -> String {
    value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Non-ASCII header text as one RFC 2047 base64 word.
fn encode(text: &str) -> String {
    use base64::Engine;
    match text.is_ascii() {
        true => text.to_string(),
        false => format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(text)),
    }
}

/// The body with CRLF line ends and a final line end.
fn crlf(body: &str) -> Vec<u8> {
    let mut out = body.replace("\r\n", "\n").replace('\n', "\r\n");
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// 64 bits of SHA-256 of the vacation's handle and the sender: a Message-ID part that
/// tells one reply from another.
fn id_hash(handle: &str, to: &str) -> u64 {
    use sha2::Digest;
    let digest =
        sha2::Sha256::new().chain_update(handle.as_bytes()).chain_update([0]).chain_update(to.as_bytes()).finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3834_reply_fields() {
        let reply = Reply {
            to: "bob@example.org".into(),
            from: None,
            subject: "Auto: caf\u{e9}".into(),
            body: "Away.\nBack Monday.".into(),
            mime: false,
            handle: "h".into(),
            period_s: 86_400,
            in_reply_to: Some("<m1@example.org>".into()),
            suppressed: None,
        };
        let text = String::from_utf8(reply_message(&reply, "me@example.edu", 1_780_000_000)).unwrap();
        assert!(text.starts_with("From: <me@example.edu>\r\nTo: <bob@example.org>\r\nSubject: =?utf-8?b?"), "{text}");
        assert!(text.contains("Auto-Submitted: auto-replied"));
        assert!(text.contains("In-Reply-To: <m1@example.org>\r\nReferences: <m1@example.org>\r\n"));
        assert!(text.ends_with("\r\n\r\nAway.\r\nBack Monday.\r\n"), "{text}");
    }
}
