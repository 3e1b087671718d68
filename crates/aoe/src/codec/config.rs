//! The Query Config body: buffer count (requests a target queues), firmware version,
//! sector count (most sectors per ATA command), AoE version, the config sub-command and
//! the config string (at most 1024 bytes).

use super::{need, ParseError};

pub const CONFIG_HEADER_LEN: usize = 8;
pub const CONFIG_STRING_MAX: usize = 1024;

/// Query Config sub-commands (CCmd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSub {
    /// Read the config string.
    Read,
    /// Answer only if the string equals the given one.
    TestExact,
    /// Answer only if the string starts with the given one.
    TestPrefix,
    /// Set the string if it is empty.
    SetIfEmpty,
    /// Set the string in any case.
    ForceSet,
    Other(u8),
}

impl ConfigSub {
    fn code(self) -> u8 {
        match self {
            Self::Read => 0,
            Self::TestExact => 1,
            Self::TestPrefix => 2,
            Self::SetIfEmpty => 3,
            Self::ForceSet => 4,
            Self::Other(c) => c,
        }
    }

    fn from_code(c: u8) -> Self {
        match c {
            0 => Self::Read,
            1 => Self::TestExact,
            2 => Self::TestPrefix,
            3 => Self::SetIfEmpty,
            4 => Self::ForceSet,
            other => Self::Other(other),
        }
    }
}

/// A Query Config request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigCmd<'a> {
    pub buffer_count: u16,
    pub firmware: u16,
    pub sector_count: u8,
    pub aoe_version: u8,
    pub sub: ConfigSub,
    pub config: &'a [u8],
}

impl<'a> ConfigCmd<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Self, ParseError> {
        need("Query Config header", b, CONFIG_HEADER_LEN)?;
        let len = usize::from(u16::from_be_bytes([b[6], b[7]]));
        if len > CONFIG_STRING_MAX || CONFIG_HEADER_LEN + len > b.len() {
            return Err(ParseError::ConfigLength(len));
        }
        Ok(Self {
            buffer_count: u16::from_be_bytes([b[0], b[1]]),
            firmware: u16::from_be_bytes([b[2], b[3]]),
            sector_count: b[4],
            aoe_version: b[5] >> 4,
            sub: ConfigSub::from_code(b[5] & 0x0f),
            config: &b[CONFIG_HEADER_LEN..CONFIG_HEADER_LEN + len],
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        assert!(self.config.len() <= CONFIG_STRING_MAX, "config strings are at most 1024 bytes");
        out.extend_from_slice(&self.buffer_count.to_be_bytes());
        out.extend_from_slice(&self.firmware.to_be_bytes());
        out.push(self.sector_count);
        out.push((self.aoe_version << 4) | (self.sub.code() & 0x0f));
        out.extend_from_slice(&(self.config.len() as u16).to_be_bytes());
        out.extend_from_slice(self.config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked() {
        let mut b = vec![0, 64, 0, 1, 17, 0x10, 0, 3, b'a', b'b', b'c', 0, 0];
        let c = ConfigCmd::parse(&b).unwrap();
        assert_eq!(
            (c.buffer_count, c.sector_count, c.aoe_version, c.sub, c.config),
            (64, 17, 1, ConfigSub::Read, &b"abc"[..])
        );
        b[7] = 20;
        assert_eq!(ConfigCmd::parse(&b), Err(ParseError::ConfigLength(20)));
        b[6] = 0x04;
        b[7] = 0x01;
        assert_eq!(ConfigCmd::parse(&b), Err(ParseError::ConfigLength(1025)));
        b[6] = 0;
        b[7] = 0;
        b[5] = 0x19;
        assert_eq!(ConfigCmd::parse(&b).unwrap().sub, ConfigSub::Other(9));
    }
}
