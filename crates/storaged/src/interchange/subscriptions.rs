//! Subscription lists: Dovecot's `subscriptions` (`V\t2`, a blank line, then one mailbox a
//! line with its levels separated by tabs, tab-escaped) or its older one name a line, and
//! Courier's `courierimapsubscribed` (`INBOX.a.b`). Names are returned in the store's form
//! (modified UTF-7 as on disk, `/` between levels). Pure.

/// Largest subscriptions file read.
pub const FILE_MAX_BYTES: u64 = 1 << 20;

/// Mailbox names of a Dovecot subscriptions file.
pub fn parse_dovecot(text: &str) -> Vec<String> {
    let mut lines = text.lines();
    let versioned = text.starts_with("V\t");
    if versioned {
        // "V\t2" and the blank line after it.
        lines.next();
    }
    lines
        .filter(|l| !l.is_empty())
        .map(|l| if versioned { l.split('\t').map(unescape).collect::<Vec<_>>().join("/") } else { l.to_string() })
        .collect()
}

/// Dovecot's tab escaping: `\x01` then `1`, `t`, `r`, `n` or `0`.
fn unescape(level: &str) -> String {
    let mut out = String::with_capacity(level.len());
    let mut chars = level.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\u{1}'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A Dovecot (version 2) subscriptions file for `names`.
pub fn write_dovecot(names: &[String]) -> String {
    let mut out = String::from("V\t2\n\n");
    for n in names {
        out.push_str(&n.replace('/', "\t"));
        out.push('\n');
    }
    out
}

/// Mailbox names of a Courier `courierimapsubscribed` (`INBOX` and `INBOX.a.b`).
pub fn parse_courier(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| match l {
            "INBOX" => Some("INBOX".to_string()),
            _ => l.strip_prefix("INBOX.").filter(|n| !n.is_empty()).map(|n| n.replace('.', "/")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_version_2_and_plain() {
        let text = "V\t2\n\nArchive\nINBOX\nArchive\t2024\n&ANw-n&AO8-\tSub\n";
        assert_eq!(parse_dovecot(text), vec!["Archive", "INBOX", "Archive/2024", "&ANw-n&AO8-/Sub"]);
        assert_eq!(parse_dovecot("Sent\nTrash\n"), vec!["Sent", "Trash"]);
        assert_eq!(parse_dovecot("V\t2\n\na\u{1}tb\n"), vec!["a\tb"]);
        let names = vec!["Archive/2024".to_string(), "INBOX".into()];
        assert_eq!(parse_dovecot(&write_dovecot(&names)), names);
    }

    #[test]
    fn courier() {
        assert_eq!(parse_courier("INBOX\nINBOX.Sent\nINBOX.a.b\nother\n"), vec!["INBOX", "Sent", "a/b"]);
    }
}
