//! What a target does with one request frame, decided without I/O: drop it (a response,
//! not for us, a MAC the mask list excludes, a config test that does not match), answer it
//! at once (Query Config, Mac Mask List, Reserve/Release, IDENTIFY, CHECK POWER MODE,
//! protocol and ATA errors), or read, write or flush the backing store and answer after.
//! Hostile input never panics and always gets the answer revision 11 prescribes.

use crate::codec::ata::{op, status};
use crate::codec::{
    AtaCmd, Body, ConfigCmd, ConfigSub, Directive, DirectiveCmd, ErrorCode, Frame, Header, MacAddr, MaskCmd, MaskError,
    MaskSub, ReserveCmd, ReserveSub, CMD_ATA, CMD_CONFIG, CMD_MAC_MASK, CMD_RESERVE, SECTOR_BYTES,
};
use crate::identify::{self, Identity};

/// Entries a Mac Mask List or a reservation holds at most (the count is one byte).
const LIST_MAX: usize = 255;

/// What an export is.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub major: u16,
    pub minor: u8,
    pub sectors: u64,
    pub read_only: bool,
    /// Requests the target takes at once (advertised in Query Config).
    pub buffer_count: u16,
    /// Sectors per ATA command (from the MTU; advertised in Query Config).
    pub max_sectors: u8,
    pub firmware: u16,
    pub model: String,
}

/// What an export remembers between requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportState {
    pub config: Vec<u8>,
    /// Initiators allowed (empty: everyone).
    pub mask: Vec<MacAddr>,
    /// Initiators the target is reserved for (empty: not reserved).
    pub reservation: Vec<MacAddr>,
}

/// The decision for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    Drop,
    /// Send this frame.
    Reply(Vec<u8>),
    /// Read `sectors` at `lba`, then send [`read_reply`].
    Read {
        request: Header,
        ata: AtaCmd<'a>,
        lba: u64,
        sectors: u32,
    },
    /// Write `data` at `lba`, then send [`done_reply`].
    Write {
        request: Header,
        ata: AtaCmd<'a>,
        lba: u64,
        data: &'a [u8],
    },
    /// Make earlier writes durable (fdatasync), then send [`done_reply`].
    Flush {
        request: Header,
        ata: AtaCmd<'a>,
    },
}

fn error_reply(request: &Header, our_mac: MacAddr, cfg: &ExportConfig, code: ErrorCode) -> Vec<u8> {
    let header = Header { error: Some(code), ..request.response_from(our_mac, cfg.major, cfg.minor) };
    Frame { header, body: Body::Unknown(&[]) }.to_bytes()
}

fn ata_reply(
    request: &Header,
    our_mac: MacAddr,
    cfg: &ExportConfig,
    ata: &AtaCmd<'_>,
    st: u8,
    err: u8,
    data: &[u8],
) -> Vec<u8> {
    let header = request.response_from(our_mac, cfg.major, cfg.minor);
    let body = AtaCmd { cmd_status: st, err_feature: err, data, ..ata.clone() };
    Frame { header, body: Body::Ata(body) }.to_bytes()
}

/// The answer to a read, with the sectors read.
pub fn read_reply(request: &Header, our_mac: MacAddr, cfg: &ExportConfig, ata: &AtaCmd<'_>, data: &[u8]) -> Vec<u8> {
    ata_reply(request, our_mac, cfg, ata, status::DRDY, 0, data)
}

/// The answer to a write or flush that succeeded (`ok`) or failed with an I/O error.
pub fn done_reply(request: &Header, our_mac: MacAddr, cfg: &ExportConfig, ata: &AtaCmd<'_>, ok: bool) -> Vec<u8> {
    if ok {
        ata_reply(request, our_mac, cfg, ata, status::DRDY, 0, &[])
    } else {
        ata_reply(request, our_mac, cfg, ata, status::DRDY | status::ERR, status::ABRT, &[])
    }
}

