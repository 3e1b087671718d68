//! Raw DEFLATE streams (RFC 1951) for IMAP `COMPRESS=DEFLATE` (RFC 4978).
//!
//! [`Inflate`] reads what a client sends, decompressed, from the connection's buffered reader;
//! it refuses to expand input without bound: once more than [`Expansion::allowance_bytes`]
//! came out, output may be at most [`Expansion::ratio_max`] times the input, and a stream
//! that expands further (a deflate bomb) fails with [`Bomb`]. [`Deflate`] compresses each
//! write with a sync flush, so every response the server writes and flushes reaches the
//! client whole. Memory per stream is the codec's state plus one chunk of output: nothing
//! here grows with what the peer sends. This module owns no socket and never decides what a
//! protocol answers; the caller turns [`Bomb`] and corrupt input into its own `BYE`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

/// Largest piece of one write compressed at a time: bounds the output buffer.
const WRITE_CHUNK_BYTES: usize = 64 * 1024;

/// How far decompression may expand a stream.
#[derive(Debug, Clone, Copy)]
pub struct Expansion {
    /// Output allowed before the ratio is checked (small, highly compressible commands).
    pub allowance_bytes: u64,
    /// Output bytes per input byte beyond the allowance.
    pub ratio_max: u64,
}

impl Default for Expansion {
    /// Text, mail and base64 compress 2–10×; DEFLATE's ceiling is about 1,032×. 256× past
    /// 4 MiB lets any real mail through and stops a bomb after a few MiB of output.
    fn default() -> Self {
        Self { allowance_bytes: 4 << 20, ratio_max: 256 }
    }
}

/// The error inside the `io::Error` (kind `InvalidData`) of a stream that expanded beyond
/// its [`Expansion`].
#[derive(Debug, thiserror::Error)]
#[error("compressed input expands {out_bytes} bytes from {in_bytes}: more than {ratio_max}x")]
pub struct Bomb {
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub ratio_max: u64,
}

/// Whether an I/O error is an [`Inflate`]'s [`Bomb`].
pub fn is_bomb(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Bomb>())
}

/// Decompresses a raw DEFLATE stream read from `R`.
pub struct Inflate<R> {
    inner: R,
    z: Decompress,
    limit: Expansion,
    ended: bool,
}

impl<R> Inflate<R> {
    pub fn new(inner: R, limit: Expansion) -> Self {
        Self { inner, z: Decompress::new(false), limit, ended: false }
    }

    fn check(&self) -> io::Result<()> {
        let (in_bytes, out_bytes) = (self.z.total_in(), self.z.total_out());
        let over = out_bytes > self.limit.allowance_bytes && out_bytes > in_bytes.saturating_mul(self.limit.ratio_max);
        if over {
            let bomb = Bomb { in_bytes, out_bytes, ratio_max: self.limit.ratio_max };
            return Err(io::Error::new(io::ErrorKind::InvalidData, bomb));
        }
        Ok(())
    }
}

impl<R: AsyncBufRead + Unpin> AsyncRead for Inflate<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ended || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let input = ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?;
            let at_eof = input.is_empty();
            let (in_before, out_before) = (this.z.total_in(), this.z.total_out());
            let flush = if at_eof { FlushDecompress::Finish } else { FlushDecompress::None };
            let status = this
                .z
                .decompress(input, buf.initialize_unfilled(), flush)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let consumed = (this.z.total_in() - in_before) as usize;
            let produced = (this.z.total_out() - out_before) as usize;
            Pin::new(&mut this.inner).consume(consumed);
            buf.advance(produced);
            this.check()?;
            if status == Status::StreamEnd || at_eof {
                // The peer ended the stream (or the connection): end of input.
                this.ended = true;
                return Poll::Ready(Ok(()));
            }
            if produced > 0 {
                return Poll::Ready(Ok(()));
            }
            if consumed == 0 {
                // Input and room for output, yet no progress: the stream is not DEFLATE.
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "deflate stream stalled")));
            }
        }
    }
}

/// Compresses everything written into a raw DEFLATE stream to `W`, each write sync-flushed.
pub struct Deflate<W> {
    inner: W,
    z: Compress,
    /// Compressed bytes not yet handed to `inner`, and how many of them were.
    pending: Vec<u8>,
    sent: usize,
}

impl<W> Deflate<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, z: Compress::new(Compression::default(), false), pending: Vec::new(), sent: 0 }
    }

    /// Compress `input` whole into `pending`, ending at a byte boundary (sync flush).
    fn compress(&mut self, input: &[u8]) -> io::Result<()> {
        debug_assert!(self.sent == self.pending.len(), "compress only after the last output was sent");
        self.pending.clear();
        self.sent = 0;
        let start = self.z.total_in();
        loop {
            self.pending.reserve(input.len() / 2 + 64);
            let done = (self.z.total_in() - start) as usize;
            self.z
                .compress_vec(&input[done..], &mut self.pending, FlushCompress::Sync)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            // With room left after a sync flush, all input is in and the flush is complete.
            if (self.z.total_in() - start) as usize == input.len() && self.pending.len() < self.pending.capacity() {
                return Ok(());
            }
        }
    }
}

impl<W: AsyncWrite + Unpin> Deflate<W> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Deflate<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let take = buf.len().min(WRITE_CHUNK_BYTES);
        this.compress(&buf[..take])?;
        // Start sending now; what the socket does not take yet goes at the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test]
    async fn what_one_side_deflates_the_other_inflates_write_by_write() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut wr = Deflate::new(client);
        let mut rd = BufReader::new(Inflate::new(BufReader::new(server), Expansion::default()));
        for k in 0..50 {
            let line = format!("a{k} FETCH 1:* (FLAGS BODY.PEEK[HEADER])\r\n");
            wr.write_all(line.as_bytes()).await.unwrap();
            wr.flush().await.unwrap();
            // Each flushed write arrives whole, before the writer says anything more.
            let mut got = vec![0; line.len()];
            rd.read_exact(&mut got).await.unwrap();
            assert_eq!(got, line.as_bytes());
        }
    }

    #[tokio::test]
    async fn a_write_larger_than_a_chunk_arrives_whole() {
        let data: Vec<u8> = (0..600_000u32).map(|k| (k * 7 % 251) as u8).collect();
        let (client, server) = tokio::io::duplex(1 << 12);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let mut wr = Deflate::new(client);
            wr.write_all(&sent).await.unwrap();
            wr.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        Inflate::new(BufReader::new(server), Expansion::default()).read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn a_deflate_bomb_fails_with_bomb_after_a_bounded_output() {
        // 64 MiB of one byte compresses to about 64 KiB (1,000x).
        let bomb = deflated(&vec![b'a'; 64 << 20]);
        let limit = Expansion { allowance_bytes: 1 << 20, ratio_max: 100 };
        let mut rd = Inflate::new(BufReader::new(bomb.as_slice()), limit);
        let mut sink = vec![0u8; 8192];
        let mut total = 0u64;
        let err = loop {
            match rd.read(&mut sink).await {
                Ok(0) => panic!("the bomb was inflated whole ({total} bytes)"),
                Ok(n) => total += n as u64,
                Err(e) => break e,
            }
        };
        assert!(is_bomb(&err), "{err}");
        assert!(total < 2 << 20, "stopped soon after the allowance, not at {total} bytes");
    }

    #[tokio::test]
    async fn garbage_is_invalid_data_not_a_hang() {
        let junk = [0xffu8; 64];
        let mut rd = Inflate::new(BufReader::new(junk.as_slice()), Expansion::default());
        let mut out = Vec::new();
        let err = rd.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!is_bomb(&err));
    }
}
