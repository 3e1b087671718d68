//! TLS for the mail access protocols (rustls with the ring provider): the server
//! configuration loaded from PEM files, and a connection stream that starts plain or
//! encrypted and can be upgraded in place (STARTTLS/STLS). Never logs key material.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::lazy_read::LazyBufReader;

/// Why the TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate file {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A loaded server certificate and key.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// Load a PEM certificate chain and private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| TlsError::Cert { path: cert.display().to_string(), reason: e.to_string() })?;
        if certs.is_empty() {
            return Err(TlsError::Cert { path: cert.display().to_string(), reason: "no certificate".into() });
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsError::Key { path: key.display().to_string(), reason: e.to_string() })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// Run the server side of a TLS handshake on `tcp`.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        Ok(Stream::Tls(Box::new(self.acceptor.accept(tcp).await?)))
    }
}

/// A client connection, plain or encrypted.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

impl AsyncRead for Stream {
    /// Every read that returns data acknowledges it at once (`tcp::quick_ack`).
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let (polled, fd) = match self.get_mut() {
            Self::Plain(s) => (Pin::new(&mut *s).poll_read(cx, buf), s.as_raw_fd()),
            Self::Tls(s) => {
                let fd = s.get_ref().0.as_raw_fd();
                (Pin::new(s.as_mut()).poll_read(cx, buf), fd)
            }
        };
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            crate::tcp::quick_ack(fd);
        }
        polled
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection split for reading (buffered) and writing at once, as IDLE needs. The read
/// buffer exists only while bytes move ([`LazyBufReader`]): a session waiting for its
/// client holds none.
pub struct Conn {
    pub rd: LazyBufReader<ReadHalf<Stream>>,
    pub wr: WriteHalf<Stream>,
    pub tls: bool,
    /// The negotiated TLS version and cipher suite (`TLSv1_3 TLS13_AES_256_GCM_SHA384`),
    /// for trace headers and logs.
    pub tls_info: Option<String>,
    /// Capacity of `rd`'s buffer (kept across a STARTTLS upgrade).
    read_buffer_bytes: usize,
}

/// The read buffer of a connection that carries message bodies (SMTP, LMTP): fewer reads
/// per message.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;
/// The read buffer of a session that sits idle most of its life (IMAP IDLE, all day): a
/// command line fits, and a read larger than it (a literal) bypasses it anyway.
pub const SESSION_READ_BUFFER_BYTES: usize = 1024;

impl Conn {
    /// A fresh connection: with `implicit_tls` and a certificate, after the handshake.
    pub async fn open(tcp: TcpStream, tls: Option<&Tls>, implicit_tls: bool) -> io::Result<Self> {
        Self::open_buffered(tcp, tls, implicit_tls, READ_BUFFER_BYTES).await
    }

    /// [`Conn::open`] with a read buffer of `read_buffer_bytes`.
    pub async fn open_buffered(
        tcp: TcpStream,
        tls: Option<&Tls>,
        implicit_tls: bool,
        read_buffer_bytes: usize,
    ) -> io::Result<Self> {
        tcp.set_nodelay(true)?;
        let stream = match (tls, implicit_tls) {
            (Some(tls), true) => tls.accept(tcp).await?,
            _ => Stream::Plain(tcp),
        };
        Ok(Self::new_buffered(stream, read_buffer_bytes))
    }

    pub fn new(stream: Stream) -> Self {
        Self::new_buffered(stream, READ_BUFFER_BYTES)
    }

    fn new_buffered(stream: Stream, read_buffer_bytes: usize) -> Self {
        let tls = stream.is_tls();
        let tls_info = match &stream {
            Stream::Tls(s) => {
                let conn = s.get_ref().1;
                let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
                let suite = conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
                Some(format!("{version} {suite}"))
            }
            Stream::Plain(_) => None,
        };
        let (r, w) = tokio::io::split(stream);
        Self { rd: LazyBufReader::with_capacity(read_buffer_bytes, r), wr: w, tls, tls_info, read_buffer_bytes }
    }

    /// The whole stream again, with the bytes read ahead but not yet consumed (a client's
    /// pipelined commands), for a proxy that hands the connection on.
    pub fn into_parts(self) -> (Stream, Vec<u8>) {
        let pending = self.rd.buffer().to_vec();
        (self.rd.into_inner().unsplit(self.wr), pending)
    }

    /// Upgrade a plain connection after STARTTLS/STLS was answered. `Ok(None)` when the
    /// client sent more bytes before the handshake: they were written without TLS and must
    /// not be taken as commands (plaintext command injection), so the connection is closed.
    pub async fn start_tls(self, tls: &Tls) -> io::Result<Option<Self>> {
        if !self.rd.buffer().is_empty() {
            return Ok(None);
        }
        let read_buffer_bytes = self.read_buffer_bytes;
        match self.rd.into_inner().unsplit(self.wr) {
            Stream::Plain(tcp) => Ok(Some(Self::new_buffered(tls.accept(tcp).await?, read_buffer_bytes))),
            Stream::Tls(_) => Err(io::Error::other("TLS is already active")),
        }
    }
}

/// How a connection's command loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client is gone or was sent away.
    Closed,
    /// STARTTLS/STLS was answered OK: upgrade, then go on with the same state.
    StartTls,
}

/// Run a connection's command loop; each time it ends asking for TLS, upgrade the
/// connection, tell the state (`tls_started`) and run the loop again on it. A loop asks for
/// TLS only when `tls` is configured.
pub async fn serve_with_starttls<S>(
    mut conn: Conn,
    tls: Option<&Tls>,
    state: &mut S,
    mut commands: impl AsyncFnMut(&mut Conn, &mut S) -> io::Result<End>,
    tls_started: impl Fn(&mut S),
) -> io::Result<()> {
    loop {
        match commands(&mut conn, state).await? {
            End::Closed => return Ok(()),
            End::StartTls => {
                let tls = tls.expect("STARTTLS/STLS is offered only with TLS configured");
                match conn.start_tls(tls).await? {
                    Some(upgraded) => conn = upgraded,
                    None => return Ok(()),
                }
                tls_started(state);
            }
        }
    }
}
