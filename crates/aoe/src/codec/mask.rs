//! The Mac Mask List body: a read or edit of the list of initiator MACs allowed to use a
//! target (an empty list allows everyone), with add/delete directives and the MError a
//! target reports.

use super::header::MacAddr;
use super::{need, ParseError};

pub const MASK_HEADER_LEN: usize = 4;
pub const DIRECTIVE_LEN: usize = 8;

/// MCmd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskSub {
    Read,
    Edit,
    Other(u8),
}

/// MError.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskError {
    None,
    Unspecified,
    BadDirective,
    ListFull,
    Other(u8),
}

/// DCmd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveCmd {
    NoDirective,
    Add,
    Delete,
    Other(u8),
}

/// One directive: what to do with which MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Directive {
    pub cmd: DirectiveCmd,
    pub mac: MacAddr,
}

/// A Mac Mask List request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskCmd {
    pub sub: MaskSub,
    pub error: MaskError,
    pub directives: Vec<Directive>,
}

impl MaskCmd {
    pub fn parse(b: &[u8]) -> Result<Self, ParseError> {
        need("Mac Mask header", b, MASK_HEADER_LEN)?;
        let count = usize::from(b[3]);
        need("Mac Mask directives", b, MASK_HEADER_LEN + count * DIRECTIVE_LEN)?;
        let sub = match b[1] {
            0 => MaskSub::Read,
            1 => MaskSub::Edit,
            other => MaskSub::Other(other),
        };
        let error = match b[2] {
            0 => MaskError::None,
            1 => MaskError::Unspecified,
            2 => MaskError::BadDirective,
            3 => MaskError::ListFull,
            other => MaskError::Other(other),
        };
        let directives = b[MASK_HEADER_LEN..MASK_HEADER_LEN + count * DIRECTIVE_LEN]
            .chunks_exact(DIRECTIVE_LEN)
            .map(|d| Directive {
                cmd: match d[1] {
                    0 => DirectiveCmd::NoDirective,
                    1 => DirectiveCmd::Add,
                    2 => DirectiveCmd::Delete,
                    other => DirectiveCmd::Other(other),
                },
                mac: MacAddr(d[2..8].try_into().expect("six bytes")),
            })
            .collect();
        Ok(Self { sub, error, directives })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        assert!(self.directives.len() <= 255, "a Mac Mask List holds at most 255 entries");
        out.push(0);
        out.push(match self.sub {
            MaskSub::Read => 0,
            MaskSub::Edit => 1,
            MaskSub::Other(c) => c,
        });
        out.push(match self.error {
            MaskError::None => 0,
            MaskError::Unspecified => 1,
            MaskError::BadDirective => 2,
            MaskError::ListFull => 3,
            MaskError::Other(c) => c,
        });
        out.push(self.directives.len() as u8);
        for d in &self.directives {
            out.push(0);
            out.push(match d.cmd {
                DirectiveCmd::NoDirective => 0,
                DirectiveCmd::Add => 1,
                DirectiveCmd::Delete => 2,
                DirectiveCmd::Other(c) => c,
            });
            out.extend_from_slice(&d.mac.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_past_the_frame_is_refused() {
        let mut b = vec![0, 1, 0, 2, 0, 1, 1, 2, 3, 4, 5, 6];
        assert!(matches!(MaskCmd::parse(&b), Err(ParseError::Truncated { .. })));
        b.extend_from_slice(&[0, 7, 9, 9, 9, 9, 9, 9]);
        let m = MaskCmd::parse(&b).unwrap();
        assert_eq!(m.directives.len(), 2);
        assert_eq!(m.directives[1].cmd, DirectiveCmd::Other(7), "kept for the target to answer BadDirective");
    }
}
