//! Staging of operations too large for one Raft entry. The proposer cuts the encoded
//! operation into parts of at most [`PART_BYTES`] (one `MailOp::Part` entry each, all
//! with the same stream id); applying a part writes it to `staging/<stream>/<offset>`,
//! and applying the last one hands back the whole encoded operation, checked against
//! its length and CRC32C, to be applied at that log index.
//!
//! Why: a multi-megabyte entry does not fit in one AppendEntries round (openraft gives
//! each one a heartbeat interval) and is above raftlog's record limit; parts keep every
//! entry small, so big messages replicate at the same pace as small ones.
//!
//! Deterministic like the rest of the store: what is staged, refused or expired depends
//! only on the parts applied (times come from the parts), never on this replica's clock.
//! Part files are written once and never modified (snapshots hard-link the tree); the
//! stream table is checkpointed with the store's state, and the files of finished streams
//! are removed only after a checkpoint that no longer needs them for replay.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes of one part: small enough that a few fit in one AppendEntries round.
pub const PART_BYTES: usize = 256 << 10;
/// Largest staged operation: a message of the store's maximum plus its envelope.
pub const STAGED_MAX_BYTES: u64 = (super::store::MESSAGE_MAX as u64) + (1 << 20);
/// Streams in progress at most; a new stream beyond this is refused.
pub const STREAMS_MAX: usize = 64;
/// A stream that received no part for this long (in the parts' own clock) is dropped.
pub const STREAM_TTL_MS: i64 = 10 * 60 * 1000;

/// One stream in progress, as checkpointed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedStream {
    pub stream: u64,
    /// Length the complete operation will have.
    pub total: u64,
    /// Bytes received so far (the next part must start here).
    pub received: u64,
    /// `sent_ms` of the latest part.
    pub last_ms: i64,
}

/// A part as carried by the log.
#[derive(Debug, Clone, Copy)]
pub struct PartRef<'a> {
    pub stream: u64,
    pub offset: u64,
    pub total: u64,
    pub crc32c: u32,
    pub sent_ms: i64,
    pub bytes: &'a [u8],
}

/// What applying a part produced.
#[derive(Debug, PartialEq, Eq)]
pub enum PartOutcome {
    /// Stored (or already stored by an earlier apply of the same entry); more to come.
    Staged,
    /// The last part: the whole encoded operation.
    Complete(Vec<u8>),
    /// Refused; the stream (if any) is dropped and nothing else changed.
    Refused(String),
}

/// The staging area of one store.
pub struct Staging {
    dir: PathBuf,
    streams: BTreeMap<u64, StagedStream>,
    /// Streams finished or dropped since the last checkpoint: their files go once that
    /// checkpoint is durable.
    finished: Vec<u64>,
}

