//! The header fields the scanning stage owns: taken out of every message that arrives
//! (a sender must not be able to claim `X-Spam-Status: No` or a passing
//! `Authentication-Results`), and written fresh from the verdicts. It never touches the
//! body, and the walk over the header section is one linear pass whatever its size.

use std::borrow::Cow;

use super::rspamd::SpamReport;

/// Fields ours alone (compared without case); `X-Spam-*` and `X-Virus-*` by prefix.
const OWNED: &[&str] = &["authentication-results", "x-spam", "x-spamd-result"];
const OWNED_PREFIXES: &[&str] = &["x-spam-", "x-virus-"];

/// Symbols listed in `X-Spam-Status` at most (the highest scores).
const SYMBOLS_LISTED_MAX: usize = 24;

fn owned(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    let name = name.trim_end();
    OWNED.contains(&name) || OWNED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `message` without the fields this stage owns (borrowed when it had none).
pub fn strip(message: &[u8]) -> Cow<'_, [u8]> {
    match kept(message) {
        None => Cow::Borrowed(message),
        Some(ranges) => Cow::Owned(ranges.iter().flat_map(|(a, b)| &message[*a..*b]).copied().collect()),
    }
}

/// `prefix` then `message` without the fields this stage owns, made in one buffer (the
/// message may be 32 MiB: no second copy on the way).
pub fn prefixed_and_stripped(prefix: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + message.len());
    out.extend_from_slice(prefix);
    match kept(message) {
        None => out.extend_from_slice(message),
        Some(ranges) => ranges.iter().for_each(|(a, b)| out.extend_from_slice(&message[*a..*b])),
    }
    out
}

/// The byte ranges of `message` to keep, in order; `None` when nothing is to go.
fn kept(message: &[u8]) -> Option<Vec<(usize, usize)>> {
    let end = header_end(message);
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut dropped = false;
    let mut pos = 0;
    // Each field: from its start to the start of the next line that does not fold.
    while pos < end {
        let mut next = line_end(message, pos, end);
        while next < end && matches!(message[next], b' ' | b'\t') {
            next = line_end(message, next, end);
        }
        let name_end = message[pos..next].iter().position(|b| *b == b':').map(|i| pos + i);
        if name_end.is_some_and(|n| owned(&message[pos..n])) {
            dropped = true;
        } else {
            match ranges.last_mut() {
                Some(last) if last.1 == pos => last.1 = next,
                _ => ranges.push((pos, next)),
            }
        }
        pos = next;
    }
    if !dropped {
        return None;
    }
    match ranges.last_mut() {
        Some(last) if last.1 == end => last.1 = message.len(),
        _ => ranges.push((end, message.len())),
    }
    Some(ranges)
}

/// Where the header section ends: after the line that ends it, at the blank line (or the
/// whole message when it has no body).
fn header_end(message: &[u8]) -> usize {
    let mut pos = 0;
    while pos < message.len() {
        if message[pos..].starts_with(b"\r\n") || message[pos..].starts_with(b"\n") {
            return pos;
        }
        pos = line_end(message, pos, message.len());
    }
    message.len()
}

/// The start of the line after the one at `pos` (or `end`).
fn line_end(message: &[u8], pos: usize, end: usize) -> usize {
    message[pos..end].iter().position(|b| *b == b'\n').map_or(end, |i| pos + i + 1)
}

/// What the stage writes into one recipient's copy.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// `authserv-id` of Authentication-Results: the site's mail host name.
    pub host: &'a str,
    pub envelope_from: &'a str,
    pub virus: VirusStamp<'a>,
    pub spam: SpamStamp<'a>,
}

#[derive(Debug, Clone, Copy)]
pub enum VirusStamp<'a> {
    Clean,
    /// Not scanned, and why (the listener accepts unscanned mail).
    Unscanned(&'a str),
    /// This listener does not scan for viruses.
    Off,
}

