//! The AoE initiator: discovery by broadcast Query Config, and ATA commands to one target
//! with up to the target's buffer count in flight, retransmitted with a fresh tag after an
//! RTT-based timeout (smoothed RTT plus four deviations, Jacobson/Karels) that doubles with
//! each retransmission of a command (a target stalled for longer than a few timeouts, on a
//! busy machine, is waited for, not given up on), a bounded number of times. Large reads and writes are split into commands of at most the sectors one
//! frame can carry (the target's sector count and the interface MTU).

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use crate::codec::ata::{op, status};
use crate::codec::{AtaCmd, Body, ConfigCmd, ConfigSub, Frame, Header, MacAddr, CMD_ATA, CMD_CONFIG, SECTOR_BYTES};
use crate::identify::{self, Identity};
use crate::packet::PacketSocket;

/// Retransmissions of one command before the target is declared unreachable.
const RETRIES_MAX: u32 = 8;
const RTO_MIN: Duration = Duration::from_millis(10);
const RTO_MAX: Duration = Duration::from_secs(2);
const RTO_INITIAL: Duration = Duration::from_millis(200);
/// The largest Ethernet frame we receive (jumbo).
const FRAME_MAX: usize = 9216;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("target {0}.{1} does not answer")]
    TimedOut(u16, u8),
    #[error("AoE error {0:?}")]
    Aoe(crate::codec::ErrorCode),
    #[error("ATA error {error:#04x} (status {status:#04x})")]
    Ata { status: u8, error: u8 },
    #[error("{0}")]
    Protocol(String),
}

impl InitiatorError {
    /// The target aborted the command (ATA ABRT): it does not support it.
    pub fn is_abort(&self) -> bool {
        matches!(self, Self::Ata { error, .. } if error & status::ABRT != 0)
    }
}

type Result<T> = std::result::Result<T, InitiatorError>;

/// What [`Initiator::bench`] runs.
#[derive(Debug, Clone)]
pub struct BenchLoad {
    pub write: bool,
    pub random: bool,
    pub block_sectors: u32,
    pub span_sectors: u64,
    pub duration: Duration,
}

/// What a bench run did.
#[derive(Debug, Clone)]
pub struct BenchStats {
    pub bytes: u64,
    /// Whole blocks completed.
    pub blocks: u64,
    pub elapsed: Duration,
    pub retransmits: u64,
    /// Latency of a whole block, from its first command sent to its last answer, in
    /// microseconds: p50, p99 and p99.9 over the blocks completed (the first
    /// [`LATENCY_SAMPLES_MAX`] of them).
    pub latency_us: [u64; 3],
}

/// Block latencies one bench keeps at most (4 bytes each): a bound on its memory.
pub const LATENCY_SAMPLES_MAX: usize = 1 << 22;

/// p50, p99 and p99.9 of `samples` (zeros when empty); reorders them.
fn percentiles(samples: &mut [u32]) -> [u64; 3] {
    if samples.is_empty() {
        return [0; 3];
    }
    samples.sort_unstable();
    let at = |per_mille: usize| u64::from(samples[(samples.len() - 1) * per_mille / 1000]);
    [at(500), at(990), at(999)]
}

impl BenchStats {
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    pub fn blocks_per_sec(&self) -> f64 {
        self.blocks as f64 / self.elapsed.as_secs_f64()
    }
}

/// A target found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    pub mac: MacAddr,
    pub major: u16,
    pub minor: u8,
    pub buffer_count: u16,
    pub firmware: u16,
    pub sector_count: u8,
    pub config: Vec<u8>,
}

fn random_tag_base() -> u32 {
    // Tags only need to differ from recent ones; the clock's low bits vary per run.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    nanos.rotate_left(16)
}

