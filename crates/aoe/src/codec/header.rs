//! The Ethernet and AoE common header: destination and source MAC, EtherType 0x88A2,
//! version and flags (R response, E error), error code, major (shelf), minor (slot),
//! command and tag.

use super::{need, ParseError};

pub const ETHERTYPE_AOE: u16 = 0x88a2;
/// Ethernet (14) + AoE common header (10).
pub const HEADER_LEN: usize = 24;

const FLAG_RESPONSE: u8 = 0x08;
const FLAG_ERROR: u8 = 0x04;

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: Self = Self([0xff; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// AoE error codes (the header's Error field when the E flag is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    UnrecognizedCommand,
    BadArgument,
    DeviceUnavailable,
    ConfigStringPresent,
    UnsupportedVersion,
    TargetReserved,
    /// A code revision 11 does not define.
    Other(u8),
}

impl ErrorCode {
    pub fn code(self) -> u8 {
        match self {
            Self::UnrecognizedCommand => 1,
            Self::BadArgument => 2,
            Self::DeviceUnavailable => 3,
            Self::ConfigStringPresent => 4,
            Self::UnsupportedVersion => 5,
            Self::TargetReserved => 6,
            Self::Other(c) => c,
        }
    }

    pub fn from_code(c: u8) -> Self {
        match c {
            1 => Self::UnrecognizedCommand,
            2 => Self::BadArgument,
            3 => Self::DeviceUnavailable,
            4 => Self::ConfigStringPresent,
            5 => Self::UnsupportedVersion,
            6 => Self::TargetReserved,
            other => Self::Other(other),
        }
    }
}

/// The common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// The protocol version (1 for revision 11); others get [`ErrorCode::UnsupportedVersion`].
    pub version: u8,
    /// R: this is a response.
    pub response: bool,
    /// E with its code: this is an error response.
    pub error: Option<ErrorCode>,
    /// Shelf (0xffff: any).
    pub major: u16,
    /// Slot (0xff: any).
    pub minor: u8,
    pub command: u8,
    pub tag: u32,
}

impl Header {
    /// Shelf and slot that address every target.
    pub const ANY_MAJOR: u16 = 0xffff;
    pub const ANY_MINOR: u8 = 0xff;

    pub fn parse(b: &[u8]) -> Result<Self, ParseError> {
        need("header", b, HEADER_LEN)?;
        let ethertype = u16::from_be_bytes([b[12], b[13]]);
        if ethertype != ETHERTYPE_AOE {
            return Err(ParseError::NotAoe(ethertype));
        }
        let mac = |at: usize| MacAddr(b[at..at + 6].try_into().expect("six bytes"));
        let flags = b[14] & 0x0f;
        Ok(Self {
            dst: mac(0),
            src: mac(6),
            version: b[14] >> 4,
            response: flags & FLAG_RESPONSE != 0,
            error: (flags & FLAG_ERROR != 0).then(|| ErrorCode::from_code(b[15])),
            major: u16::from_be_bytes([b[16], b[17]]),
            minor: b[18],
            command: b[19],
            tag: u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.dst.0);
        out.extend_from_slice(&self.src.0);
        out.extend_from_slice(&ETHERTYPE_AOE.to_be_bytes());
        let flags = if self.response { FLAG_RESPONSE } else { 0 } | if self.error.is_some() { FLAG_ERROR } else { 0 };
        out.push((self.version << 4) | flags);
        out.push(self.error.map_or(0, ErrorCode::code));
        out.extend_from_slice(&self.major.to_be_bytes());
        out.push(self.minor);
        out.push(self.command);
        out.extend_from_slice(&self.tag.to_be_bytes());
    }

    /// The header of the response to this request, from `our_mac`.
    pub fn response_from(&self, our_mac: MacAddr, major: u16, minor: u8) -> Self {
        Self { dst: self.src, src: our_mac, version: 1, response: true, error: None, major, minor, ..*self }
    }

    /// Whether this request addresses target `major.minor` (directly or by broadcast).
    pub fn addresses(&self, major: u16, minor: u8) -> bool {
        (self.major == major || self.major == Self::ANY_MAJOR) && (self.minor == minor || self.minor == Self::ANY_MINOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_errors() {
        let h = Header {
            dst: MacAddr([1; 6]),
            src: MacAddr([2; 6]),
            version: 1,
            response: true,
            error: Some(ErrorCode::TargetReserved),
            major: 0x1234,
            minor: 9,
            command: 3,
            tag: 77,
        };
        let mut b = Vec::new();
        h.encode(&mut b);
        assert_eq!(b.len(), HEADER_LEN);
        assert_eq!(b[14], 0x1c, "version 1, R and E");
        assert_eq!(b[15], 6);
        assert_eq!(Header::parse(&b).unwrap(), h);
        assert!(h.addresses(0x1234, 9) && !h.addresses(0x1234, 8));
        let any = Header { major: Header::ANY_MAJOR, minor: Header::ANY_MINOR, ..h };
        assert!(any.addresses(1, 2));
        assert_eq!(MacAddr([0, 0x1b, 0x21, 0xa, 0xb, 0xc]).to_string(), "00:1b:21:0a:0b:0c");
    }
}
