//! Submission hygiene: what an authenticated user may write as the author of a message.
//! Every address in every `From:` and `Sender:` field must be one of the user's own
//! (`mail` or a `mailAlternateAddress`); otherwise, by the site's choice, the message is
//! refused, or sent with the field the user cannot forge: a `Sender:` naming them (RFC
//! 5322 §3.6.2), any `Sender:` they wrote removed. A message without `From:` gets one
//! naming the user (RFC 6409 §8.1). Pure: bytes in, a decision out. What this must never
//! do: let a message whose From is another user's through unmarked.

use mail_parser::{HeaderName, HeaderValue, MessageParser};

/// What to do with a From that is not the user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromPolicy {
    Refuse,
    AddSender,
}

impl FromPolicy {
    /// From `[smtp] submission_from` (validated at load).
    pub fn parse(name: &str) -> Self {
        if name == "sender" {
            Self::AddSender
        } else {
            Self::Refuse
        }
    }
}

/// The decision on one submitted message.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it as it is.
    AsIs,
    /// Send this message instead (a field added or replaced).
    Rewritten(Vec<u8>),
    /// Refuse it with this reply.
    Refuse(String),
}

/// The addresses of every `name` field of `message` (lower case), and whether a field
/// named no usable address (an empty group or bare words are not the user's).
fn field_addresses(message: &mail_parser::Message<'_>, name: HeaderName<'_>) -> (Vec<String>, bool) {
    let mut found = Vec::new();
    let mut unusable = false;
    for value in message.header_values(name) {
        let before = found.len();
        if let HeaderValue::Address(a) = value {
            for addr in a.iter() {
                match &addr.address {
                    Some(x) => found.push(x.to_ascii_lowercase()),
                    None => unusable = true,
                }
            }
        }
        // A field naming nobody (an empty group, words, nothing) names no address of the user.
        unusable |= found.len() == before;
    }
    (found, unusable)
}

/// Where `message`'s header section ends (after its last field's CRLF).
fn header_end(message: &[u8]) -> usize {
    message.windows(4).position(|w| w == b"\r\n\r\n").map_or(message.len(), |p| p + 2)
}

/// The addresses of `message`'s From fields, lower case: what the phish rules compare with
/// the envelope and what DKIM signs for (one parse of the header section, shared).
pub fn from_addresses(message: &[u8]) -> Vec<String> {
    MessageParser::new()
        .parse_headers(&message[..header_end(message)])
        .map(|parsed| field_addresses(&parsed, HeaderName::From).0)
        .unwrap_or_default()
}

/// Decide on `message` (CRLF lines) submitted by the user whose addresses are `own`
/// (lower case; the first is the one named in added fields).
pub fn check(message: &[u8], own: &[String], policy: FromPolicy) -> Decision {
    debug_assert!(!own.is_empty(), "a user has at least their own address");
    let header_end = header_end(message);
    let Some(parsed) = MessageParser::new().parse_headers(&message[..header_end]) else {
        return Decision::Refuse("554 5.6.0 the message header cannot be read".into());
    };
    let (from, from_unusable) = field_addresses(&parsed, HeaderName::From);
    let (sender, sender_unusable) = field_addresses(&parsed, HeaderName::Sender);
    let is_own = |a: &String| own.contains(a);
    let user = &own[0];
    if from.is_empty() && !from_unusable {
        return Decision::Rewritten([format!("From: <{user}>\r\n").as_bytes(), message].concat());
    }
    let forged = from_unusable || sender_unusable || !from.iter().all(is_own) || !sender.iter().all(is_own);
    if !forged {
        return Decision::AsIs;
    }
    let shown = from.iter().chain(&sender).find(|a| !is_own(a)).map_or("(no address)", String::as_str);
    match policy {
        FromPolicy::Refuse => Decision::Refuse(format!(
            "550 5.7.1 {} is not one of your addresses; send as {user}",
            shown.chars().filter(|c| !c.is_control()).take(200).collect::<String>()
        )),
        FromPolicy::AddSender => {
            let (header, body) = message.split_at(header_end);
            let mut out = format!("Sender: <{user}>\r\n").into_bytes();
            out.extend_from_slice(&without_fields(header, b"sender"));
            out.extend_from_slice(body);
            Decision::Rewritten(out)
        }
    }
}

/// `header` (whole CRLF fields) without the fields named `name` (lower case).
fn without_fields(header: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    let mut skipping = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            let field = line.split(|b| *b == b':').next().unwrap_or_default();
            skipping = field.trim_ascii().eq_ignore_ascii_case(name);
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Vec<String> {
        vec!["alice@example.edu".into(), "a.smith@example.edu".into()]
    }

    fn msg(header: &str) -> Vec<u8> {
        format!("{header}Subject: hi\r\n\r\nbody\r\n").into_bytes()
    }

    #[test]
    fn the_users_own_addresses_pass() {
        for from in ["From: Alice <alice@example.edu>\r\n", "From: a.smith@EXAMPLE.edu\r\n"] {
            assert_eq!(check(&msg(from), &own(), FromPolicy::Refuse), Decision::AsIs, "{from}");
        }
        let with_sender = msg("From: alice@example.edu\r\nSender: a.smith@example.edu\r\n");
        assert_eq!(check(&with_sender, &own(), FromPolicy::Refuse), Decision::AsIs);
    }

    /// RFC 5322 §3.6.2: a From that is not the submitter's needs a Sender that is.
    #[test]
    fn another_users_from_is_refused_or_marked_with_a_sender() {
        let forged = msg("From: Bob <bob@example.edu>\r\nSender: bob@example.edu\r\n");
        let Decision::Refuse(reply) = check(&forged, &own(), FromPolicy::Refuse) else { panic!() };
        assert!(reply.starts_with("550 5.7.1 bob@example.edu"), "{reply}");
        let Decision::Rewritten(out) = check(&forged, &own(), FromPolicy::AddSender) else { panic!() };
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("Sender: <alice@example.edu>\r\nFrom: Bob <bob@example.edu>\r\n"), "{text}");
        assert_eq!(text.matches("Sender:").count(), 1, "the forged Sender is gone: {text}");
        assert!(text.ends_with("\r\n\r\nbody\r\n"));
    }

    #[test]
    fn every_from_field_and_every_mailbox_counts() {
        for header in [
            "From: alice@example.edu\r\nFrom: bob@example.edu\r\n",
            "From: alice@example.edu, bob@example.edu\r\n",
            "From: alice@example.edu (bob@example.edu) \r\nSender: bank@example.com\r\n",
            "From: undisclosed:;\r\n",
            "From: just words\r\n",
        ] {
            assert!(matches!(check(&msg(header), &own(), FromPolicy::Refuse), Decision::Refuse(_)), "{header}");
        }
        let folded = msg("From: Alice\r\n <alice@example.edu>\r\n");
        assert_eq!(check(&folded, &own(), FromPolicy::Refuse), Decision::AsIs);
    }

    /// RFC 6409 §8.1: the submission server may add a missing From.
    #[test]
    fn a_missing_from_names_the_user() {
        let Decision::Rewritten(out) = check(&msg(""), &own(), FromPolicy::Refuse) else { panic!() };
        assert!(out.starts_with(b"From: <alice@example.edu>\r\nSubject: hi\r\n"));
    }
}
