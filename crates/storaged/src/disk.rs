//! Whether this node's data directory has room (`[limits] disk_reserve_bytes`): a task
//! reads `statvfs(3)` every [`POLL`] and marks the disk low when the space free for the
//! daemon falls below the reserve, and has room again only above the reserve and a
//! quarter (no flapping at the edge). What this must never do: refuse a write itself; the
//! groups decide (`group::room`) from this node's state and their peers'.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the free space is read.
pub const POLL: Duration = Duration::from_millis(250);

/// This node's disk as last read.
#[derive(Debug, Default)]
pub struct DiskWatch {
    low: AtomicBool,
    free_bytes: AtomicU64,
}

impl DiskWatch {
    /// Whether the free space is below the reserve (writes that grow the store are refused).
    pub fn low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    pub fn free_bytes(&self) -> u64 {
        self.free_bytes.load(Ordering::Relaxed)
    }

    /// Take a reading of `free` bytes against `reserve`; whether the state changed.
    pub fn observe(&self, free: u64, reserve: u64) -> bool {
        self.free_bytes.store(free, Ordering::Relaxed);
        let was = self.low();
        let low = if was { free < reserve.saturating_add(reserve / 4) } else { free < reserve };
        self.low.store(low, Ordering::Relaxed);
        low != was
    }
}

/// Watch `dir` forever, with `reserve` bytes kept free.
pub async fn watch(disk: Arc<DiskWatch>, dir: PathBuf, reserve: u64) {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let Some((free, _)) = common::metrics::system::disk_space_bytes(&dir) else { continue };
        if disk.observe(free, reserve) {
            if disk.low() {
                tracing::error!(dir = %dir.display(), free, reserve, "disk below its reserve: refusing new mail until space returns");
            } else {
                tracing::warn!(dir = %dir.display(), free, "disk has room again: accepting new mail");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_below_the_reserve_and_room_again_only_well_above_it() {
        let d = DiskWatch::default();
        assert!(!d.observe(1000, 100) && !d.low());
        assert!(d.observe(99, 100) && d.low(), "below the reserve");
        assert!(!d.observe(110, 100) && d.low(), "just above: still low");
        assert!(d.observe(125, 100) && !d.low(), "a quarter above: room");
        assert_eq!(d.free_bytes(), 125);
    }
}
