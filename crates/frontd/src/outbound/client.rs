//! One outbound SMTP transaction (RFC 5321) to one next hop: greeting, EHLO, STARTTLS when
//! the server offers it (opportunistic, RFC 7435: the certificate is not verified, which
//! still defeats passive eavesdropping; a failed handshake is an error, never a silent
//! fall back to plain text on the same connection), MAIL, RCPT per recipient, DATA with
//! dot-stuffing. Returns one reply per recipient; a hop that cannot be used is an error.
//! The conversation itself is the shared `smtp_client`: every read is bounded in size and
//! time, and no body goes out without a `354`.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use smtp_client::{ClientError, Connection, Deadlines, Dialect, Envelope, Reply, Transcript};

/// Why a hop could not take the message (the caller tries the next hop or retries later).
#[derive(Debug, thiserror::Error)]
pub enum HopError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A `4xx` reply before any recipient was accepted.
    #[error("{addr}: {reply}")]
    Temporary { addr: String, reply: String },
}

/// A transaction to run on one connection.
pub struct Transaction<'a> {
    pub helo: &'a str,
    pub from: &'a str,
    pub recipients: &'a [String],
    pub message: &'a [u8],
}

/// The replies per recipient of one transaction, or why the hop must be given up.
fn outcome(addr: &str, t: &Transcript) -> Result<Vec<String>, HopError> {
    let temporary = |r: &Reply| HopError::Temporary { addr: addr.to_string(), reply: r.last_line() };
    if t.mail.is_transient() {
        return Err(temporary(&t.mail));
    }
    if let Some(data) = t.data.as_ref().filter(|d| d.is_transient()) {
        return Err(temporary(data));
    }
    Ok(t.per_recipient(Dialect::Smtp).iter().map(Reply::last_line).collect())
}

/// MAIL, RCPTs, DATA on `conn`; one reply per recipient.
async fn transaction<S>(
    conn: &mut Connection<S>,
    t: &Transaction<'_>,
    extensions: &[String],
) -> Result<Vec<String>, HopError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let size = if extensions.iter().any(|e| e.starts_with("SIZE")) {
        format!(" SIZE={}", t.message.len())
    } else {
        String::new()
    };
    let envelope =
        Envelope { from: t.from, mail_params: &size, recipients: t.recipients, rcpt_params: "", rcpt_params_each: &[] };
    let transcript = conn.transaction(Dialect::Smtp, &envelope, &smtp_client::dot_stuff(t.message), |_| false).await?;
    conn.quit().await;
    outcome(conn.addr(), &transcript)
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
    // RFC 5321 3.1: a greeting other than 220 (554: no mail here) sends us to another MX.
    let (mut plain, _) = Connection::open(addr, Deadlines::RFC5321).await?;
    let extensions = plain.hello(Dialect::Smtp, t.helo).await?;
    if !extensions.iter().any(|e| e == "STARTTLS") {
        return transaction(&mut plain, t, &extensions).await;
    }
    let mut secure = plain.starttls(tls, host).await?;
    let extensions = secure.hello(Dialect::Smtp, t.helo).await?;
    transaction(&mut secure, t, &extensions).await
}
