//! SMTP and LMTP from a client: the front's SMTP session (MX and submission, with AUTH,
//! DATA and BDAT) and the storage node's LMTP session. Every reply is one or more lines
//! starting with a three-digit code; a delivery never carries more recipients or bytes
//! than the limits allow; the Message-ID the logs and the retry key read from a message
//! is bounded and free of control characters.

use std::sync::Arc;

use directory::{parse_ldif, Account};
use frontd::delivery::Resolution;
use frontd::login::Refusal;
use frontd::smtp::session::{Mode, Session, Settings, Step};
use storaged::lmtp::session::{Action, Context, Limits, PeerAuth, Session as Lmtp};
use storaged::mailstore::UserName;

use crate::input::{lines, Cursor};

const MESSAGE_MAX_BYTES: usize = 4096;
const RECIPIENTS_MAX: usize = 3;

fn account() -> Arc<Account> {
    let ldif = "dn: uid=u,dc=example\nobjectClass: qmailUser\nmail: u@example.edu\nmailHost: g\n";
    let record = parse_ldif(ldif).expect("valid LDIF").remove(0);
    Arc::new(Account::from_attributes(&record.dn, &record.attrs).expect("valid account"))
}

fn assert_reply(input: &[u8], r: &str) {
    let coded = r.split("\r\n").all(|l| l.len() >= 3 && l.as_bytes()[..3].iter().all(u8::is_ascii_digit));
    assert!(coded, "{:?} -> {r:?}", String::from_utf8_lossy(input));
}

fn smtp(data: &[u8]) {
    let mode = if data.first().is_some_and(|b| b & 1 == 1) { Mode::Submission } else { Mode::Mx };
    let settings = Settings {
        host: "mx.example.edu".into(),
        mode,
        message_max_bytes: MESSAGE_MAX_BYTES,
        recipients_max: RECIPIENTS_MAX,
        tls_configured: true,
        local_domains: vec!["example.edu".into()],
        domain_aliases: vec![("mail.example.edu".into(), "example.edu".into())],
        helo_deny: vec!["*.dynamic.example.net".into()],
        mail_from_deny: vec!["*@spam.example".into()],
        queue: data.len().is_multiple_of(3),
        relay: false,
        postmaster: None,
        srs: Some((common::srs::Srs::new([1; 32]), 1_780_000_000)),
        // The smallest budget there is, shared by nobody else: its refusals are reachable.
        memory: Some((
            frontd::smtp::memory::BodyMemory::new(frontd::smtp::memory::Limits {
                total_max_bytes: 8 << 20,
                per_address_max_bytes: 1 << 20,
                transactions_per_address_max: 1,
            }),
            std::net::IpAddr::from([192, 0, 2, 1]),
        )),
    };
    let mut s = Session::new(settings, false);
    let mut cur = Cursor::new(data);
    while let Some(line) = cur.line_crlf() {
        let mut step = s.command(line);
        // Follow the steps a command sets off, as the server does, until one needs input.
        for _ in 0..8 {
            step = match step {
                Step::Reply(r) => {
                    assert_reply(line, &r);
                    break;
                }
                Step::Close(r) => {
                    assert_reply(line, &r);
                    return;
                }
                Step::StartTls(r) => {
                    assert_reply(line, &r);
                    s.tls_started();
                    break;
                }
                Step::AuthChallenge(r) => {
                    assert!(r.starts_with("334"), "{r:?}");
                    s.auth_line(cur.line().unwrap_or_default())
                }
                Step::Authenticate(creds) => {
                    let ok = creds.authcid.eq_ignore_ascii_case("u@example.edu");
                    s.authenticated(if ok { Ok(account()) } else { Err(Refusal::Failed) })
                }
                Step::Resolve(address) => {
                    let local = address.to_ascii_lowercase().ends_with("@example.edu");
                    let group = "g".to_string();
                    let resolution = if local {
                        Resolution::Local { account: account(), group }
                    } else {
                        Resolution::Refused("550 5.1.1 no such user".into())
                    };
                    s.resolved(&address, resolution)
                }
                Step::Data(r) => {
                    assert!(r.starts_with("354"), "{r:?}");
                    let mut done = None;
                    while let Some(l) = cur.line_crlf() {
                        if let Some(step) = s.data_line(l) {
                            done = Some(step);
                            break;
                        }
                    }
                    match done {
                        Some(step) => step,
                        None => return,
                    }
                }
                Step::Chunk { size, last } => {
                    let bytes = cur.bytes(size);
                    if bytes.len() < size {
                        return;
                    }
                    s.chunk(bytes, last)
                }
                Step::Deliver => {
                    let envelope = s.envelope();
                    assert!(envelope.recipients.len() + envelope.remote.len() <= RECIPIENTS_MAX, "{envelope:?}");
                    assert!(
                        envelope.message.len() <= MESSAGE_MAX_BYTES + 1024,
                        "message of {}",
                        envelope.message.len()
                    );
                    // What the log and the retry key read of the stranger's header.
                    let id = common::message_log::message_id(&envelope.message);
                    assert!(id.as_ref().is_none_or(|i| i.chars().count() <= common::message_log::FIELD_MAX_CHARS));
                    assert!(id.as_ref().is_none_or(|i| !i.chars().any(char::is_control)), "{id:?}");
                    assert_eq!(envelope.retry_key().is_some(), id.is_some());
                    tracking_facts(&envelope.message);
                    let replies: Vec<String> = envelope.recipients.iter().map(|_| "250 2.0.0 ok".to_string()).collect();
                    s.delivered(&replies)
                }
            };
        }
    }
}

