//! Heap buffers whose first byte sits on a [`ALIGN_BYTES`] boundary, as `O_DIRECT` disk I/O
//! requires of user memory. Built on an over-allocated `Vec<u8>` so no `unsafe` is needed;
//! the buffer never reallocates, so pointers handed to the kernel stay valid while it lives.

/// Alignment of every buffer: a page, which covers any device's DMA alignment (512 on
/// virtio, 4096 on 4Kn disks).
pub const ALIGN_BYTES: usize = 4096;

/// A fixed-length, aligned byte buffer.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zero-filled buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        let raw = vec![0u8; len + ALIGN_BYTES];
        let start = raw.as_ptr().align_offset(ALIGN_BYTES);
        assert!(start + len <= raw.len(), "alignment offset within the slack");
        Self { raw, start, len }
    }

    /// An aligned copy of `data`.
    pub fn copy_of(data: &[u8]) -> Self {
        let mut b = Self::zeroed(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_keep_their_bytes() {
        for len in [0usize, 1, 512, 4096, 8704, 65536] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let b = AlignedBuf::copy_of(&data);
            assert_eq!(b.as_slice().as_ptr() as usize % ALIGN_BYTES, 0, "len {len}");
            assert_eq!(b.as_slice(), &data[..]);
            assert_eq!(b.len(), len);
        }
    }
}
