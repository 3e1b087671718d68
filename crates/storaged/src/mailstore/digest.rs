//! The quarantine digest: the mail a user gets listing what was newly held for them (when
//! it arrived, its spam score, sender, subject, its id) and how to release it. Pure: the
//! store hands it the rows (read from the held messages' headers on every replica alike)
//! and the proposing leader's time, so every replica writes the same message.

/// One held message in a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub uid: u32,
    pub internal_date: i64,
    pub score: String,
    pub from: String,
    pub subject: String,
}

/// Messages listed at most; the digest says how many more there are.
pub const LISTED_MAX: usize = 100;
/// Header bytes read of each held message.
pub const HEADER_MAX_BYTES: usize = 16 * 1024;

/// A header field's value (unfolded, first occurrence, control characters dropped, at
/// most 80 characters) from the start of a message.
pub fn header(message: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(&message[..message.len().min(HEADER_MAX_BYTES)]);
    let mut value: Option<String> = None;
    for line in text.split("\r\n").take_while(|l| !l.is_empty()) {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => {
                v.push(' ');
                v.push_str(line.trim_start());
            }
            Some(_) => break,
            None => {
                if let Some((n, v)) = line.split_once(':') {
                    if n.eq_ignore_ascii_case(name) {
                        value = Some(v.trim().to_string());
                    }
                }
            }
        }
    }
    value.unwrap_or_default().chars().filter(|c| !c.is_control()).take(80).collect()
}

/// The digest for `user` of `held` (oldest first), sent at `now_s`, with the retention.
pub fn message(user: &str, held: &[Held], now_s: i64, retention_s: u64, index: u64) -> Vec<u8> {
    let date = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap_or_default();
    let domain = user.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut text = format!(
        "From: Mail system <postmaster@{domain}>\r\nTo: <{user}>\r\nSubject: Quarantine: {n} new message{s} held for you\r\n\
         Date: {date}\r\nMessage-ID: <quarantine-digest.{index}.{user}>\r\nAuto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         These messages to you were held as probable spam. They wait in your Quarantine folder\r\n\
         for {days} days, then are deleted. To release one, move it from the Quarantine folder\r\n\
         to your Inbox in your mail program (or ask the postmaster, giving its ID).\r\n\r\n\
         ID       RECEIVED (UTC)     SCORE   FROM / SUBJECT\r\n",
        n = held.len(),
        s = if held.len() == 1 { "" } else { "s" },
        date = date(now_s).to_rfc2822(),
        days = retention_s / 86_400,
    );
    for h in held.iter().take(LISTED_MAX) {
        text.push_str(&format!(
            "{:<8} {} {:>6}  {}\r\n         {}\r\n",
            h.uid,
            date(h.internal_date).format("%Y-%m-%d %H:%M"),
            h.score,
            h.from,
            h.subject
        ));
    }
    if held.len() > LISTED_MAX {
        text.push_str(&format!("... and {} more.\r\n", held.len() - LISTED_MAX));
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_lists_each_held_message_and_says_how_to_release_it() {
        let held = vec![Held {
            uid: 7,
            internal_date: 1_764_979_200,
            score: "15.00".into(),
            from: "Sender <s@remote.example>".into(),
            subject: "cheap pills".into(),
        }];
        let m = String::from_utf8(message("quinn@example.edu", &held, 1_765_000_000, 30 * 86_400, 42)).unwrap();
        assert!(m.starts_with("From: Mail system <postmaster@example.edu>\r\nTo: <quinn@example.edu>\r\n"), "{m}");
        assert!(m.contains("Subject: Quarantine: 1 new message held for you\r\n"), "{m}");
        assert!(m.contains("for 30 days") && m.contains("move it from the Quarantine folder"), "{m}");
        assert!(
            m.contains("7        2025-12-06 00:00  15.00  Sender <s@remote.example>\r\n         cheap pills\r\n"),
            "{m}"
        );
        let folded = b"Subject: a\r\n b\x07c\r\nFrom: x\r\n\r\nSubject: body";
        assert_eq!(header(folded, "subject"), "a bc");
    }
}
