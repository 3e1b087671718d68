//! State shared between the writer thread and readers: options, paths and the index.
//! Readers verify every record they read (checksum, segment, log id) before returning it.

use std::path::PathBuf;
use std::sync::RwLock;

use rkyv::util::AlignedVec;
use std::os::unix::fs::FileExt;

use crate::error::Error;
use crate::index::Index;
use crate::options::Options;
use crate::record::{self, RecordHeader, RecordId, HEADER_LEN};
use crate::segment::slot_file_name;

pub(crate) struct Shared {
    pub dir: PathBuf,
    pub opts: Options,
    pub index: RwLock<Index>,
}

/// One record read back from disk: its validated header and payload, 16-byte aligned.
#[derive(Debug)]
pub struct Record {
    pub header: RecordHeader,
    buf: AlignedVec<16>,
}

impl Record {
    /// The payload bytes, starting 16-byte aligned (an rkyv archive for normal entries).
    pub fn payload(&self) -> &[u8] {
        &self.buf[HEADER_LEN..HEADER_LEN + self.header.payload_len as usize]
    }
}

impl Shared {
    pub fn segment_path(&self, slot: u32) -> PathBuf {
        self.dir.join(slot_file_name(slot))
    }

    pub fn meta_path(&self) -> PathBuf {
        self.dir.join("meta")
    }

    /// Read and verify the record at `index`. `Ok(None)` if the log does not hold it.
    pub fn read(&self, index: u64) -> Result<Option<Record>, Error> {
        let Some((file, off, len, seq, slot)) = self.index.read().expect("index lock").locate(index) else {
            return Ok(None);
        };
        let mut buf = AlignedVec::<16>::with_capacity(len);
        buf.resize(len, 0);
        file.read_exact_at(&mut buf, off).map_err(|e| Error::io(self.segment_path(slot), e))?;
        match record::decode(&buf, seq, record::ANY_PAYLOAD) {
            Ok(header) if header.id.index == index => Ok(Some(Record { header, buf })),
            outcome => {
                // A concurrent purge or truncation may have moved the record away: only
                // report corruption if the index still points at these bytes.
                let still_here = self
                    .index
                    .read()
                    .expect("index lock")
                    .locate(index)
                    .is_some_and(|(_, o, _, s, sl)| o == off && s == seq && sl == slot);
                if !still_here {
                    return Ok(None);
                }
                let reason = match outcome {
                    Ok(h) => format!("record holds index {} where {index} belongs", h.id.index),
                    Err(why) => format!("{why:?} reading index {index}"),
                };
                Err(Error::Corrupt { path: self.segment_path(slot), offset: off, reason })
            }
        }
    }

    /// The log id of the entry at `index`, which must be present.
    pub fn read_id(&self, _idx: &Index, index: u64) -> Result<RecordId, Error> {
        let (file, off, _, seq, slot) =
            _idx.locate(index).ok_or_else(|| Error::Invalid(format!("entry {index} is not in the log")))?;
        let mut buf = vec![0u8; HEADER_LEN];
        file.read_exact_at(&mut buf, off).map_err(|e| Error::io(self.segment_path(slot), e))?;
        // Only the header is read: check the fields that do not need the payload.
        if !record::looks_like_record(&buf, seq) {
            return Err(Error::Corrupt {
                path: self.segment_path(slot),
                offset: off,
                reason: "header mismatch".into(),
            });
        }
        let id = RecordId {
            term: u64::from_le_bytes(buf[16..24].try_into().expect("8")),
            node: u64::from_le_bytes(buf[24..32].try_into().expect("8")),
            index: u64::from_le_bytes(buf[32..40].try_into().expect("8")),
        };
        if id.index != index {
            return Err(Error::Corrupt { path: self.segment_path(slot), offset: off, reason: "index mismatch".into() });
        }
        Ok(id)
    }
}
