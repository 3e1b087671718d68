//! Sieve scripts and the messages they run on, both from strangers: a user uploads any
//! script over ManageSieve, anyone sends any message. Compiling never panics, is
//! deterministic and names a place inside the script; running a compiled script on a
//! message never panics, stays within every limit and ends within its step budget.
//! Input: the script, then a NUL byte, then the message (no NUL: the script alone).

use sieve::{Action, Context, Envelope, Limits, NoIncludes, State};

struct Nothing;

impl State for Nothing {
    fn mailbox_exists(&self, name: &str) -> bool {
        name.len().is_multiple_of(2)
    }
    fn duplicate_seen(&self, key: &str) -> bool {
        key.len().is_multiple_of(3)
    }
}

/// Small enough that one input runs in milliseconds.
fn limits() -> Limits {
    Limits { steps: 200_000, script_bytes: 64 * 1024, ..Limits::default() }
}

/// Compiling only.
pub fn compile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = limits();
    let first = sieve::compile(text, "fuzz", &limits, &NoIncludes);
    assert_eq!(first, sieve::compile(text, "fuzz", &limits, &NoIncludes), "compiling is deterministic");
    if let Err(err) = first {
        let lines = text.split('\n').count() as u32;
        assert!(err.pos.line >= 1 && err.pos.line <= lines + 1, "error at {} of {lines} lines", err.pos);
        assert!(!err.message.is_empty());
    }
}

/// Compiling and running.
pub fn run(data: &[u8]) {
    let (script, message) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, b"From: a@b.c\r\nTo: d@e.f\r\nSubject: x\r\n\r\nbody\r\n".as_slice()),
    };
    let Ok(text) = std::str::from_utf8(script) else { return };
    let limits = limits();
    let Ok(program) = sieve::compile(text, "fuzz", &limits, &NoIncludes) else { return };
    let envelope = Envelope { from: "s@x.org".into(), to: "me@example.edu".into(), auth: None };
    let ctx = Context {
        now_unix_s: 1_780_000_000,
        zone_min: -300,
        spam: Some((5, 50)),
        virus: None,
        environment: vec![("phase".into(), "during".into())],
        own_addresses: vec!["me@example.edu".into()],
        state: &Nothing,
    };
    let Ok(outcome) = sieve::run(&program, message, &envelope, &ctx, &limits) else { return };
    assert!(outcome.actions.len() <= limits.actions + 1, "actions bounded");
    let redirects = outcome.actions.iter().filter(|a| matches!(a, Action::Redirect { .. })).count();
    assert!(redirects <= limits.redirects);
    if outcome.implicit_keep {
        assert!(outcome.actions.iter().any(|a| matches!(a, Action::Store { mailbox, .. } if mailbox == "INBOX")));
    }
    for action in &outcome.actions {
        if let Action::Redirect { address } = action {
            assert!(address.contains('@') && !address.contains(['\r', '\n', ' ']), "{address:?}");
        }
    }
    if let Some(header) = outcome.header {
        // Every edited field is whole lines: no script can inject a line break.
        let text = String::from_utf8_lossy(&header);
        for line in text.split_inclusive('\n') {
            assert!(line.ends_with('\n'), "{text:?}");
        }
        assert!(header.len() <= message.len() + limits.actions * (limits.header_bytes + 512) + 1_000_000);
    }
}
