//! Our AoE target (`aoe-target`, io_uring) with our initiator (`aoectl`) across a veth pair
//! between two namespaces: a pseudo-random pattern over a 256 MiB export at queue depth 32,
//! flushed and read back identical, and the backing file holding the same bytes; the frames
//! decode in `tshark` as ATA over Ethernet with no malformed packets; hostile frames get the
//! answers revision 11 prescribes (or none) and the target keeps serving; a Mac Mask List
//! shuts out an initiator that is not on it. Needs root, tshark (`scripts/install-test-deps`).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aoe::codec::ata::{op, status};
use aoe::codec::{
    AtaCmd, Body, Directive, DirectiveCmd, ErrorCode, Frame, Header, MacAddr, MaskCmd, MaskError, MaskSub,
};
use aoe::packet::PacketSocket;
use support::{aoectl, pattern, Daemon, Wire};
use tools::netns::in_namespace;

const EXPORT_BYTES: usize = 256 << 20;

/// `aoe-target` on the wire's target end with `args` (exports and options).
fn target(wire: &Wire, args: &[&str]) -> Daemon {
    Daemon(
        Command::new("ip")
            .args(["netns", "exec", &wire.target_ns, env!("CARGO_BIN_EXE_aoe-target"), "-i", "aoe-t"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Send `frame` and wait (bounded) for a response with its tag; `None` if none came.
fn exchange(sock: &PacketSocket, frame: &Frame<'_>) -> Option<Vec<u8>> {
    sock.send(&frame.to_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut buf = vec![0u8; 9216];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let n = sock.recv(&mut buf, left).unwrap()?;
        if let Ok(f) = Frame::parse(&buf[..n]) {
            if f.header.response && f.header.tag == frame.header.tag {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

fn request(sock: &PacketSocket, target: MacAddr, minor: u8, command: u8, tag: u32) -> Header {
    Header { dst: target, src: sock.mac, version: 1, response: false, error: None, major: 7, minor, command, tag }
}

fn ata(cmd: u8, lba: u64, count: u8, data: &[u8]) -> Body<'_> {
    let write = matches!(cmd, op::WRITE_SECTORS_EXT);
    Body::Ata(AtaCmd {
        extended: true,
        device: false,
        asynchronous: false,
        write,
        err_feature: 0,
        sector_count: count,
        cmd_status: cmd,
        lba,
        data,
    })
}

#[test]
fn our_target_serves_our_initiator_correctly_and_survives_hostile_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    std::fs::File::create(&disk).unwrap().set_len(EXPORT_BYTES as u64).unwrap();
    let ro = tmp.path().join("ro.img");
    std::fs::write(&ro, pattern(1 << 20, 3)).unwrap();
    let wire = Wire::new(&format!("t{}", std::process::id()));
    let _target = target(
        &wire,
        &["--export", &format!("7.3={}", disk.display()), "--export", &format!("7.4={}:ro", ro.display())],
    );
    let ns = wire.initiator_ns.clone();
    let ro_path = ro.clone();

    // tshark watches the first exchanges.
    let capture = tmp.path().join("aoe.pcapng");
    let tshark = Daemon(
        Command::new("ip")
            .args(["netns", "exec", &ns, "tshark", "-q", "-i", "aoe-i", "-w"])
            .arg(&capture)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tshark (scripts/install-test-deps)"),
    );
    std::thread::sleep(Duration::from_secs(2));
    let found = aoectl(&ns, &["discover"]);
    assert!(found.contains("7.3 ") && found.contains("7.4 ") && found.contains("buffers 64"), "{found}");
    assert!(aoectl(&ns, &["identify", "7.3"]).contains(&format!("sectors {}", EXPORT_BYTES / 512)));
    let small = tmp.path().join("small.bin");
    std::fs::write(&small, pattern(8192, 11)).unwrap();
    aoectl(&ns, &["write", "7.3", "--lba", "10", "--in", small.to_str().unwrap()]);
    aoectl(&ns, &["flush", "7.3"]);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child (ip netns exec execs tshark in place).
    unsafe { libc::kill(tshark.0.id() as i32, libc::SIGINT) };
    drop(tshark);
    let decoded = Command::new("tshark").arg("-r").arg(&capture).arg("-V").output().unwrap();
    let text = String::from_utf8_lossy(&decoded.stdout);
    assert!(text.contains("ATA over Ethernet"), "tshark did not decode AoE");
    assert!(!text.contains("Malformed") && !text.contains("malformed"), "malformed frames in the capture");

    // The whole export, depth 32: write, flush, read back.
    let data = pattern(EXPORT_BYTES, 42);
    let input = tmp.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    aoectl(&ns, &["--depth", "32", "write", "7.3", "--lba", "0", "--in", input.to_str().unwrap()]);
    aoectl(&ns, &["flush", "7.3"]);
    let output = tmp.path().join("out.bin");
    let sectors = (EXPORT_BYTES / 512).to_string();
    aoectl(
        &ns,
        &["--depth", "32", "read", "7.3", "--lba", "0", "--sectors", &sectors, "--out", output.to_str().unwrap()],
    );
    assert!(std::fs::read(&output).unwrap() == data, "read back differs");
    assert!(std::fs::read(&disk).unwrap() == data, "the backing file differs");

    // Hostile frames, from a raw socket in the initiator's namespace.
    in_namespace(&ns, move || {
        let sock = PacketSocket::open("aoe-i").unwrap();
        let target = aoe::initiator::discover(&sock, Duration::from_millis(500)).unwrap()[0].mac;
        let expect_error = |frame: Frame<'_>, code: ErrorCode| {
            let r = exchange(&sock, &frame).unwrap_or_else(|| panic!("no answer to {frame:?}"));
            assert_eq!(Frame::parse(&r).unwrap().header.error, Some(code), "{frame:?}");
        };
        let expect_ata_error = |frame: Frame<'_>, bits: u8| {
            let r = exchange(&sock, &frame).unwrap();
            let Body::Ata(a) = Frame::parse(&r).unwrap().body else { panic!() };
            assert!(a.cmd_status & status::ERR != 0 && a.err_feature & bits == bits, "{a:?}");
        };
        // A truncated frame is dropped.
        let mut cut =
            Frame { header: request(&sock, target, 3, 0, 1), body: ata(op::READ_SECTORS_EXT, 0, 1, &[]) }.to_bytes();
        cut.truncate(28);
        sock.send(&cut).unwrap();
        expect_error(
            Frame { header: request(&sock, target, 3, 0x42, 2), body: Body::Unknown(&[]) },
            ErrorCode::UnrecognizedCommand,
        );
        let past_end = (EXPORT_BYTES / 512) as u64;
        expect_ata_error(
            Frame { header: request(&sock, target, 3, 0, 3), body: ata(op::READ_SECTORS_EXT, past_end, 1, &[]) },
            status::IDNF,
        );
        expect_error(
            Frame { header: request(&sock, target, 3, 0, 4), body: ata(op::READ_SECTORS_EXT, 0, 3, &[]) },
            ErrorCode::BadArgument,
        );
        let v2 = Header { version: 2, ..request(&sock, target, 3, 0, 5) };
        expect_error(Frame { header: v2, body: ata(op::READ_SECTORS_EXT, 0, 1, &[]) }, ErrorCode::UnsupportedVersion);
        let sector = [0u8; 512];
        expect_ata_error(
            Frame { header: request(&sock, target, 4, 0, 6), body: ata(op::WRITE_SECTORS_EXT, 0, 1, &sector) },
            status::ABRT,
        );
        expect_ata_error(Frame { header: request(&sock, target, 3, 0, 7), body: ata(0x99, 0, 0, &[]) }, status::ABRT);
        // Still serving.
        let r = exchange(
            &sock,
            &Frame { header: request(&sock, target, 3, 0, 8), body: ata(op::IDENTIFY_DEVICE, 0, 1, &[]) },
        );
        assert!(r.is_some(), "the target stopped answering");
        // The read-only export's file shrinks under the running target: a read of what is
        // left is served, a read of sectors that are gone is an ATA abort (not zeros).
        std::fs::OpenOptions::new().write(true).open(&ro_path).unwrap().set_len(512 << 10).unwrap();
        let r = exchange(
            &sock,
            &Frame { header: request(&sock, target, 4, 0, 12), body: ata(op::READ_SECTORS_EXT, 1, 2, &[]) },
        )
        .expect("a read of what is left is answered");
        let Body::Ata(a) = Frame::parse(&r).unwrap().body else { panic!() };
        assert!(a.cmd_status & status::ERR == 0 && a.data == &pattern(1 << 20, 3)[512..1536], "{a:?}");
        expect_ata_error(
            Frame { header: request(&sock, target, 4, 0, 13), body: ata(op::READ_SECTORS_EXT, 1500, 1, &[]) },
            status::ABRT,
        );
        // A mask list without us: no more answers for us.
        let other = MacAddr([2, 0, 0, 0, 0, 0x77]);
        let edit = MaskCmd {
            sub: MaskSub::Edit,
            error: MaskError::None,
            directives: vec![Directive { cmd: DirectiveCmd::Add, mac: other }],
        };
        assert!(exchange(&sock, &Frame { header: request(&sock, target, 3, 2, 9), body: Body::Mask(edit) }).is_some());
        let r = exchange(
            &sock,
            &Frame { header: request(&sock, target, 3, 0, 10), body: ata(op::IDENTIFY_DEVICE, 0, 1, &[]) },
        );
        assert!(r.is_none(), "an initiator off the mask list got an answer");
        assert!(
            exchange(
                &sock,
                &Frame { header: request(&sock, target, 4, 0, 11), body: ata(op::IDENTIFY_DEVICE, 0, 1, &[]) }
            )
            .is_some(),
            "masks are per export"
        );
    });
}

/// An `O_DIRECT` export: page-aligned buffers, writes through the ring, the same bytes back
/// and in the file. The file lives under the target directory, not `/tmp`, which may be a
/// filesystem without direct I/O.
#[test]
fn a_direct_io_export_round_trips_data() {
    const BYTES: usize = 32 << 20;
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let disk = tmp.path().join("direct.img");
    std::fs::File::create(&disk).unwrap().set_len(BYTES as u64).unwrap();
    let wire = Wire::new(&format!("d{}", std::process::id()));
    let _target = target(&wire, &["--direct", "--export", &format!("7.5={}", disk.display())]);
    let ns = wire.initiator_ns.clone();
    std::thread::sleep(Duration::from_secs(1));
    assert!(aoectl(&ns, &["discover"]).contains("7.5 "));
    // Start one sector in, so requests are not page-aligned on the disk: 512-byte alignment
    // is all the target may rely on.
    let data = pattern(BYTES - 512, 7);
    let input = tmp.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    aoectl(&ns, &["--depth", "32", "write", "7.5", "--lba", "1", "--in", input.to_str().unwrap()]);
    aoectl(&ns, &["flush", "7.5"]);
    let output = tmp.path().join("out.bin");
    let sectors = (data.len() / 512).to_string();
    aoectl(
        &ns,
        &["--depth", "32", "read", "7.5", "--lba", "1", "--sectors", &sectors, "--out", output.to_str().unwrap()],
    );
    assert!(std::fs::read(&output).unwrap() == data, "read back differs");
    let file = std::fs::read(&disk).unwrap();
    assert!(file[..512].iter().all(|b| *b == 0), "sector 0 was written");
    assert!(file[512..] == data[..], "the backing file differs");
}
