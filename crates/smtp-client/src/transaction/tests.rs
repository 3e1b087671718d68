//! Transactions against a scripted server on an in-memory pipe.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::*;
use crate::connection::Deadlines;

/// A server that answers each command line with the next scripted reply and, after a
/// `354`, reads the body up to the lone dot and answers with the scripted end replies.
/// Returns everything it received.
async fn server(stream: DuplexStream, replies: Vec<&'static str>) -> Vec<u8> {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let mut seen = Vec::new();
    let mut replies = replies.into_iter();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await.unwrap() == 0 {
            break;
        }
        seen.extend_from_slice(&line);
        let Some(reply) = replies.next() else { break };
        w.write_all(reply.as_bytes()).await.unwrap();
        if reply.starts_with("354") {
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).await.unwrap() == 0 {
                    return seen;
                }
                seen.extend_from_slice(&line);
                if line == b".\r\n" {
                    break;
                }
            }
            // The end replies are the next scripted entries, all at once.
            for reply in replies.by_ref() {
                w.write_all(reply.as_bytes()).await.unwrap();
                if reply.ends_with("<end>\r\n") {
                    break;
                }
            }
        }
    }
    // Whatever else the client sends before closing.
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest).await;
    seen.extend_from_slice(&rest);
    seen
}

fn envelope(recipients: &[String]) -> Envelope<'_> {
    Envelope { from: "a@example.org", mail_params: "", recipients, rcpt_params: " XMAILHOST=g1", rcpt_params_each: &[] }
}

async fn run(
    dialect: Dialect,
    recipients: &[&str],
    replies: Vec<&'static str>,
    stop_at: impl Fn(&Reply) -> bool,
) -> (Transcript, String) {
    run_with(false, dialect, recipients, replies, stop_at).await
}

/// As `run`; with `pipelining`, the scripted server first answers a hello offering it.
async fn run_with(
    pipelining: bool,
    dialect: Dialect,
    recipients: &[&str],
    mut replies: Vec<&'static str>,
    stop_at: impl Fn(&Reply) -> bool,
) -> (Transcript, String) {
    if pipelining {
        replies.insert(0, "250-server\r\n250 PIPELINING\r\n");
    }
    let (client, server_end) = tokio::io::duplex(1 << 16);
    let served = tokio::spawn(server(server_end, replies));
    let mut c = Connection::over(client, "test", Deadlines::all(Duration::from_secs(20)));
    if pipelining {
        c.hello(dialect, "client").await.unwrap();
        assert!(c.pipelining());
    }
    let recipients: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
    let t =
        c.transaction(dialect, &envelope(&recipients), &dot_stuff(b"Subject: x\r\n\r\nsecret body\r\n"), stop_at).await;
    drop(c);
    let seen = String::from_utf8(served.await.unwrap()).unwrap();
    (t.unwrap(), seen)
}

#[tokio::test]
async fn lmtp_reads_one_end_reply_per_accepted_recipient() {
    let replies = vec![
        "250 ok\r\n",
        "250 ok\r\n",
        "550 5.1.1 <b@x> no such user\r\n",
        "250 ok\r\n",
        "354 go\r\n",
        "250 2.0.0 <a@x> delivered\r\n",
        "452 4.2.2 <c@x> over quota <end>\r\n",
    ];
    let (t, seen) = run(Dialect::Lmtp, &["a@x", "b@x", "c@x"], replies, |_| false).await;
    let per: Vec<String> = t.per_recipient(Dialect::Lmtp).iter().map(Reply::last_line).collect();
    assert_eq!(per, ["250 2.0.0 <a@x> delivered", "550 5.1.1 <b@x> no such user", "452 4.2.2 <c@x> over quota <end>"]);
    assert!(seen.contains("RCPT TO:<b@x> XMAILHOST=g1\r\n") && seen.contains("secret body"));
}

#[tokio::test]
async fn smtp_gives_every_accepted_recipient_the_end_reply() {
    let replies = vec!["250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 2.0.0 queued <end>\r\n"];
    let (t, _) = run(Dialect::Smtp, &["a@x", "b@x"], replies, |_| false).await;
    assert!(t.per_recipient(Dialect::Smtp).iter().all(|r| r.last_line() == "250 2.0.0 queued <end>"));
}

#[tokio::test]
async fn no_body_after_a_refused_data_or_without_an_accepted_recipient() {
    let (t, seen) = run(Dialect::Lmtp, &["a@x"], vec!["250 ok\r\n", "250 ok\r\n", "503 5.5.1 no\r\n"], |_| false).await;
    assert_eq!(t.per_recipient(Dialect::Lmtp)[0].code, 503);
    assert!(!seen.contains("secret body"), "the body went out after a refused DATA: {seen}");
    let (t, seen) = run(Dialect::Smtp, &["a@x"], vec!["250 ok\r\n", "550 no\r\n"], |_| false).await;
    assert!(t.data.is_none() && !seen.contains("DATA") && !seen.contains("secret body"), "{seen}");
    let (t, seen) = run(Dialect::Smtp, &["a@x", "b@x"], vec!["451 4.3.0 later\r\n"], |_| false).await;
    assert!(t.rcpts.is_empty() && !seen.contains("RCPT"), "{seen}");
    assert!(t.per_recipient(Dialect::Smtp).iter().map(|r| r.code).eq([451, 451]), "a refused MAIL answers for all");
}

