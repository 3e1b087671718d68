//! Randomized robustness of what frontd parses from strangers and from files (a seeded,
//! repeatable pass that runs with the ordinary tests): the pre-login IMAP and POP3 state
//! machines and IMAP framing, LDIF, directory attributes, lookup keys, password hashes and
//! SASL PLAIN. Every input gets an answer; none may panic. `FUZZ_SEED` and `FUZZ_ROUNDS`
//! override the defaults; the seed is printed so a failure can be replayed.

use common::password::PasswordHash;
use directory::{lookup_key, parse_ldif, Account, AttributeError, Attributes, LdifError, Purpose};
use frontd::login::{PreLogin, Step};
use frontd::{imap, pop3};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const IMAP_TOKENS: &[&str] = &[
    "LOGIN",
    "AUTHENTICATE",
    "PLAIN",
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "ID",
    "NIL",
    "SELECT",
    "INBOX",
    "(",
    ")",
    "\"",
    "\\",
    "{5}",
    "{5+}",
    "{0}",
    "{4294967295}",
    "*",
    "=",
    "AGFsaWNlAHB3",
    "\r\n",
    "\0",
    "~{3}",
];
const POP_TOKENS: &[&str] =
    &["USER", "PASS", "AUTH", "PLAIN", "STLS", "CAPA", "NOOP", "QUIT", "=", "*", "AGJvYgBwdw=="];
const LDIF_TOKENS: &[&str] = &[
    "dn: ",
    "objectClass: qmailUser",
    "mail: ",
    "mail:: ",
    "mailAlternateAddress: ",
    "mailHost: ",
    "uid: ",
    "accountStatus: ",
    "userPassword: {SSHA}",
    "userPassword:: ",
    "mailSizeMax: ",
    "changetype: modify",
    "version: 1",
    "#",
    " ",
    "\n",
    "\r\n",
    ":<",
    "a@b",
    "hermes",
    "disabled",
    "=",
    "//8=",
];

fn seed() -> u64 {
    let s = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("FUZZ_SEED={s}");
    s
}

