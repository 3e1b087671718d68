//! PREVIEW (RFC 8970): the short plain-text summary of a message a client shows in its list,
//! made from the message's first text part (HTML turned into text), quoted lines left out,
//! whitespace collapsed, at most [`PREVIEW_CHARS_MAX`] characters. Pure: message bytes in,
//! text out; it never fails (a message without text has an empty preview).

use mail_parser::MessageParser;

/// Characters of a preview: RFC 8970 §3 allows at most 256.
pub const PREVIEW_CHARS_MAX: usize = 200;

/// The preview of `message`.
pub fn preview(message: &[u8]) -> String {
    let Some(parsed) = MessageParser::default().parse(message) else { return String::new() };
    let Some(text) = parsed.body_text(0) else { return String::new() };
    let mut out = String::new();
    let mut chars = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('>')) {
        for word in line.split_whitespace() {
            let word: String = word.chars().filter(|c| !c.is_control()).collect();
            if word.is_empty() {
                continue;
            }
            if !out.is_empty() {
                if chars + 1 >= PREVIEW_CHARS_MAX {
                    return out;
                }
                out.push(' ');
                chars += 1;
            }
            for c in word.chars() {
                if chars == PREVIEW_CHARS_MAX {
                    return out;
                }
                out.push(c);
                chars += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8970_3_plain_text_collapsed_without_quotes_and_bounded() {
        let m = b"Subject: x\r\n\r\nHi  Ann,\r\n\r\n> what you wrote\r\nthe numbers\tare in.\r\n";
        assert_eq!(preview(m), "Hi Ann, the numbers are in.");
        let long = format!("Subject: x\r\n\r\n{}\r\n", "w\u{e9}rd ".repeat(200));
        let p = preview(long.as_bytes());
        assert!(p.chars().count() <= PREVIEW_CHARS_MAX && p.starts_with("w\u{e9}rd w\u{e9}rd"), "{p}");
    }

    #[test]
    fn rfc8970_3_html_and_encoded_parts_become_text() {
        let html = b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
            <html><body><p>Caf=C3=A9 <b>today</b></p></body></html>\r\n";
        assert_eq!(preview(html), "Caf\u{e9} today");
        let multi = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
            first part\r\n--b\r\nContent-Type: application/pdf\r\n\r\nxx\r\n--b--\r\n";
        assert_eq!(preview(multi), "first part");
        assert_eq!(preview(b"Content-Type: image/png\r\n\r\n\x89PNG"), "");
        assert_eq!(preview(b""), "");
    }
}