#[tokio::test]
async fn a_stop_reply_ends_the_transaction_before_any_data() {
    let replies = vec!["250 ok\r\n", "451 4.3.0 <a@x> not the leader; leader is 127.0.0.1:9\r\n", "250 reset\r\n"];
    let (t, seen) =
        run(Dialect::Lmtp, &["a@x", "b@x"], replies, |r| r.code == 451 && r.message.contains("not the leader")).await;
    assert!(t.stopped && t.rcpts.len() == 1);
    assert!(seen.contains("RSET") && !seen.contains("RCPT TO:<b@x>") && !seen.contains("DATA"), "{seen}");
}

#[tokio::test]
async fn a_silent_server_times_out_instead_of_hanging() {
    let (client, _server_end) = tokio::io::duplex(64);
    let mut c = Connection::over(client, "silent", Deadlines::all(Duration::from_millis(50)));
    assert!(matches!(c.command("NOOP").await, Err(ClientError::Timeout { .. })));
    // A server that never reads: the write itself times out once the pipe is full.
    let big = vec![b'x'; 4096];
    assert!(matches!(c.send_within(&big, Duration::from_millis(50)).await, Err(ClientError::Timeout { .. })));
}

#[tokio::test]
async fn pipelined_envelope_goes_out_in_one_batch_and_the_body_after_354() {
    let replies =
        vec!["250 ok\r\n", "250 ok\r\n", "550 5.1.1 no\r\n", "354 go\r\n", "250 2.0.0 <a@x> delivered <end>\r\n"];
    let (t, seen) = run_with(true, Dialect::Lmtp, &["a@x", "b@x"], replies, |_| false).await;
    let per: Vec<u16> = t.per_recipient(Dialect::Lmtp).iter().map(|r| r.code).collect();
    assert_eq!(per, [250, 550]);
    assert!(seen.contains("RCPT TO:<b@x> XMAILHOST=g1\r\nDATA\r\n") && seen.contains("secret body"), "{seen}");
}

#[tokio::test]
async fn pipelined_refusals_never_release_the_body() {
    // Every recipient refused (a follower): DATA is refused too, and nothing follows.
    let not_leader = "451 4.3.0 not the leader; leader is 127.0.0.1:9\r\n";
    let replies = vec!["250 ok\r\n", not_leader, not_leader, "503 5.5.1 no valid recipients\r\n", "250 reset\r\n"];
    let stop = |r: &Reply| r.message.contains("not the leader");
    let (t, seen) = run_with(true, Dialect::Lmtp, &["a@x", "b@x"], replies, stop).await;
    assert!(t.stopped && t.rcpts.len() == 1 && !seen.contains("secret body"), "{seen}");
    // A stop after another recipient was accepted: the server invites the data, and the
    // client hangs up instead of sending it.
    let replies = vec!["250 ok\r\n", "250 ok\r\n", not_leader, "354 go\r\n"];
    let (t, seen) = run_with(true, Dialect::Lmtp, &["a@x", "b@x"], replies, stop).await;
    assert!(t.stopped && !seen.contains("secret body") && !seen.contains("QUIT"), "{seen}");
    // MAIL refused: the RCPT and DATA replies are read and dropped; no body.
    let replies = vec!["452 4.3.1 busy\r\n", "503 no mail\r\n", "503 no rcpt\r\n"];
    let (t, seen) = run_with(true, Dialect::Smtp, &["a@x"], replies, |_| false).await;
    assert!(t.per_recipient(Dialect::Smtp).iter().all(|r| r.code == 452) && !seen.contains("secret"), "{seen}");
}

#[test]
fn dot_stuffing_and_termination() {
    assert_eq!(dot_stuff(b"a\r\n.b\r\n..c\r\n"), b"a\r\n..b\r\n...c\r\n.\r\n");
    assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
    assert_eq!(dot_stuff(b"bare lf\n"), b"bare lf\r\n.\r\n");
    assert_eq!(dot_stuff(b""), b".\r\n");
    assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n", "a lone dot never ends the data early");
}

#[test]
fn parts_are_stuffed_as_one_message() {
    let whole = b"X-A: 1\r\n.dot\r\nmid.\r\n.end";
    for cut in 0..whole.len() {
        let (a, b) = whole.split_at(cut);
        assert_eq!(dot_stuff_parts(&[a, b]), dot_stuff(whole), "cut at {cut}");
    }
    assert_eq!(dot_stuff_parts(&[b"X-Stamp: y\r\n", b".body\r\n"]), b"X-Stamp: y\r\n..body\r\n.\r\n");
}
