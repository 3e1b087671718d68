//! One outbound SMTP transaction (RFC 5321) to one next hop: greeting, EHLO, STARTTLS when
//! the server offers it (opportunistic, RFC 7435: the certificate is not verified, which
//! still defeats passive eavesdropping; a failed handshake is an error, never a silent
//! fall back to plain text on the same connection), MAIL, RCPT per recipient, DATA with
//! dot-stuffing. Returns one reply per recipient; a hop that cannot be used is an error.
//! Every read is bounded in size and time.

use std::sync::Arc;
use std::time::Duration;

use common::line::Line;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::delivery::dot_stuff;

/// RFC 5321 4.5.3.2: the client waits 5 minutes for the greeting and most replies.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// RFC 5321 4.5.3.2.6: up to 10 minutes for the reply to the end of data.
const DATA_END_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest reply line kept; lines of one reply at most.
const REPLY_LINE_MAX: usize = 4096;
const REPLY_LINES_MAX: usize = 64;

/// Why a hop could not take the message (the caller tries the next hop or retries later).
#[derive(Debug, thiserror::Error)]
pub enum HopError {
    #[error("{addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr}: no reply within {0:?}", REPLY_TIMEOUT)]
    Timeout { addr: String },
    #[error("{addr}: TLS: {reason}")]
    Tls { addr: String, reason: String },
    /// A `4xx` (or garbled) reply before any recipient was accepted.
    #[error("{addr}: {reply}")]
    Temporary { addr: String, reply: String },
}

/// One reply: its code and its last line (multi-line replies keep every line in `lines`).
#[derive(Debug, Clone)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.last().cloned().unwrap_or_default()
    }
}

/// A transaction to run on one connection.
pub struct Transaction<'a> {
    pub helo: &'a str,
    pub from: &'a str,
    pub recipients: &'a [String],
    pub message: &'a [u8],
}

struct Link<S> {
    addr: String,
    conn: S,
}

impl<S: AsyncBufRead + AsyncWrite + Unpin> Link<S> {
    async fn reply_within(&mut self, timeout: Duration) -> Result<Reply, HopError> {
        let addr = self.addr.clone();
        let read = async {
            let mut lines = Vec::new();
            for _ in 0..REPLY_LINES_MAX {
                let Line::Complete(raw) = common::line::read_line(&mut self.conn, REPLY_LINE_MAX).await? else {
                    return Err(std::io::Error::other("connection closed or reply line too long"));
                };
                let line = String::from_utf8_lossy(&raw).into_owned();
                let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
                let more = line.as_bytes().get(3) == Some(&b'-');
                lines.push(line);
                match code {
                    Some(code) if !more => return Ok(Reply { code, lines }),
                    Some(_) => {}
                    None => return Err(std::io::Error::other(format!("garbled reply {:?}", lines.last()))),
                }
            }
            Err(std::io::Error::other("reply has too many lines"))
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(source)) => Err(HopError::Io { addr, source }),
            Err(_) => Err(HopError::Timeout { addr }),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), HopError> {
        let addr = self.addr.clone();
        let write = async {
            self.conn.write_all(bytes).await?;
            self.conn.flush().await
        };
        match tokio::time::timeout(REPLY_TIMEOUT, write).await {
            Ok(r) => r.map_err(|source| HopError::Io { addr, source }),
            Err(_) => Err(HopError::Timeout { addr }),
        }
    }

