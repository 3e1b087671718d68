//! The Reserve/Release body: read the list of MACs a target is reserved for, set it (only
//! by a MAC already on a non-empty list), or force it; an empty list releases the target.

use super::header::MacAddr;
use super::{need, ParseError};

pub const RESERVE_HEADER_LEN: usize = 2;

/// RCmd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveSub {
    Read,
    Set,
    ForceSet,
    Other(u8),
}

/// A Reserve/Release request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveCmd {
    pub sub: ReserveSub,
    pub macs: Vec<MacAddr>,
}

impl ReserveCmd {
    pub fn parse(b: &[u8]) -> Result<Self, ParseError> {
        need("Reserve/Release header", b, RESERVE_HEADER_LEN)?;
        let count = usize::from(b[1]);
        need("Reserve/Release MACs", b, RESERVE_HEADER_LEN + count * 6)?;
        let sub = match b[0] {
            0 => ReserveSub::Read,
            1 => ReserveSub::Set,
            2 => ReserveSub::ForceSet,
            other => ReserveSub::Other(other),
        };
        let macs = b[RESERVE_HEADER_LEN..RESERVE_HEADER_LEN + count * 6]
            .chunks_exact(6)
            .map(|m| MacAddr(m.try_into().expect("six bytes")))
            .collect();
        Ok(Self { sub, macs })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        assert!(self.macs.len() <= 255, "a reservation holds at most 255 MACs");
        out.push(match self.sub {
            ReserveSub::Read => 0,
            ReserveSub::Set => 1,
            ReserveSub::ForceSet => 2,
            ReserveSub::Other(c) => c,
        });
        out.push(self.macs.len() as u8);
        for m in &self.macs {
            out.extend_from_slice(&m.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_bounded_by_the_frame() {
        assert!(ReserveCmd::parse(&[1, 1, 2, 3]).is_err());
        let r = ReserveCmd::parse(&[2, 1, 1, 2, 3, 4, 5, 6, 0xee]).unwrap();
        assert_eq!((r.sub, r.macs), (ReserveSub::ForceSet, vec![MacAddr([1, 2, 3, 4, 5, 6])]));
    }
}
