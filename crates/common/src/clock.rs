//! The wall clock as the rest of the system reads it: whole seconds since the Unix epoch.
//! What goes into a Raft entry (a save date, a queue time) is read here once, by the
//! proposer, so replicas never consult their own clocks. Never panics: a clock before the
//! epoch reads as 0.

/// Seconds since the Unix epoch (0 if the clock is set before it).
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_this_code_was_written() {
        assert!(super::now_s() > 1_790_000_000);
    }
}
