//! The target's I/O: one io_uring drives both the raw Ethernet socket and the exported
//! files. A few receives are always posted ([`RECVS_POSTED`]; frames beyond them wait in the
//! socket's buffer, and `buffer_count` — the queue depth advertised to initiators — bounds
//! the requests in flight, not the receives); each request is decided by the pure handler
//! and then answered at once or after a read, direct write or `fdatasync` submitted to the
//! same ring, so many requests are in flight together (a read or write of a page-cached
//! export is a memory copy, done inline: see [`handle`]). Every buffer given to the kernel
//! is owned by a slot of the in-flight table and neither moved nor freed until its
//! completion is reaped.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring};
use uring::{push, push_pair};

use super::aligned::AlignedBuf;
use super::handler::{config_announcement, decide, done_reply, read_reply, Decision, ExportConfig, ExportState};
use crate::codec::ata::ATA_HEADER_LEN;
use crate::codec::{AtaCmd, Frame, Header, MacAddr, CMD_CONFIG, HEADER_LEN, SECTOR_BYTES};
use crate::packet::PacketSocket;

/// Receives posted on the packet socket at once. Every posted receive is woken for every
/// frame, so posting one per advertised buffer (64) made each frame cost dozens of wake-ups:
/// on the veth benchmark 4 KiB random reads went from about 80k IOPS with 64 posted to about
/// 125k with 4–8. Since page-cached reads are answered inline (no ring round trip per
/// request), 1–2 posted do best (cached random reads, same run: 8 posted 0.89x vblade,
/// 4 0.91x, 2 1.01–1.03x, 1 1.06x); two keep a receive waiting while the other's frame is
/// handled.
const RECVS_POSTED: usize = 2;
/// The largest frame received (jumbo frames).
const FRAME_MAX: usize = 9216;
/// Completion tags: the kind in the top byte, the slot below.
const KIND_RECV: u64 = 1 << 56;
const KIND_SEND: u64 = 2 << 56;
const KIND_DISK: u64 = 3 << 56;
const KIND_TICK: u64 = 4 << 56;
/// The cancel request that ends a run (see `uring::cancel_and_drain`).
const KIND_CANCEL: u64 = 6 << 56;
const SLOT_MASK: u64 = (1 << 56) - 1;

/// One export to serve.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    pub major: u16,
    pub minor: u8,
    pub path: PathBuf,
    pub read_only: bool,
    /// Open with `O_DIRECT`: reads and writes bypass the page cache (a write is on the
    /// device when acknowledged, though the device's own cache still needs a FLUSH).
    pub direct: bool,
}

/// How to run a target.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    pub interface: String,
    pub exports: Vec<ExportSpec>,
    /// Requests taken at once (advertised; at least 64).
    pub buffer_count: u16,
}

struct Export {
    cfg: ExportConfig,
    state: ExportState,
    file: File,
    /// Opened with `O_DIRECT` (writes go through the ring; see [`handle`]).
    direct: bool,
}

/// A disk operation in flight with its answer: the disk part (read, write, fdatasync) is
/// linked to the send of the success reply, so the kernel sends it as soon as the disk is
/// done, without a trip through this loop. A failed or short disk part cancels the linked
/// send, and the loop sends an error reply instead.
struct DiskOp {
    export: usize,
    request: Header,
    ata: OwnedAta,
    /// Data to write, or the sectors a read fills (empty for flushes). Page-aligned, so the
    /// same path serves `O_DIRECT` exports.
    buffer: AlignedBuf,
    is_read: bool,
    /// The success reply's AoE and ATA headers; a read's reply is these followed by
    /// `buffer`, sent as two pieces with one `sendmsg` (no copy of the data).
    frame: Vec<u8>,
    /// The `sendmsg` arguments of a read's reply, boxed so they stay put until it completes.
    gather: Option<Box<Gather>>,
    /// Completions still due (disk and send).
    pending: u8,
}

/// The message header and its two pieces (reply headers, data) of a read's `sendmsg`.
struct Gather {
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
}
/// Completion tag of a send linked to a disk operation.
const KIND_LINKED_SEND: u64 = 5 << 56;

/// The fields of an ATA request needed to answer it after the disk (no borrowed data).
#[derive(Clone)]
struct OwnedAta {
    extended: bool,
    device: bool,
    asynchronous: bool,
    write: bool,
    err_feature: u8,
    sector_count: u8,
    cmd_status: u8,
    lba: u64,
}

