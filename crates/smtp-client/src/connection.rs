//! A connection to an SMTP or LMTP server: every read and write has a deadline, every reply
//! is read by [`crate::reply::read`]. The conversation steps every caller needs live here
//! once: greeting, `EHLO`/`LHLO` (`HELO` when `EHLO` is refused), `STARTTLS`, the cluster's
//! LMTP `AUTH` (`common::lmtp_auth`) and a best-effort `QUIT`.

use std::sync::Arc;
use std::time::Duration;

use common::rpc_channel::ClusterKey;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::reply::{self, ReadError, Reply};
use crate::transaction::Dialect;
use crate::ClientError;

/// How long each step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub connect: Duration,
    /// The greeting and every command's reply (and writing a command).
    pub reply: Duration,
    /// Writing the message body and reading the replies that end the data.
    pub data_end: Duration,
}

impl Deadlines {
    /// RFC 5321 §4.5.3.2: 5 minutes for most replies, 10 for the end of data.
    pub const RFC5321: Self =
        Self { connect: Duration::from_secs(30), reply: Duration::from_secs(300), data_end: Duration::from_secs(600) };

    /// The same wait for every step.
    pub fn all(wait: Duration) -> Self {
        Self { connect: wait, reply: wait, data_end: wait }
    }
}

/// Longest wait for the reply to `QUIT` (nothing depends on it).
const QUIT_WAIT: Duration = Duration::from_secs(5);

/// One connection to one server.
pub struct Connection<S> {
    addr: String,
    conn: BufReader<S>,
    deadlines: Deadlines,
    /// The server offered PIPELINING (RFC 2920) in its last hello.
    pipelining: bool,
    /// The conversation cannot go on (the write side was shut mid-transaction).
    broken: bool,
}

impl Connection<TcpStream> {
    /// Connect to `addr` (`host:port`) and read a `220` greeting (anything else refuses).
    pub async fn open(addr: &str, deadlines: Deadlines) -> Result<(Self, Reply), ClientError> {
        let tcp = tokio::time::timeout(deadlines.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout { addr: addr.to_string(), waited_s: deadlines.connect.as_secs() })?
            .map_err(|source| ClientError::Io { addr: addr.to_string(), source })?;
        tcp.set_nodelay(true).map_err(|source| ClientError::Io { addr: addr.to_string(), source })?;
        let mut c = Self::over(tcp, addr, deadlines);
        let greeting = c.reply().await?;
        if greeting.code != 220 {
            return Err(c.refused(greeting));
        }
        Ok((c, greeting))
    }

    /// `STARTTLS` and the handshake (any certificate `tls` accepts), naming `host`.
    pub async fn starttls(
        mut self,
        tls: &Arc<rustls::ClientConfig>,
        host: &str,
    ) -> Result<Connection<tokio_rustls::client::TlsStream<TcpStream>>, ClientError> {
        let r = self.command("STARTTLS").await?;
        if r.code != 220 {
            return Err(self.refused(r));
        }
        let tls_err = |reason: String| ClientError::Tls { addr: self.addr.clone(), reason };
        let name = ServerName::try_from(host.to_string()).map_err(|e| tls_err(e.to_string()))?;
        // Bytes after the STARTTLS reply would be a plaintext injection (RFC 3207 §6).
        if !self.conn.buffer().is_empty() {
            return Err(tls_err("data after the STARTTLS reply".into()));
        }
        let handshake = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, self.conn.into_inner());
        let stream = tokio::time::timeout(self.deadlines.reply, handshake)
            .await
            .map_err(|_| tls_err("handshake timed out".into()))?
            .map_err(|e| tls_err(e.to_string()))?;
        Ok(Connection::over(stream, &self.addr, self.deadlines))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// A connection over an already open `stream` to the server named `addr` (nothing read).
    pub fn over(stream: S, addr: &str, deadlines: Deadlines) -> Self {
        Self { addr: addr.to_string(), conn: BufReader::new(stream), deadlines, pipelining: false, broken: false }
    }

    /// Whether commands may be sent in batches (the server offered PIPELINING).
    pub fn pipelining(&self) -> bool {
        self.pipelining
    }

