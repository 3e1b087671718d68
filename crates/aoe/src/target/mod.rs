//! The AoE target. Now: `handler`, the pure decision for each request (what to answer,
//! what to read, write or flush), with the protocol's rules on versions, addressing, Mac
//! Mask Lists, reservations, ranges and read-only exports; and `server`, the io_uring loop
//! that carries the decisions out on a raw Ethernet socket and the exported files
//! (`aligned` holds its page-aligned disk buffers, which `O_DIRECT` exports need).

pub mod aligned;
pub mod handler;
pub mod server;
