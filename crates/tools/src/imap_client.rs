//! A minimal blocking IMAP client for load generation and `mailctl import --from-imap`:
//! send a tagged command, read untagged data (including literals) up to the tagged status,
//! over plain TCP or TLS. Every read is bounded by a timeout and every literal by a size
//! limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest literal accepted in a response.
const LITERAL_MAX: usize = 64 << 20;
/// Longest response line outside literals (a SEARCH of a large mailbox is the long one).
const LINE_MAX: u64 = 16 << 20;
/// Most bytes one command's untagged data may add up to (the flags and sizes of a
/// mailbox of a few million messages): a server that never sends its tagged status
/// cannot make the client buffer without end.
const RESPONSE_MAX: usize = 512 << 20;

/// One connection.
pub struct Client {
    /// Reads are buffered; writes go to the stream underneath (`get_mut`).
    r: BufReader<Stream>,
    tag: u64,
}

/// The connection: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// TLS over `tcp` for `server_name`, the handshake finished now, so a certificate the
/// roots do not vouch for fails the connection rather than the first command.
fn handshake(
    server_name: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    mut tcp: TcpStream,
) -> std::io::Result<Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::other(format!("server name {server_name:?}: {e}")))?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
}

/// A command's result: the tagged status (`OK`/`NO`/`BAD`) and the bytes before it.
pub struct Answer {
    pub status: String,
    /// The tagged line after the tag.
    pub text: String,
    pub data: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status == "OK"
    }
}

impl Client {
    /// Connect and read the greeting.
    pub fn connect(addr: &str) -> std::io::Result<Self> {
        Self::greeted(Stream::Plain(Self::tcp(addr)?))
    }

    /// Connect with implicit TLS (imaps), checking the server's certificate for
    /// `server_name` against `config`'s roots, and read the greeting.
    pub fn connect_tls(
        addr: &str,
        server_name: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        Self::greeted(Stream::Tls(handshake(server_name, config, Self::tcp(addr)?)?))
    }

    /// Upgrade a plain connection with STARTTLS, checking the certificate as
    /// [`Client::connect_tls`] does. Refused when the server sent anything after its OK
    /// (bytes written before the handshake must not be read as protected).
    pub fn start_tls(
        mut self,
        server_name: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        let answer = self.command("STARTTLS")?;
        if !answer.ok() {
            return Err(std::io::Error::other(format!("STARTTLS refused: {}", answer.text)));
        }
        if !self.r.buffer().is_empty() {
            return Err(std::io::Error::other("the server sent data after its STARTTLS answer"));
        }
        let Stream::Plain(tcp) = self.r.into_inner() else {
            return Err(std::io::Error::other("TLS is already active"));
        };
        let stream = Stream::Tls(handshake(server_name, config, tcp)?);
        Ok(Self { r: BufReader::new(stream), tag: self.tag })
    }

    fn tcp(addr: &str) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(s)
    }

    fn greeted(stream: Stream) -> std::io::Result<Self> {
        let mut c = Self { r: BufReader::new(stream), tag: 0 };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting)?;
        if !greeting.starts_with("* OK") {
            return Err(std::io::Error::other(format!("greeting: {greeting}")));
        }
        Ok(c)
    }

    /// Write `bytes` and push them out (TLS buffers what it is given).
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stream = self.r.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    fn read_response(&mut self, tag: &str) -> std::io::Result<Answer> {
        let mut data = Vec::new();
        loop {
            let mut line = Vec::new();
            if (&mut self.r).take(LINE_MAX).read_until(b'\n', &mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if !line.ends_with(b"\n") {
                let why = if line.len() as u64 >= LINE_MAX { "a response line too long" } else { "a cut-off line" };
                return Err(std::io::Error::other(why));
            }
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                let rest = String::from_utf8_lossy(&line[tag.len() + 1..]).into_owned();
                let status = rest.split_whitespace().next().unwrap_or("").to_string();
                return Ok(Answer { status, text: rest.trim_end().to_string(), data });
            }
            // A line ending in {n} announces n bytes of literal data.
            let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
            if data.len() + line.len() > RESPONSE_MAX {
                return Err(std::io::Error::other("a response too large"));
            }
            data.extend_from_slice(&line);
            if let Some(open) = trimmed.strip_suffix(b"}").and_then(|t| t.iter().rposition(|b| *b == b'{')) {
                let n: usize = std::str::from_utf8(&trimmed[open + 1..trimmed.len() - 1])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .filter(|n| *n <= LITERAL_MAX)
                    .ok_or_else(|| std::io::Error::other("bad literal"))?;
                if data.len() + n > RESPONSE_MAX {
                    return Err(std::io::Error::other("a response too large"));
                }
                let start = data.len();
                data.resize(start + n, 0);
                self.r.read_exact(&mut data[start..])?;
            }
        }
    }

    /// Run one command line (without tag and CRLF).
    pub fn command(&mut self, cmd: &str) -> std::io::Result<Answer> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.send(format!("{tag} {cmd}\r\n").as_bytes())?;
        self.read_response(&tag)
    }

    /// APPEND `message` to `mailbox` with a synchronizing literal.
    pub fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> std::io::Result<Answer> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.send(format!("{tag} APPEND {mailbox} ({flags}) {{{}}}\r\n", message.len()).as_bytes())?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        if !line.starts_with('+') {
            let status = line.split_whitespace().nth(1).unwrap_or("BAD").to_string();
            return Ok(Answer { status, text: line.trim_end().to_string(), data: vec![] });
        }
        self.send(message)?;
        self.send(b"\r\n")?;
        self.read_response(&tag)
    }

    /// Start IDLE; returns once the server sent its continuation.
    pub fn idle(&mut self) -> std::io::Result<()> {
        self.tag += 1;
        self.send(format!("t{} IDLE\r\n", self.tag).as_bytes())?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        if line.starts_with('+') {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("IDLE refused: {line}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that greets, then answers the first command with `answer`.
    fn server(answer: Vec<u8>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"* OK ready\r\n").unwrap();
            let mut line = Vec::new();
            BufReader::new(s.try_clone().unwrap()).read_until(b'\n', &mut line).unwrap();
            let _ = s.write_all(&answer);
        });
        addr
    }

    #[test]
    fn untagged_data_with_literals_comes_back_whole() {
        let addr = server(b"* 1 FETCH (UID 7 BODY[] {5}\r\nhello)\r\nt1 OK done\r\n".to_vec());
        let answer = Client::connect(&addr).unwrap().command("UID FETCH 7 BODY[]").unwrap();
        assert!(answer.ok());
        assert_eq!(answer.data, b"* 1 FETCH (UID 7 BODY[] {5}\r\nhello)\r\n");
    }

    #[test]
    fn a_line_without_end_is_refused_not_buffered() {
        let mut endless = b"* SEARCH".to_vec();
        endless.resize(LINE_MAX as usize + 1024, b'7');
        let addr = server(endless);
        let err = Client::connect(&addr).unwrap().command("SEARCH ALL").err().expect("refused");
        assert!(err.to_string().contains("too long"), "{err}");
    }

    #[test]
    fn an_oversized_literal_is_refused() {
        let addr = server(format!("* 1 FETCH (BODY[] {{{}}}\r\n", LITERAL_MAX + 1).into_bytes());
        let err = Client::connect(&addr).unwrap().command("FETCH 1 BODY[]").err().expect("refused");
        assert!(err.to_string().contains("bad literal"), "{err}");
    }
}