    /// Stop talking: shut the write side so the server drops any transaction in progress,
    /// and refuse every later command.
    pub async fn abandon(&mut self) {
        self.broken = true;
        let _ = tokio::time::timeout(QUIT_WAIT, self.conn.get_mut().shutdown()).await;
    }

    /// The server's address, as connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// A refusal of a step the conversation needs.
    pub fn refused(&self, reply: Reply) -> ClientError {
        ClientError::Refused { addr: self.addr.clone(), reply }
    }

    /// The next reply, within the reply deadline.
    pub async fn reply(&mut self) -> Result<Reply, ClientError> {
        self.reply_within(self.deadlines.reply).await
    }

    /// The next reply, within `wait`.
    pub async fn reply_within(&mut self, wait: Duration) -> Result<Reply, ClientError> {
        let addr = || self.addr.clone();
        match tokio::time::timeout(wait, reply::read(&mut self.conn)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(ReadError::Io(source))) => Err(ClientError::Io { addr: addr(), source }),
            Ok(Err(ReadError::Closed)) => Err(ClientError::Closed { addr: addr() }),
            Ok(Err(ReadError::Garbled(why))) => Err(ClientError::Garbled { addr: addr(), why }),
            Err(_) => Err(ClientError::Timeout { addr: addr(), waited_s: wait.as_secs() }),
        }
    }

    /// Write `bytes` (and flush) within `wait`.
    pub async fn send_within(&mut self, bytes: &[u8], wait: Duration) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Closed { addr: self.addr.clone() });
        }
        let write = async {
            let w = self.conn.get_mut();
            w.write_all(bytes).await?;
            w.flush().await
        };
        match tokio::time::timeout(wait, write).await {
            Ok(r) => r.map_err(|source| ClientError::Io { addr: self.addr.clone(), source }),
            Err(_) => Err(ClientError::Timeout { addr: self.addr.clone(), waited_s: wait.as_secs() }),
        }
    }

    /// Send one command line (CRLF added) and read its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        debug_assert!(!line.contains(['\r', '\n']), "one command line");
        self.send_within(format!("{line}\r\n").as_bytes(), self.deadlines.reply).await?;
        self.reply().await
    }

    /// `EHLO` (LMTP: `LHLO`) as `name`; SMTP falls back to `HELO` when `EHLO` is refused.
    /// The extension keywords offered, upper-case (none after `HELO`).
    pub async fn hello(&mut self, dialect: Dialect, name: &str) -> Result<Vec<String>, ClientError> {
        let verb = match dialect {
            Dialect::Smtp => "EHLO",
            Dialect::Lmtp => "LHLO",
        };
        let r = self.command(&format!("{verb} {name}")).await?;
        if r.code == 250 {
            let extensions: Vec<String> = r.lines().skip(1).map(str::to_ascii_uppercase).collect();
            self.pipelining = extensions.iter().any(|e| e == "PIPELINING");
            return Ok(extensions);
        }
        self.pipelining = false;
        if dialect == Dialect::Lmtp {
            return Err(self.refused(r));
        }
        let r = self.command(&format!("HELO {name}")).await?;
        if r.code != 250 {
            return Err(self.refused(r));
        }
        Ok(Vec::new())
    }

    /// Prove membership of the cluster to a storage node's LMTP (`AUTH X-MAILSTORE-CLUSTER`).
    pub async fn authenticate_cluster(&mut self, key: &ClusterKey) -> Result<(), ClientError> {
        let challenge = self.command(&format!("AUTH {}", common::lmtp_auth::MECHANISM)).await?;
        let answer = (challenge.code == 334).then(|| common::lmtp_auth::response(key, challenge.message.trim()));
        let Some(Some(answer)) = answer else { return Err(self.refused(challenge)) };
        let done = self.command(&answer).await?;
        if done.code != 235 {
            return Err(self.refused(done));
        }
        Ok(())
    }

    /// `QUIT`, waiting briefly for its reply; errors do not matter at this point.
    pub async fn quit(&mut self) {
        if self.broken {
            return;
        }
        let sent = self.send_within(b"QUIT\r\n", QUIT_WAIT).await;
        if sent.is_ok() {
            let _ = self.reply_within(QUIT_WAIT).await;
        }
    }
}
