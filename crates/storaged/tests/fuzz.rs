//! Randomized robustness of the protocol layers (a seeded, repeatable fuzz pass that runs
//! with the ordinary tests): grammar-shaped and random inputs into the IMAP session (over
//! a real store), the POP3 and LMTP sessions, SASL, IMAP framing, and the MIME code behind
//! FETCH. Every input gets an answer; none may panic. `FUZZ_SEED` and `FUZZ_ROUNDS`
//! override the defaults; the seed is printed so a failure can be replayed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storaged::imap::backend::StoreBackend;
use storaged::imap::session::{Offer, Outcome, Session};
use storaged::mailstore::{Store, UserName};

const IMAP_TOKENS: &[&str] = &[
    "FETCH",
    "UID",
    "STORE",
    "SEARCH",
    "SELECT",
    "EXAMINE",
    "APPEND",
    "COPY",
    "MOVE",
    "EXPUNGE",
    "LIST",
    "LSUB",
    "STATUS",
    "CREATE",
    "DELETE",
    "RENAME",
    "IDLE",
    "NOOP",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "ENABLE",
    "CONDSTORE",
    "AUTHENTICATE",
    "PLAIN",
    "LOGIN",
    "LOGOUT",
    "INBOX",
    "Sent",
    "1",
    "2",
    "*",
    "1:*",
    "*:1",
    "0",
    "4294967295",
    "(",
    ")",
    "[",
    "]",
    "<0.10>",
    "BODY",
    "BODY.PEEK",
    "BODY[]",
    "BODY[HEADER]",
    "BODY[TEXT]",
    "BODY[1]",
    "BODY[1.2.MIME]",
    "BODY[HEADER.FIELDS (SUBJECT)]",
    "BODYSTRUCTURE",
    "ENVELOPE",
    "FLAGS",
    "+FLAGS",
    "-FLAGS.SILENT",
    "\\Seen",
    "\\Deleted",
    "$Junk",
    "\\Recent",
    "MODSEQ",
    "CHANGEDSINCE",
    "UNCHANGEDSINCE",
    "OR",
    "NOT",
    "ALL",
    "SUBJECT",
    "HEADER",
    "BEFORE",
    "1-Jan-2020",
    "LARGER",
    "\"\"",
    "\"a b\"",
    "\"\\\"\"",
    "{3}",
    "{3+}",
    "{0}",
    "~{2}",
    "%",
    "..",
    "/",
    "../x",
    "\u{e4}",
    "\r\n",
    " ",
    " ",
    " ",
];

fn seed() -> u64 {
    let s = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("FUZZ_SEED={s}");
    s
}

