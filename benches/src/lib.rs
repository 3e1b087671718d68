//! Benchmark harnesses. Each benchmark runs our component and its peer (a real server or a
//! physical baseline) side by side in one invocation and reports ours/peer ratios, because
//! absolute figures on shared machines are noise.

pub mod closed_loop;
pub mod front;
pub mod lmtp_load;
pub mod paired;
pub mod peers;
pub mod procs;
pub mod raw_log;
pub mod scanners;
pub mod scratch_fs;
pub mod sieve_rules;
pub mod sinks;
pub mod stages;
pub mod stats;
