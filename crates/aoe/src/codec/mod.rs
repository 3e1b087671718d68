//! The AoE protocol, revision 11, as bytes: the common header (`header`), and the bodies of
//! the four commands: ATA (`ata`), Query Config (`config`), Mac Mask List (`mask`) and
//! Reserve/Release (`reserve`). Pure: no I/O. Parsing never panics and never allocates more
//! than the frame can describe (at most 255 list entries, a config string of at most 1024
//! bytes borrowed from the frame). Values a target must answer with an error (unknown
//! commands and sub-commands, other versions) parse into their raw numbers; only
//! structural damage (a frame too short for what it announces) is a [`ParseError`].

pub mod ata;
pub mod config;
pub mod header;
pub mod mask;
pub mod reserve;

pub use ata::AtaCmd;
pub use config::{ConfigCmd, ConfigSub};
pub use header::{ErrorCode, Header, MacAddr, ETHERTYPE_AOE, HEADER_LEN};
pub use mask::{Directive, DirectiveCmd, MaskCmd, MaskError, MaskSub};
pub use reserve::{ReserveCmd, ReserveSub};

/// AoE's command codes.
pub const CMD_ATA: u8 = 0;
pub const CMD_CONFIG: u8 = 1;
pub const CMD_MAC_MASK: u8 = 2;
pub const CMD_RESERVE: u8 = 3;

/// Bytes in an ATA sector.
pub const SECTOR_BYTES: usize = 512;

/// Why a frame could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("frame of {have} bytes is shorter than the {need} its {what} needs")]
    Truncated { what: &'static str, need: usize, have: usize },
    #[error("EtherType {0:#06x} is not AoE")]
    NotAoe(u16),
    #[error("config string length {0} is over 1024 or past the end of the frame")]
    ConfigLength(usize),
}

fn need(what: &'static str, bytes: &[u8], need: usize) -> Result<(), ParseError> {
    if bytes.len() < need {
        return Err(ParseError::Truncated { what, need, have: bytes.len() });
    }
    Ok(())
}

/// The body of a frame, by command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    Ata(AtaCmd<'a>),
    Config(ConfigCmd<'a>),
    Mask(MaskCmd),
    Reserve(ReserveCmd),
    /// A command this codec does not know (answered with [`ErrorCode::UnrecognizedCommand`]).
    Unknown(&'a [u8]),
}

/// A whole AoE frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: Header,
    pub body: Body<'a>,
}

impl<'a> Frame<'a> {
    /// Read a frame, Ethernet header included. Error responses (`E` flag) carry no body.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let header = Header::parse(bytes)?;
        let rest = &bytes[HEADER_LEN..];
        if header.error.is_some() {
            return Ok(Self { header, body: Body::Unknown(rest) });
        }
        let body = match header.command {
            CMD_ATA => Body::Ata(AtaCmd::parse(rest)?),
            CMD_CONFIG => Body::Config(ConfigCmd::parse(rest)?),
            CMD_MAC_MASK => Body::Mask(MaskCmd::parse(rest)?),
            CMD_RESERVE => Body::Reserve(ReserveCmd::parse(rest)?),
            _ => Body::Unknown(rest),
        };
        Ok(Self { header, body })
    }

    /// Append the frame's bytes to `out` (no Ethernet padding; the sender pads to 60).
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        match &self.body {
            Body::Ata(a) => a.encode(out),
            Body::Config(c) => c.encode(out),
            Body::Mask(m) => m.encode(out),
            Body::Reserve(r) => r.encode(out),
            Body::Unknown(b) => out.extend_from_slice(b),
        }
    }

    /// The frame's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 64);
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(command: u8) -> Header {
        Header {
            dst: MacAddr([0xff; 6]),
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            version: 1,
            response: false,
            error: None,
            major: 7,
            minor: 3,
            command,
            tag: 0xdead_beef,
        }
    }

    #[test]
    fn every_command_round_trips() {
        let data = vec![0xa5u8; 1024];
        let frames = [
            Frame {
                header: header(CMD_ATA),
                body: Body::Ata(AtaCmd {
                    extended: true,
                    device: true,
                    asynchronous: false,
                    write: true,
                    err_feature: 0,
                    sector_count: 2,
                    cmd_status: 0x34,
                    lba: 0x0000_1234_5678_9abc,
                    data: &data,
                }),
            },
            Frame {
                header: Header { response: true, ..header(CMD_CONFIG) },
                body: Body::Config(ConfigCmd {
                    buffer_count: 64,
                    firmware: 0x4019,
                    sector_count: 17,
                    aoe_version: 1,
                    sub: ConfigSub::SetIfEmpty,
                    config: b"shelf 7 slot 3",
                }),
            },
            Frame {
                header: header(CMD_MAC_MASK),
                body: Body::Mask(MaskCmd {
                    sub: MaskSub::Edit,
                    error: MaskError::None,
                    directives: vec![
                        Directive { cmd: DirectiveCmd::Add, mac: MacAddr([2, 0, 0, 0, 0, 9]) },
                        Directive { cmd: DirectiveCmd::Delete, mac: MacAddr([2, 0, 0, 0, 0, 8]) },
                    ],
                }),
            },
            Frame {
                header: header(CMD_RESERVE),
                body: Body::Reserve(ReserveCmd { sub: ReserveSub::Set, macs: vec![MacAddr([2, 0, 0, 0, 0, 1])] }),
            },
            Frame { header: header(0x42), body: Body::Unknown(b"vendor") },
        ];
        for f in &frames {
            let bytes = f.to_bytes();
            assert_eq!(&Frame::parse(&bytes).unwrap(), f, "{bytes:02x?}");
        }
    }

    #[test]
    fn every_prefix_of_a_frame_is_an_error_not_a_panic() {
        let data = vec![1u8; 512];
        let f = Frame {
            header: header(CMD_ATA),
            body: Body::Ata(AtaCmd {
                extended: false,
                device: false,
                asynchronous: false,
                write: false,
                err_feature: 0,
                sector_count: 1,
                cmd_status: 0x20,
                lba: 5,
                data: &data,
            }),
        };
        let bytes = f.to_bytes();
        for n in 0..HEADER_LEN + ata::ATA_HEADER_LEN {
            assert!(Frame::parse(&bytes[..n]).is_err(), "{n} bytes");
        }
        let mut other = bytes.clone();
        other[12] = 0x08;
        other[13] = 0x00;
        assert_eq!(Frame::parse(&other), Err(ParseError::NotAoe(0x0800)));
    }
}
