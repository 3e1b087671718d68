//! Assembling a message body from DATA lines or BDAT chunks. DATA is strict, because the
//! end-of-data marker is where SMTP smuggling lives: a line ends only with CRLF, the
//! marker is exactly `.` CRLF following a CRLF-terminated line, and a message with any bare
//! CR or bare LF is refused as a whole at the marker (so `\n.\n`, `\n.\r\n`, `\r.\r\n` and
//! friends can never end it early and start a second message). BDAT has no marker; its
//! bare LFs and bare CRs are normalized to CRLF (a CR ending one chunk waits for the next),
//! so no body leaves here with a line ending a lenient receiver could read differently. Sizes are bounded: an over-size body is drained, not
//! kept.

/// How a finished body came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// The message, CRLF lines, dots unstuffed.
    Message(Vec<u8>),
    /// Bigger than the limit: refused.
    TooBig,
    /// Bare CR or LF in DATA: refused.
    BareLineEnding,
    /// The body memory budget had no room for it (`super::memory`): refused for now.
    NoRoom(super::memory::NoRoom),
}

/// A body being received.
#[derive(Debug)]
pub struct Body {
    data: Vec<u8>,
    max_bytes: usize,
    too_big: bool,
    no_room: Option<super::memory::NoRoom>,
    bare: bool,
    /// The previous DATA line ended with CRLF (or there was none yet).
    after_crlf: bool,
    /// The last BDAT byte was a CR, whose LF (if any) is in the next chunk.
    held_cr: bool,
}

impl Body {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            data: Vec::new(),
            max_bytes,
            too_big: false,
            no_room: None,
            bare: false,
            after_crlf: true,
            held_cr: false,
        }
    }

    /// Bytes kept so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The memory budget refused to hold more: drop what is kept and everything to come.
    pub fn no_room(&mut self, why: super::memory::NoRoom) {
        self.no_room = Some(why);
        self.data = Vec::new();
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.no_room.is_some() {
            return;
        }
        if self.too_big || self.data.len() + bytes.len() > self.max_bytes {
            self.too_big = true;
            self.data = Vec::new();
            return;
        }
        self.data.extend_from_slice(bytes);
    }

    fn finish(self) -> Finished {
        if self.bare {
            Finished::BareLineEnding
        } else if self.too_big {
            Finished::TooBig
        } else if let Some(why) = self.no_room {
            Finished::NoRoom(why)
        } else {
            Finished::Message(self.data)
        }
    }

    /// One DATA line as read, with whatever ended it (`\n`, or nothing at a length limit).
    /// `Some` when this line ended the data.
    pub fn data_line(&mut self, raw: &[u8]) -> Option<Finished> {
        let crlf = raw.ends_with(b"\r\n");
        if raw == b".\r\n" && self.after_crlf {
            return Some(std::mem::replace(self, Self::new(0)).finish());
        }
        let content = if crlf { &raw[..raw.len() - 2] } else { raw.strip_suffix(b"\n").unwrap_or(raw) };
        if (!crlf && raw.ends_with(b"\n")) || content.contains(&b'\r') || content.contains(&b'\n') {
            self.bare = true;
        }
        // A line cut at the length limit continues on the next read: not a line start.
        let line_start = self.after_crlf;
        self.after_crlf = crlf;
        let unstuffed = if line_start && content.first() == Some(&b'.') { &content[1..] } else { content };
        self.keep(unstuffed);
        if crlf || raw.ends_with(b"\n") {
            self.keep(b"\r\n");
        }
        None
    }

    /// One BDAT chunk; `Some` after the last one.
    pub fn chunk(&mut self, bytes: &[u8], last: bool) -> Option<Finished> {
        let mut normalized = Vec::with_capacity(bytes.len() + 16);
        for &b in bytes {
            if std::mem::take(&mut self.held_cr) {
                // CRLF, or a bare CR made one.
                normalized.extend_from_slice(b"\r\n");
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => self.held_cr = true,
                b'\n' => normalized.extend_from_slice(b"\r\n"),
                _ => normalized.push(b),
            }
        }
        if last && std::mem::take(&mut self.held_cr) {
            normalized.extend_from_slice(b"\r\n");
        }
        self.keep(&normalized);
        last.then(|| std::mem::replace(self, Self::new(0)).finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `stream` as the server would (split after each LF) and collect what the data
    /// phase produced, plus the bytes left over (which the server reads as commands).
    fn feed(stream: &[u8]) -> (Option<Finished>, Vec<u8>) {
        let mut body = Body::new(1 << 20);
        let mut rest = stream;
        while !rest.is_empty() {
            let end = rest.iter().position(|b| *b == b'\n').map_or(rest.len(), |i| i + 1);
            let (line, tail) = rest.split_at(end);
            rest = tail;
            if let Some(done) = body.data_line(line) {
                return (Some(done), rest.to_vec());
            }
        }
        (None, Vec::new())
    }

    #[test]
    fn a_proper_message_is_unstuffed() {
        let (done, rest) = feed(b"Subject: x\r\n\r\n..dot\r\nend\r\n.\r\nQUIT\r\n");
        assert_eq!(done, Some(Finished::Message(b"Subject: x\r\n\r\n.dot\r\nend\r\n".to_vec())));
        assert_eq!(rest, b"QUIT\r\n");
        assert_eq!(feed(b".\r\n").0, Some(Finished::Message(Vec::new())), "an empty message");
    }

    #[test]
    fn smuggling_variants_never_end_the_data_early() {
        let smuggled = b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@example.edu>\r\nDATA\r\nspoofed\r\n";
        for sep in [&b"\n.\n"[..], b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n", b"\r.\r", b"\n.\r", b"\r\n\x00.\r\n"]
        {
            let mut stream = b"Subject: a\r\n\r\nfirst".to_vec();
            stream.extend_from_slice(sep);
            stream.extend_from_slice(smuggled);
            stream.extend_from_slice(b"\r\n.\r\n");
            let (done, rest) = feed(&stream);
            // Either one refusal for everything, or one message holding everything.
            match done {
                Some(Finished::BareLineEnding) => {}
                Some(Finished::Message(m)) => {
                    let text = String::from_utf8_lossy(&m);
                    assert!(text.contains("MAIL FROM:<evil@x>"), "{sep:?}: the smuggled part is inside: {text}");
                }
                other => panic!("{sep:?}: {other:?}"),
            }
            assert!(rest.is_empty(), "{sep:?}: bytes after the real end would be read as commands: {rest:?}");
        }
    }

    #[test]
    fn limits_and_bdat() {
        let mut body = Body::new(10);
        assert_eq!(body.data_line(b"0123456789abc\r\n"), None);
        assert_eq!(body.data_line(b".\r\n"), Some(Finished::TooBig));
        let mut body = Body::new(100);
        assert_eq!(body.chunk(b"a\nb\r", false), None);
        assert_eq!(body.chunk(b"\nc\n", true), Some(Finished::Message(b"a\r\nb\r\nc\r\n".to_vec())));
        // A long line read in two pieces: the second piece is not a line start.
        let mut body = Body::new(100);
        body.data_line(b"abc");
        body.data_line(b".def\r\n");
        assert_eq!(body.data_line(b".\r\n"), Some(Finished::Message(b"abc.def\r\n".to_vec())));
    }
}