impl Staging {
    /// The staging area under `root/staging` with the streams of the last checkpoint.
    /// Directories of other streams are leftovers (finished before that checkpoint, or
    /// started after it and about to be replayed) and are removed.
    pub fn open(root: &Path, streams: Vec<StagedStream>) -> io::Result<Self> {
        let dir = root.join("staging");
        fs::create_dir_all(&dir)?;
        let streams: BTreeMap<u64, StagedStream> = streams.into_iter().map(|s| (s.stream, s)).collect();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let known = entry
                .file_name()
                .to_str()
                .and_then(|n| u64::from_str_radix(n, 16).ok())
                .is_some_and(|id| streams.contains_key(&id));
            if !known {
                remove_path(&entry.path())?;
            }
        }
        Ok(Self { dir, streams, finished: Vec::new() })
    }

    /// The streams in progress, for the checkpoint.
    pub fn streams(&self) -> Vec<StagedStream> {
        self.streams.values().cloned().collect()
    }

    /// Directories to remove once the checkpoint being prepared is durable.
    pub fn take_finished(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.finished).into_iter().map(|s| self.stream_dir(s)).collect()
    }

    fn stream_dir(&self, stream: u64) -> PathBuf {
        self.dir.join(format!("{stream:016x}"))
    }

    fn part_path(&self, stream: u64, offset: u64) -> PathBuf {
        self.stream_dir(stream).join(format!("{offset:016x}"))
    }

    fn finish(&mut self, stream: u64) {
        if self.streams.remove(&stream).is_some() {
            self.finished.push(stream);
        }
    }

    /// Drop streams idle for longer than [`STREAM_TTL_MS`] as of `now_ms`.
    fn expire(&mut self, now_ms: i64) {
        let stale: Vec<u64> = self
            .streams
            .values()
            .filter(|s| now_ms.saturating_sub(s.last_ms) > STREAM_TTL_MS)
            .map(|s| s.stream)
            .collect();
        for s in stale {
            tracing::warn!(stream = s, "dropping an abandoned staged operation");
            self.finish(s);
        }
    }

    /// Apply one part.
    pub fn apply(&mut self, part: PartRef<'_>) -> io::Result<PartOutcome> {
        self.expire(part.sent_ms);
        let len = part.bytes.len() as u64;
        let end = part.offset.checked_add(len);
        let malformed = if part.bytes.is_empty() || part.bytes.len() > PART_BYTES {
            Some(format!("a part carries 1 to {PART_BYTES} bytes"))
        } else if part.total > STAGED_MAX_BYTES {
            Some(format!("operation of {} bytes above {STAGED_MAX_BYTES}", part.total))
        } else if end.is_none_or(|e| e > part.total) {
            Some("part beyond the end of its operation".to_string())
        } else {
            None
        };
        if let Some(why) = malformed {
            self.finish(part.stream);
            return Ok(PartOutcome::Refused(why));
        }
        let end = end.unwrap_or(part.total);
        let received = match self.streams.get(&part.stream) {
            None if part.offset == 0 => {
                if self.streams.len() >= STREAMS_MAX {
                    return Ok(PartOutcome::Refused(format!("{STREAMS_MAX} large operations already in progress")));
                }
                fs::create_dir_all(self.stream_dir(part.stream))?;
                self.streams.insert(
                    part.stream,
                    StagedStream { stream: part.stream, total: part.total, received: 0, last_ms: part.sent_ms },
                );
                0
            }
            None => return Ok(PartOutcome::Refused("part of an unknown or expired operation".into())),
            Some(s) if s.total != part.total => {
                self.finish(part.stream);
                return Ok(PartOutcome::Refused("parts disagree on the operation's length".into()));
            }
            Some(s) => s.received,
        };
        if part.offset > received {
            // A part went missing (a leader change between parts): the proposer retries
            // the whole operation under a new stream.
            self.finish(part.stream);
            return Ok(PartOutcome::Refused(format!("part at {} missing", received)));
        }
        if part.offset == received {
            let path = self.part_path(part.stream, part.offset);
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, part.bytes)?;
            fs::rename(&tmp, &path)?;
            if let Some(s) = self.streams.get_mut(&part.stream) {
                s.received = end;
                s.last_ms = part.sent_ms;
            }
        }
        if end < part.total {
            return Ok(PartOutcome::Staged);
        }
        let whole = self.assemble(part.stream, part.total)?;
        self.finish(part.stream);
        if crc32c::crc32c(&whole) != part.crc32c {
            return Ok(PartOutcome::Refused("staged operation fails its checksum".into()));
        }
        Ok(PartOutcome::Complete(whole))
    }

    /// Concatenate the part files of `stream` in offset order.
    fn assemble(&self, stream: u64, total: u64) -> io::Result<Vec<u8>> {
        let capacity = usize::try_from(total).map_err(io::Error::other)?;
        let mut whole = Vec::with_capacity(capacity);
        while (whole.len() as u64) < total {
            let bytes = fs::read(self.part_path(stream, whole.len() as u64))?;
            if bytes.is_empty() || (whole.len() + bytes.len()) as u64 > total {
                return Err(io::Error::other(format!("staged part of stream {stream:016x} has a bad length")));
            }
            whole.extend_from_slice(&bytes);
        }
        Ok(whole)
    }
}