    async fn command(&mut self, line: &str) -> Result<Reply, HopError> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.reply_within(REPLY_TIMEOUT).await
    }

    fn temporary(&self, reply: &Reply) -> HopError {
        HopError::Temporary { addr: self.addr.clone(), reply: reply.text() }
    }

    /// EHLO (HELO if refused); the extension keywords offered.
    async fn hello(&mut self, helo: &str) -> Result<Result<Vec<String>, Reply>, HopError> {
        let ehlo = self.command(&format!("EHLO {helo}")).await?;
        if ehlo.code == 250 {
            let ext = ehlo.lines.iter().skip(1).map(|l| l.get(4..).unwrap_or("").to_ascii_uppercase()).collect();
            return Ok(Ok(ext));
        }
        let helo_reply = self.command(&format!("HELO {helo}")).await?;
        Ok(if helo_reply.code == 250 { Ok(Vec::new()) } else { Err(helo_reply) })
    }

    /// MAIL, RCPTs, DATA; one reply per recipient.
    async fn transaction(&mut self, t: &Transaction<'_>, extensions: &[String]) -> Result<Vec<String>, HopError> {
        let size = if extensions.iter().any(|e| e.starts_with("SIZE")) {
            format!(" SIZE={}", t.message.len())
        } else {
            String::new()
        };
        let mail = self.command(&format!("MAIL FROM:<{}>{size}", t.from)).await?;
        match mail.code {
            250 => {}
            500..=599 => return Ok(vec![mail.text(); t.recipients.len()]),
            _ => return Err(self.temporary(&mail)),
        }
        let mut replies: Vec<Option<String>> = vec![None; t.recipients.len()];
        for (i, rcpt) in t.recipients.iter().enumerate() {
            let r = self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            if !(250..=252).contains(&r.code) {
                replies[i] = Some(r.text());
            }
        }
        if replies.iter().all(Option::is_some) {
            let _ = self.command("QUIT").await;
            return Ok(replies.into_iter().flatten().collect());
        }
        let data = self.command("DATA").await?;
        if data.code != 354 {
            if data.code >= 500 {
                return Ok(replies.into_iter().map(|r| r.unwrap_or_else(|| data.text())).collect());
            }
            return Err(self.temporary(&data));
        }
        self.send(&dot_stuff(t.message)).await?;
        let end = self.reply_within(DATA_END_TIMEOUT).await?;
        let _ = self.command("QUIT").await;
        Ok(replies.into_iter().map(|r| r.unwrap_or_else(|| end.text())).collect())
    }
}

/// A rustls client that accepts any certificate: opportunistic TLS for MX delivery.
pub fn opportunistic_tls() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts every certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Deliver `t` through the SMTP server at `addr` (`host:port`), named `host` for TLS.
pub async fn deliver(
    addr: &str,
    host: &str,
    tls: &Arc<rustls::ClientConfig>,
    t: &Transaction<'_>,
) -> Result<Vec<String>, HopError> {
    let io_err = |source| HopError::Io { addr: addr.to_string(), source };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| HopError::Timeout { addr: addr.to_string() })?
        .map_err(io_err)?;
    tcp.set_nodelay(true).map_err(io_err)?;
    let mut plain = Link { addr: addr.to_string(), conn: BufReader::new(tcp) };
    let greeting = plain.reply_within(REPLY_TIMEOUT).await?;
    match greeting.code {
        220 => {}
        // RFC 5321 3.1: 554 greeting: this host takes no mail; another MX may.
        _ => return Err(plain.temporary(&greeting)),
    }
    let extensions = match plain.hello(t.helo).await? {
        Ok(ext) => ext,
        Err(reply) => return Err(plain.temporary(&reply)),
    };
    if !extensions.iter().any(|e| e == "STARTTLS") {
        return plain.transaction(t, &extensions).await;
    }
    let r = plain.command("STARTTLS").await?;
    if r.code != 220 {
        return Err(plain.temporary(&r));
    }
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| HopError::Tls { addr: addr.to_string(), reason: e.to_string() })?;
    let tcp = plain.conn.into_inner();
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| HopError::Tls { addr: addr.to_string(), reason: e.to_string() })?;
    let mut secure = Link { addr: addr.to_string(), conn: BufReader::new(stream) };
    let extensions = match secure.hello(t.helo).await? {
        Ok(ext) => ext,
        Err(reply) => return Err(secure.temporary(&reply)),
    };
    secure.transaction(t, &extensions).await
}
