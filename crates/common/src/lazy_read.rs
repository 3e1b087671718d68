//! A buffered reader that holds its buffer only while bytes move: a session that waits for
//! its client (an IMAP IDLE all day, a proxied login prompt) holds no read buffer at all.
//!
//! tokio's `BufReader` keeps its buffer for the reader's life, and a pending read holds it
//! while it waits: with ten thousand idle sessions that is ten thousand buffers of
//! nothing. Here a read that finds nothing buffered and no buffer reads into the polling
//! thread's stack and keeps on the heap only a buffer for what arrived (and what follows it
//! while the stream keeps delivering); a read that has to wait gives an empty buffer back.
//! A read at least as large as the buffer with nothing buffered goes straight to the
//! stream, as with `BufReader` (a literal bypasses it).
//!
//! It must never hold bytes it has not handed out in a buffer it frees (bytes are lost only
//! with the reader), nor read more than the buffer's capacity at a time.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// The largest buffer a reader may have: the stack array a read without a buffer uses.
pub const BUFFER_BYTES_MAX: usize = 8 * 1024;

/// A buffered reader over `R` whose buffer exists only while it holds unread bytes or the
/// stream keeps delivering.
#[derive(Debug)]
pub struct LazyBufReader<R> {
    inner: R,
    /// `buf[pos..filled]` are read and not yet consumed; `None` while waiting for the stream.
    buf: Option<Box<[u8]>>,
    pos: usize,
    filled: usize,
    capacity: usize,
}

impl<R> LazyBufReader<R> {
    /// A reader with a buffer of `capacity` bytes when it has one (at most
    /// [`BUFFER_BYTES_MAX`]).
    pub fn with_capacity(capacity: usize, inner: R) -> Self {
        assert!(capacity > 0 && capacity <= BUFFER_BYTES_MAX, "read buffer of {capacity} bytes");
        Self { inner, buf: None, pos: 0, filled: 0, capacity }
    }

    /// The bytes read ahead and not yet consumed.
    pub fn buffer(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b[self.pos..self.filled],
            None => &[],
        }
    }

    /// Whether a buffer is allocated now (for tests and accounting).
    pub fn holds_buffer(&self) -> bool {
        self.buf.is_some()
    }

    /// The stream; bytes still buffered are lost (take them with [`Self::buffer`] first).
    pub fn into_inner(self) -> R {
        self.inner
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: AsyncRead + Unpin> LazyBufReader<R> {
    /// Read from the stream into the buffer, which is empty; `Ok(0)` at end of stream.
    fn poll_refill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        debug_assert!(self.pos >= self.filled);
        (self.pos, self.filled) = (0, 0);
        if let Some(buf) = self.buf.as_deref_mut() {
            let mut read = ReadBuf::new(buf);
            return match Pin::new(&mut self.inner).poll_read(cx, &mut read) {
                Poll::Pending => {
                    // Waiting for the client: no buffer while it thinks.
                    self.buf = None;
                    Poll::Pending
                }
                Poll::Ready(r) => {
                    r?;
                    self.filled = read.filled().len();
                    Poll::Ready(Ok(self.filled))
                }
            };
        }
        let mut stack = [const { MaybeUninit::<u8>::uninit() }; BUFFER_BYTES_MAX];
        let mut read = ReadBuf::uninit(&mut stack[..self.capacity]);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut read))?;
        let got = read.filled();
        if !got.is_empty() {
            let mut buf = vec![0u8; self.capacity].into_boxed_slice();
            buf[..got.len()].copy_from_slice(got);
            self.buf = Some(buf);
            self.filled = got.len();
        }
        Poll::Ready(Ok(got.len()))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LazyBufReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos >= this.filled && out.remaining() >= this.capacity {
            // Nothing buffered and a large read: no reason to copy through a buffer.
            this.buf = None;
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let unread = ready!(Pin::new(&mut *this).poll_fill_buf(cx))?;
        let n = unread.len().min(out.remaining());
        out.put_slice(&unread[..n]);
        Pin::new(this).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for LazyBufReader<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.pos >= this.filled {
            ready!(this.poll_refill(cx))?;
        }
        Poll::Ready(Ok(this.buffer()))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        assert!(amt <= this.filled - this.pos, "consumed {amt} bytes of {}", this.filled - this.pos);
        this.pos += amt;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_reader_waiting_for_its_client_holds_no_buffer() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut client, mut rd) = (client, LazyBufReader::with_capacity(1024, server));
        assert!(!rd.holds_buffer(), "none before the first read");

        client.write_all(b"a1 NOOP\r\na2 IDLE\r\n").await.unwrap();
        let mut line = String::new();
        rd.read_line(&mut line).await.unwrap();
        assert_eq!(line, "a1 NOOP\r\n");
        assert!(rd.holds_buffer(), "the pipelined command is still buffered");
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        assert_eq!(line, "a2 IDLE\r\n");

        // IDLE: the next read waits for the client, and gives the buffer back meanwhile.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), rd.fill_buf()).await;
        assert!(waiting.is_err(), "nothing to read yet");
        assert!(!rd.holds_buffer(), "a waiting read holds no buffer");

        client.write_all(b"DONE\r\n").await.unwrap();
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        assert_eq!(line, "DONE\r\n");
        drop(client);
        line.clear();
        assert_eq!(rd.read_line(&mut line).await.unwrap(), 0, "end of stream");
    }

    #[tokio::test]
    async fn every_byte_arrives_once_in_order_whatever_the_read_sizes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut client, server) = tokio::io::duplex(4096);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(3001) {
                client.write_all(piece).await.unwrap();
            }
        });
        let mut rd = LazyBufReader::with_capacity(1024, server);
        let mut got = Vec::new();
        // Small reads (through the buffer), large ones (straight through), lines.
        let mut k = 0usize;
        loop {
            let before = got.len();
            match k % 3 {
                0 => {
                    let mut small = [0u8; 100];
                    let n = rd.read(&mut small).await.unwrap();
                    got.extend_from_slice(&small[..n]);
                }
                1 => {
                    let mut large = vec![0u8; 5000];
                    let n = rd.read(&mut large).await.unwrap();
                    got.extend_from_slice(&large[..n]);
                }
                _ => {
                    rd.read_until(250, &mut got).await.unwrap();
                }
            }
            if got.len() == before {
                break;
            }
            k += 1;
        }
        writer.await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes reordered, lost or repeated");
    }

    #[test]
    #[should_panic(expected = "read buffer of 16384 bytes")]
    fn a_buffer_larger_than_the_stack_read_is_refused() {
        let _ = LazyBufReader::with_capacity(16 * 1024, tokio::io::empty());
    }
}
