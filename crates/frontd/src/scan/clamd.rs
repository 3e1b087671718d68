//! A client of ClamAV's `clamd`: one `INSTREAM` scan per connection over its Unix or TCP
//! socket (clamd's protocol: `zINSTREAM\0`, the data in chunks each led by a 4-byte
//! big-endian length, a zero length, then one NUL-terminated reply such as
//! `stream: OK` or `stream: Eicar-Signature FOUND`). It owns the wire format only: what a
//! verdict means for a message is the scanning stage's business, and it never reads more
//! than [`REPLY_MAX_BYTES`] of a reply.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes sent per INSTREAM chunk (clamd's default `StreamMaxLength` is 25 MiB in total).
const CHUNK_BYTES: usize = 64 * 1024;
/// Longest reply kept: a signature name is short; anything longer is not clamd.
pub const REPLY_MAX_BYTES: usize = 4096;

/// Where clamd listens: `unix:/path`, `/path`, or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Address {
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("unix:") {
            Some(path) => Address::Unix(path.into()),
            None if text.starts_with('/') => Address::Unix(text.into()),
            None => Address::Tcp(text.to_string()),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => f.write_str(a),
        }
    }
}

/// What clamd found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvVerdict {
    Clean,
    /// The signature's name, as clamd reported it (printable ASCII, at most 128 bytes).
    Virus(String),
}

/// Why a scan gave no verdict.
#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    #[error("cannot connect to clamd at {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("clamd connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("clamd did not answer within {0:?}")]
    Timeout(Duration),
    /// clamd answered with an error (a size limit, a broken file it could not read, ...).
    #[error("clamd refused the scan: {0}")]
    Refused(String),
    #[error("clamd sent an unexpected reply: {0:?}")]
    Reply(String),
}

/// A clamd to scan with.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: Address,
    timeout: Duration,
}

impl Clamd {
    pub fn new(address: Address, timeout: Duration) -> Self {
        Self { address, timeout }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Scan `data` (a whole message) within the timeout.
    pub async fn scan(&self, data: &[u8]) -> Result<AvVerdict, ClamdError> {
        match tokio::time::timeout(self.timeout, self.scan_unbounded(data)).await {
            Ok(result) => result,
            Err(_) => Err(ClamdError::Timeout(self.timeout)),
        }
    }

    async fn scan_unbounded(&self, data: &[u8]) -> Result<AvVerdict, ClamdError> {
        let connect_error = |source| ClamdError::Connect { address: self.address.to_string(), source };
        let reply = match &self.address {
            Address::Unix(path) => {
                let mut s = tokio::net::UnixStream::connect(path).await.map_err(connect_error)?;
                instream(&mut s, data).await?
            }
            Address::Tcp(addr) => {
                let mut s = tokio::net::TcpStream::connect(addr).await.map_err(connect_error)?;
                instream(&mut s, data).await?
            }
        };
        parse_reply(&reply)
    }
}

/// Send `data` as one INSTREAM and read the reply. clamd may stop reading and answer early
/// (its size limit): a failed write is then followed by reading what it said.
async fn instream<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> Result<Vec<u8>, ClamdError> {
    let sent = send_chunks(s, data).await;
    let reply = read_reply(s).await;
    match (sent, reply) {
        (_, Ok(reply)) if !reply.is_empty() => Ok(reply),
        (Err(e), _) => Err(e.into()),
        (Ok(()), reply) => reply.map_err(Into::into),
    }
}

async fn send_chunks<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> std::io::Result<()> {
    s.write_all(b"zINSTREAM\0").await?;
    for chunk in data.chunks(CHUNK_BYTES) {
        // CHUNK_BYTES fits in the 4-byte length.
        s.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
        s.write_all(chunk).await?;
    }
    s.write_all(&0u32.to_be_bytes()).await?;
    s.flush().await
}

/// The reply up to its NUL (or end of stream), at most [`REPLY_MAX_BYTES`].
async fn read_reply<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while reply.len() < REPLY_MAX_BYTES {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if let Some(end) = reply.iter().position(|b| *b == 0) {
            reply.truncate(end);
            return Ok(reply);
        }
    }
    reply.truncate(REPLY_MAX_BYTES);
    Ok(reply)
}

/// clamd's reply: `stream: OK`, `stream: NAME FOUND`, `... ERROR`.
pub fn parse_reply(reply: &[u8]) -> Result<AvVerdict, ClamdError> {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let body = text.strip_prefix("stream: ").unwrap_or(text);
    if body == "OK" {
        return Ok(AvVerdict::Clean);
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        return Ok(AvVerdict::Virus(printable(name)));
    }
    if let Some(reason) = text.strip_suffix(" ERROR") {
        return Err(ClamdError::Refused(printable(reason)));
    }
    Err(ClamdError::Reply(printable(text)))
}

/// Printable ASCII only, at most 128 bytes: the name goes into an SMTP reply and logs.
fn printable(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(128).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_into_verdicts_and_errors() {
        assert_eq!(parse_reply(b"stream: OK").unwrap(), AvVerdict::Clean);
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND").unwrap(),
            AvVerdict::Virus("Eicar-Test-Signature.UNOFFICIAL".into())
        );
        assert!(matches!(
            parse_reply(b"INSTREAM size limit exceeded. ERROR"),
            Err(ClamdError::Refused(r)) if r.starts_with("INSTREAM size limit")
        ));
        assert!(matches!(parse_reply(b"HTTP/1.1 400"), Err(ClamdError::Reply(_))));
        let hostile = b"stream: Evil\r\n250 ok\x01 FOUND";
        let AvVerdict::Virus(name) = parse_reply(hostile).unwrap() else { panic!() };
        assert!(!name.contains('\r') && !name.contains('\n') && !name.contains('\x01'), "{name:?}");
    }

    #[test]
    fn addresses_name_unix_sockets_or_tcp() {
        assert_eq!(Address::parse("/run/clamav/clamd.ctl"), Address::Unix("/run/clamav/clamd.ctl".into()));
        assert_eq!(Address::parse("unix:rel.sock"), Address::Unix("rel.sock".into()));
        assert_eq!(Address::parse("127.0.0.1:3310"), Address::Tcp("127.0.0.1:3310".into()));
    }

    #[tokio::test]
    async fn the_stream_is_framed_in_chunks_with_a_zero_end() {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        let data = vec![b'x'; CHUNK_BYTES + 10];
        let server = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut cmd = [0u8; 10];
            theirs.read_exact(&mut cmd).await.unwrap();
            assert_eq!(&cmd, b"zINSTREAM\0");
            loop {
                let mut len = [0u8; 4];
                theirs.read_exact(&mut len).await.unwrap();
                let len = u32::from_be_bytes(len) as usize;
                if len == 0 {
                    break;
                }
                let mut chunk = vec![0; len];
                theirs.read_exact(&mut chunk).await.unwrap();
                got.extend(chunk);
            }
            theirs.write_all(b"stream: OK\0").await.unwrap();
            got.len()
        });
        let reply = instream(&mut ours, &data).await.unwrap();
        assert_eq!(reply, b"stream: OK");
        assert_eq!(server.await.unwrap(), data.len());
    }
}
