//! The fields of ATA IDENTIFY DEVICE data (256 little-endian words) an initiator needs:
//! model, serial and firmware strings (bytes swapped within each word, space padded),
//! LBA48 support and the capacity in sectors.

/// What IDENTIFY DEVICE says about a drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub lba48: bool,
    /// Addressable sectors (LBA48 count when supported, else LBA28).
    pub sectors: u64,
}

fn word(data: &[u8], w: usize) -> u16 {
    u16::from_le_bytes([data[2 * w], data[2 * w + 1]])
}

fn string(data: &[u8], first: usize, last: usize) -> String {
    let bytes: Vec<u8> = (first..=last).flat_map(|w| word(data, w).to_be_bytes()).collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// Read IDENTIFY DEVICE data; `None` if it is shorter than 512 bytes.
pub fn parse(data: &[u8]) -> Option<Identity> {
    if data.len() < 512 {
        return None;
    }
    let lba48 = word(data, 83) & (1 << 10) != 0;
    let lba28 = u64::from(word(data, 60)) | (u64::from(word(data, 61)) << 16);
    let sectors =
        if lba48 { (100..=103).rev().fold(0u64, |acc, w| (acc << 16) | u64::from(word(data, w))) } else { lba28 };
    Some(Identity {
        model: string(data, 27, 46),
        serial: string(data, 10, 19),
        firmware: string(data, 23, 26),
        lba48,
        sectors,
    })
}

/// Write IDENTIFY DEVICE data for a target of `sectors` sectors (the inverse of [`parse`]).
pub fn build(identity: &Identity) -> Vec<u8> {
    let mut words = [0u16; 256];
    let mut put_string = |first: usize, last: usize, s: &str| {
        let mut bytes = s.as_bytes().to_vec();
        bytes.resize((last - first + 1) * 2, b' ');
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            words[first + i] = u16::from_be_bytes([pair[0], pair[1]]);
        }
    };
    put_string(10, 19, &identity.serial);
    put_string(23, 26, &identity.firmware);
    put_string(27, 46, &identity.model);
    words[49] = 1 << 9; // LBA supported
    words[83] = (1 << 14) | if identity.lba48 { 1 << 10 } else { 0 } | (1 << 12) | (1 << 13); // LBA48, FLUSH CACHE (EXT)
    words[86] = words[83];
    let lba28 = identity.sectors.min(0x0fff_ffff);
    words[60] = lba28 as u16;
    words[61] = (lba28 >> 16) as u16;
    for (i, w) in (100..=103).enumerate() {
        words[w] = (identity.sectors >> (16 * i)) as u16;
    }
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_round_trips_and_big_disks_use_lba48() {
        let id = Identity {
            model: "mailstore aoe".into(),
            serial: "7.3".into(),
            firmware: "1".into(),
            lba48: true,
            sectors: 1 << 33,
        };
        let data = build(&id);
        assert_eq!(data.len(), 512);
        assert_eq!(parse(&data), Some(id.clone()));
        assert_eq!(word(&data, 60), 0xffff, "LBA28 capacity saturates");
        assert_eq!(parse(&data[..100]), None);
    }
}
