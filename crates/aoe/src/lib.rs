//! `aoe`: ATA over Ethernet (protocol revision 11): the codec (`codec`, pure and fuzzed),
//! IDENTIFY DEVICE data (`identify`), raw Ethernet sockets (`packet`) and the initiator
//! (`initiator`: discovery, ATA with retransmission), and the target's request handling
//! (`target::handler`, pure); the target's io_uring server is not written yet.

pub mod codec;
pub mod identify;
pub mod initiator;
pub mod packet;
pub mod target;
