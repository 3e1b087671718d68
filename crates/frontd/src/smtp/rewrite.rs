//! Domain rewriting in message headers, as the campus "fixup" stage did: in the address
//! fields (From, To, Cc, Reply-To, Sender and their Resent- forms) every `@alias` of a
//! configured domain alias becomes `@domain`. Pure; leaves the body and every other
//! field byte for byte alone, and never grows a header without bound (one replacement per
//! alias occurrence, at most [`REPLACEMENTS_MAX`]).

/// Address fields whose domains are rewritten (lower case).
const ADDRESS_FIELDS: [&str; 10] =
    ["from", "to", "cc", "reply-to", "sender", "resent-from", "resent-to", "resent-cc", "resent-sender", "bcc"];
/// Replacements per message at most.
pub const REPLACEMENTS_MAX: usize = 1000;

/// Whether `b` may continue a domain name (so `@mail.example.edu.evil` is not an alias).
fn domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// Rewrite one field's bytes (name included); `None` if nothing changed.
fn rewrite_field(field: &[u8], aliases: &[(String, String)], budget: &mut usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    let mut changed = false;
    while i < field.len() {
        if field[i] == b'@' && *budget > 0 {
            let rest = &field[i + 1..];
            let hit = aliases.iter().find(|(alias, _)| {
                rest.len() >= alias.len()
                    && rest[..alias.len()].eq_ignore_ascii_case(alias.as_bytes())
                    && rest.get(alias.len()).is_none_or(|b| !domain_byte(*b))
            });
            if let Some((alias, target)) = hit {
                out.push(b'@');
                out.extend_from_slice(target.as_bytes());
                i += 1 + alias.len();
                *budget -= 1;
                changed = true;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// The message with alias domains collapsed in its address fields; `None` if unchanged.
pub fn collapse_aliases(message: &[u8], aliases: &[(String, String)]) -> Option<Vec<u8>> {
    if aliases.is_empty() {
        return None;
    }
    let header_end = message.windows(4).position(|w| w == b"\r\n\r\n").map_or(message.len(), |p| p + 2);
    let (header, body) = message.split_at(header_end);
    // Split into fields: a line starting with space or tab continues the previous one.
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    for (pos, _) in header.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        let next = pos + 1;
        if next >= header.len() || !matches!(header[next], b' ' | b'\t') {
            fields.push(&header[start..next]);
            start = next;
        }
    }
    if start < header.len() {
        fields.push(&header[start..]);
    }
    let mut budget = REPLACEMENTS_MAX;
    let mut out = Vec::with_capacity(message.len());
    let mut changed = false;
    for field in fields {
        let name = field.split(|b| *b == b':').next().unwrap_or(b"");
        let is_address = field.contains(&b':')
            && ADDRESS_FIELDS.iter().any(|f| name.trim_ascii().eq_ignore_ascii_case(f.as_bytes()));
        match is_address.then(|| rewrite_field(field, aliases, &mut budget)).flatten() {
            Some(new) => {
                out.extend_from_slice(&new);
                changed = true;
            }
            None => out.extend_from_slice(field),
        }
    }
    out.extend_from_slice(body);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> Vec<(String, String)> {
        vec![("mail.example.edu".into(), "example.edu".into())]
    }

    #[test]
    fn address_fields_are_collapsed_and_nothing_else() {
        let m = b"From: Ann <ann@Mail.Example.EDU>\r\nTo: a@mail.example.edu,\r\n b@mail.example.edu\r\n\
Subject: mail to x@mail.example.edu\r\nCc: c@mail.example.edu.evil.org, d@notmail.example.edu\r\n\r\n\
body x@mail.example.edu\r\n";
        let out = String::from_utf8(collapse_aliases(m, &aliases()).unwrap()).unwrap();
        assert!(out.starts_with("From: Ann <ann@example.edu>\r\nTo: a@example.edu,\r\n b@example.edu\r\n"), "{out}");
        assert!(out.contains("Subject: mail to x@mail.example.edu\r\n"), "other fields untouched");
        assert!(out.contains("Cc: c@mail.example.edu.evil.org, d@notmail.example.edu\r\n"), "only whole domains");
        assert!(out.ends_with("\r\n\r\nbody x@mail.example.edu\r\n"), "body untouched");
        assert_eq!(collapse_aliases(b"To: a@example.edu\r\n\r\nx", &aliases()), None);
        assert_eq!(collapse_aliases(b"no header end @mail.example.edu", &aliases()), None);
        assert_eq!(collapse_aliases(b"To: a@mail.example.edu", &[]), None);
    }

    #[test]
    fn replacements_are_bounded() {
        let many = format!("To: {}\r\n\r\n", "x@mail.example.edu,".repeat(REPLACEMENTS_MAX + 10));
        let out = String::from_utf8(collapse_aliases(many.as_bytes(), &aliases()).unwrap()).unwrap();
        assert_eq!(out.matches("@mail.example.edu").count(), 10);
    }
}