fn rounds(default: usize) -> usize {
    std::env::var("FUZZ_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Grammar tokens with random damage: random bytes, spaces, truncation.
fn shaped(rng: &mut StdRng, tokens: &[&str], pieces_max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.gen_range(0..pieces_max) {
        match rng.gen_range(0..10) {
            0 => out.extend((0..rng.gen_range(1..8)).map(|_| rng.gen::<u8>())),
            1 => out.push(b' '),
            _ => out.extend_from_slice(tokens[rng.gen_range(0..tokens.len())].as_bytes()),
        }
        if rng.gen_range(0..4) == 0 {
            out.push(b' ');
        }
    }
    if rng.gen_range(0..6) == 0 && !out.is_empty() {
        out.truncate(rng.gen_range(0..out.len()));
    }
    out
}

/// Steps `s` with `command` and, if it asks for a SASL response, with a shaped line: every
/// reply must satisfy `reply_is_well_formed`, and no login may invent a longer name than the
/// longest line the client sent (`longest`, kept across the session's lines).
fn step_checked<P: PreLogin>(
    s: &mut P,
    command: &[u8],
    longest: &mut usize,
    rng: &mut StdRng,
    tokens: &[&str],
    reply_is_well_formed: fn(&[u8]) -> bool,
) {
    let mut step = s.input(command);
    *longest = (*longest).max(command.len());
    if step == Step::SaslContinue {
        let line = shaped(rng, tokens, 4);
        *longest = (*longest).max(line.len());
        step = s.sasl_response(rng.gen::<bool>().then_some(line.as_slice()));
    }
    match step {
        Step::Reply(b) | Step::Close(b) | Step::StartTls(b) => {
            assert!(reply_is_well_formed(&b), "{command:?} got {b:?}");
        }
        Step::SaslContinue => panic!("{command:?}: a SASL response was continued"),
        Step::Login(creds) => assert!(creds.authcid.len() <= *longest, "{command:?} gave {creds:?}"),
    }
}

#[test]
fn pre_login_imap_answers_everything() {
    let mut rng = StdRng::seed_from_u64(seed());
    for _ in 0..rounds(20_000) {
        let offer = frontd::login::Offer { starttls: rng.gen(), plaintext_auth: rng.gen() };
        let mut s = imap::PreAuth::new(offer, "IMAP4rev1 IDLE AUTH=PLAIN STARTTLS");
        let mut line = format!("t{} ", rng.gen_range(0..100)).into_bytes();
        line.extend(shaped(&mut rng, IMAP_TOKENS, 10));
        line.extend_from_slice(b"\r\n");
        // Framing first, as the server does; then the command, whatever framing said.
        let _ = imap::framing(&line);
        step_checked(&mut s, &line, &mut 0, &mut rng, IMAP_TOKENS, |b| {
            b.ends_with(b"\r\n") && (b.starts_with(b"t") || b.starts_with(b"* "))
        });
    }
}

#[test]
fn pre_login_pop3_answers_everything() {
    let mut rng = StdRng::seed_from_u64(seed());
    for _ in 0..rounds(20_000) {
        let mut s = pop3::PreAuth::new(frontd::login::Offer { starttls: rng.gen(), plaintext_auth: rng.gen() });
        let mut longest = 0;
        for _ in 0..rng.gen_range(1..4) {
            let line = shaped(&mut rng, POP_TOKENS, 6);
            step_checked(&mut s, &line, &mut longest, &mut rng, POP_TOKENS, |b| {
                b.ends_with(b"\r\n") && (b.starts_with(b"+OK") || b.starts_with(b"-ERR"))
            });
        }
    }
}

#[test]
fn directory_inputs_parse_or_fail_cleanly() {
    /// An account the directory accepted has a valid, lower-case primary address.
    fn check_account(a: &Account) {
        assert!(common::address::validate(&a.mail).is_ok(), "{:?}", a.mail);
        assert_eq!(a.mail, a.mail.to_lowercase());
    }
    let mut rng = StdRng::seed_from_u64(seed());
    for _ in 0..rounds(20_000) {
        let text = String::from_utf8_lossy(&shaped(&mut rng, LDIF_TOKENS, 24)).into_owned();
        match parse_ldif(&text) {
            Ok(records) => {
                for r in records {
                    if let Ok(a) = Account::from_attributes(&r.dn, &r.attrs) {
                        check_account(&a);
                    }
                }
            }
            // A file's errors point into it; there is no file here to fail reading.
            Err(LdifError::Syntax { line, .. }) => {
                assert!(line >= 1 && line <= text.split('\n').count(), "line {line} of {text:?}")
            }
            Err(LdifError::Attribute(_) | LdifError::Duplicate { .. }) => {}
            Err(e @ (LdifError::Io { .. } | LdifError::TooLarge { .. })) => panic!("{e} from text {text:?}"),
        }
        let word = String::from_utf8_lossy(&shaped(&mut rng, LDIF_TOKENS, 3)).into_owned();
        for purpose in [Purpose::Delivery, Purpose::Login] {
            if let Some(key) = lookup_key(&word, purpose) {
                assert!(!key.is_empty() && key.len() <= 320 && key == key.to_lowercase(), "{word:?} -> {key:?}");
                assert!(!key.chars().any(|c| c.is_control() || c.is_whitespace()), "{word:?} -> {key:?}");
                if purpose == Purpose::Delivery {
                    let (local, domain) = key.rsplit_once('@').expect("an address");
                    assert!(!local.is_empty() && !domain.is_empty() && !local.contains('+'), "{word:?} -> {key:?}");
                }
            }
        }
        let schemes = ["{SSHA}", "{SSHA512}", "{SHA}", "{CRYPT}", "{ARGON2}", "{PLAIN}", "{SHA512-CRYPT}"];
        if let Ok(h) = PasswordHash::parse(&format!("{}{word}", schemes[rng.gen_range(0..schemes.len())])) {
            let _ = h.verify("x");
        }
        let mut attrs = Attributes::new();
        attrs.insert("mail".into(), vec![word.clone()]);
        attrs.insert("mailquotasize".into(), vec![word]);
        match Account::from_attributes("x", &attrs) {
            Ok(a) => check_account(&a),
            Err(AttributeError::Bad { attribute, .. }) => {
                assert!(["mail", "mailQuotaSize"].contains(&attribute), "{attribute}")
            }
            Err(AttributeError::NoMail { .. }) => panic!("the entry has a mail attribute"),
        }
    }
}
