//! Bounded line reading for the text protocols (LMTP, POP3, IMAP command lines): a line
//! longer than its limit is skipped in pieces and reported, never buffered whole.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One input line.
pub enum Line {
    Complete(Vec<u8>),
    TooLong,
    Eof,
    /// Nothing arrived within the idle limit.
    Idle,
}

/// [`read_line`], giving up after `idle` without a complete line.
pub async fn read_line_within<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
    idle: std::time::Duration,
) -> std::io::Result<Line> {
    tokio::time::timeout(idle, read_line(r, max)).await.unwrap_or(Ok(Line::Idle))
}

/// Read one line of at most `max` bytes (line ending stripped; bare LF accepted).
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    let mut out = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if out.is_empty() { Line::Eof } else { Line::Complete(out) });
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > max + 2 {
            // Skip the rest of the over-long line, bounded by reading it in pieces.
            r.consume(take);
            if done {
                return Ok(Line::TooLong);
            }
            loop {
                let buf = r.fill_buf().await?;
                if buf.is_empty() {
                    return Ok(Line::TooLong);
                }
                match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        r.consume(i + 1);
                        return Ok(Line::TooLong);
                    }
                    None => {
                        let n = buf.len();
                        r.consume(n);
                    }
                }
            }
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            out.pop();
            if out.last() == Some(&b'\r') {
                out.pop();
            }
            return Ok(Line::Complete(out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn line_reader_bounds_lines() {
        let input = b"short\r\nbare lf\n".to_vec();
        let long = [vec![b'a'; 5000], b"\r\nnext\r\n".to_vec()].concat();
        let mut r = BufReader::new(&input[..]);
        assert!(matches!(read_line(&mut r, 100).await.unwrap(), Line::Complete(l) if l == b"short"));
        assert!(matches!(read_line(&mut r, 100).await.unwrap(), Line::Complete(l) if l == b"bare lf"));
        assert!(matches!(read_line(&mut r, 100).await.unwrap(), Line::Eof));
        let mut r = BufReader::with_capacity(64, &long[..]);
        assert!(matches!(read_line(&mut r, 100).await.unwrap(), Line::TooLong));
        assert!(matches!(read_line(&mut r, 100).await.unwrap(), Line::Complete(l) if l == b"next"));
    }
}