struct Local;

impl Context for Local {
    fn resolve(&self, address: &str, mailhost: Option<&str>) -> Option<(UserName, String)> {
        UserName::parse(address).ok().map(|u| (u, mailhost.unwrap_or("g").into()))
    }
    fn not_leader(&self, group: &str) -> Option<String> {
        (group != "g").then(|| "other:24".into())
    }
}

/// An LMTP session past `AUTH` (the fuzzer cannot compute the answer; what follows
/// authentication is what is worth exploring), or a fresh one if the input's first byte is
/// odd (the unauthenticated state).
fn lmtp_session(data: &[u8]) -> Lmtp {
    let key = common::rpc_channel::ClusterKey::from_secret("fuzz");
    let auth = PeerAuth::new(key.clone());
    let challenge = auth.challenge.clone();
    let mut s = Lmtp::new("h", Limits { message_max: MESSAGE_MAX_BYTES, recipients_max: RECIPIENTS_MAX }, auth);
    if data.first().is_some_and(|b| b % 2 == 1) {
        return s;
    }
    s.command(b"LHLO fuzz", &Local);
    s.command(b"AUTH X-MAILSTORE-CLUSTER", &Local);
    let answer = common::lmtp_auth::response(&key, &challenge).expect("our challenge is base64");
    let out = s.command(answer.as_bytes(), &Local);
    assert!(matches!(&out[..], [Action::Reply(r)] if r.starts_with("235")), "{out:?}");
    s
}

fn lmtp(data: &[u8]) {
    let mut s = lmtp_session(data);
    for line in lines(data) {
        let actions = if s.in_data() { s.data_line(line) } else { s.command(line, &Local) };
        for a in actions {
            match a {
                Action::Reply(r) => assert_reply(line, &r),
                Action::Deliver(e) => {
                    assert!(e.recipients.len() <= RECIPIENTS_MAX && e.data.len() <= MESSAGE_MAX_BYTES, "{e:?}")
                }
                Action::Close => return,
            }
        }
    }
}

pub fn run(data: &[u8]) {
    smtp(data);
    lmtp(data);
}

/// What a storage replica's tracking record reads of the stranger's header: every field
/// bounded and free of control characters (so a record line cannot be forged or split).
fn tracking_facts(message: &[u8]) {
    let facts = common::tracking::MessageFacts::of(message);
    let front = facts.front.iter().flat_map(|h| [&h.helo, &h.ip, &h.host, &h.protocol, &h.id]);
    let fields = [&facts.message_id, &facts.answers].into_iter().chain(facts.return_path.as_ref()).chain(front);
    for field in fields {
        assert!(field.chars().count() <= common::message_log::FIELD_MAX_CHARS, "{field:?}");
        assert!(!field.chars().any(char::is_control), "{field:?}");
    }
}
