//! ManageSieve from a client, and the addresses and parameters that ride on mail: the shared
//! grammar (lines and literals), the front's pre-login machine, the storage node's session
//! (logged in after the first AUTHENTICATE), SRS reversal of any recipient, and the
//! `XUSER=` parameter. Whatever the bytes: every reply the server writes is whole CRLF lines
//! (nothing a client sends can add a line of its own), a command is read within its
//! bounds, and only an address SRS made itself reverses.

use common::managesieve::{GrammarError, Next, Reader};
use storaged::managesieve::session::{Action, Offer, Session};

use crate::input::Cursor;

const LITERAL_MAX: usize = 64 * 1024;

/// No line of `reply` ends without CRLF or holds a bare CR or LF.
fn whole_lines(reply: &[u8]) {
    let text = String::from_utf8_lossy(reply);
    assert!(text.ends_with("\r\n"), "{text:?}");
    for line in text.split("\r\n") {
        assert!(!line.contains(['\r', '\n']), "{text:?}");
    }
}

/// The next command of `cursor`, literals read as the grammar asks.
fn command(cursor: &mut Cursor, reader: &mut Reader) -> Option<Result<common::managesieve::Command, GrammarError>> {
    loop {
        let line = cursor.line()?;
        match reader.line(line) {
            Ok(Next::Command(c)) => return Some(Ok(c)),
            Ok(Next::Literal(n)) => {
                assert!(n <= LITERAL_MAX);
                reader.literal(cursor.bytes(n).to_vec());
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

fn session(data: &[u8]) {
    let mut s = Session::new(Offer { starttls: data.len().is_multiple_of(2), plaintext_auth: true });
    let mut cursor = Cursor::new(data);
    let mut reader = Reader::new(LITERAL_MAX);
    while let Some(parsed) = command(&mut cursor, &mut reader) {
        let actions = match parsed {
            Ok(c) => s.command(&c),
            Err(e) => s.bad_line(&e.to_string()),
        };
        for action in actions {
            match action {
                Action::Reply(bytes) => whole_lines(&bytes),
                Action::Authenticate(_) => {
                    s.logged_in();
                }
                Action::StartTls => {
                    s.tls_started(true);
                }
                Action::Script(_) | Action::Close => {}
            }
        }
    }
}

fn pre_login(data: &[u8]) {
    use frontd::login::PreLogin;
    use frontd::managesieve::{frame, Offer, PreAuth, Step};
    let mut s = PreAuth::new(Offer { starttls: true, plaintext_auth: data.len().is_multiple_of(3) });
    let mut cursor = Cursor::new(data);
    let mut reader = Reader::new(frontd::managesieve::LITERAL_MAX);
    while let Some(line) = cursor.line() {
        let framed = match frame(&mut reader, line) {
            Ok(Next::Command(c)) => c.verb.into_bytes(),
            Ok(Next::Literal(n)) => {
                reader.literal(cursor.bytes(n).to_vec());
                continue;
            }
            Err(reply) => {
                whole_lines(&reply);
                continue;
            }
        };
        let mut step = s.input(&framed);
        if step == Step::SaslContinue {
            step = s.sasl_response(cursor.line());
        }
        match step {
            Step::Reply(b) | Step::Close(b) | Step::StartTls(b) => whole_lines(&b),
            Step::SaslContinue => panic!("a SASL response was continued"),
            Step::Login(_) => {}
        }
    }
}

fn addresses(data: &[u8]) {
    let srs = common::srs::Srs::new([9; 32]);
    let now_s = 1_780_000_000;
    for line in crate::input::lines(data) {
        let text = String::from_utf8_lossy(line);
        if let Some(original) = srs.reverse(&text, now_s) {
            // What comes back rewrites and comes back again unchanged.
            let domain = text.rsplit_once('@').map_or("", |(_, d)| d);
            let again = srs.reverse(&srs.forward(&original, domain, now_s), now_s);
            assert_eq!(again.map(|a| a.to_ascii_lowercase()), Some(original.to_ascii_lowercase()));
        }
        if let Ok(rules) = common::recipient_rules::RecipientRules::from_param(&text) {
            assert_eq!(common::recipient_rules::RecipientRules::from_param(&rules.to_param()), Ok(rules));
        }
    }
}

pub fn run(data: &[u8]) {
    session(data);
    pre_login(data);
    addresses(data);
}