/// Ask every target on the wire (shelf 0xffff, slot 0xff) and collect answers for `wait`.
pub fn discover(sock: &PacketSocket, wait: Duration) -> io::Result<Vec<TargetInfo>> {
    let tag = random_tag_base();
    let query = Frame {
        header: Header {
            dst: MacAddr::BROADCAST,
            src: sock.mac,
            version: 1,
            response: false,
            error: None,
            major: Header::ANY_MAJOR,
            minor: Header::ANY_MINOR,
            command: CMD_CONFIG,
            tag,
        },
        body: Body::Config(ConfigCmd {
            buffer_count: 0,
            firmware: 0,
            sector_count: 0,
            aoe_version: 0,
            sub: ConfigSub::Read,
            config: &[],
        }),
    };
    sock.send(&query.to_bytes())?;
    let deadline = Instant::now() + wait;
    let mut found: Vec<TargetInfo> = Vec::new();
    let mut buf = vec![0u8; FRAME_MAX];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(n) = sock.recv(&mut buf, left)? else { break };
        let Ok(frame) = Frame::parse(&buf[..n]) else { continue };
        let (h, Body::Config(c)) = (frame.header, frame.body) else { continue };
        if !h.response || h.tag != tag || h.error.is_some() {
            continue;
        }
        let info = TargetInfo {
            mac: h.src,
            major: h.major,
            minor: h.minor,
            buffer_count: c.buffer_count,
            firmware: c.firmware,
            sector_count: c.sector_count,
            config: c.config.to_vec(),
        };
        if !found.iter().any(|t| t.mac == info.mac && t.major == info.major && t.minor == info.minor) {
            found.push(info);
        }
    }
    Ok(found)
}

/// One ATA command to run.
#[derive(Debug, Clone)]
struct Request<'d> {
    cmd: u8,
    lba: u64,
    count: u8,
    write: bool,
    /// Data to write, borrowed from the caller (never copied per command).
    data: &'d [u8],
}

/// A command's answer: ATA status, error register and data.
#[derive(Debug, Clone)]
struct Response {
    status: u8,
    error: u8,
    data: Vec<u8>,
}

/// A command in flight.
struct InFlight {
    index: usize,
    sent: Instant,
    retries: u32,
}

/// Talks ATA to one target.
pub struct Initiator<'s> {
    sock: &'s PacketSocket,
    pub target: TargetInfo,
    next_tag: u32,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Sectors per command: the target's count, bounded by what the MTU carries.
    pub max_sectors: u8,
    /// Commands in flight at most: the target's buffer count (at least 1).
    pub depth: usize,
}

impl<'s> Initiator<'s> {
    pub fn new(sock: &'s PacketSocket, target: TargetInfo) -> Self {
        let by_mtu =
            sock.mtu.saturating_sub(crate::codec::HEADER_LEN + crate::codec::ata::ATA_HEADER_LEN) / SECTOR_BYTES;
        let max_sectors = (target.sector_count as usize).min(by_mtu).clamp(1, 255) as u8;
        let depth = usize::from(target.buffer_count).max(1);
        Self { sock, target, next_tag: random_tag_base(), srtt: None, rttvar: Duration::ZERO, max_sectors, depth }
    }

