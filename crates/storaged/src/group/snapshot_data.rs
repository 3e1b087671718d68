//! What openraft reads a snapshot from and writes a received one to: an archive file (one
//! being received, or one an older release wrote), or the archive of a snapshot's link
//! tree produced as it is read (`TreeStream`). Reading a tree touches the disk, so every
//! step runs on tokio's blocking pool, one at a time, never on a runtime thread. What this
//! must never do: hand out bytes for a position other than the one the reader is at (a
//! read that finishes after a seek is dropped).

use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use super::snapshots::SnapDir;
use crate::mailstore::snapshot::TreeArchive;

/// Bytes read from the tree per step (openraft sends chunks of a few MiB).
const PIECE_BYTES: usize = 256 << 10;

/// A snapshot's bytes, for openraft.
#[derive(Debug)]
pub enum SnapshotData {
    File(tokio::fs::File),
    Tree(TreeStream),
}

/// What a blocking step returns.
#[derive(Debug)]
enum Done {
    /// Bytes read at a position.
    Read { at: u64, data: Vec<u8> },
    /// The archive's length.
    Len(u64),
}

type Step = JoinHandle<(Box<TreeArchive>, io::Result<Done>)>;

#[derive(Debug)]
enum State {
    Idle(Box<TreeArchive>),
    Busy(Step),
    /// A step panicked and took the archive with it.
    Failed,
}

/// Where a seek goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    At(u64),
    FromEnd(i64),
}

/// The archive of a snapshot's tree, read asynchronously.
#[derive(Debug)]
pub struct TreeStream {
    state: State,
    /// Bytes read ahead; `buf[at..]` are those at `pos` onwards.
    buf: Vec<u8>,
    at: usize,
    /// The position of the next byte the reader gets.
    pos: u64,
    seek: Option<Target>,
    /// Keeps the snapshot's directory while it is read.
    _dir: Arc<SnapDir>,
}

impl TreeStream {
    pub fn new(dir: Arc<SnapDir>) -> Self {
        let archive = Box::new(TreeArchive::new(dir.tree()));
        Self { state: State::Idle(archive), buf: Vec::new(), at: 0, pos: 0, seek: None, _dir: dir }
    }

    /// Run `step` on the archive on the blocking pool.
    fn start(&mut self, step: impl FnOnce(&mut TreeArchive) -> io::Result<Done> + Send + 'static) {
        let State::Idle(mut archive) = std::mem::replace(&mut self.state, State::Failed) else {
            unreachable!("a step starts only when idle");
        };
        self.state = State::Busy(tokio::task::spawn_blocking(move || {
            let done = step(&mut archive);
            (archive, done)
        }));
    }

    /// Wait for the running step, if any: `None` when idle.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Done>>> {
        match &mut self.state {
            State::Idle(_) => Poll::Ready(Ok(None)),
            State::Failed => Poll::Ready(Err(io::Error::other("reading the snapshot failed earlier"))),
            State::Busy(step) => {
                let joined = ready!(Pin::new(step).poll(cx));
                let (archive, done) = joined.map_err(io::Error::other)?;
                self.state = State::Idle(archive);
                Poll::Ready(done.map(Some))
            }
        }
    }

    fn read_piece(&mut self) {
        let at = self.pos;
        self.start(move |archive| {
            archive.seek(SeekFrom::Start(at))?;
            let mut data = vec![0u8; PIECE_BYTES];
            let mut filled = 0;
            while filled < data.len() {
                match archive.read(&mut data[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            data.truncate(filled);
            Ok(Done::Read { at, data })
        });
    }
}

impl AsyncRead for TreeStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.at < this.buf.len() {
                let n = out.remaining().min(this.buf.len() - this.at);
                out.put_slice(&this.buf[this.at..this.at + n]);
                this.at += n;
                this.pos += n as u64;
                return Poll::Ready(Ok(()));
            }
            match ready!(this.poll_step(cx))? {
                Some(Done::Read { at, data }) if at == this.pos => {
                    if data.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    (this.buf, this.at) = (data, 0);
                }
                // A step for a position the reader has left.
                Some(_) => {}
                None => this.read_piece(),
            }
        }
    }
}