fn remove_path(path: &Path) -> io::Result<()> {
    let r = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Remove the directories of finished streams (after the checkpoint that let them go).
pub fn remove_finished(dirs: &[PathBuf]) -> io::Result<()> {
    dirs.iter().try_for_each(|d| remove_path(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(whole: &[u8], size: usize) -> Vec<(u64, Vec<u8>)> {
        whole.chunks(size).enumerate().map(|(k, c)| ((k * size) as u64, c.to_vec())).collect()
    }

    fn part<'a>(stream: u64, offset: u64, bytes: &'a [u8], whole: &[u8], sent_ms: i64) -> PartRef<'a> {
        PartRef { stream, offset, total: whole.len() as u64, crc32c: crc32c::crc32c(whole), sent_ms, bytes }
    }

    #[test]
    fn parts_in_order_give_the_whole_and_replays_are_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Staging::open(dir.path(), Vec::new()).unwrap();
        let whole: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
        let ps = parts(&whole, 1500);
        for (k, (off, bytes)) in ps.iter().enumerate() {
            let out = st.apply(part(7, *off, bytes, &whole, 1)).unwrap();
            if k + 1 < ps.len() {
                assert_eq!(out, PartOutcome::Staged);
                // The same entry applied again (replay) changes nothing.
                assert_eq!(st.apply(part(7, *off, bytes, &whole, 1)).unwrap(), PartOutcome::Staged);
            } else {
                assert_eq!(out, PartOutcome::Complete(whole.clone()));
            }
        }
        assert!(st.streams().is_empty());
        let gone = st.take_finished();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].exists(), "files stay until the checkpoint is durable");
        remove_finished(&gone).unwrap();
        assert!(!gone[0].exists());
    }

    #[test]
    fn a_gap_a_corrupt_whole_or_an_unknown_stream_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Staging::open(dir.path(), Vec::new()).unwrap();
        let whole = vec![5u8; 3000];
        assert_eq!(st.apply(part(1, 0, &whole[..1000], &whole, 0)).unwrap(), PartOutcome::Staged);
        assert!(matches!(st.apply(part(1, 2000, &whole[2000..], &whole, 0)).unwrap(), PartOutcome::Refused(_)));
        assert!(st.streams().is_empty(), "a stream with a gap is dropped");
        assert!(matches!(st.apply(part(2, 1000, &whole[..1000], &whole, 0)).unwrap(), PartOutcome::Refused(_)));
        let mut bad = part(3, 0, &whole[..1000], &whole, 0);
        bad.crc32c ^= 1;
        assert_eq!(st.apply(bad).unwrap(), PartOutcome::Staged);
        bad.offset = 1000;
        bad.bytes = &whole[1000..];
        assert!(matches!(st.apply(bad).unwrap(), PartOutcome::Refused(m) if m.contains("checksum")));
        let huge = PartRef { total: STAGED_MAX_BYTES + 1, ..part(4, 0, &whole[..10], &whole, 0) };
        assert!(matches!(st.apply(huge).unwrap(), PartOutcome::Refused(_)));
        let over = part(5, 2500, &whole[..1000], &whole, 0);
        assert!(matches!(st.apply(over).unwrap(), PartOutcome::Refused(_)));
    }

    #[test]
    fn streams_survive_reopen_idle_ones_expire_and_their_number_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let whole = vec![9u8; 2000];
        let mut st = Staging::open(dir.path(), Vec::new()).unwrap();
        assert_eq!(st.apply(part(1, 0, &whole[..1000], &whole, 0)).unwrap(), PartOutcome::Staged);
        let saved = st.streams();
        // A leftover directory of a stream the checkpoint does not know is cleaned up.
        fs::create_dir_all(dir.path().join("staging/00000000000000ff")).unwrap();
        let mut st = Staging::open(dir.path(), saved).unwrap();
        assert!(!dir.path().join("staging/00000000000000ff").exists());
        assert_eq!(st.apply(part(1, 1000, &whole[1000..], &whole, 5)).unwrap(), PartOutcome::Complete(whole.clone()));

        for s in 0..STREAMS_MAX as u64 {
            assert_eq!(st.apply(part(100 + s, 0, &whole[..1000], &whole, 0)).unwrap(), PartOutcome::Staged);
        }
        assert!(matches!(st.apply(part(99, 0, &whole[..1000], &whole, 0)).unwrap(), PartOutcome::Refused(_)));
        // Much later (by the parts' clock) the idle streams expire and make room.
        let late = STREAM_TTL_MS + 1;
        assert_eq!(st.apply(part(99, 0, &whole[..1000], &whole, late)).unwrap(), PartOutcome::Staged);
        assert_eq!(st.streams().len(), 1);
    }
}
