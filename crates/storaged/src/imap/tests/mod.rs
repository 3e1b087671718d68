//! The IMAP session without sockets: commands as bytes in, responses out, over a real
//! store (no replication). One file per RFC or extension group; the helpers here drive a
//! session and parse what it answers with imap-codec's response grammar, an
//! independent reading of the RFC, so tests can assert on values rather than substrings.

use std::sync::Arc;

use super::backend::{Backend, StoreBackend};
use crate::imap::session::{Offer, Outcome, Session};
use crate::mailstore::{MailOp, MailboxName, OpId, Store, UserName};
use imap_codec::imap_types::response::{Code, Data, Response, Status, StatusKind};

struct Harness {
    _dir: tempfile::TempDir,
    backend: StoreBackend,
}

const USER: &str = "alice@example.edu";

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("mail"), "g").unwrap();
    Harness { _dir: dir, backend: StoreBackend::new(store) }
}

fn offer() -> Offer {
    Offer { starttls: false, plaintext_auth: true, append_limit: 1 << 20 }
}

impl Harness {
    async fn session(&self) -> Session<StoreBackend> {
        let mut s = Session::new(offer());
        let (out, outcome) = s.input(b"a0 LOGIN alice@example.edu secret\r\n").await;
        assert!(out.is_empty());
        let Outcome::Login { tag, creds } = outcome else { panic!("{outcome:?}") };
        assert_eq!((creds.authcid.as_str(), creds.password.as_str()), (USER, "secret"));
        let (out, _) = s.logged_in(&tag, UserName::parse(USER).unwrap(), self.backend.clone()).await;
        assert!(text(&out).starts_with("a0 OK [CAPABILITY"), "{}", text(&out));
        s
    }

    async fn deliver(&self, body: &str) {
        let op = MailOp::Deliver { recipients: vec![USER.into()], internal_date: 1_700_000_000, message: body.into() };
        self.backend.propose(OpId::digest(&[body.as_bytes()]), op).await.unwrap();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn run(s: &mut Session<StoreBackend>, cmd: &str) -> String {
    let (out, outcome) = s.input(format!("{cmd}\r\n").as_bytes()).await;
    assert!(matches!(outcome, Outcome::Continue | Outcome::Logout), "{cmd}: {outcome:?}");
    let out = text(&out);
    // Every answer must parse, but those of extensions imap-codec's grammar lacks.
    if !beyond_grammar(&out) {
        responses(&out);
    }
    out
}

/// Responses of extensions imap-codec does not parse: ESEARCH (RFC 4731), PREVIEW (RFC
/// 8970), a BINARY partial's origin (RFC 3516), OBJECTID's FETCH and STATUS items (RFC 8474).
fn beyond_grammar(out: &str) -> bool {
    out.contains("* ESEARCH")
        || out.contains(" PREVIEW ")
        || (out.contains("BINARY[") && out.contains("]<"))
        || out.contains("EMAILID (")
        || out.contains("THREADID (")
        || out.contains("SAVEDATE ")
        || (out.contains("* STATUS") && out.contains("MAILBOXID ("))
}

fn tagged_status(out: &str, tag: &str) -> String {
    out.lines().find(|l| l.starts_with(&format!("{tag} "))).unwrap_or_else(|| panic!("no {tag} in {out}")).to_string()
}

/// Every response in `out`, parsed: a response the grammar rejects fails the test, so what
/// a test asserts on is also known to be well-formed. [`run`] checks every answer this way.
fn responses(out: &str) -> Vec<Response<'static>> {
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::ToStatic;
    let mut rest = out.as_bytes();
    let mut parsed = Vec::new();
    while !rest.is_empty() {
        let (next, r) = imap_codec::ResponseCodec::default()
            .decode(rest)
            .unwrap_or_else(|e| panic!("not a valid response ({e:?}) at {:?}", String::from_utf8_lossy(rest)));
        parsed.push(r.to_static());
        rest = next;
    }
    parsed
}

/// The untagged data responses in `out`.
fn data(out: &str) -> Vec<Data<'static>> {
    responses(out)
        .into_iter()
        .filter_map(|r| match r {
            Response::Data(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// The tagged status of `tag` in `out`: its kind and response code.
fn status_of(out: &str, tag: &str) -> (StatusKind, Option<Code<'static>>) {
    responses(out)
        .into_iter()
        .find_map(|r| match r {
            Response::Status(Status::Tagged(t)) if t.tag.as_ref() == tag => Some((t.body.kind, t.body.code)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no tagged status {tag} in {out}"))
}

mod append;
mod connection;
mod list;
mod rfc3501;
mod rfc3516;
mod rfc5256;
mod rfc5464;
mod rfc5465;
mod rfc5530;
mod rfc7162;
mod rfc8474;
mod rfc8514;
mod rfc8970;
mod rfc9051;
mod search;
