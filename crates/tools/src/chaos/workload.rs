//! The chaos workload and its history: SMTP deliveries through the front's MX, IMAP
//! APPENDs through the front, flag changes on what was appended, and then (for some of
//! those messages) an expunge or a MOVE to `Archive`. Every attempt is recorded with its
//! outcome; only what the system acknowledged (`250`, `OK [APPENDUID]`, `OK` to STORE and
//! UID EXPUNGE, `OK [COPYUID]` to MOVE) is promised. Clients are simple and blocking;
//! every wait is bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use smtp_client::blocking::Client as SmtpClient;
use smtp_client::{dot_stuff, ClientError, Deadlines, Dialect, Envelope};

use super::cluster::{PASSWORD, USERS};
use crate::imap_client::{Answer, Client};

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum Event {
    Deliver {
        id: String,
        user: String,
        acked: bool,
        reply: String,
    },
    Append {
        id: String,
        user: String,
        acked: Option<(u32, u32)>,
        reply: String,
    },
    Flag {
        user: String,
        uid_validity: u32,
        uid: u32,
        keyword: String,
        acked: bool,
    },
    /// `UID STORE +FLAGS (\Deleted)` and `UID EXPUNGE` of an appended message.
    Expunge {
        user: String,
        uid: u32,
        acked: bool,
    },
    /// `UID MOVE` of an appended message to [`ARCHIVE`]; `acked` holds the COPYUID target.
    Move {
        user: String,
        uid: u32,
        acked: Option<(u32, u32)>,
        reply: String,
    },
    Nemesis {
        what: String,
    },
}

/// Every event with its time since the start.
pub struct History {
    start: Instant,
    events: Mutex<Vec<(u64, Event)>>,
}

impl History {
    pub fn new() -> Self {
        Self { start: Instant::now(), events: Mutex::new(Vec::new()) }
    }

    pub fn record(&self, e: Event) {
        let at = self.start.elapsed().as_millis() as u64;
        self.events.lock().expect("history lock").push((at, e));
    }

