//! Internal RPC frames: `u32 length | u32 crc32c(payload) | payload`, little endian.
//!
//! The length is checked against a caller-given limit before any buffer is allocated, and
//! the checksum before the payload is handed on: a corrupted or hostile frame is an error,
//! never a large allocation or a garbled message. This module does not interpret payloads.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 8;

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: u32 },
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Encode `payload` as one frame appended to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len =
        u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge { len: payload.len() as u64, max: u32::MAX })?;
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Write one frame and flush.
pub async fn write<W: AsyncWriteExt + Unpin>(w: &mut W, payload: &[u8]) -> Result<(), FrameError> {
    let mut buf = Vec::new();
    encode(payload, &mut buf)?;
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Read one frame of at most `max_len` payload bytes.
///
/// `Err(FrameError::Closed)` when the peer closed the connection between frames.
pub async fn read<R: AsyncReadExt + Unpin>(r: &mut R, max_len: u32) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    if len > max_len {
        return Err(FrameError::TooLarge { len: u64::from(len), max: max_len });
    }
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let payload = read_exactly(r, len as usize).await?;
    if crc32c::crc32c(&payload) != crc {
        return Err(FrameError::Checksum);
    }
    Ok(payload)
}

/// Bytes of a frame allocated before any of them arrive; larger frames grow as the bytes
/// come, so a peer announcing a large frame and sending nothing holds little memory.
const EAGER_BYTES_MAX: usize = 1 << 20;

/// Read exactly `n` bytes (a frame's body, whose length was already checked against its
/// limit).
pub async fn read_exactly<R: AsyncReadExt + Unpin>(r: &mut R, n: usize) -> Result<Vec<u8>, FrameError> {
    if n <= EAGER_BYTES_MAX {
        let mut buf = vec![0u8; n];
        r.read_exact(&mut buf).await?;
        return Ok(buf);
    }
    let mut buf = Vec::with_capacity(EAGER_BYTES_MAX);
    (&mut *r).take(n as u64).read_to_end(&mut buf).await?;
    if buf.len() != n {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roundtrip_and_rejections() {
        let mut buf = Vec::new();
        encode(b"hello", &mut buf).unwrap();
        encode(b"", &mut buf).unwrap();
        let mut r = &buf[..];
        assert_eq!(read(&mut r, 100).await.unwrap(), b"hello");
        assert_eq!(read(&mut r, 100).await.unwrap(), b"");
        assert!(matches!(read(&mut r, 100).await, Err(FrameError::Closed)));
        // A large frame cut short is an error, not a short payload.
        let mut big = Vec::new();
        encode(&vec![7u8; 3 << 20], &mut big).unwrap();
        let mut whole = &big[..];
        assert_eq!(read(&mut whole, 4 << 20).await.unwrap().len(), 3 << 20);
        let mut cut = &big[..big.len() - 1];
        assert!(matches!(read(&mut cut, 4 << 20).await, Err(FrameError::Io(_))));

        let mut r = &buf[..];
        assert!(matches!(read(&mut r, 4).await, Err(FrameError::TooLarge { len: 5, max: 4 })));

        let mut bad = buf.clone();
        bad[9] ^= 1;
        let mut r = &bad[..];
        assert!(matches!(read(&mut r, 100).await, Err(FrameError::Checksum)));

        // A truncated payload is an I/O error, not a short message.
        let mut r = &buf[..10];
        assert!(matches!(read(&mut r, 100).await, Err(FrameError::Io(_))));
    }
}
