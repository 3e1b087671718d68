//! A message as a stranger can deliver it, through everything IMAP does with a stored
//! message: the MIME tree (its ranges nest and stay in the message, its depth and part count
//! stay bounded), every section and BINARY of every part the tree has, BODYSTRUCTURE (its
//! parentheses balance), ENVELOPE, and a real session's FETCH of every item and SEARCH over
//! it. All of it runs on a worker thread with a quarter of the stack the daemons give their
//! threads: a walk whose stack use grows with the input overflows there, and the fuzzer sees
//! the abort.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use storaged::imap::backend::StoreBackend;
use storaged::imap::fetch::{self, Section, Source};
use storaged::imap::mime::{self, Tree};
use storaged::imap::session::{Offer, Session};

use crate::harness::{user, HARNESS};
use crate::imap::assert_framed;

/// The stack the worker runs on.
const STACK_BYTES: usize = common::daemon::THREAD_STACK_BYTES / 4;
/// The largest message a run appends (the session offers this as its limit).
const MESSAGE_MAX_BYTES: usize = 1 << 20;
/// Section paths tried per message (each is linear in the message).
const PATHS_MAX: usize = 64;

type Job = (Vec<u8>, mpsc::Sender<Result<(), String>>);

/// The worker's queue; the worker lives as long as the process.
fn worker() -> &'static Mutex<mpsc::Sender<Job>> {
    static WORKER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    WORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("mime-fuzz".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                for (msg, reply) in rx {
                    let outcome = std::panic::catch_unwind(|| check(&msg)).map_err(|p| panic_text(&*p));
                    let _ = reply.send(outcome);
                }
            })
            .expect("spawn the worker");
        Mutex::new(tx)
    })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

pub fn run(data: &[u8]) {
    let msg = data[..data.len().min(MESSAGE_MAX_BYTES)].to_vec();
    let (tx, rx) = mpsc::channel();
    worker().lock().unwrap_or_else(|e| e.into_inner()).send((msg, tx)).expect("worker alive");
    if let Err(why) = rx.recv().expect("the worker answers") {
        panic!("on the worker: {why}");
    }
}

fn check(msg: &[u8]) {
    let source = Source::new(msg);
    let tree = source.tree();
    assert_tree(msg, tree);
    for path in paths(tree) {
        for s in [
            Section::Part(path.clone()),
            Section::Mime(path.clone()),
            Section::Header(path.clone()),
            Section::Text(path.clone()),
            Section::HeaderFields { part: path.clone(), names: vec!["subject".into()], not: true },
        ] {
            let _ = fetch::section(&source, &s);
        }
        let _ = fetch::binary(&source, &path);
    }
    for ext in [true, false] {
        assert_balanced(&fetch::bodystructure(&source, ext));
    }
    assert_balanced(&fetch::envelope(msg));
    session(msg);
}

/// The tree's promises: parts in pre-order, each inside its parent's body, header before
/// body, nothing outside the message, line counts right, depth and count bounded.
fn assert_tree(msg: &[u8], tree: &Tree) {
    assert!(!tree.parts.is_empty() && tree.parts.len() <= mime::PARTS_MAX);
    for (id, part) in tree.parts.iter().enumerate() {
        assert!(part.depth <= mime::DEPTH_MAX);
        assert!(part.header.start <= part.header.end && part.header.end <= part.body.start, "{part:?}");
        assert!(part.body.start <= part.body.end && part.body.end <= msg.len(), "{part:?}");
        assert_eq!(part.lines, msg[part.body.clone()].iter().filter(|b| **b == b'\n').count(), "{part:?}");
        for &c in &part.children {
            let child = &tree.parts[c as usize];
            assert!(c as usize > id && child.depth == part.depth + 1);
            assert!(part.body.start <= child.header.start && child.body.end <= part.body.end, "{part:?} {child:?}");
        }
    }
}

/// Every section path that names a part, breadth first, at most [`PATHS_MAX`].
fn paths(tree: &Tree) -> Vec<Vec<u32>> {
    let mut found = vec![Vec::new()];
    let mut next = 0;
    while next < found.len() && found.len() < PATHS_MAX {
        let base = found[next].clone();
        next += 1;
        for n in 1.. {
            let path = [base.as_slice(), &[n]].concat();
            if tree.resolve(&path).is_none() || found.len() >= PATHS_MAX {
                break;
            }
            found.push(path);
        }
    }
    found
}

/// Parentheses balance outside quoted strings and literals, and never go negative.
fn assert_balanced(out: &[u8]) {
    let mut depth = 0i64;
    let mut i = 0;
    while i < out.len() {
        match out[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'"' => {
                i += 1;
                while i < out.len() && out[i] != b'"' {
                    i += if out[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' => {
                let close = out[i..].iter().position(|b| *b == b'}').expect("literal length closes") + i;
                let len: usize =
                    std::str::from_utf8(&out[i + 1..close]).unwrap().trim_end_matches('+').parse().unwrap();
                assert_eq!(&out[close + 1..close + 3], b"\r\n", "literal framing");
                i = close + 2 + len;
            }
            _ => {}
        }
        assert!(depth >= 0, "{}", String::from_utf8_lossy(out));
        i += 1;
    }
    assert_eq!(depth, 0, "{}", String::from_utf8_lossy(out));
}

/// The message appended to a real store and read back by a session: FETCH of every item,
/// SEARCH over its text; then expunged so the store stays small.
fn session(msg: &[u8]) {
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let backend = h.backend();
        h.rt.block_on(async {
            let offer = Offer { starttls: false, plaintext_auth: true, append_limit: MESSAGE_MAX_BYTES as u32 + 2 };
            let mut s: Session<StoreBackend> = Session::new(offer);
            let (out, _) = s.logged_in("a", user(), backend).await;
            assert!(out.starts_with(b"a OK"), "{}", String::from_utf8_lossy(&out));
            let mut append = format!("b APPEND INBOX {{{}+}}\r\n", msg.len()).into_bytes();
            append.extend_from_slice(msg);
            append.extend_from_slice(b"\r\n");
            let (out, _) = s.input(&append).await;
            assert_framed(&append, &out);
            for cmd in [
                &b"c SELECT INBOX\r\n"[..],
                b"d FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE BINARY.SIZE[1] BODY.PEEK[] \
BODY.PEEK[1.1.1.1.1] BODY.PEEK[1.MIME] BODY.PEEK[2.1.HEADER] BODY.PEEK[TEXT] BINARY.PEEK[1] BINARY.PEEK[1.1])\r\n",
                b"e SEARCH TEXT \"core\" BODY \"x\" SUBJECT \"s\" FROM \"a\"\r\n",
                b"f SEARCH SENTBEFORE 1-Jan-2030 OR LARGER 10 HEADER Content-Type multipart\r\n",
                b"g STORE 1:* +FLAGS.SILENT (\\Deleted)\r\n",
                b"h EXPUNGE\r\n",
            ] {
                let (out, _) = s.input(cmd).await;
                assert_framed(cmd, &out);
                let tag = &cmd[..2];
                let tagged = out.split(|b| *b == b'\n').any(|l| l.starts_with(tag));
                assert!(tagged, "{} -> no tagged reply", String::from_utf8_lossy(cmd));
            }
        });
    });
}
