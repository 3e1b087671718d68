//! Moving a proxied session's bytes both ways until either side closes. Between two plain
//! TCP sockets the kernel moves them (splice(2) through a pipe, no copy into user space);
//! when the client side is TLS the bytes must be decrypted here, so they are copied.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Bytes moved per splice call (the default pipe capacity).
const CHUNK_BYTES: usize = 64 * 1024;

/// Copy both ways between any client stream and the backend (used for TLS clients; the
/// client's `common::tls::Stream` acknowledges each read at once itself).
pub async fn copy<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    backend: &mut TcpStream,
) -> io::Result<(u64, u64)> {
    tokio::io::copy_bidirectional(client, backend).await
}

/// How long the other direction may go on after one has ended (a peer that never closes
/// its side must not hold the session forever).
const HALF_CLOSED_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Splice both ways between two plain TCP sockets; returns bytes (up, down).
pub async fn splice(client: TcpStream, backend: TcpStream) -> io::Result<(u64, u64)> {
    let up = one_way(&client, &backend);
    let down = one_way(&backend, &client);
    tokio::pin!(up, down);
    tokio::select! {
        u = &mut up => {
            let d = tokio::time::timeout(HALF_CLOSED_MAX, down).await.unwrap_or(Ok(0));
            Ok((u?, d?))
        }
        d = &mut down => {
            let u = tokio::time::timeout(HALF_CLOSED_MAX, up).await.unwrap_or(Ok(0));
            Ok((u?, d?))
        }
    }
}

/// A pipe whose both ends are non-blocking.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Empty pipes kept for the next transfer, across all sessions.
const SPARE_PIPES_MAX: usize = 64;
static SPARE_PIPES: std::sync::Mutex<Vec<(OwnedFd, OwnedFd)>> = std::sync::Mutex::new(Vec::new());

/// A pipe lent to one transfer. Sessions take one only while bytes move (most proxied
/// sessions sit idle for hours: a pipe each would be four descriptors and a pipe's kernel
/// buffers per session, and the descriptors alone would cap a front at a third of the
/// sessions its limit allows). Given back by [`PipeLease::release_empty`] only once drained;
/// dropped otherwise (an error mid-transfer), so no session ever reads another's bytes.
struct PipeLease(Option<(OwnedFd, OwnedFd)>);

impl PipeLease {
    fn take() -> io::Result<Self> {
        let spare = SPARE_PIPES.lock().expect("spare pipes lock").pop();
        Ok(Self(Some(match spare {
            Some(p) => p,
            None => pipe()?,
        })))
    }

    fn read_end(&self) -> RawFd {
        self.0.as_ref().expect("leased").0.as_raw_fd()
    }

    fn write_end(&self) -> RawFd {
        self.0.as_ref().expect("leased").1.as_raw_fd()
    }

    /// Give the pipe back; the caller has moved every byte it put in out again.
    fn release_empty(mut self) {
        let pipe = self.0.take().expect("leased");
        let mut spares = SPARE_PIPES.lock().expect("spare pipes lock");
        if spares.len() < SPARE_PIPES_MAX {
            spares.push(pipe);
        }
    }
}

/// One splice(2) call without blocking.
fn splice_once(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed from
    // live sockets and an owned pipe); null offsets are required for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Move bytes from `from` to `to` until `from` ends; then end `to`'s sending side.
async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let pipe = PipeLease::take()?;
        let got = match from.try_io(Interest::READABLE, || splice_once(from.as_raw_fd(), pipe.write_end(), CHUNK_BYTES))
        {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                pipe.release_empty();
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        };
        common::tcp::quick_ack(from.as_raw_fd());
        // Drain the pipe completely before reading again, so it never fills.
        let mut left = got;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice_once(pipe.read_end(), to.as_raw_fd(), left)) {
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        pipe.release_empty();
        total += got as u64;
    }
    // SAFETY: shutting down the write side of a socket we borrow; it stays open.
    unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
    Ok(total)
}

/// Write bytes read ahead (pipelined commands) before the splice takes over.
pub async fn forward_pending(to: &mut TcpStream, pending: &[u8]) -> io::Result<()> {
    if !pending.is_empty() {
        to.write_all(pending).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn splice_moves_every_byte_both_ways_and_passes_the_end_on() {
        let (mut client, client_side) = pair().await;
        let (backend_side, mut backend) = pair().await;
        let proxy = tokio::spawn(splice(client_side, backend_side));
        let up: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let expected = up.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&up).await.unwrap();
            client.shutdown().await.unwrap();
            let mut down = Vec::new();
            client.read_to_end(&mut down).await.unwrap();
            down
        });
        let mut got = Vec::new();
        backend.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, expected);
        backend.write_all(b"* BYE done\r\n").await.unwrap();
        backend.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"* BYE done\r\n");
        assert_eq!(proxy.await.unwrap().unwrap(), (3_000_000, 12));
    }

    /// A client that holds a command's last bytes until the first are acknowledged
    /// (imaplib's APPEND, see `common::tcp::quick_ack`) is not left to the delayed-ACK
    /// timer by the splice.
    #[tokio::test]
    async fn what_the_splice_reads_is_acknowledged_at_once() {
        let (mut client, client_side) = pair().await;
        let (backend_side, mut backend) = pair().await;
        let _proxy = tokio::spawn(splice(client_side, backend_side));
        let mut buf = vec![0u8; 8192];
        for k in 0..20 {
            let line = format!("a{k} NOOP\r\n");
            client.write_all(line.as_bytes()).await.unwrap();
            backend.read_exact(&mut buf[..line.len()]).await.unwrap();
            backend.write_all(&buf[..line.len()]).await.unwrap();
            client.read_exact(&mut buf[..line.len()]).await.unwrap();
        }
        client.write_all(&[b'x'; 3000]).await.unwrap();
        backend.read_exact(&mut buf[..3000]).await.unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&client);
        assert!(common::testing::acknowledged_soon(fd), "the literal was left for the delayed-ACK timer");
    }

    fn open_pipe_ends() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("pipe:")))
            .count()
    }

    /// Idle sessions hold no pipe: after 200 sessions each moved bytes both ways, the pipes
    /// open are the shared spares (not four descriptors a session), and every session still
    /// gets its own bytes.
    #[tokio::test]
    async fn idle_sessions_hold_no_pipes_and_never_see_each_others_bytes() {
        let before = open_pipe_ends();
        let mut ends = Vec::new();
        for k in 0..200u32 {
            let (mut client, client_side) = pair().await;
            let (backend_side, mut backend) = pair().await;
            tokio::spawn(splice(client_side, backend_side));
            let (up, down) = (format!("a{k} NOOP\r\n"), format!("a{k} OK done\r\n"));
            client.write_all(up.as_bytes()).await.unwrap();
            let mut got = vec![0u8; up.len()];
            backend.read_exact(&mut got).await.unwrap();
            assert_eq!(got, up.as_bytes());
            backend.write_all(down.as_bytes()).await.unwrap();
            let mut got = vec![0u8; down.len()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, down.as_bytes());
            ends.push((client, backend));
        }
        let held = open_pipe_ends().saturating_sub(before);
        assert!(held <= 2 * SPARE_PIPES_MAX, "{held} pipe ends open for 200 idle sessions");
    }
}
