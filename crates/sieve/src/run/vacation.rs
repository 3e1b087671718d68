//! Whether a vacation reply may be sent at all (RFC 3834 §2, RFC 5230 §4.5-4.6): never to
//! the null sender, to mailing lists, to automatic mail or to the user's own addresses, and
//! only for mail addressed to the user. Pure: the "answered this sender within :days"
//! memory is the caller's. This module must never build or send the reply.

use crate::message::{Envelope, Message};

/// Why not to answer, or None when a reply may go.
pub fn suppressed(message: &Message, envelope: &Envelope, own: &[String]) -> Option<&'static str> {
    let sender = envelope.from.to_ascii_lowercase();
    if sender.is_empty() {
        return Some("the sender is the null address");
    }
    if own.iter().any(|a| a.eq_ignore_ascii_case(&sender)) {
        return Some("the sender is the recipient");
    }
    let local = sender.rsplit_once('@').map_or(sender.as_str(), |(l, _)| l);
    let automatic = local == "mailer-daemon"
        || local == "listserv"
        || local == "majordomo"
        || local.starts_with("owner-")
        || local.ends_with("-request");
    if automatic {
        return Some("the sender is a list or mailer daemon");
    }
    if message.fields_named("auto-submitted").any(|f| !f.value().eq_ignore_ascii_case("no")) {
        return Some("the message was sent automatically (Auto-Submitted)");
    }
    let bulk = |f: &crate::message::Field| matches!(f.value().to_ascii_lowercase().as_str(), "bulk" | "list" | "junk");
    if message.fields_named("precedence").any(bulk) {
        return Some("the message is bulk or list mail (Precedence)");
    }
    if message.fields.iter().any(|f| f.name.to_ascii_lowercase().starts_with("list-")) {
        return Some("the message came from a mailing list (List-*)");
    }
    let addressed = ["to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"]
        .iter()
        .flat_map(|name| message.fields_named(name))
        .flat_map(|f| f.addresses())
        .any(|a| own.iter().any(|o| o.eq_ignore_ascii_case(&a)));
    if !addressed {
        return Some("the user's address is not in To, Cc or Bcc");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, from: &str) -> Option<&'static str> {
        let raw = format!("{header}\r\n\r\nbody\r\n");
        let message = Message::parse(raw.as_bytes());
        let envelope = Envelope { from: from.into(), to: "me@x.org".into(), auth: None };
        suppressed(&message, &envelope, &["me@x.org".to_string()])
    }

    #[test]
    fn rfc5230_4_5_and_rfc3834_2_rules() {
        assert_eq!(check("To: me@x.org", "a@b.org"), None);
        assert!(check("To: me@x.org", "").is_some());
        assert!(check("To: other@x.org", "a@b.org").is_some());
        assert!(check("To: me@x.org\r\nList-Id: <l.b.org>", "a@b.org").is_some());
        assert!(check("To: me@x.org\r\nPrecedence: bulk", "a@b.org").is_some());
        assert!(check("To: me@x.org\r\nAuto-Submitted: auto-replied", "a@b.org").is_some());
        assert_eq!(check("To: me@x.org\r\nAuto-Submitted: no", "a@b.org"), None);
        assert!(check("To: me@x.org", "owner-list@b.org").is_some());
        assert!(check("To: me@x.org", "MAILER-DAEMON@b.org").is_some());
        assert!(check("To: me@x.org", "me@x.org").is_some());
    }
}