/// Decide what to do with `frame`, arrived for the export `cfg` at the interface `our_mac`.
pub fn decide<'a>(cfg: &ExportConfig, state: &mut ExportState, our_mac: MacAddr, frame: &Frame<'a>) -> Decision<'a> {
    let h = &frame.header;
    if h.response || !h.addresses(cfg.major, cfg.minor) || !(h.dst == our_mac || h.dst.is_broadcast()) {
        return Decision::Drop;
    }
    if !state.mask.is_empty() && !state.mask.contains(&h.src) {
        return Decision::Drop;
    }
    if h.version != 1 {
        return Decision::Reply(error_reply(h, our_mac, cfg, ErrorCode::UnsupportedVersion));
    }
    match (&frame.body, h.command) {
        (Body::Config(c), CMD_CONFIG) => config(cfg, state, our_mac, h, c),
        (Body::Ata(a), CMD_ATA) => ata(cfg, state, our_mac, h, a),
        (Body::Mask(m), CMD_MAC_MASK) => mask(cfg, state, our_mac, h, m),
        (Body::Reserve(r), CMD_RESERVE) => reserve(cfg, state, our_mac, h, r),
        _ => Decision::Reply(error_reply(h, our_mac, cfg, ErrorCode::UnrecognizedCommand)),
    }
}

fn config<'a>(
    cfg: &ExportConfig,
    state: &mut ExportState,
    mac: MacAddr,
    h: &Header,
    c: &ConfigCmd<'_>,
) -> Decision<'a> {
    match c.sub {
        ConfigSub::Read => {}
        ConfigSub::TestExact if c.config != state.config.as_slice() => return Decision::Drop,
        ConfigSub::TestPrefix if !state.config.starts_with(c.config) => return Decision::Drop,
        ConfigSub::TestExact | ConfigSub::TestPrefix => {}
        ConfigSub::SetIfEmpty if !state.config.is_empty() && state.config != c.config => {
            return Decision::Reply(error_reply(h, mac, cfg, ErrorCode::ConfigStringPresent));
        }
        ConfigSub::SetIfEmpty | ConfigSub::ForceSet => state.config = c.config.to_vec(),
        ConfigSub::Other(_) => return Decision::Reply(error_reply(h, mac, cfg, ErrorCode::BadArgument)),
    }
    Decision::Reply(config_announcement(cfg, state, mac, h))
}

/// A Query Config response (also the unsolicited announcement at start, with `request` a
/// broadcast header).
pub fn config_announcement(cfg: &ExportConfig, state: &ExportState, mac: MacAddr, request: &Header) -> Vec<u8> {
    let body = ConfigCmd {
        buffer_count: cfg.buffer_count,
        firmware: cfg.firmware,
        sector_count: cfg.max_sectors,
        aoe_version: 1,
        sub: ConfigSub::Read,
        config: &state.config,
    };
    Frame {
        header: Header { command: CMD_CONFIG, ..request.response_from(mac, cfg.major, cfg.minor) },
        body: Body::Config(body),
    }
    .to_bytes()
}

fn ata<'a>(cfg: &ExportConfig, state: &ExportState, mac: MacAddr, h: &Header, a: &AtaCmd<'a>) -> Decision<'a> {
    // ATA goes to one target, never to a broadcast address.
    if h.major == Header::ANY_MAJOR || h.minor == Header::ANY_MINOR {
        return Decision::Drop;
    }
    if !state.reservation.is_empty() && !state.reservation.contains(&h.src) {
        return Decision::Reply(error_reply(h, mac, cfg, ErrorCode::TargetReserved));
    }
    let abort = |err: u8| Decision::Reply(ata_reply(h, mac, cfg, a, status::DRDY | status::ERR, err, &[]));
    match a.cmd_status {
        op::READ_SECTORS | op::READ_SECTORS_EXT | op::WRITE_SECTORS | op::WRITE_SECTORS_EXT => {
            let sectors = a.sectors();
            if sectors > u32::from(cfg.max_sectors) {
                return Decision::Reply(error_reply(h, mac, cfg, ErrorCode::BadArgument));
            }
            let lba = a.address();
            if lba.checked_add(u64::from(sectors)).is_none_or(|end| end > cfg.sectors) {
                return abort(status::ABRT | status::IDNF);
            }
            let writing = matches!(a.cmd_status, op::WRITE_SECTORS | op::WRITE_SECTORS_EXT);
            if !writing {
                return Decision::Read { request: *h, ata: a.clone(), lba, sectors };
            }
            if cfg.read_only {
                return abort(status::ABRT);
            }
            let bytes = sectors as usize * SECTOR_BYTES;
            if !a.write || a.data.len() < bytes {
                return Decision::Reply(error_reply(h, mac, cfg, ErrorCode::BadArgument));
            }
            Decision::Write { request: *h, ata: a.clone(), lba, data: &a.data[..bytes] }
        }
        op::FLUSH_CACHE | op::FLUSH_CACHE_EXT => Decision::Flush { request: *h, ata: a.clone() },
        op::IDENTIFY_DEVICE => {
            let id = Identity {
                model: cfg.model.clone(),
                serial: format!("{}.{}", cfg.major, cfg.minor),
                firmware: format!("{:x}", cfg.firmware),
                lba48: true,
                sectors: cfg.sectors,
            };
            Decision::Reply(read_reply(h, mac, cfg, a, &identify::build(&id)))
        }
        op::CHECK_POWER_MODE => {
            // Sector count 0xff: active or idle.
            let active = AtaCmd { sector_count: 0xff, ..a.clone() };
            Decision::Reply(ata_reply(h, mac, cfg, &active, status::DRDY, 0, &[]))
        }
        _ => abort(status::ABRT),
    }
}