#[derive(Debug, Clone, Copy)]
pub enum SpamStamp<'a> {
    /// Scored; `spam` under this recipient's threshold.
    Scored {
        report: &'a SpamReport,
        threshold: f64,
        spam: bool,
    },
    Unscanned(&'a str),
    Skipped(&'a str),
    Off,
}

/// The header block for one recipient's copy, CRLF-terminated fields.
pub fn render(stamp: &Stamp<'_>) -> String {
    let mut out = String::new();
    match stamp.virus {
        VirusStamp::Clean => {
            out.push_str(&format!("X-Virus-Scanned: ClamAV at {}\r\nX-Virus-Status: Clean\r\n", stamp.host))
        }
        VirusStamp::Unscanned(why) => out.push_str(&format!("X-Virus-Status: Unscanned ({})\r\n", clean(why))),
        VirusStamp::Off => {}
    }
    match stamp.spam {
        SpamStamp::Scored { report, threshold, spam } => {
            out.push_str(&spam_status(report, threshold, spam));
            out.push_str(&format!("X-Spam-Score: {:.2}\r\n", report.score));
            if spam {
                out.push_str("X-Spam-Flag: YES\r\n");
            }
            out.push_str(&authentication_results(stamp.host, stamp.envelope_from, report));
        }
        SpamStamp::Unscanned(why) => out.push_str(&format!("X-Spam-Status: Unscanned ({})\r\n", clean(why))),
        SpamStamp::Skipped(why) => out.push_str(&format!("X-Spam-Status: No (not scored: {})\r\n", clean(why))),
        SpamStamp::Off => {}
    }
    out
}

fn spam_status(report: &SpamReport, threshold: f64, spam: bool) -> String {
    let verdict = if spam { "Yes" } else { "No" };
    let mut line = format!("X-Spam-Status: {verdict}, score={:.2} required={threshold:.2}", report.score);
    let names: Vec<&str> = report.symbols.iter().take(SYMBOLS_LISTED_MAX).map(|(n, _)| n.as_str()).collect();
    if !names.is_empty() {
        line.push_str("\r\n\ttests=");
        let mut width = 7;
        for (k, name) in names.iter().enumerate() {
            if k > 0 {
                line.push(',');
                width += 1;
                if width + name.len() > 70 {
                    line.push_str("\r\n\t");
                    width = 1;
                }
            }
            line.push_str(name);
            width += name.len();
        }
    }
    line.push_str("\r\n");
    line
}

/// RFC 8601 results from rspamd's SPF, DKIM and DMARC symbols (methods it did not run are
/// left out).
fn authentication_results(host: &str, envelope_from: &str, report: &SpamReport) -> String {
    const METHODS: &[(&str, &[(&str, &str)])] = &[
        (
            "spf",
            &[
                ("R_SPF_ALLOW", "pass"),
                ("R_SPF_FAIL", "fail"),
                ("R_SPF_SOFTFAIL", "softfail"),
                ("R_SPF_NEUTRAL", "neutral"),
                ("R_SPF_NA", "none"),
                ("R_SPF_DNSFAIL", "temperror"),
                ("R_SPF_PERMFAIL", "permerror"),
            ],
        ),
        (
            "dkim",
            &[
                ("R_DKIM_ALLOW", "pass"),
                ("R_DKIM_REJECT", "fail"),
                ("R_DKIM_NA", "none"),
                ("R_DKIM_TEMPFAIL", "temperror"),
                ("R_DKIM_PERMFAIL", "permerror"),
            ],
        ),
        (
            "dmarc",
            &[
                ("DMARC_POLICY_ALLOW", "pass"),
                ("DMARC_POLICY_REJECT", "fail"),
                ("DMARC_POLICY_QUARANTINE", "fail"),
                ("DMARC_POLICY_SOFTFAIL", "fail"),
                ("DMARC_NA", "none"),
                ("DMARC_DNSFAIL", "temperror"),
                ("DMARC_BAD_POLICY", "permerror"),
            ],
        ),
    ];
    let mut out = format!("Authentication-Results: {}", clean(host));
    let mut any = false;
    for (method, results) in METHODS {
        let Some((_, result)) = results.iter().find(|(symbol, _)| report.has(symbol)) else { continue };
        out.push_str(&format!(";\r\n\t{method}={result}"));
        if *method == "spf" && !envelope_from.is_empty() {
            out.push_str(&format!(" smtp.mailfrom={}", clean(envelope_from)));
        }
        any = true;
    }
    if !any {
        out.push_str("; none");
    }
    out.push_str("\r\n");
    out
}

/// Text safe inside a header field: printable ASCII without `;`, `(` or `)`.
fn clean(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_graphic() && !matches!(c, ';' | '(' | ')') || *c == ' ').take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(symbols: &[(&str, f64)]) -> SpamReport {
        SpamReport {
            score: symbols.iter().map(|s| s.1).sum(),
            required_score: 15.0,
            action: "no action".into(),
            symbols: symbols.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        }
    }

    #[test]
    fn fields_we_own_are_taken_out_folded_lines_and_all() {
        let msg = b"Received: x\r\nX-Spam-Status: No,\r\n\tscore=-100\r\nSubject: hi\r\nx-spam-flag: NO\r\n\
            Authentication-Results: mx.example.edu; spf=pass\r\nX-Virus-Status: Clean\r\nX-Spam: no\r\n\r\n\
            X-Spam-Status: in the body stays\r\n";
        let out = strip(msg);
        assert_eq!(
            &*out,
            &b"Received: x\r\nSubject: hi\r\n\r\nX-Spam-Status: in the body stays\r\n"[..],
            "{}",
            String::from_utf8_lossy(&out)
        );
        let clean = b"Subject: hi\r\nX-Spammy: kept\r\n\r\nbody";
        assert!(matches!(strip(clean), Cow::Borrowed(_)));
    }

    #[test]
    fn the_prefixed_copy_is_the_prefix_and_the_stripped_message() {
        for msg in [&b"X-Spam-Flag: YES\r\nSubject: a\r\n\r\nbody"[..], b"Subject: a\r\n\r\nbody", b"X-Spam: 1"] {
            let mut expected = b"Received: x\r\n".to_vec();
            expected.extend_from_slice(&strip(msg));
            assert_eq!(prefixed_and_stripped(b"Received: x\r\n", msg), expected);
        }
    }

    #[test]
    fn a_message_without_a_body_or_with_bare_newlines_is_walked_too() {
        assert_eq!(&*strip(b"X-Spam-Flag: YES\nSubject: a"), b"Subject: a");
        assert_eq!(&*strip(b""), b"");
        let long = [b"X-Spam-Status: ".as_slice(), &vec![b'a'; 2 << 20], b"\r\nSubject: b\r\n\r\n"].concat();
        assert_eq!(&*strip(&long), b"Subject: b\r\n\r\n");
    }

    #[test]
    fn the_stamp_says_the_verdicts_and_the_authentication_results() {
        let r = report(&[("R_SPF_ALLOW", -0.2), ("R_DKIM_NA", 0.0), ("DMARC_NA", 0.0), ("MISSING_MID", 2.5)]);
        let stamp = Stamp {
            host: "mx.example.edu",
            envelope_from: "a@remote.example",
            virus: VirusStamp::Clean,
            spam: SpamStamp::Scored { report: &r, threshold: 6.0, spam: false },
        };
        let text = render(&stamp);
        assert!(text.starts_with("X-Virus-Scanned: ClamAV at mx.example.edu\r\nX-Virus-Status: Clean\r\n"), "{text}");
        assert!(text.contains("X-Spam-Status: No, score=2.30 required=6.00\r\n\ttests=R_SPF_ALLOW,"), "{text}");
        assert!(text.contains("X-Spam-Score: 2.30\r\n") && !text.contains("X-Spam-Flag"), "{text}");
        assert!(
            text.contains(
                "Authentication-Results: mx.example.edu;\r\n\tspf=pass smtp.mailfrom=a@remote.example;\r\n\tdkim=none;\r\n\tdmarc=none\r\n"
            ),
            "{text}"
        );
        // What the stage writes, it would take out again: nothing survives a second pass.
        let message = format!("{text}Subject: x\r\n\r\nbody");
        assert_eq!(&*strip(message.as_bytes()), b"Subject: x\r\n\r\nbody");
    }

    #[test]
    fn unscanned_is_said_not_hidden() {
        let stamp = Stamp {
            host: "mx",
            envelope_from: "",
            virus: VirusStamp::Unscanned("clamd: connection refused\r\nX-Spam-Status: No"),
            spam: SpamStamp::Off,
        };
        let text = render(&stamp);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("X-Virus-Status: Unscanned (clamd: connection refusedX-Spam-Status: No"), "{text}");
    }
}