    /// How long a command sent `retries` times before waits for its answer: the timeout,
    /// doubled per retransmission, at most [`RTO_MAX`].
    pub fn timeout_after(&self, retries: u32) -> Duration {
        self.rto().saturating_mul(1 << retries.min(16)).min(RTO_MAX)
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => RTO_INITIAL,
            Some(srtt) => (srtt + 4 * self.rttvar).clamp(RTO_MIN, RTO_MAX),
        }
    }

    fn sample_rtt(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    fn send(&mut self, req: &Request<'_>) -> io::Result<u32> {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        let frame = Frame {
            header: Header {
                dst: self.target.mac,
                src: self.sock.mac,
                version: 1,
                response: false,
                error: None,
                major: self.target.major,
                minor: self.target.minor,
                command: CMD_ATA,
                tag,
            },
            body: Body::Ata(AtaCmd {
                extended: true,
                device: false,
                asynchronous: false,
                write: req.write,
                err_feature: 0,
                sector_count: req.count,
                cmd_status: req.cmd,
                lba: req.lba,
                data: req.data,
            }),
        };
        self.sock.send(&frame.to_bytes())?;
        Ok(tag)
    }

    /// Run `requests`, at most `depth` in flight; answers in request order.
    fn run(&mut self, requests: &[Request<'_>]) -> Result<Vec<Response>> {
        let mut answers: Vec<Option<Response>> = vec![None; requests.len()];
        let mut unanswered = requests.len();
        let mut flight: HashMap<u32, InFlight> = HashMap::new();
        let mut next = 0;
        let mut buf = vec![0u8; FRAME_MAX];
        while unanswered > 0 {
            while flight.len() < self.depth && next < requests.len() {
                let tag = self.send(&requests[next])?;
                flight.insert(tag, InFlight { index: next, sent: Instant::now(), retries: 0 });
                next += 1;
            }
            // Retransmit what timed out, under a fresh tag (a late answer to the old tag is
            // then recognizably stale).
            let expired: Vec<u32> = flight
                .iter()
                .filter(|(_, f)| f.sent.elapsed() >= self.timeout_after(f.retries))
                .map(|(t, _)| *t)
                .collect();
            for old in expired {
                let f = flight.remove(&old).expect("expired tag in flight");
                if f.retries >= RETRIES_MAX {
                    return Err(InitiatorError::TimedOut(self.target.major, self.target.minor));
                }
                let tag = self.send(&requests[f.index])?;
                flight.insert(tag, InFlight { index: f.index, sent: Instant::now(), retries: f.retries + 1 });
            }
            let Some(n) = self.sock.recv(&mut buf, self.rto().min(Duration::from_millis(50)))? else { continue };
            let Ok(frame) = Frame::parse(&buf[..n]) else { continue };
            let h = frame.header;
            if !h.response || h.src != self.target.mac || h.major != self.target.major || h.minor != self.target.minor {
                continue;
            }
            let Some(f) = flight.remove(&h.tag) else { continue };
            if f.retries == 0 {
                self.sample_rtt(f.sent.elapsed());
            }
            if let Some(e) = h.error {
                return Err(InitiatorError::Aoe(e));
            }
            let Body::Ata(a) = frame.body else { return Err(InitiatorError::Protocol("answer is not ATA".into())) };
            answers[f.index] = Some(Response { status: a.cmd_status, error: a.err_feature, data: a.data.to_vec() });
            unanswered -= 1;
        }
        let answers: Vec<Response> = answers.into_iter().map(|a| a.expect("all answered")).collect();
        if let Some(bad) = answers.iter().find(|r| r.status & status::ERR != 0) {
            return Err(InitiatorError::Ata { status: bad.status, error: bad.error });
        }
        Ok(answers)
    }

    /// IDENTIFY DEVICE.
    pub fn identify(&mut self) -> Result<Identity> {
        let req = Request { cmd: op::IDENTIFY_DEVICE, lba: 0, count: 1, write: false, data: &[] };
        let answer = self.run(&[req])?.remove(0);
        identify::parse(&answer.data).ok_or_else(|| InitiatorError::Protocol("short IDENTIFY data".into()))
    }

    /// Read `sectors` sectors from `lba`.
    pub fn read(&mut self, lba: u64, sectors: u64) -> Result<Vec<u8>> {
        let step = u64::from(self.max_sectors);
        let requests: Vec<Request> = (0..sectors)
            .step_by(step as usize)
            .map(|off| Request {
                cmd: op::READ_SECTORS_EXT,
                lba: lba + off,
                count: step.min(sectors - off) as u8,
                write: false,
                data: &[],
            })
            .collect();
        let mut out = Vec::with_capacity(sectors as usize * SECTOR_BYTES);
        for (req, answer) in requests.iter().zip(self.run(&requests)?) {
            let want = usize::from(req.count) * SECTOR_BYTES;
            if answer.data.len() < want {
                return Err(InitiatorError::Protocol(format!("short read at LBA {}", req.lba)));
            }
            out.extend_from_slice(&answer.data[..want]);
        }
        Ok(out)
    }

    /// Write `data` (whole sectors) at `lba`.
    pub fn write(&mut self, lba: u64, data: &[u8]) -> Result<()> {
        if !data.len().is_multiple_of(SECTOR_BYTES) {
            return Err(InitiatorError::Protocol("writes are whole 512-byte sectors".into()));
        }
        let chunk = usize::from(self.max_sectors) * SECTOR_BYTES;
        let requests: Vec<Request> = data
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| Request {
                cmd: op::WRITE_SECTORS_EXT,
                lba: lba + (i * usize::from(self.max_sectors)) as u64,
                count: (c.len() / SECTOR_BYTES) as u8,
                write: true,
                data: c,
            })
            .collect();
        self.run(&requests).map(|_| ())
    }

    /// Keep `depth` commands in flight for `duration`: blocks of `block_sectors` (split into
    /// commands of at most `max_sectors`), sequential from 0 or at random block-aligned
    /// LBAs below `span_sectors`, reads or writes. `progress` is called about once a second
    /// with the bytes done so far.
    pub fn bench(&mut self, load: &BenchLoad, mut progress: impl FnMut(u64)) -> Result<BenchStats> {
        let block = u64::from(load.block_sectors.max(1));
        let span_blocks = (load.span_sectors / block).max(1);
        let per_cmd = u64::from(self.max_sectors);
        let payload = vec![0x5au8; (per_cmd as usize) * SECTOR_BYTES];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next_block = 0u64;
        // Commands of blocks not yet sent: (block id, lba, sectors).
        let mut queue: std::collections::VecDeque<(u64, u64, u8)> = std::collections::VecDeque::new();
        // Per block: commands not yet answered, when its first command went out.
        let mut remaining: HashMap<u64, (u32, Instant)> = HashMap::new();
        let mut latencies_us: Vec<u32> = Vec::new();
        let mut flight: HashMap<u32, (u64, u64, u8, Instant, u32)> = HashMap::new();
        let (mut bytes, mut blocks, mut retransmits) = (0u64, 0u64, 0u64);
        let start = Instant::now();
        let mut last_progress = start;
        let mut buf = vec![0u8; FRAME_MAX];
        let cmd = if load.write { op::WRITE_SECTORS_EXT } else { op::READ_SECTORS_EXT };
        let request = |lba: u64, sectors: u8| Request {
            cmd,
            lba,
            count: sectors,
            write: load.write,
            data: if load.write { &payload[..usize::from(sectors) * SECTOR_BYTES] } else { &[] },
        };
        while start.elapsed() < load.duration || !flight.is_empty() {
            let sending = start.elapsed() < load.duration;
            while sending && flight.len() < self.depth {
                if queue.is_empty() {
                    let b = if load.random {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng % span_blocks
                    } else {
                        next_block % span_blocks
                    };
                    let id = next_block;
                    next_block += 1;
                    let mut off = 0;
                    let mut parts = 0;
                    while off < block {
                        let n = per_cmd.min(block - off);
                        queue.push_back((id, b * block + off, n as u8));
                        off += n;
                        parts += 1;
                    }
                    remaining.insert(id, (parts, Instant::now()));
                }
                let (id, lba, n) = queue.pop_front().expect("queued");
                let tag = self.send(&request(lba, n))?;
                flight.insert(tag, (id, lba, n, Instant::now(), 0));
            }
            let rto = self.rto();
            let expired: Vec<u32> =
                flight.iter().filter(|(_, f)| f.3.elapsed() >= self.timeout_after(f.4)).map(|(t, _)| *t).collect();
            for old in expired {
                let (id, lba, n, _, tries) = flight.remove(&old).expect("in flight");
                if tries >= RETRIES_MAX {
                    return Err(InitiatorError::TimedOut(self.target.major, self.target.minor));
                }
                retransmits += 1;
                let tag = self.send(&request(lba, n))?;
                flight.insert(tag, (id, lba, n, Instant::now(), tries + 1));
            }
            if last_progress.elapsed() >= Duration::from_secs(1) {
                progress(bytes);
                last_progress = Instant::now();
            }
            let Some(len) = self.sock.recv(&mut buf, rto.min(Duration::from_millis(20)))? else { continue };
            let Ok(frame) = Frame::parse(&buf[..len]) else { continue };
            let h = frame.header;
            if !h.response || h.src != self.target.mac {
                continue;
            }
            let Some((id, _, n, sent, tries)) = flight.remove(&h.tag) else { continue };
            if tries == 0 {
                self.sample_rtt(sent.elapsed());
            }
            match (h.error, frame.body) {
                (None, Body::Ata(a)) if a.cmd_status & status::ERR == 0 => {}
                (Some(e), _) => return Err(InitiatorError::Aoe(e)),
                (None, Body::Ata(a)) => return Err(InitiatorError::Ata { status: a.cmd_status, error: a.err_feature }),
                _ => return Err(InitiatorError::Protocol("answer is not ATA".into())),
            }
            bytes += u64::from(n) * SECTOR_BYTES as u64;
            let (left, first_sent) = remaining.get_mut(&id).expect("block counted");
            *left -= 1;
            if *left == 0 {
                if latencies_us.len() < LATENCY_SAMPLES_MAX {
                    latencies_us.push(u32::try_from(first_sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                remaining.remove(&id);
                blocks += 1;
            }
        }
        let latency_us = percentiles(&mut latencies_us);
        Ok(BenchStats { bytes, blocks, elapsed: start.elapsed(), retransmits, latency_us })
    }

    /// FLUSH CACHE EXT (FLUSH CACHE for targets that abort the EXT form, as vblade does):
    /// everything written before is durable when this returns, if the target is honest.
    pub fn flush(&mut self) -> Result<()> {
        let ext = Request { cmd: op::FLUSH_CACHE_EXT, lba: 0, count: 0, write: false, data: &[] };
        match self.run(&[ext]) {
            Ok(_) => Ok(()),
            Err(e) if e.is_abort() => {
                let plain = Request { cmd: op::FLUSH_CACHE, lba: 0, count: 0, write: false, data: &[] };
                self.run(&[plain]).map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}
