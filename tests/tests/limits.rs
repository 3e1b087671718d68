//! Resource limits under abuse: thousands of connections from many loopback addresses,
//! slow-loris clients, endless lines, giant literals and oversize DATA against frontd
//! (IMAP, POP3, SMTP) and storaged (LMTP). The daemons stay under a memory bound
//! (documented in the README) and a well-behaved client is served throughout.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

/// Abusive connections held open at once, spread over source addresses so the front's
/// per-address limit (200) does not refuse most of them.
const SWARM: usize = 2000;
const SWARM_SOURCES: usize = 20;
/// Bytes a flood sends without a line end, and an oversize DATA body.
const FLOOD_BYTES: usize = 64 << 20;
/// The bounds (peak resident memory) this test holds the daemons to.
const FRONT_RSS_MAX_BYTES: u64 = 256 << 20;
const STORAGED_RSS_MAX_BYTES: u64 = 512 << 20;

/// Connect from loopback address `source` (127.0.0.x) to `to`.
fn connect_from(rt: &tokio::runtime::Runtime, source: u8, to: &str) -> Option<tokio::net::TcpStream> {
    let to: SocketAddr = to.parse().unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::from(([127, 0, 0, source], 0))).ok()?;
        tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await.ok()?.ok()
    })
}

/// Send `total` bytes of `x` without a line end after `prefix`, then `suffix`; how much was
/// sent and what the server answered (it must answer or close: it never buffers the line).
fn flood(addr: &str, greeting_lines: usize, prefix: &[u8], total: usize, suffix: &[u8]) -> (usize, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..greeting_lines {
        let _ = s.read(&mut buf);
    }
    s.write_all(prefix).unwrap();
    let chunk = vec![b'x'; 1 << 16];
    let mut sent = 0;
    while sent < total {
        match s.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    let _ = s.write_all(suffix);
    let mut reply = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && reply.len() < 4096 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                // The answer has come; wait briefly for the rest of it, not for the timeout.
                s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            }
        }
    }
    let what = String::from_utf8_lossy(&prefix[..prefix.len().min(12)]).into_owned();
    eprintln!("{what:?}...: {sent} bytes sent, answer {:?}", String::from_utf8_lossy(&reply));
    (sent, String::from_utf8_lossy(&reply).into_owned())
}

#[test]
fn abusive_clients_get_errors_the_daemons_stay_bounded_and_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let front = Front::start(root, &storage, "[directory]\nldif = \"users.ldif\"\n");
    wait_listening(&front.smtp, "frontd SMTP");
    assert!(mx_send(&front.smtp, "alice@example.edu", "before the swarm"));

    // The swarm: IMAP and POP3 connections that idle, dribble a command one byte at a time
    // (slow loris), or announce a giant literal, from 20 source addresses.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut swarm = Vec::with_capacity(SWARM);
    for k in 0..SWARM {
        let source = 2 + (k % SWARM_SOURCES) as u8;
        let to = if k % 2 == 0 { &front.imap } else { &front.pop3 };
        if let Some(conn) = connect_from(&rt, source, to) {
            swarm.push(conn);
        }
    }
    assert!(swarm.len() >= SWARM * 9 / 10, "only {} of {SWARM} connections opened", swarm.len());
    let abuse: [&[u8]; 3] = [b"", b"a1 LOGIN {4294967295}\r\n", b"a2 LOGI"];
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        for (k, conn) in swarm.iter_mut().enumerate() {
            let _ = conn.write_all(abuse[k % abuse.len()]).await;
        }
    });

    // A giant literal is refused, not awaited.
    let reply = raw(&front.imap, &[b"a0 LOGIN {4294967295}\r\n"]);
    assert!(reply.contains("a0 BAD") || reply.contains("a0 NO"), "giant literal: {reply}");
    assert!(!reply.contains("\r\n+ "), "a continuation for a giant literal: {reply}");

    // Floods: endless lines and an oversize message, each answered or cut off.
    let (sent, reply) = flood(&front.imap, 1, b"a3 LOGIN ", FLOOD_BYTES, b"\r\n");
    assert!(reply.contains("BAD") || sent < FLOOD_BYTES, "IMAP endless line: {reply:?} after {sent} bytes");
    let (sent, reply) = flood(&front.pop3, 1, b"USER ", FLOOD_BYTES, b"\r\n");
    assert!(reply.contains("-ERR") || sent < FLOOD_BYTES, "POP3 endless line: {reply:?} after {sent} bytes");
    std::thread::sleep(Duration::from_millis(400)); // the MX greet delay
    let (sent, reply) = flood(&front.smtp, 1, b"EHLO ", FLOOD_BYTES, b"\r\n");
    assert!(reply.starts_with('5') || sent < FLOOD_BYTES, "SMTP endless line: {reply:?} after {sent} bytes");
    let (sent, reply) = flood(&storage.lmtp[0], 1, b"LHLO ", FLOOD_BYTES, b"\r\n");
    assert!(reply.starts_with('5') || sent < FLOOD_BYTES, "LMTP endless line: {reply:?} after {sent} bytes");
    let data = b"EHLO abuser.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.edu>\r\nDATA\r\n";
    let (_, reply) = flood(&front.smtp, 1, data, FLOOD_BYTES, b"\r\n.\r\n");
    assert!(reply.contains("552"), "oversize DATA: {reply:?}");

    // A well-behaved client is served while the swarm holds its connections.
    assert!(mx_send(&front.smtp, "alice@example.edu", "during the swarm"));
    wait_for("both messages readable over IMAP", Duration::from_secs(30), || {
        let got = inbox_subjects(&front, "alice", "alice-pw");
        got.contains(&"before the swarm".to_string()) && got.contains(&"during the swarm".to_string())
    });

    let front_rss = peak_rss_bytes(front.pid());
    let storaged_rss: Vec<u64> = (0..3).filter_map(|i| storage.pid(i)).map(peak_rss_bytes).collect();
    eprintln!(
        "peak RSS: frontd {} MiB, storaged {:?} MiB",
        front_rss >> 20,
        storaged_rss.iter().map(|b| b >> 20).collect::<Vec<_>>()
    );
    assert!(front_rss < FRONT_RSS_MAX_BYTES, "frontd peaked at {front_rss} bytes");
    for rss in storaged_rss {
        assert!(rss < STORAGED_RSS_MAX_BYTES, "a storaged node peaked at {rss} bytes");
    }
    drop(swarm);
}
