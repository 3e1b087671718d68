//! The ATA command body: AFlags (E extended LBA48, D device, A asynchronous write, W write),
//! error/feature, sector count, command/status, a 48-bit LBA (little-endian bytes) and the
//! data that follows (sectors to write, or read data in a response).

use super::{need, ParseError};

pub const ATA_HEADER_LEN: usize = 12;

const AFLAG_EXTENDED: u8 = 0x40;
const AFLAG_DEVICE: u8 = 0x10;
const AFLAG_ASYNC: u8 = 0x02;
const AFLAG_WRITE: u8 = 0x01;

/// ATA command codes a target handles.
pub mod op {
    pub const READ_SECTORS: u8 = 0x20;
    pub const READ_SECTORS_EXT: u8 = 0x24;
    pub const WRITE_SECTORS: u8 = 0x30;
    pub const WRITE_SECTORS_EXT: u8 = 0x34;
    pub const CHECK_POWER_MODE: u8 = 0xe5;
    pub const FLUSH_CACHE: u8 = 0xe7;
    pub const FLUSH_CACHE_EXT: u8 = 0xea;
    pub const IDENTIFY_DEVICE: u8 = 0xec;
}

/// ATA status and error register bits used in responses.
pub mod status {
    /// Device ready.
    pub const DRDY: u8 = 0x40;
    /// An error; the error register says which.
    pub const ERR: u8 = 0x01;
    /// Error register: command aborted.
    pub const ABRT: u8 = 0x04;
    /// Error register: address not found (LBA out of range).
    pub const IDNF: u8 = 0x10;
}

/// One ATA command or its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtaCmd<'a> {
    pub extended: bool,
    pub device: bool,
    pub asynchronous: bool,
    pub write: bool,
    pub err_feature: u8,
    pub sector_count: u8,
    pub cmd_status: u8,
    /// 48 bits (28 without `extended`: the target masks it).
    pub lba: u64,
    pub data: &'a [u8],
}

impl<'a> AtaCmd<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Self, ParseError> {
        need("ATA header", b, ATA_HEADER_LEN)?;
        let aflags = b[0];
        let mut lba_bytes = [0u8; 8];
        lba_bytes[..6].copy_from_slice(&b[4..10]);
        Ok(Self {
            extended: aflags & AFLAG_EXTENDED != 0,
            device: aflags & AFLAG_DEVICE != 0,
            asynchronous: aflags & AFLAG_ASYNC != 0,
            write: aflags & AFLAG_WRITE != 0,
            err_feature: b[1],
            sector_count: b[2],
            cmd_status: b[3],
            lba: u64::from_le_bytes(lba_bytes),
            data: &b[ATA_HEADER_LEN..],
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        out.push(
            flag(self.extended, AFLAG_EXTENDED)
                | flag(self.device, AFLAG_DEVICE)
                | flag(self.asynchronous, AFLAG_ASYNC)
                | flag(self.write, AFLAG_WRITE),
        );
        out.push(self.err_feature);
        out.push(self.sector_count);
        out.push(self.cmd_status);
        out.extend_from_slice(&self.lba.to_le_bytes()[..6]);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(self.data);
    }

    /// The LBA the command addresses: 48 bits when extended, else 28.
    pub fn address(&self) -> u64 {
        if self.extended {
            self.lba & 0xffff_ffff_ffff
        } else {
            self.lba & 0x0fff_ffff
        }
    }

    /// Sectors the command covers: a count of 0 means 256 in LBA28 (and 65536 in LBA48,
    /// which one AoE frame can never carry; targets refuse it).
    pub fn sectors(&self) -> u32 {
        match (self.sector_count, self.extended) {
            (0, false) => 256,
            (0, true) => 65_536,
            (n, _) => u32::from(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lba28_and_lba48() {
        let mut b =
            vec![AFLAG_EXTENDED | AFLAG_WRITE, 0, 2, op::WRITE_SECTORS_EXT, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0, 0];
        b.extend_from_slice(&[7u8; 1024]);
        let a = AtaCmd::parse(&b).unwrap();
        assert!(a.extended && a.write && !a.asynchronous);
        assert_eq!(a.address(), 0x1234_5678_9abc);
        assert_eq!((a.sectors(), a.data.len()), (2, 1024));
        let mut again = Vec::new();
        a.encode(&mut again);
        assert_eq!(again, b);
        b[0] = 0;
        let a = AtaCmd::parse(&b).unwrap();
        assert_eq!(a.address(), 0x0678_9abc, "LBA28 keeps 28 bits");
        b[2] = 0;
        assert_eq!(AtaCmd::parse(&b).unwrap().sectors(), 256);
    }
}