fn mask<'a>(cfg: &ExportConfig, state: &mut ExportState, mac: MacAddr, h: &Header, m: &MaskCmd) -> Decision<'a> {
    let mut error = MaskError::None;
    match m.sub {
        MaskSub::Read => {}
        MaskSub::Edit => {
            for d in &m.directives {
                match d.cmd {
                    DirectiveCmd::NoDirective => {}
                    DirectiveCmd::Add if state.mask.contains(&d.mac) => {}
                    DirectiveCmd::Add if state.mask.len() >= LIST_MAX => {
                        error = MaskError::ListFull;
                        break;
                    }
                    DirectiveCmd::Add => state.mask.push(d.mac),
                    DirectiveCmd::Delete => state.mask.retain(|x| *x != d.mac),
                    DirectiveCmd::Other(_) => {
                        error = MaskError::BadDirective;
                        break;
                    }
                }
            }
        }
        MaskSub::Other(_) => return Decision::Reply(error_reply(h, mac, cfg, ErrorCode::BadArgument)),
    }
    let directives = state.mask.iter().map(|m| Directive { cmd: DirectiveCmd::NoDirective, mac: *m }).collect();
    let body = MaskCmd { sub: m.sub, error, directives };
    Decision::Reply(Frame { header: h.response_from(mac, cfg.major, cfg.minor), body: Body::Mask(body) }.to_bytes())
}

