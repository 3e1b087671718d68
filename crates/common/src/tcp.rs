//! Socket options the protocol servers set on their TCP connections, and why.
//!
//! Must never fail a connection: an option the kernel refuses costs latency, not service.

use std::os::fd::RawFd;

/// Acknowledge what was just read at once instead of delaying the ACK (up to 40 ms on
/// Linux). A client with Nagle's algorithm on that sends a command in two writes — Python's
/// imaplib writes an APPEND literal, then its final CRLF — holds the second write until
/// the first is acknowledged; the server answers only after the second, so without this
/// every such command waits out the delayed-ACK timer. Linux clears the option on its own
/// (it is not sticky), so it is set after every read that returned data; it sends an ACK
/// only when one is pending.
pub fn quick_ack(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is a socket the caller holds open for the duration of the call, and the
    // option value is a live `c_int` whose size is passed with it.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::tls::Stream;

    /// imaplib's APPEND: after some request/response rounds (the connection is then in
    /// Linux's delayed-ACK mode) the client writes a literal and holds its final CRLF
    /// (Nagle) until the literal is acknowledged. The server's read acknowledges it at once,
    /// long before the 40 ms delayed-ACK timer, so the CRLF is never held.
    #[tokio::test]
    async fn a_read_through_the_stream_is_acknowledged_before_the_server_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut server = Stream::Plain(server);
        let mut buf = vec![0u8; 8192];
        for k in 0..20 {
            client.write_all(format!("a{k} NOOP\r\n").as_bytes()).await.unwrap();
            let n = server.read(&mut buf).await.unwrap();
            server.write_all(&buf[..n]).await.unwrap();
            client.read_exact(&mut buf[..n]).await.unwrap();
        }
        client.write_all(&[b'x'; 3000]).await.unwrap();
        let mut got = 0;
        while got < 3000 {
            got += server.read(&mut buf).await.unwrap();
        }
        assert!(
            crate::testing::acknowledged_soon(client.as_raw_fd()),
            "the literal was left for the delayed-ACK timer"
        );
    }
}
