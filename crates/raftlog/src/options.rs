//! Tunables of a log, with limits checked at open.

/// How a log is laid out and driven.
#[derive(Debug, Clone)]
pub struct Options {
    /// Size of each preallocated segment file made from now on. A log made with another
    /// size keeps its segments at that size until they are freed (see `slots`).
    pub segment_bytes: u64,
    /// Largest payload one entry may carry.
    pub max_payload_bytes: u32,
    /// Submission queue depth of the writer's ring.
    pub ring_entries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self { segment_bytes: 64 << 20, max_payload_bytes: 16 << 20, ring_entries: 256 }
    }
}

impl Options {
    /// Check the options are consistent: every payload must fit an empty segment.
    pub fn validate(&self) -> Result<(), String> {
        let need = crate::segment::SEGMENT_HEADER_LEN as u64
            + crate::record::frame_len(self.max_payload_bytes as usize) as u64;
        if self.segment_bytes < need {
            return Err(format!(
                "segment_bytes {} cannot hold a {}-byte payload",
                self.segment_bytes, self.max_payload_bytes
            ));
        }
        if self.segment_bytes > u64::from(u32::MAX) {
            return Err("segment_bytes must fit in 32 bits".into());
        }
        if !(8..=4096).contains(&self.ring_entries) {
            return Err("ring_entries must be within 8..=4096".into());
        }
        Ok(())
    }
}
