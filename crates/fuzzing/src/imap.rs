//! IMAP from a client: the front's pre-login state machine, and a logged-in storage-node
//! session over a real store (with INBOX selected and one message in it), fed commands
//! framed the way the servers frame them (lines, and literals of the announced length).
//! Every command gets an answer ending in CRLF.

use storaged::imap::backend::StoreBackend;
use storaged::imap::framing::{literal_suffix, tag_of};
use storaged::imap::session::{Offer, Outcome, Session};

use crate::harness::{user, HARNESS};
use crate::input::Cursor;

/// The append limit the session offers (bounds each literal the fuzzer can add).
const APPEND_LIMIT: u32 = 1 << 14;

/// One command as the storage node's reader assembles it: a line, and while it ends in a
/// literal, that many bytes and the next line.
fn next_command(cur: &mut Cursor<'_>) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    loop {
        let line = cur.line()?;
        buf.extend_from_slice(line);
        buf.extend_from_slice(b"\r\n");
        match literal_suffix(line) {
            Some((n, _)) if buf.len() as u64 + n <= u64::from(APPEND_LIMIT) => {
                buf.extend_from_slice(cur.bytes(n as usize));
            }
            _ => return Some(buf),
        }
    }
}

pub(crate) fn assert_framed(input: &[u8], out: &[u8]) {
    assert!(
        out.is_empty() || out.ends_with(b"\r\n"),
        "{:?} -> {:?}",
        String::from_utf8_lossy(input),
        String::from_utf8_lossy(out)
    );
}

/// The front's pre-login machine: greeting to login, STARTTLS and SASL.
fn pre_login(data: &[u8]) {
    use frontd::imap::{framing, Offer, PreAuth, Step};
    use frontd::login::PreLogin;
    let offer = Offer { starttls: data.first().is_some_and(|b| b & 1 == 1), plaintext_auth: true };
    let mut s = PreAuth::new(offer, "IMAP4rev1 IDLE AUTH=PLAIN STARTTLS");
    let mut cur = Cursor::new(data);
    while let Some(cmd) = next_command(&mut cur) {
        let _ = framing(&cmd);
        let mut step = s.input(&cmd);
        if step == Step::SaslContinue {
            let Some(line) = cur.line() else { return };
            step = s.sasl_response(Some(line));
            assert_ne!(step, Step::SaslContinue, "a SASL response is answered");
        }
        match step {
            Step::Reply(b) | Step::Close(b) | Step::StartTls(b) => assert_framed(&cmd, &b),
            Step::SaslContinue => unreachable!("checked above"),
            Step::Login(creds) => assert!(creds.authcid.len() <= data.len(), "credentials come from input"),
        }
    }
}

/// The pure parsers of header fields and extension syntax on their own (the session below
/// reaches them too, but only through commands that parse first): they must never panic,
/// and what they return stays within their bounds.
fn extension_parsers(data: &[u8]) {
    use storaged::imap::{address, append, notify, preparse, preview, sort, thread};
    let entries = address::parse(data);
    assert!(entries.len() <= address::ENTRIES_MAX);
    let _ = address::search_text(&entries);
    if let Some(Ok(a)) = append::parse(data) {
        assert!(a.messages.len() <= append::MESSAGES_MAX);
    }
    let _ = append::parse_url(&String::from_utf8_lossy(data));
    let _ = notify::parse(data);
    let _ = thread::message_ids(data);
    let base = sort::base_subject(&sort::decode_words(data));
    assert!(base.len() <= sort::KEY_MAX_BYTES * 3, "a base subject grew: {}", base.len());
    if let Some((cmd, _)) = preparse::split_status_mailboxid(data) {
        assert!(cmd.len() <= data.len() + 7, "a STATUS grew when MAILBOXID was taken out");
    }
    // Each key and its argument become `UID 7` (SAVEDATESUPPORTED `ALL`), never longer.
    if let Some(cmd) = preparse::substitute_search_extras(data, |_| "7".into()) {
        assert!(cmd.len() <= data.len(), "a SEARCH grew when its extension keys were resolved");
    }
    if let Some((cmd, _)) = preparse::split_fetch_extras(data) {
        assert!(cmd.len() <= data.len() + 3, "a FETCH grew when its extras were taken out");
    }
    // A fields file of any bytes: records only where they check out, never more than fit.
    let (fields, records) = storaged::group::fields_file::decode(data);
    assert!(fields.len() <= records && records <= data.len() / 8, "{records} records in {} bytes", data.len());
    let p = preview::preview(data);
    assert!(p.chars().count() <= preview::PREVIEW_CHARS_MAX && !p.contains(['\r', '\n']));
    if let Ok(mut e) = storaged::mailstore::metadata::entry_name(&String::from_utf8_lossy(data)) {
        e.push('/');
        assert!(storaged::mailstore::metadata::entry_name(&e).is_err(), "a trailing / is never valid");
    }
}

pub fn run(data: &[u8]) {
    pre_login(data);
    extension_parsers(data);
    let _ = tag_of(data);
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let backend = h.backend();
        h.rt.block_on(async {
            let offer = Offer { starttls: false, plaintext_auth: true, append_limit: APPEND_LIMIT };
            let mut s: Session<StoreBackend> = Session::new(offer);
            let (out, _) = s.logged_in("a", user(), backend).await;
            assert!(out.starts_with(b"a OK"), "{}", String::from_utf8_lossy(&out));
            s.input(b"b APPEND INBOX {46+}\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\nbody\r\n\r\n").await;
            s.input(b"c SELECT INBOX\r\n").await;
            let mut cur = Cursor::new(data);
            while let Some(cmd) = next_command(&mut cur) {
                let (out, outcome) = s.input(&cmd).await;
                assert_framed(&cmd, &out);
                match outcome {
                    Outcome::Logout => break,
                    Outcome::SaslContinue { tag } => {
                        let line = cur.line().unwrap_or_default();
                        let (out, _) = s.sasl_response(&tag, line);
                        assert_framed(line, &out);
                    }
                    Outcome::Login { tag, .. } => {
                        let (out, _) = s.login_failed(&tag, "AUTHENTICATIONFAILED", "no");
                        assert_framed(&cmd, &out);
                    }
                    Outcome::Idle { tag } => {
                        assert_framed(&cmd, &s.poll());
                        assert_framed(&cmd, &s.idle_done(&tag));
                    }
                    Outcome::Compress { .. } => s.compression_started(),
                    Outcome::Continue | Outcome::StartTls | Outcome::Unauthenticated => {}
                }
            }
        });
    });
}
