//! The outbound SMTP client against a scripted peer on loopback: STARTTLS is used when
//! offered (and the transaction then runs inside TLS), a plain peer still gets the mail,
//! SIZE is declared when advertised, per-recipient refusals come back as such, and the
//! message arrives dot-stuffed on the wire and whole after unstuffing.

use std::path::Path;
use std::sync::Arc;

use common::tls::{Stream, Tls};
use frontd::outbound::client::{deliver, opportunistic_tls, Transaction};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn certificate(dir: &Path) -> Tls {
    let files = clusterkit::certs::self_signed(dir, &["mx.remote.test"]).unwrap();
    Tls::load(&files.cert, &files.key).unwrap()
}

/// What the peer saw.
#[derive(Debug, Default)]
struct Seen {
    tls: bool,
    mail: String,
    data: String,
}

/// Serve one session: offer STARTTLS if `tls` is given; refuse recipients starting with "no".
async fn peer(listener: TcpListener, tls: Option<Arc<Tls>>) -> Seen {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut conn = BufReader::new(Stream::Plain(tcp));
    let mut seen = Seen::default();
    conn.get_mut().write_all(b"220 mx.remote.test ESMTP\r\n").await.unwrap();
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await.unwrap() == 0 {
            return seen;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if tls.is_some() && !seen.tls => b"250-mx.remote.test\r\n250-STARTTLS\r\n250 SIZE 1000000\r\n",
            "EHLO" => b"250-mx.remote.test\r\n250 SIZE 1000000\r\n",
            "STAR" => {
                conn.get_mut().write_all(b"220 go ahead\r\n").await.unwrap();
                let Stream::Plain(tcp) = conn.into_inner() else { panic!("TLS twice") };
                conn = BufReader::new(tls.as_ref().unwrap().accept(tcp).await.unwrap());
                seen.tls = true;
                continue;
            }
            "MAIL" => {
                seen.mail = line.trim_end().to_string();
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" if line.contains("<no") => b"550 5.1.1 no such user here\r\n",
            "RCPT" => b"250 2.1.5 ok\r\n",
            "DATA" => {
                conn.get_mut().write_all(b"354 go\r\n").await.unwrap();
                loop {
                    let mut l = String::new();
                    conn.read_line(&mut l).await.unwrap();
                    if l == ".\r\n" {
                        break;
                    }
                    seen.data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                b"250 2.0.0 queued as 1234\r\n"
            }
            "QUIT" => {
                conn.get_mut().write_all(b"221 bye\r\n").await.unwrap();
                return seen;
            }
            _ => b"500 what\r\n",
        };
        conn.get_mut().write_all(reply).await.unwrap();
    }
}

#[tokio::test]
async fn starttls_when_offered_plain_otherwise_and_replies_per_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Arc::new(certificate(dir.path()));
    let message = b"Subject: hi\r\n\r\n.a line with a dot\r\nend\r\n";
    let recipients = vec!["yes@remote.test".to_string(), "no@remote.test".to_string()];
    let t = Transaction { helo: "front.example.edu", from: "alice@example.edu", recipients: &recipients, message };
    for offer_tls in [true, false] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(peer(listener, offer_tls.then(|| tls.clone())));
        let replies = deliver(&addr, "mx.remote.test", &opportunistic_tls(), &t).await.unwrap();
        let seen = server.await.unwrap();
        assert_eq!(replies, ["250 2.0.0 queued as 1234", "550 5.1.1 no such user here"]);
        assert_eq!(seen.tls, offer_tls, "TLS exactly when offered");
        assert_eq!(seen.mail, format!("MAIL FROM:<alice@example.edu> SIZE={}", message.len()));
        assert_eq!(seen.data.as_bytes(), message, "dot-stuffed on the wire, whole after");
    }
}

#[tokio::test]
async fn a_dead_or_refusing_hop_is_an_error_not_a_delivery() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let rcpts = vec!["a@remote.test".to_string()];
    let t = Transaction { helo: "front", from: "", recipients: &rcpts, message: b"x\r\n" };
    assert!(deliver(&addr, "127.0.0.1", &opportunistic_tls(), &t).await.is_err(), "nobody listens");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        tcp.write_all(b"421 4.3.2 shutting down\r\n").await.unwrap();
    });
    let err = deliver(&addr, "127.0.0.1", &opportunistic_tls(), &t).await.unwrap_err();
    assert!(err.to_string().contains("421 4.3.2"), "{err}");
}