    pub fn events(&self) -> Vec<(u64, Event)> {
        self.events.lock().expect("history lock").clone()
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

/// Every step of an SMTP delivery, at most.
const IO_DEADLINES: Deadlines =
    Deadlines { connect: Duration::from_secs(5), reply: Duration::from_secs(60), data_end: Duration::from_secs(60) };

/// One SMTP transaction; the reply to the end of data (or the refusal before it).
fn smtp_send(addr: &str, to: &str, id: &str) -> Result<String, ClientError> {
    let (mut c, _) = SmtpClient::open(addr, IO_DEADLINES)?;
    c.hello(Dialect::Smtp, "chaos")?;
    let recipients = [to.to_string()];
    let envelope = Envelope {
        from: "chaos@example.org",
        mail_params: "",
        recipients: &recipients,
        rcpt_params: "",
        rcpt_params_each: &[],
    };
    let message = format!("Message-ID: <{id}>\r\nSubject: {id}\r\n\r\nchaos\r\n");
    let t = c.transaction(Dialect::Smtp, &envelope, &dot_stuff(message.as_bytes()))?;
    c.quit();
    Ok(t.per_recipient(Dialect::Smtp)[0].last_line())
}

/// Deliver messages round-robin to the users until `stop`.
pub fn deliverer(front_smtp: &str, seed: u64, worker: usize, stop: &AtomicBool, history: &History) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let user = USERS[(n as usize + worker) % USERS.len()].0;
        let id = format!("d{seed}.{worker}.{n}@chaos");
        n += 1;
        let (acked, reply) = match smtp_send(front_smtp, user, &id) {
            Ok(reply) => (reply.starts_with("250"), reply),
            Err(e) => (false, e.to_string()),
        };
        history.record(Event::Deliver { id, user: user.into(), acked, reply });
        if !acked {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The mailbox appended messages are moved to.
pub const ARCHIVE: &str = "Archive";

/// `[APPENDUID uv uid]` in an APPEND's OK.
fn appenduid(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("[APPENDUID ")? + "[APPENDUID ".len()..];
    let mut parts = rest.split([' ', ']']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `(uidvalidity, new uid)` of a one-message `[COPYUID uv old new]`, in the tagged OK or
/// the untagged OK that RFC 6851 servers send before the expunge.
fn copyuid(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("[COPYUID ")? + "[COPYUID ".len()..];
    let mut parts = rest.split([' ', ']']);
    let uid_validity = parts.next()?.parse().ok()?;
    let _old = parts.next()?;
    Some((uid_validity, parts.next()?.parse().ok()?))
}

/// `[UIDVALIDITY n]` in a SELECT's responses.
pub fn uidvalidity(data: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(data);
    let rest = &text[text.find("[UIDVALIDITY ")? + "[UIDVALIDITY ".len()..];
    rest.split(']').next()?.trim().parse().ok()
}

/// A logged-in connection with INBOX selected.
pub fn login(front_imap: &str, user: &str) -> std::io::Result<(Client, u32)> {
    open(front_imap, user, "SELECT INBOX")
}

/// A logged-in connection with `mailbox` selected read-only, and its UIDVALIDITY.
pub fn examine(front_imap: &str, user: &str, mailbox: &str) -> std::io::Result<(Client, u32)> {
    open(front_imap, user, &format!("EXAMINE {mailbox}"))
}

/// Log `user` in and run `select` (a SELECT or EXAMINE); the connection and UIDVALIDITY.
fn open(front_imap: &str, user: &str, select: &str) -> std::io::Result<(Client, u32)> {
    let ok = |a: Answer| if a.ok() { Ok(a) } else { Err(std::io::Error::other(a.text)) };
    let mut c = Client::connect(front_imap)?;
    ok(c.command(&format!("LOGIN {user} {PASSWORD}"))?)?;
    let a = ok(c.command(select)?)?;
    Ok((c, uidvalidity(&a.data).unwrap_or(0)))
}

/// APPEND messages and add a keyword to each, until `stop`.
pub fn appender(front_imap: &str, seed: u64, stop: &AtomicBool, history: &History) {
    let mut conns: Vec<Option<(Client, u32)>> = USERS.iter().map(|_| None).collect();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = n as usize % USERS.len();
        let user = USERS[k].0;
        let id = format!("a{seed}.{n}@chaos");
        n += 1;
        if conns[k].is_none() {
            match login(front_imap, user) {
                Ok(c) => conns[k] = Some(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        let (c, _) = conns[k].as_mut().expect("connected");
        let message = format!("Message-ID: <{id}>\r\nSubject: {id}\r\n\r\nappended\r\n");
        let answer = c.append("INBOX", "", message.as_bytes());
        let (acked, reply) = match &answer {
            Ok(a) if a.ok() => (appenduid(&a.text), a.text.clone()),
            Ok(a) => (None, a.text.clone()),
            Err(e) => (None, e.to_string()),
        };
        history.record(Event::Append { id: id.clone(), user: user.into(), acked, reply });
        if answer.is_err() {
            conns[k] = None;
            continue;
        }
        let Some((uid_validity, uid)) = acked else { continue };
        let keyword = format!("$k{n}");
        let stored = c.command(&format!("UID STORE {uid} +FLAGS ({keyword})"));
        let acked = matches!(&stored, Ok(a) if a.ok());
        history.record(Event::Flag { user: user.into(), uid_validity, uid, keyword, acked });
        if stored.is_err() {
            conns[k] = None;
            continue;
        }
        // Every fifth message is expunged, every fifth (another) moved; the rest stay.
        let kept = match n % 5 {
            1 => expunge(c, user, uid, history),
            3 => move_to_archive(c, user, uid, history),
            _ => Ok(()),
        };
        if kept.is_err() {
            conns[k] = None;
        }
    }
}

fn expunge(c: &mut Client, user: &str, uid: u32, history: &History) -> std::io::Result<()> {
    let deleted = c.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
    let answer = match deleted {
        Ok(a) if a.ok() => c.command(&format!("UID EXPUNGE {uid}")),
        other => other,
    };
    let acked = matches!(&answer, Ok(a) if a.ok());
    history.record(Event::Expunge { user: user.into(), uid, acked });
    answer.map(drop)
}

fn move_to_archive(c: &mut Client, user: &str, uid: u32, history: &History) -> std::io::Result<()> {
    let answer = c.command(&format!("UID MOVE {uid} {ARCHIVE}"));
    let (acked, reply) = match &answer {
        Ok(a) if a.ok() => {
            let all = format!("{}\n{}", String::from_utf8_lossy(&a.data), a.text);
            (copyuid(&all), a.text.clone())
        }
        Ok(a) => (None, a.text.clone()),
        Err(e) => (None, e.to_string()),
    };
    history.record(Event::Move { user: user.into(), uid, acked, reply });
    answer.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_select_codes_parse() {
        assert_eq!(appenduid("OK [APPENDUID 38505 3955] APPEND completed"), Some((38505, 3955)));
        assert_eq!(appenduid("OK APPEND completed"), None);
        assert_eq!(copyuid("* OK [COPYUID 7 12 3] Moved\nOK done"), Some((7, 3)));
        assert_eq!(copyuid("OK MOVE completed"), None);
        assert_eq!(uidvalidity(b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"), Some(3857529045));
    }
}
