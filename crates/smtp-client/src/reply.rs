//! One server reply, read with smtp-proto's response parser: the whole reply is bounded
//! (smtp-proto's 4 KiB), every line must start with a 3-digit code, and the code must be
//! one RFC 5321 §4.2 defines (2xx–5xx). What this must never do: return a partial reply or
//! consume bytes of the next one (pipelined replies stay in the buffer).

use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// A reply: code, enhanced status code (RFC 3463) if the server sent one, and its text
/// (multi-line replies joined with `\n`, codes and separators removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<[u8; 3]>,
    pub message: String,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server waits for more (the data after `DATA`, an AUTH response).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The lines of the text (for `EHLO`: the first names the server, the rest are the
    /// extensions).
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.message.split('\n')
    }

    /// The reply's last line as the server wrote it: `250 2.0.0 text`, to pass on to a
    /// client of ours.
    pub fn last_line(&self) -> String {
        let text = self.message.rsplit('\n').next().unwrap_or_default();
        match self.enhanced {
            Some([a, b, c]) => format!("{} {a}.{b}.{c} {text}", self.code),
            None => format!("{} {text}", self.code),
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.last_line())
    }
}

/// Why no reply could be read.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Closed,
    Garbled(String),
}

/// Read one reply from `r`.
pub async fn read<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, ReadError> {
    let mut receiver = ResponseReceiver::default();
    loop {
        let buf = r.fill_buf().await.map_err(ReadError::Io)?;
        if buf.is_empty() {
            return Err(ReadError::Closed);
        }
        let mut rest = buf.iter();
        let parsed = receiver.parse(&mut rest);
        let used = buf.len() - rest.as_slice().len();
        r.consume(used);
        match parsed {
            Ok(resp) if (200..600).contains(&resp.code) => {
                let enhanced = (resp.esc != [0, 0, 0]).then_some(resp.esc);
                return Ok(Reply { code: resp.code, enhanced, message: resp.message });
            }
            Ok(resp) => return Err(ReadError::Garbled(format!("reply code {} out of range", resp.code))),
            Err(smtp_proto::Error::NeedsMoreData { .. }) => continue,
            Err(smtp_proto::Error::ResponseTooLong) => return Err(ReadError::Garbled("reply too long".into())),
            Err(e) => return Err(ReadError::Garbled(format!("{e:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply, ReadError> {
        let mut r = tokio::io::BufReader::with_capacity(7, bytes);
        read(&mut r).await
    }

    #[tokio::test]
    async fn single_and_multi_line_replies_with_and_without_enhanced_codes() {
        let r = parse(b"250 2.1.5 <a@b> ok\r\n").await.unwrap();
        assert_eq!((r.code, r.enhanced, r.message.as_str()), (250, Some([2, 1, 5]), "<a@b> ok"));
        assert_eq!(r.last_line(), "250 2.1.5 <a@b> ok");
        let r = parse(b"250-mx.example.org\r\n250-SIZE 100\r\n250 STARTTLS\r\n").await.unwrap();
        assert_eq!(r.lines().collect::<Vec<_>>(), ["mx.example.org", "SIZE 100", "STARTTLS"]);
        assert!(r.is_positive() && !r.is_transient());
        assert!(parse(b"354 go ahead\r\n").await.unwrap().is_intermediate());
        assert!(parse(b"451 4.3.0 later\r\n").await.unwrap().is_transient());
        assert!(parse(b"550 no\r\n").await.unwrap().is_permanent());
    }

    #[tokio::test]
    async fn pipelined_replies_are_read_one_at_a_time() {
        let mut r = tokio::io::BufReader::with_capacity(5, &b"250 one\r\n250 two\r\n354 three\r\n"[..]);
        for want in [250, 250, 354] {
            assert_eq!(read(&mut r).await.unwrap().code, want);
        }
        assert!(matches!(read(&mut r).await, Err(ReadError::Closed)));
    }

    #[tokio::test]
    async fn garbage_is_an_error_never_a_reply() {
        for bad in [&b"hello\r\n"[..], b"25 short\r\n", b"099 low\r\n", b"700 high\r\n", b"2x0 bad\r\n"] {
            assert!(matches!(parse(bad).await, Err(ReadError::Garbled(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(parse(b"250 cut off").await, Err(ReadError::Closed)));
        let huge = [b"250-".as_slice(), &vec![b'x'; 10_000], b"\r\n250 end\r\n"].concat();
        assert!(matches!(parse(&huge).await, Err(ReadError::Garbled(_))), "bounded");
    }
}