fn reserve<'a>(cfg: &ExportConfig, state: &mut ExportState, mac: MacAddr, h: &Header, r: &ReserveCmd) -> Decision<'a> {
    match r.sub {
        ReserveSub::Read => {}
        ReserveSub::Set if !state.reservation.is_empty() && !state.reservation.contains(&h.src) => {
            return Decision::Reply(error_reply(h, mac, cfg, ErrorCode::TargetReserved));
        }
        ReserveSub::Set | ReserveSub::ForceSet => state.reservation = r.macs.iter().copied().take(LIST_MAX).collect(),
        ReserveSub::Other(_) => return Decision::Reply(error_reply(h, mac, cfg, ErrorCode::BadArgument)),
    }
    let body = ReserveCmd { sub: r.sub, macs: state.reservation.clone() };
    Decision::Reply(Frame { header: h.response_from(mac, cfg.major, cfg.minor), body: Body::Reserve(body) }.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x10]);
    const ALICE: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const BOB: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn cfg(read_only: bool) -> ExportConfig {
        ExportConfig {
            major: 7,
            minor: 3,
            sectors: 1000,
            read_only,
            buffer_count: 64,
            max_sectors: 2,
            firmware: 1,
            model: "test".into(),
        }
    }

    fn header(src: MacAddr, command: u8) -> Header {
        Header { dst: US, src, version: 1, response: false, error: None, major: 7, minor: 3, command, tag: 5 }
    }

    fn ata_cmd(cmd: u8, lba: u64, count: u8, data: &[u8]) -> AtaCmd<'_> {
        AtaCmd {
            extended: true,
            device: false,
            asynchronous: false,
            write: matches!(cmd, op::WRITE_SECTORS | op::WRITE_SECTORS_EXT),
            err_feature: 0,
            sector_count: count,
            cmd_status: cmd,
            lba,
            data,
        }
    }

    fn reply(d: Decision<'_>) -> Frame<'static> {
        let Decision::Reply(bytes) = d else { panic!("{d:?}") };
        let frame = Frame::parse(Box::leak(bytes.into_boxed_slice())).unwrap();
        assert!(frame.header.response);
        frame
    }

    fn run<'a>(c: &ExportConfig, s: &mut ExportState, h: Header, body: Body<'a>) -> Decision<'a> {
        decide(c, s, US, &Frame { header: h, body })
    }

    #[test]
    fn reads_writes_and_their_limits() {
        let (c, mut s) = (cfg(false), ExportState::default());
        let d = run(&c, &mut s, header(ALICE, CMD_ATA), Body::Ata(ata_cmd(op::READ_SECTORS_EXT, 998, 2, &[])));
        assert!(matches!(d, Decision::Read { lba: 998, sectors: 2, .. }));
        // Past the end: ATA abort with IDNF.
        let f = reply(run(&c, &mut s, header(ALICE, CMD_ATA), Body::Ata(ata_cmd(op::READ_SECTORS_EXT, 999, 2, &[]))));
        let Body::Ata(a) = f.body else { panic!() };
        assert_eq!((a.cmd_status & status::ERR, a.err_feature & status::IDNF), (status::ERR, status::IDNF));
        // More sectors than advertised: AoE Bad Argument.
        let f = reply(run(&c, &mut s, header(ALICE, CMD_ATA), Body::Ata(ata_cmd(op::READ_SECTORS_EXT, 0, 3, &[]))));
        assert_eq!(f.header.error, Some(ErrorCode::BadArgument));
        let data = [9u8; 1024];
        let d = run(&c, &mut s, header(ALICE, CMD_ATA), Body::Ata(ata_cmd(op::WRITE_SECTORS_EXT, 10, 2, &data)));
        assert!(matches!(d, Decision::Write { lba: 10, data, .. } if data.len() == 1024));
        // A write whose data is short is a bad argument, not a short write.
        let f = reply(run(
            &c,
            &mut s,
            header(ALICE, CMD_ATA),
            Body::Ata(ata_cmd(op::WRITE_SECTORS_EXT, 10, 2, &data[..700])),
        ));
        assert_eq!(f.header.error, Some(ErrorCode::BadArgument));
        // Read-only exports abort writes.
        let ro = cfg(true);
        let f =
            reply(run(&ro, &mut s, header(ALICE, CMD_ATA), Body::Ata(ata_cmd(op::WRITE_SECTORS_EXT, 10, 2, &data))));
        let Body::Ata(a) = f.body else { panic!() };
        assert_eq!(a.err_feature & status::ABRT, status::ABRT);
        // Unknown ATA commands abort; unknown AoE commands get error 1.
        let f = reply(run(&c, &mut s, header(ALICE, CMD_ATA), Body::Ata(ata_cmd(0x99, 0, 0, &[]))));
        assert!(matches!(f.body, Body::Ata(a) if a.cmd_status & status::ERR != 0));
        let f = reply(run(&c, &mut s, header(ALICE, 0x42), Body::Unknown(&[])));
        assert_eq!(f.header.error, Some(ErrorCode::UnrecognizedCommand));
        assert!(matches!(
            run(&c, &mut s, header(ALICE, CMD_ATA), Body::Ata(ata_cmd(op::FLUSH_CACHE_EXT, 0, 0, &[]))),
            Decision::Flush { .. }
        ));
    }

    #[test]
    fn identify_addressing_and_versions() {
        let (c, mut s) = (cfg(false), ExportState::default());
        let f = reply(run(&c, &mut s, header(ALICE, CMD_ATA), Body::Ata(ata_cmd(op::IDENTIFY_DEVICE, 0, 1, &[]))));
        let Body::Ata(a) = f.body else { panic!() };
        assert_eq!(identify::parse(a.data).unwrap().sectors, 1000);
        let other = Header { minor: 4, ..header(ALICE, CMD_ATA) };
        assert_eq!(run(&c, &mut s, other, Body::Ata(ata_cmd(op::IDENTIFY_DEVICE, 0, 1, &[]))), Decision::Drop);
        let v2 = Header { version: 2, ..header(ALICE, CMD_CONFIG) };
        let config = || {
            Body::Config(ConfigCmd {
                buffer_count: 0,
                firmware: 0,
                sector_count: 0,
                aoe_version: 1,
                sub: ConfigSub::Read,
                config: &[],
            })
        };
        assert_eq!(reply(run(&c, &mut s, v2, config())).header.error, Some(ErrorCode::UnsupportedVersion));
        let broadcast = Header { dst: MacAddr::BROADCAST, major: 0xffff, minor: 0xff, ..header(ALICE, CMD_CONFIG) };
        let f = reply(run(&c, &mut s, broadcast, config()));
        assert!(matches!(f.body, Body::Config(c) if c.buffer_count == 64 && c.sector_count == 2));
        assert_eq!((f.header.major, f.header.minor), (7, 3), "answers carry our own address");
        let responses = Header { response: true, ..header(ALICE, CMD_CONFIG) };
        assert_eq!(run(&c, &mut s, responses, config()), Decision::Drop);
    }

    #[test]
    fn config_strings_masks_and_reservations() {
        let (c, mut s) = (cfg(false), ExportState::default());
        let set = |sub, text: &'static [u8]| {
            Body::Config(ConfigCmd { buffer_count: 0, firmware: 0, sector_count: 0, aoe_version: 1, sub, config: text })
        };
        reply(run(&c, &mut s, header(ALICE, CMD_CONFIG), set(ConfigSub::SetIfEmpty, b"mine")));
        assert_eq!(s.config, b"mine");
        let f = reply(run(&c, &mut s, header(BOB, CMD_CONFIG), set(ConfigSub::SetIfEmpty, b"bobs")));
        assert_eq!(f.header.error, Some(ErrorCode::ConfigStringPresent));
        assert_eq!(run(&c, &mut s, header(BOB, CMD_CONFIG), set(ConfigSub::TestExact, b"min")), Decision::Drop);
        reply(run(&c, &mut s, header(BOB, CMD_CONFIG), set(ConfigSub::TestPrefix, b"min")));

        // A non-empty mask list shuts out everyone else.
        let edit = |cmd, mac| {
            Body::Mask(MaskCmd { sub: MaskSub::Edit, error: MaskError::None, directives: vec![Directive { cmd, mac }] })
        };
        reply(run(&c, &mut s, header(ALICE, CMD_MAC_MASK), edit(DirectiveCmd::Add, ALICE)));
        assert_eq!(
            run(&c, &mut s, header(BOB, CMD_ATA), Body::Ata(ata_cmd(op::IDENTIFY_DEVICE, 0, 1, &[]))),
            Decision::Drop
        );
        let f = reply(run(&c, &mut s, header(ALICE, CMD_MAC_MASK), edit(DirectiveCmd::Other(9), BOB)));
        assert!(matches!(f.body, Body::Mask(m) if m.error == MaskError::BadDirective));
        reply(run(&c, &mut s, header(ALICE, CMD_MAC_MASK), edit(DirectiveCmd::Delete, ALICE)));
        assert!(s.mask.is_empty());

        // Reserved for alice: bob's ATA gets error 6, bob cannot take the reservation, but can force it.
        let res = |sub, macs: Vec<MacAddr>| Body::Reserve(ReserveCmd { sub, macs });
        reply(run(&c, &mut s, header(ALICE, CMD_RESERVE), res(ReserveSub::Set, vec![ALICE])));
        let f = reply(run(&c, &mut s, header(BOB, CMD_ATA), Body::Ata(ata_cmd(op::READ_SECTORS_EXT, 0, 1, &[]))));
        assert_eq!(f.header.error, Some(ErrorCode::TargetReserved));
        let f = reply(run(&c, &mut s, header(BOB, CMD_RESERVE), res(ReserveSub::Set, vec![BOB])));
        assert_eq!(f.header.error, Some(ErrorCode::TargetReserved));
        reply(run(&c, &mut s, header(BOB, CMD_RESERVE), res(ReserveSub::ForceSet, vec![])));
        assert!(matches!(
            run(&c, &mut s, header(BOB, CMD_ATA), Body::Ata(ata_cmd(op::READ_SECTORS_EXT, 0, 1, &[]))),
            Decision::Read { .. }
        ));
    }
}
