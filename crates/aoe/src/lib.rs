//! `aoe`: ATA over Ethernet (protocol revision 11). Now: the codec (`codec`), pure and
//! fuzzed. The target and the initiator (issue 3) are not written yet; nothing here does
//! I/O.

pub mod codec;
