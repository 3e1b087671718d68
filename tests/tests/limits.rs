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
    let front = Front::start(root, &storage, ldif_directory());
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
    assert!(reply.contains("a3 BAD") || sent < FLOOD_BYTES, "IMAP endless line: {reply:?} after {sent} bytes");
    // A legal ID of 31 KB (imaptest's) is answered; an over-long line under its tag.
    let values: Vec<String> = (0..30).map(|k| format!("\"k{k}\" \"{}\"", "v".repeat(1000))).collect();
    let id = format!("i1 ID ({})\r\n", values.join(" "));
    let reply = raw(&front.imap, &[id.as_bytes()]);
    assert!(reply.contains("i1 OK"), "a 31 KB ID before login: {reply}");
    let too_long = format!("i2 ID (\"k\" \"{}\")\r\n", "v".repeat(100_000));
    let reply = raw(&front.imap, &[too_long.as_bytes()]);
    assert!(reply.contains("i2 BAD"), "an over-long line is answered under its tag: {reply}");
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

/// One abuser's unfinished 32 MiB transaction (DATA without its end, or BDAT chunks
/// without LAST) from 127.0.0.`source`; the replies it saw.
async fn unfinished_transaction(source: u8, to: String, bdat: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(mut s) = connect_from_async(source, &to).await else { return "no connection".into() };
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut read = async |s: &mut tokio::net::TcpStream, out: &mut Vec<u8>| {
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            out.extend_from_slice(&buf[..n]);
        }
    };
    read(&mut s, &mut replies).await;
    let head = b"EHLO abuser.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.edu>\r\n";
    if s.write_all(head).await.is_err() {
        return String::from_utf8_lossy(&replies).into_owned();
    }
    let line = format!("{}\r\n", "x".repeat(1022));
    let body = line.repeat(1024); // 1 MiB
    if !bdat {
        let _ = s.write_all(b"DATA\r\n").await;
    }
    for _ in 0..32 {
        if bdat {
            let _ = s.write_all(format!("BDAT {}\r\n", body.len()).as_bytes()).await;
        }
        if s.write_all(body.as_bytes()).await.is_err() {
            break;
        }
    }
    // Give the server time to answer what it answers, and keep the transaction open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    read(&mut s, &mut replies).await;
    let _hold = s;
    String::from_utf8_lossy(&replies).into_owned()
}

async fn connect_from_async(source: u8, to: &str) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from(([127, 0, 0, source], 0))).ok()?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to.parse().ok()?)).await.ok()?.ok()
}

/// Finding (hardening): DATA and BDAT bodies were held in memory per connection up to the
/// message limit with no global bound (20 BDAT sessions took frontd to 770 MB), and a DATA
/// session sending a line every few minutes was never cut off. Now 50 unfinished 32 MiB
/// transactions from 5 addresses leave frontd under its bound, a normal client delivers
/// meanwhile, and a slow sender is cut off after the configured pace.
#[test]
fn unfinished_giant_transactions_stay_within_the_body_budget_and_slow_senders_are_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let tune: Tune = Box::new(|c| {
        c.smtp.message_max_bytes = 32 << 20;
        c.smtp.transactions_per_address_max = 8;
        c.smtp.data_rate_grace_s = 3;
        c.smtp.data_rate_min_bytes_per_s = 1000;
    });
    let options = FrontOptions { tune: Some(tune), ..FrontOptions::default() };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front.smtp, "frontd SMTP");

    // The slow sender: DATA, then a short line a second.
    let slow_front = front.smtp.clone();
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&slow_front).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        s.write_all(b"EHLO slow.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<alice@example.edu>\r\nDATA\r\n")
            .unwrap();
        let started = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while started.elapsed() < Duration::from_secs(60) && !String::from_utf8_lossy(&seen).contains("421") {
            let _ = s.write_all(b"one more line\r\n");
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
        }
        (String::from_utf8_lossy(&seen).into_owned(), started.elapsed())
    });

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    std::thread::sleep(Duration::from_millis(400)); // the MX greet delay
    let abusers: Vec<_> =
        (0..50).map(|k| rt.spawn(unfinished_transaction(2 + (k % 5) as u8, front.smtp.clone(), k % 2 == 1))).collect();
    let replies: Vec<String> = rt.block_on(async {
        let mut out = Vec::new();
        for a in abusers {
            out.push(a.await.unwrap());
        }
        out
    });
    let refused = replies.iter().filter(|r| r.contains("452 4.3.1")).count();
    eprintln!("{refused} of 50 transactions refused room at once");
    assert!(refused >= 10, "10 connections per address, 8 transactions allowed: {replies:?}");

    // Meanwhile (the abusers' transactions are still open) a normal client delivers.
    assert!(mx_send(&front.smtp, "alice@example.edu", "during the giant transactions"));
    let front_rss = peak_rss_bytes(front.pid());
    eprintln!("frontd peak RSS {} MiB", front_rss >> 20);
    assert!(front_rss < FRONT_RSS_MAX_BYTES, "frontd peaked at {front_rss} bytes");

    let (seen, took) = slow.join().unwrap();
    eprintln!("slow sender cut off after {took:?}: {seen:?}");
    assert!(seen.contains("421 4.4.2"), "the slow sender is cut off: {seen:?}");
    assert!(took < Duration::from_secs(20), "cut off after {took:?}");
    assert!(inbox_subjects(&front, "alice", "alice-pw").contains(&"during the giant transactions".to_string()));
}