impl OwnedAta {
    fn of(a: &AtaCmd<'_>) -> Self {
        Self {
            extended: a.extended,
            device: a.device,
            asynchronous: a.asynchronous,
            write: a.write,
            err_feature: a.err_feature,
            sector_count: a.sector_count,
            cmd_status: a.cmd_status,
            lba: a.lba,
        }
    }

    fn borrowed(&self) -> AtaCmd<'static> {
        AtaCmd {
            extended: self.extended,
            device: self.device,
            asynchronous: self.asynchronous,
            write: self.write,
            err_feature: self.err_feature,
            sector_count: self.sector_count,
            cmd_status: self.cmd_status,
            lba: self.lba,
            data: &[],
        }
    }
}

/// Serve `options` until `stop` is set.
pub fn run(options: &TargetOptions, stop: Arc<AtomicBool>) -> io::Result<()> {
    let sock = PacketSocket::open(&options.interface)?;
    let max_sectors = (sock.mtu.saturating_sub(HEADER_LEN + ATA_HEADER_LEN) / SECTOR_BYTES).clamp(1, 255) as u8;
    let buffer_count = options.buffer_count.max(64);
    let mut exports = Vec::new();
    for spec in &options.exports {
        let flags = libc::O_CLOEXEC | if spec.direct { libc::O_DIRECT } else { 0 };
        let file = OpenOptions::new().read(true).write(!spec.read_only).custom_flags(flags).open(&spec.path)?;
        let bytes = file.metadata()?.len();
        exports.push(Export {
            cfg: ExportConfig {
                major: spec.major,
                minor: spec.minor,
                sectors: bytes / SECTOR_BYTES as u64,
                read_only: spec.read_only,
                buffer_count,
                max_sectors,
                firmware: 0x0001,
                model: "mailstore AoE target".into(),
            },
            state: ExportState::default(),
            file,
            direct: spec.direct,
        });
    }
    let mut ring = IoUring::new(u32::from(buffer_count) * 4)?;
    let fd = types::Fd(sock.raw_fd());
    // Receive buffers, reposted after each frame.
    let mut recv_bufs: Vec<Vec<u8>> = (0..RECVS_POSTED).map(|_| vec![0u8; FRAME_MAX]).collect();
    let mut sends: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut disk: HashMap<u64, DiskOp> = HashMap::new();
    let mut next_slot: u64 = 0;
    let recv_entry = |bufs: &mut Vec<Vec<u8>>, i: usize| -> squeue::Entry {
        opcode::Recv::new(fd, bufs[i].as_mut_ptr(), FRAME_MAX as u32).build().user_data(KIND_RECV | i as u64)
    };
    // Operations submitted and not yet reaped: all are cancelled and reaped before the
    // buffers they use are dropped, however the loop ends.
    let mut in_flight: usize = 0;
    // The wake-up tick's timespec, alive until every operation is reaped.
    let tick = types::Timespec::new().nsec(100_000_000);
    let served = (|| -> io::Result<()> {
        for i in 0..recv_bufs.len() {
            let e = recv_entry(&mut recv_bufs, i);
            // SAFETY: recv_bufs[i] lives, unmoved (the Vec of Vecs is never resized), until
            // after `cancel_and_drain` reaped every operation.
            unsafe { push(&mut ring, &e)? };
            in_flight += 1;
        }
        // Announce every export (an unsolicited Query Config response to the broadcast address).
        for e in &exports {
            let hello = Header {
                dst: MacAddr::BROADCAST,
                src: sock.mac,
                version: 1,
                response: false,
                error: None,
                major: e.cfg.major,
                minor: e.cfg.minor,
                command: CMD_CONFIG,
                tag: 0,
            };
            let mut frame = config_announcement(&e.cfg, &e.state, sock.mac, &hello);
            frame[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
            sock.send(&frame)?;
        }
        // One timeout at a time wakes the loop to look at `stop` when the wire is quiet.
        let mut tick_armed = false;
        while !stop.load(Ordering::Relaxed) {
            if !tick_armed {
                let t = opcode::Timeout::new(&tick).build().user_data(KIND_TICK);
                // SAFETY: `tick` outlives the drain that reaps this timeout.
                unsafe { push(&mut ring, &t)? };
                in_flight += 1;
                tick_armed = true;
            }
            uring::wait(&mut ring, 1);
            let completions: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
            for (ud, res) in completions {
                in_flight -= 1;
                let (kind, slot) = (ud & !SLOT_MASK, ud & SLOT_MASK);
                match kind {
                    KIND_TICK => tick_armed = false,
                    KIND_SEND => {
                        sends.remove(&slot);
                    }
                    KIND_RECV => {
                        let i = slot as usize;
                        if res > 0 {
                            let n = res as usize;
                            let mut out = Vec::new();
                            let mut fresh = Vec::new();
                            handle(&recv_bufs[i][..n], &mut exports, sock.mac, &mut out, &mut fresh);
                            for mut op in fresh {
                                next_slot += 1;
                                let export = &exports[op.export];
                                let ata = op.ata.borrowed();
                                op.frame = if op.is_read {
                                    read_reply(&op.request, sock.mac, &export.cfg, &ata, &[])
                                } else {
                                    done_reply(&op.request, sock.mac, &export.cfg, &ata, true)
                                };
                                let disk_op = disk_entry(&mut op, &exports)
                                    .flags(squeue::Flags::IO_LINK)
                                    .user_data(KIND_DISK | next_slot);
                                let send = reply_entry(&mut op, fd).user_data(KIND_LINKED_SEND | next_slot);
                                disk.insert(next_slot, op);
                                // SAFETY: the op's buffers and its boxed `sendmsg` arguments (heap
                                // allocations that do not move when the op moves into the table)
                                // are kept by `disk` until both completions are reaped.
                                unsafe { push_pair(&mut ring, &disk_op, &send)? };
                                in_flight += 2;
                            }
                            for frame in out {
                                queue_send(&mut ring, fd, frame, &mut sends, &mut next_slot)?;
                                in_flight += 1;
                            }
                        }
                        let e = recv_entry(&mut recv_bufs, i);
                        // SAFETY: as above, recv_bufs[i] stays put.
                        unsafe { push(&mut ring, &e)? };
                        in_flight += 1;
                    }
                    KIND_DISK | KIND_LINKED_SEND => {
                        let Some(op) = disk.get_mut(&slot) else { continue };
                        op.pending -= 1;
                        if kind == KIND_DISK {
                            let want = op.buffer.len();
                            let ok = res >= 0 && res as usize == want;
                            if !ok {
                                // The linked send is cancelled; answer with an error instead.
                                let export = &exports[op.export];
                                let frame = done_reply(&op.request, sock.mac, &export.cfg, &op.ata.borrowed(), false);
                                queue_send(&mut ring, fd, frame, &mut sends, &mut next_slot)?;
                                in_flight += 1;
                            }
                        }
                        if op.pending == 0 {
                            disk.remove(&slot);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    })();
    uring::cancel_and_drain(&mut ring, in_flight, KIND_CANCEL);
    served
}

/// Submit the send of `frame` under a fresh slot; `sends` owns the frame until the send's
/// completion is reaped.
fn queue_send(
    ring: &mut IoUring,
    fd: types::Fd,
    frame: Vec<u8>,
    sends: &mut HashMap<u64, Vec<u8>>,
    next_slot: &mut u64,
) -> io::Result<()> {
    *next_slot += 1;
    let e = opcode::Send::new(fd, frame.as_ptr(), frame.len() as u32).build().user_data(KIND_SEND | *next_slot);
    sends.insert(*next_slot, frame);
    // SAFETY: the frame's heap buffer does not move when its Vec moves into `sends`, which
    // keeps it until the send's completion is reaped (or the ring is drained at exit).
    unsafe { push(ring, &e) }
}

/// The submission entry of a disk operation (read, write, or fdatasync for a flush).
fn disk_entry(op: &mut DiskOp, exports: &[Export]) -> squeue::Entry {
    let fd = types::Fd(exports[op.export].file.as_raw_fd());
    let offset = op.ata.lba * SECTOR_BYTES as u64;
    if !op.is_read && op.buffer.is_empty() {
        opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build()
    } else if op.is_read {
        let data = op.buffer.as_mut_slice();
        opcode::Read::new(fd, data.as_mut_ptr(), data.len() as u32).offset(offset).build()
    } else {
        let data = op.buffer.as_slice();
        opcode::Write::new(fd, data.as_ptr(), data.len() as u32).offset(offset).build()
    }
}

/// The submission entry of the success reply: the frame alone, or for a read its headers
/// and the data buffer gathered by one `sendmsg`.
fn reply_entry(op: &mut DiskOp, fd: types::Fd) -> squeue::Entry {
    if !op.is_read {
        return opcode::Send::new(fd, op.frame.as_ptr(), op.frame.len() as u32).build();
    }
    let data = op.buffer.as_mut_slice();
    let iov = [
        libc::iovec { iov_base: op.frame.as_mut_ptr().cast(), iov_len: op.frame.len() },
        libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() },
    ];
    // SAFETY: msghdr is a plain C struct for which all-zero bytes are a valid value (no
    // name, no control data); the fields that matter are set below.
    let msg: libc::msghdr = unsafe { std::mem::zeroed() };
    let gather = op.gather.insert(Box::new(Gather { iov, msg }));
    gather.msg.msg_iov = gather.iov.as_mut_ptr();
    gather.msg.msg_iovlen = gather.iov.len();
    opcode::SendMsg::new(fd, &gather.msg).build()
}

/// Decide on one received frame for every export it addresses.
fn handle(bytes: &[u8], exports: &mut [Export], mac: MacAddr, out: &mut Vec<Vec<u8>>, fresh: &mut Vec<DiskOp>) {
    let Ok(frame) = Frame::parse(bytes) else { return };
    for (i, e) in exports.iter_mut().enumerate() {
        match decide(&e.cfg, &mut e.state, mac, &frame) {
            Decision::Drop => {}
            Decision::Reply(r) => out.push(r),
            Decision::Read { request, ata, lba, sectors } if !e.direct => {
                // A read of a page-cached export is a memory copy, done here into the reply
                // frame itself: through the ring it cost a read and a linked `sendmsg` per
                // request, and its completions, for the same copy (0.52x vblade's cached
                // random reads).
                out.push(cached_read_reply(e, mac, &request, &AtaCmd { lba, ..ata }, sectors));
            }
            Decision::Read { request, ata, lba, sectors } => {
                let ata = OwnedAta { lba, ..OwnedAta::of(&ata) };
                fresh.push(DiskOp {
                    export: i,
                    request,
                    ata,
                    buffer: AlignedBuf::zeroed(sectors as usize * SECTOR_BYTES),
                    is_read: true,
                    frame: Vec::new(),
                    gather: None,
                    pending: 2,
                });
            }
            Decision::Write { request, ata, lba, data } if !e.direct => {
                // A write to a page-cached export is a memory copy. ext4 cannot do buffered
                // writes without blocking, so io_uring would hand each one to a worker thread
                // (a wake-up and two context switches per frame: half the throughput on the
                // veth benchmark). Copy it here, straight from the receive buffer, and answer;
                // FLUSH still makes it durable through the ring.
                let ok = e.file.write_all_at(data, lba * SECTOR_BYTES as u64).is_ok();
                out.push(done_reply(&request, mac, &e.cfg, &AtaCmd { lba, ..ata }, ok));
            }
            Decision::Write { request, ata, lba, data } => {
                let ata = OwnedAta { lba, ..OwnedAta::of(&ata) };
                fresh.push(DiskOp {
                    export: i,
                    request,
                    ata,
                    buffer: AlignedBuf::copy_of(data),
                    is_read: false,
                    frame: Vec::new(),
                    gather: None,
                    pending: 2,
                });
            }
            Decision::Flush { request, ata } => {
                fresh.push(DiskOp {
                    export: i,
                    request,
                    ata: OwnedAta::of(&ata),
                    buffer: AlignedBuf::zeroed(0),
                    is_read: false,
                    frame: Vec::new(),
                    gather: None,
                    pending: 2,
                });
            }
        }
    }
}

/// The answer to a read of a page-cached export: the reply's headers followed by the sectors
/// read straight into the frame (one copy), or an ATA abort if the file came up short.
fn cached_read_reply(e: &Export, mac: MacAddr, request: &Header, ata: &AtaCmd<'_>, sectors: u32) -> Vec<u8> {
    let mut frame = read_reply(request, mac, &e.cfg, ata, &[]);
    let headers = frame.len();
    let bytes = sectors as usize * SECTOR_BYTES;
    frame.resize(headers + bytes, 0);
    match e.file.read_exact_at(&mut frame[headers..], ata.lba * SECTOR_BYTES as u64) {
        Ok(()) => frame,
        Err(_) => done_reply(request, mac, &e.cfg, ata, false),
    }
}