fn rounds(default: usize) -> usize {
    std::env::var("FUZZ_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// A line from grammar tokens with random damage: dropped, swapped or random bytes.
fn shaped_line(rng: &mut StdRng, tokens: &[&str], tag: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if tag {
        out.extend_from_slice(format!("t{} ", rng.gen_range(0..1000)).as_bytes());
    }
    for _ in 0..rng.gen_range(0..12) {
        match rng.gen_range(0..10) {
            0 => out.extend((0..rng.gen_range(1..8)).map(|_| rng.gen::<u8>())),
            1 => out.push(b' '),
            _ => out.extend_from_slice(tokens[rng.gen_range(0..tokens.len())].as_bytes()),
        }
        if rng.gen_bool(0.6) {
            out.push(b' ');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn imap_session_survives_random_commands() {
    let mut rng = StdRng::seed_from_u64(seed());
    let dir = tempfile::tempdir().unwrap();
    let backend = StoreBackend::new(Store::open(dir.path().join("mail"), "g").unwrap());
    let offer = Offer { starttls: false, plaintext_auth: true, append_limit: 1 << 16 };
    let mut s: Session<StoreBackend> = Session::new(offer);
    let user = UserName::parse("fuzz@example.edu").unwrap();
    let (out, _) = s.logged_in("a", user, backend.clone()).await;
    assert!(out.starts_with(b"a OK"));
    s.input(b"b APPEND INBOX {46+}\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\nbody\r\n\r\n").await;
    s.input(b"c SELECT INBOX\r\n").await;
    for _ in 0..rounds(3000) {
        let tagged = rng.gen_bool(0.95);
        let mut line = shaped_line(&mut rng, IMAP_TOKENS, tagged);
        line.extend_from_slice(b"\r\n");
        let (out, outcome) = s.input(&line).await;
        if matches!(outcome, Outcome::Continue | Outcome::Logout) {
            assert!(
                out.ends_with(b"\r\n"),
                "{:?} -> {:?}",
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&out)
            );
        }
        if outcome == Outcome::Logout {
            s = Session::new(offer);
            s.logged_in("a", UserName::parse("fuzz@example.edu").unwrap(), backend.clone()).await;
            s.input(b"c SELECT INBOX\r\n").await;
        }
    }
}

#[test]
fn pop3_lmtp_and_sasl_survive_random_lines() {
    use storaged::lmtp::session::{Context, Limits, Session as Lmtp};
    use storaged::mailstore::UserName;
    use storaged::pop3::session::{DropEntry, Offer as PopOffer, Session as Pop3};

    struct Local;
    impl Context for Local {
        fn resolve(&self, address: &str, mailhost: Option<&str>) -> Option<(UserName, String)> {
            UserName::parse(address).ok().map(|u| (u, mailhost.unwrap_or("g").into()))
        }
        fn not_leader(&self, _: &str) -> Option<String> {
            None
        }
    }
    const POP: &[&str] = &[
        "USER",
        "PASS",
        "STAT",
        "LIST",
        "UIDL",
        "RETR",
        "TOP",
        "DELE",
        "RSET",
        "NOOP",
        "QUIT",
        "CAPA",
        "AUTH",
        "PLAIN",
        "STLS",
        "APOP",
        "1",
        "2",
        "0",
        "-1",
        "99999999999",
        "=",
        "*",
        "AGFAYg==",
    ];
    const LMTP: &[&str] = &[
        "LHLO",
        "MAIL",
        "FROM:",
        "RCPT",
        "TO:",
        "<a@b.c>",
        "<>",
        "DATA",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY",
        "SIZE=10",
        ".",
        "..",
        "BODY=8BITMIME",
    ];
    let mut rng = StdRng::seed_from_u64(seed());
    let mut pop = Pop3::new("h", PopOffer { starttls: true, plaintext_auth: true });
    // Past AUTH (random lines never compute the answer), where the mail commands are.
    let key = common::rpc_channel::ClusterKey::from_secret("fuzz");
    let auth = storaged::lmtp::session::PeerAuth::new(key.clone());
    let answer = common::lmtp_auth::response(&key, &auth.challenge).unwrap();
    let mut lmtp = Lmtp::new("h", Limits { message_max: 4096, recipients_max: 3 }, auth);
    for line in ["LHLO fuzz", "AUTH X-MAILSTORE-CLUSTER", &answer] {
        lmtp.command(line.as_bytes(), &Local);
    }
    for _ in 0..rounds(5000) {
        let line = shaped_line(&mut rng, POP, false);
        let actions = pop.line(&line);
        // RFC 1939 §3: a command's answer starts with a status indicator (or, inside AUTH,
        // the `+ ` continuation of RFC 5034).
        if let Some(storaged::pop3::session::Action::Reply(first)) = actions.first() {
            assert!(
                first.starts_with("+OK") || first.starts_with("-ERR") || first.starts_with("+ "),
                "{:?} -> {first:?}",
                String::from_utf8_lossy(&line)
            );
        }
        if actions.iter().any(|a| matches!(a, storaged::pop3::session::Action::Authenticate(_))) {
            let entries = vec![DropEntry { uid: 1, size: 10, uidl: "u".into() }];
            if rng.gen_bool(0.5) {
                pop.logged_in(entries);
            } else {
                pop.login_failed("AUTH", "no");
            }
        }
        if actions
            .iter()
            .any(|a| matches!(a, storaged::pop3::session::Action::Close | storaged::pop3::session::Action::Commit(_)))
        {
            pop = Pop3::new("h", PopOffer { starttls: true, plaintext_auth: true });
        }
        let line = shaped_line(&mut rng, LMTP, false);
        let actions = if lmtp.in_data() { lmtp.data_line(&line) } else { lmtp.command(&line, &Local) };
        // RFC 5321 §4.2: three digits (2xx-5xx), then a space or, inside a multi-line reply,
        // a hyphen.
        for action in &actions {
            if let storaged::lmtp::session::Action::Reply(r) = action {
                let b = r.as_bytes();
                assert!(
                    b.len() >= 4
                        && (b'2'..=b'5').contains(&b[0])
                        && b[1..3].iter().all(u8::is_ascii_digit)
                        && matches!(b[3], b' ' | b'-'),
                    "{:?} -> {r:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        let b64 = String::from_utf8_lossy(&shaped_line(&mut rng, &["AGFAYg==", "=", "*", "!!"], false)).into_owned();
        let _ = storaged::auth::sasl::decode_plain(&b64);
        let _ = storaged::auth::sasl::parse_plain(&line);
        let _ = storaged::imap::framing::literal_suffix(&line);
        let _ = storaged::imap::framing::tag_of(&line);
    }
}

#[test]
fn mime_code_survives_random_messages() {
    use storaged::imap::fetch::{bodystructure, envelope, section, Section, Source};
    const MIME: &[&str] = &[
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n",
        "Content-Type: message/rfc822\r\n",
        "--b\r\n",
        "--b--\r\n",
        "\r\n",
        "Subject: =?utf-8?q?x?=\r\n",
        "From: \"A\" <a@b>\r\n",
        "To: undisclosed-recipients:;\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        " folded\r\n",
        "text\r\n",
        "\n",
        "Content-Type: text/plain; charset=\"\r\n",
    ];
    let mut rng = StdRng::seed_from_u64(seed());
    for _ in 0..rounds(2000) {
        let msg: Vec<u8> = (0..rng.gen_range(0..40))
            .flat_map(|_| {
                if rng.gen_bool(0.1) {
                    (0..4).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>()
                } else {
                    MIME[rng.gen_range(0..MIME.len())].as_bytes().to_vec()
                }
            })
            .collect();
        let source = Source::new(&msg);
        assert_eq!(section(&source, &Section::Full).as_deref(), Some(&msg[..]), "BODY[] is the whole message");
        let _ = bodystructure(&source, true);
        let _ = envelope(&msg);
        let part: Vec<u32> = (0..rng.gen_range(0..4)).map(|_| rng.gen_range(0..4)).collect();
        for s in [
            Section::Full,
            Section::Part(part.clone()),
            Section::Mime(part.clone()),
            Section::Header(part.clone()),
            Section::Text(part.clone()),
            Section::HeaderFields { part, names: vec!["subject".into()], not: rng.gen() },
        ] {
            let _ = section(&source, &s);
        }
    }
}
