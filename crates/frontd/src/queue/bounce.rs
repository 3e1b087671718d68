//! Delivery status notifications (RFC 3464) for queued mail that failed for good: a
//! `multipart/report` with a human-readable part, the `message/delivery-status` part (one
//! block per failed recipient) and the original's header (`text/rfc822-headers`). Pure;
//! sent by the runner with the null sender so a bounce never bounces (RFC 5321 4.5.5).

use std::fmt::Write;

/// Header bytes of the original copied into a bounce at most.
const ORIGINAL_HEADER_MAX_BYTES: usize = 64 * 1024;

/// The enhanced status code (RFC 3463) in an SMTP reply, or a generic one.
pub fn status_code(reply: &str) -> String {
    let code = reply.split_whitespace().nth(1).unwrap_or("");
    let parts: Vec<&str> = code.split('.').collect();
    let valid = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        code.to_string()
    } else if reply.starts_with('4') {
        "4.0.0".into()
    } else {
        "5.0.0".into()
    }
}

/// The original's header section (up to the first empty line), bounded.
fn header_section(message: &[u8]) -> &[u8] {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n").map_or(message.len(), |p| p + 2);
    &message[..end.min(ORIGINAL_HEADER_MAX_BYTES)]
}

/// What the bounce says.
pub struct Bounce<'a> {
    /// This front's name (Reporting-MTA).
    pub reporting_host: &'a str,
    /// The original sender, who receives the bounce.
    pub to: &'a str,
    /// `(recipient, final reply)`.
    pub failures: &'a [(String, String)],
    /// When the original was queued.
    pub arrival: chrono::DateTime<chrono::Utc>,
    pub now: chrono::DateTime<chrono::Utc>,
    pub original: &'a [u8],
    /// A unique token for the MIME boundary and Message-ID.
    pub token: u64,
}

/// A `References:` field naming the original, so mail readers thread the bounce with it
/// and `mailctl trace` finds the bounce from the original's Message-ID.
fn references(original: &[u8]) -> String {
    common::message_log::message_id(original)
        .filter(|id| id.starts_with('<') && id.ends_with('>') && !id[1..id.len() - 1].contains(['<', '>']))
        .map(|id| format!("References: {id}\r\n"))
        .unwrap_or_default()
}

impl Bounce<'_> {
    /// The bounce message, CRLF line endings.
    pub fn render(&self) -> Vec<u8> {
        let boundary = format!("=_bounce_{:016x}", self.token);
        let mut m = String::new();
        let host = self.reporting_host;
        let _ = write!(
            m,
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\nTo: <{}>\r\nSubject: Undelivered Mail Returned to Sender\r\nDate: {}\r\nMessage-ID: <bounce.{:016x}@{host}>\r\n{}Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n",
            self.to,
            self.now.to_rfc2822(),
            self.token,
            references(self.original),
        );
        let _ = write!(
            m,
            "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is the mail system at {host}.\r\n\r\nYour message could not be delivered to the following recipients:\r\n\r\n"
        );
        for (rcpt, reply) in self.failures {
            let _ = write!(m, "<{rcpt}>: {}\r\n", reply.replace(['\r', '\n'], " "));
        }
        let _ = write!(
            m,
            "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {host}\r\nArrival-Date: {}\r\n",
            self.arrival.to_rfc2822()
        );
        for (rcpt, reply) in self.failures {
            let diagnostic = reply.replace(['\r', '\n'], " ");
            let _ = write!(
                m,
                "\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {}\r\nDiagnostic-Code: smtp; {diagnostic}\r\nLast-Attempt-Date: {}\r\n",
                status_code(reply),
                self.now.to_rfc2822()
            );
        }
        let _ = write!(m, "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n");
        let mut out = m.into_bytes();
        out.extend_from_slice(header_section(self.original));
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_come_from_the_reply() {
        assert_eq!(status_code("550 5.1.1 <x@y> no such user"), "5.1.1");
        assert_eq!(status_code("451 4.4.1 down"), "4.4.1");
        assert_eq!(status_code("550 no enhanced code"), "5.0.0");
        assert_eq!(status_code("550 5.1.1111 bogus"), "5.0.0");
        assert_eq!(status_code(""), "5.0.0");
    }

    #[test]
    fn a_bounce_is_a_delivery_status_report_that_mail_parser_reads() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let original = b"Subject: hello\r\nFrom: a@x\r\nMessage-ID: <m1@x>\r\n\r\nsecret body\r\n";
        let b = Bounce {
            reporting_host: "mx.example.edu",
            to: "a@x",
            failures: &[("nobody@remote.test".into(), "550 5.1.1 <nobody@remote.test> no such user".into())],
            arrival: now,
            now,
            original,
            token: 42,
        }
        .render();
        let text = String::from_utf8(b.clone()).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; nobody@remote.test\r\nAction: failed\r\nStatus: 5.1.1"));
        assert!(text.contains("Subject: hello"), "the original's header is returned");
        assert!(!text.contains("secret body"), "its body is not");
        let facts = common::tracking::MessageFacts::of(&b);
        assert_eq!(
            (facts.message_id.as_str(), facts.answers.as_str()),
            ("<bounce.000000000000002a@mx.example.edu>", "<m1@x>")
        );
        assert!(!b.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "CRLF only");
    }
}