impl AsyncSeek for TreeStream {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        if this.seek.is_some() {
            return Err(io::Error::other("a seek is already in progress"));
        }
        let target = match to {
            SeekFrom::Start(p) => Target::At(p),
            SeekFrom::Current(d) => Target::At(
                this.pos
                    .checked_add_signed(d)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?,
            ),
            SeekFrom::End(d) => Target::FromEnd(d),
        };
        this.seek = Some(target);
        this.buf.clear();
        this.at = 0;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        loop {
            match this.seek {
                None => return Poll::Ready(Ok(this.pos)),
                Some(Target::At(p)) => {
                    this.pos = p;
                    this.seek = None;
                }
                Some(Target::FromEnd(d)) => match ready!(this.poll_step(cx))? {
                    Some(Done::Len(len)) => {
                        let to = len.checked_add_signed(d);
                        this.seek = None;
                        this.pos =
                            to.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
                    }
                    Some(Done::Read { .. }) => {}
                    None => this.start(|archive| archive.len_bytes().map(Done::Len)),
                },
            }
        }
    }
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "a built snapshot is read-only")
}

impl AsyncRead for SnapshotData {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_read(cx, out),
            SnapshotData::Tree(t) => Pin::new(t).poll_read(cx, out),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).start_seek(to),
            SnapshotData::Tree(t) => Pin::new(t).start_seek(to),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_complete(cx),
            SnapshotData::Tree(t) => Pin::new(t).poll_complete(cx),
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_write(cx, buf),
            SnapshotData::Tree(_) => Poll::Ready(Err(read_only())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_flush(cx),
            SnapshotData::Tree(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::File(f) => Pin::new(f).poll_shutdown(cx),
            SnapshotData::Tree(_) => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshots::{Current, Snapshots};
    use super::*;
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership};
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_the_archive_in_openraft_chunks_from_any_offset() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("mail");
        std::fs::create_dir_all(root.join("users/a/Maildir/cur")).unwrap();
        for k in 0..40u32 {
            let body: Vec<u8> = (0..50_000 + k * 977).map(|i| (i ^ k) as u8).collect();
            std::fs::write(root.join(format!("users/a/Maildir/cur/{k}:2,S")), body).unwrap();
        }
        let snaps = Snapshots::open(&work.path().join("snapshots")).unwrap();
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 8)),
            last_membership: StoredMembership::default(),
            snapshot_id: "g-8".into(),
        };
        snaps.publish(snaps.stage(meta, &root).unwrap()).unwrap();
        let Some(Current::Tree(dir)) = snaps.current() else { panic!("a tree snapshot") };
        let archive = work.path().join("expected.snap");
        crate::mailstore::snapshot::build(&dir.tree(), &archive).unwrap();
        let expected = std::fs::read(&archive).unwrap();

        // As openraft's chunked sender reads it: the end, then chunks from their offsets
        // (one sent twice, as after a failed RPC).
        let mut data = SnapshotData::Tree(TreeStream::new(dir.clone()));
        assert_eq!(data.seek(SeekFrom::End(0)).await.unwrap(), expected.len() as u64);
        let chunk = 300_000;
        let mut got = Vec::new();
        let mut offset = 0u64;
        let mut retried = false;
        while offset < expected.len() as u64 {
            data.seek(SeekFrom::Start(offset)).await.unwrap();
            let mut buf = Vec::with_capacity(chunk);
            while buf.len() < chunk {
                if data.read_buf(&mut buf).await.unwrap() == 0 {
                    break;
                }
            }
            if offset > 0 && !retried {
                retried = true;
                continue;
            }
            offset += buf.len() as u64;
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, expected);
        assert_eq!(data.seek(SeekFrom::Current(-10)).await.unwrap(), expected.len() as u64 - 10);
        assert!(data.write_all(b"x").await.is_err(), "a built snapshot is read-only");
    }
}
