//! The IMAP session: state (not authenticated, authenticated, selected), one dispatcher
//! over imap-codec's parsed commands, and every mutation proposed through the backend
//! before its tagged OK. Response bytes out; the server owns the socket, TLS, literals and
//! the IDLE wait, and handles logins for it (see [`Outcome`]).

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::fetch::Section as ImapSection;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::status::StatusDataItemName;

use super::backend::{Backend, BackendError};
use super::encode;
use super::fetch::Section;
use super::search::{self};
use super::view::{Sync, View};
use crate::auth::sasl::{self, PlainCredentials};
use crate::auth::ProxyHints;
use crate::mailstore::index::MailboxIndex;
use crate::mailstore::ops::flag;
use crate::mailstore::{MailOp, MailResponse, MailboxName, OpId, Rejection, UserName};

/// Mailboxes every user has, created on first login, with their SPECIAL-USE attribute.
pub const SPECIAL_USE: &[(&str, &str)] =
    &[("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")];

#[path = "cmd/mod.rs"]
mod cmd;

/// The SPECIAL-USE attribute of a mailbox name, if it has one.
fn special_use_of(name: &str) -> Option<&'static str> {
    SPECIAL_USE.iter().find(|(n, _)| *n == name).map(|(_, attr)| *attr)
}

/// What the server must do after a command's response bytes are sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    /// Close the connection (after LOGOUT's responses).
    Logout,
    /// Check these credentials and call [`Session::logged_in`] or [`Session::login_failed`].
    Login {
        tag: String,
        creds: PlainCredentials,
    },
    /// Send `+ ` and feed the next line to [`Session::sasl_response`].
    SaslContinue {
        tag: String,
    },
    /// Send `+ idling`, then [`Session::poll`] on changes until `DONE` ([`Session::idle_done`]).
    Idle {
        tag: String,
    },
    /// Send the OK already in the response, then start TLS.
    StartTls,
    /// COMPRESS=DEFLATE (RFC 4978): answer OK and compress from then on
    /// ([`Session::compression_started`]), or NO if the server has no room for another.
    Compress {
        tag: String,
    },
}

/// What this connection offers.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub starttls: bool,
    pub plaintext_auth: bool,
    pub append_limit: u32,
}

/// One IMAP session over backend `B` (known once logged in).
pub struct Session<B> {
    offer: Offer,
    user: Option<UserName>,
    backend: Option<B>,
    view: Option<View>,
    nonce: [u8; 16],
    ops: u64,
    /// CONDSTORE is enabled (ENABLE, SELECT (CONDSTORE), or a CONDSTORE-only item used).
    condstore: bool,
    /// QRESYNC is enabled (only by ENABLE).
    qresync: bool,
    /// IMAP4rev2 is enabled (RFC 9051 §6.3.1): UTF-8 mailbox names, ESEARCH for every
    /// SEARCH, no RECENT, SELECT answers with the mailbox's LIST line.
    rev2: bool,
    /// The UIDs the last `SEARCH RETURN (SAVE)` kept (RFC 5182), which `$` names.
    saved: Vec<u32>,
    /// Searches kept up to date (CONTEXT=SEARCH), for the selected mailbox.
    contexts: Vec<super::context::Context>,
    /// What NOTIFY watches, and what the client last heard of each watched mailbox.
    notify: Option<Vec<super::notify::Group>>,
    notify_seen: cmd::notify::Seen,
    /// What a front node said in `ID` about the session it forwards.
    hints: ProxyHints,
    /// Both directions are DEFLATE-compressed (RFC 4978).
    compressed: bool,
}

type Reply = (Vec<u8>, Outcome);

/// What the pre-parsers took out of a command before imap-codec parsed the rest (it does not
/// know these extensions' syntax): options the command runs with, passed down as arguments.
#[derive(Default)]
struct Extras {
    /// ESEARCH/ESORT `RETURN` options, with the command's tag (RFC 4731, 5267).
    search_return: Option<(String, Vec<String>)>,
    /// LIST-EXTENDED selection and return options (RFC 5258).
    list_options: Option<super::preparse::ListOptions>,
}

/// ID fields looked at (RFC 2971 allows 30).
const ID_FIELDS_MAX: usize = 30;

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn tagged(tag: &str, status: &str, text: &str) -> Reply {
    (format!("{tag} {status} {text}\r\n").into_bytes(), Outcome::Continue)
}

/// A mailbox name as stored: modified UTF-7 (RFC 3501 §5.1.3), into which an IMAP4rev2
/// session's UTF-8 names (`utf8`) are converted.
fn mailbox_name(m: &Mailbox<'_>, utf8: bool) -> Result<MailboxName, String> {
    match m {
        Mailbox::Inbox => Ok(MailboxName::inbox()),
        Mailbox::Other(o) => mailbox_name_of(o.as_ref(), utf8),
    }
}

/// A mailbox name as the client wrote it, in the stored form: modified UTF-7 from an
/// IMAP4rev2 (`utf8`) session.
fn mailbox_name_of(raw: &[u8], utf8: bool) -> Result<MailboxName, String> {
    let raw = String::from_utf8(raw.to_vec()).map_err(|_| "mailbox name is not UTF-8".to_string())?;
    let stored = if utf8 && !raw.eq_ignore_ascii_case("INBOX") { super::mutf7::encode(&raw) } else { raw };
    MailboxName::parse(&stored).map_err(|e| format!("invalid mailbox name: {e}"))
}

/// A stored name as a session sees it: decoded to UTF-8 for IMAP4rev2 (`utf8`), unless it
/// is not valid modified UTF-7, when it is shown as stored.
fn wire_name(stored: &str, utf8: bool) -> std::borrow::Cow<'_, str> {
    match utf8.then(|| super::mutf7::decode(stored)).flatten() {
        Some(decoded) => decoded.into(),
        None => stored.into(),
    }
}

fn flags_of(list: &[Flag<'_>]) -> (u8, Vec<String>) {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for f in list {
        match f {
            Flag::Seen => bits |= flag::SEEN,
            Flag::Answered => bits |= flag::ANSWERED,
            Flag::Flagged => bits |= flag::FLAGGED,
            Flag::Deleted => bits |= flag::DELETED,
            Flag::Draft => bits |= flag::DRAFT,
            Flag::Keyword(k) => keywords.push(k.as_ref().to_string()),
            // Unknown system flags (\Recent, extensions) cannot be stored.
            Flag::Extension(_) => {}
        }
    }
    (bits, keywords)
}

/// A `* STATUS` line for `items` (upper-case names) of a mailbox, named as the session
/// names it.
/// `recent` is how many of its messages no session has claimed yet.
fn status_line(name: &str, idx: &MailboxIndex, items: &[&str], recent: usize) -> Result<Vec<u8>, String> {
    let count = |bit: u8, set: bool| idx.messages.iter().filter(|m| (m.flags & bit != 0) == set).count();
    let mut parts = Vec::new();
    for item in items {
        parts.push(match *item {
            "MESSAGES" => format!("MESSAGES {}", idx.messages.len()),
            "RECENT" => format!("RECENT {recent}"),
            "UIDNEXT" => format!("UIDNEXT {}", idx.uid_next),
            "UIDVALIDITY" => format!("UIDVALIDITY {}", idx.uid_validity),
            "UNSEEN" => format!("UNSEEN {}", count(flag::SEEN, false)),
            "HIGHESTMODSEQ" => format!("HIGHESTMODSEQ {}", idx.highest_modseq.max(1)),
            "DELETED" => format!("DELETED {}", count(flag::DELETED, true)),
            "SIZE" => format!("SIZE {}", idx.messages.iter().map(|m| m.size).sum::<u64>()),
            other => return Err(format!("unsupported STATUS item {other}")),
        });
    }
    let mut l = b"* STATUS ".to_vec();
    encode::mailbox(&mut l, name);
    l.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
    Ok(l)
}

/// UIDs expunged after `modseq`, within `known` if given. Without tombstones that old, every
/// UID below UIDNEXT that is not present is reported (RFC 7162 allows reporting more).
fn vanished_since(idx: &MailboxIndex, modseq: u64, known: Option<&SequenceSet>) -> Vec<u32> {
    let max_uid = idx.uid_next.saturating_sub(1);
    let within = |u: u32| known.is_none_or(|set| search::in_set(set, u, max_uid));
    match idx.vanished_since(modseq) {
        Some(uids) => uids.into_iter().filter(|u| within(*u)).collect(),
        None => {
            // Bounded by UIDNEXT and, for huge gaps, by what the client says it knows.
            let present: std::collections::HashSet<u32> = idx.messages.iter().map(|m| m.uid).collect();
            (1..=max_uid).filter(|u| !present.contains(u) && within(*u)).take(1_000_000).collect()
        }
    }
}

fn fetch_section(s: &Option<ImapSection<'_>>) -> Section {
    let part = |p: &Option<imap_codec::imap_types::fetch::Part>| -> Vec<u32> {
        p.as_ref().map(|p| p.0.as_ref().iter().map(|n| n.get()).collect()).unwrap_or_default()
    };
    let names = |v: &Vec1<imap_codec::imap_types::core::AString<'_>>| -> Vec<String> {
        v.as_ref().iter().map(|a| String::from_utf8_lossy(a.as_ref()).into_owned()).collect()
    };
    match s {
        None => Section::Full,
        Some(ImapSection::Header(p)) => Section::Header(part(p)),
        Some(ImapSection::Text(p)) => Section::Text(part(p)),
        Some(ImapSection::HeaderFields(p, v)) => Section::HeaderFields { part: part(p), names: names(v), not: false },
        Some(ImapSection::HeaderFieldsNot(p, v)) => Section::HeaderFields { part: part(p), names: names(v), not: true },
        Some(ImapSection::Part(p)) => Section::Part(part(&Some(p.clone()))),
        Some(ImapSection::Mime(p)) => Section::Mime(part(&Some(p.clone()))),
    }
}

/// The `BODY[...]` label of a section as FETCH responses repeat it.
fn section_label(s: &Section) -> String {
    let p = |v: &Vec<u32>| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
    let dot = |v: &Vec<u32>, what: &str| if v.is_empty() { what.to_string() } else { format!("{}.{what}", p(v)) };
    match s {
        Section::Full => String::new(),
        Section::Header(v) => dot(v, "HEADER"),
        Section::Text(v) => dot(v, "TEXT"),
        Section::Part(v) => p(v),
        Section::Mime(v) => dot(v, "MIME"),
        Section::HeaderFields { part, names, not } => {
            let what = if *not { "HEADER.FIELDS.NOT" } else { "HEADER.FIELDS" };
            format!(
                "{} ({})",
                dot(part, what),
                names.iter().map(|n| n.to_ascii_uppercase()).collect::<Vec<_>>().join(" ")
            )
        }
    }
}

impl<B: Backend> Session<B> {
    pub fn new(offer: Offer) -> Self {
        Self {
            offer,
            user: None,
            backend: None,
            view: None,
            nonce: rand::random(),
            ops: 0,
            condstore: false,
            qresync: false,
            rev2: false,
            saved: Vec::new(),
            contexts: Vec::new(),
            notify: None,
            notify_seen: Default::default(),
            hints: ProxyHints::default(),
            compressed: false,
        }
    }

    /// What a front node said about this session (see [`ProxyHints`]).
    pub fn proxy_hints(&self) -> &ProxyHints {
        &self.hints
    }

    pub fn greeting(&self) -> String {
        format!("* OK [CAPABILITY {}] storaged IMAP ready", self.capabilities())
    }

    /// TLS is now active.
    pub fn tls_started(&mut self) {
        self.offer.starttls = false;
        self.offer.plaintext_auth = true;
    }

    fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE"];
        caps.extend(["UIDPLUS", "MOVE", "UNSELECT", "SPECIAL-USE", "CHILDREN", "CONDSTORE", "QRESYNC", "ESEARCH"]);
        caps.extend(["SEARCHRES", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "BINARY", "SORT", "SORT=DISPLAY"]);
        caps.extend(["THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "ESORT", "CONTEXT=SEARCH", "PARTIAL"]);
        caps.extend(["MULTIAPPEND", "CATENATE", "NOTIFY"]);
        if self.user.is_some() && !self.compressed {
            caps.push("COMPRESS=DEFLATE");
        }
        if self.user.is_none() {
            if self.offer.starttls {
                caps.push("STARTTLS");
            }
            caps.push(if self.offer.plaintext_auth { "AUTH=PLAIN" } else { "LOGINDISABLED" });
        }
        let mut s = caps.join(" ");
        s.push_str(&format!(" APPENDLIMIT={}", self.offer.append_limit));
        s
    }

    fn op_id(&mut self) -> OpId {
        self.ops += 1;
        OpId::digest(&[b"imap", &self.nonce, &self.ops.to_le_bytes()])
    }

    fn user(&self) -> &UserName {
        self.user.as_ref().expect("authenticated")
    }

    /// The logged-in user, if any.
    pub fn logged_in_user(&self) -> Option<&UserName> {
        self.user.as_ref()
    }

    fn backend(&self) -> &B {
        self.backend.as_ref().expect("authenticated")
    }

    /// Credentials were accepted: `backend` serves `user` from now on. Creates INBOX and
    /// the special-use mailboxes on first login, subscribed: clients that show only
    /// subscribed folders (Roundcube, Thunderbird by default) show them from the start.
    pub async fn logged_in(&mut self, tag: &str, user: UserName, backend: B) -> Reply {
        let existing = backend.mailboxes(&user);
        for name in std::iter::once("INBOX").chain(SPECIAL_USE.iter().map(|(n, _)| *n)) {
            if !existing.iter().any(|m| m.as_str() == name) {
                let (user, mailbox) = (user.as_str().to_string(), name.to_string());
                let create = MailOp::CreateMailbox { user: user.clone(), mailbox: mailbox.clone() };
                let subscribe = MailOp::Subscribe { user, mailbox, subscribed: true };
                for op in [create, subscribe] {
                    if let Err(e) = backend.propose(self.op_id(), op).await {
                        return tagged(tag, "NO", &format!("[UNAVAILABLE] cannot prepare mailboxes: {e}"));
                    }
                }
            }
        }
        self.user = Some(user);
        self.backend = Some(backend);
        let text = format!("[CAPABILITY {}] logged in", self.capabilities());
        tagged(tag, "OK", &text)
    }

    pub fn login_failed(&mut self, tag: &str, code: &str, why: &str) -> Reply {
        tagged(tag, "NO", &format!("[{code}] {why}"))
    }

    /// Both directions are compressed from now on.
    pub fn compression_started(&mut self) {
        self.compressed = true;
    }

    /// The line after `+ ` of AUTHENTICATE PLAIN.
    pub fn sasl_response(&mut self, tag: &str, line: &[u8]) -> Reply {
        match sasl::decode_plain(&String::from_utf8_lossy(line)) {
            Ok(creds) => (Vec::new(), Outcome::Login { tag: tag.to_string(), creds }),
            Err(sasl::SaslError::Cancelled) => tagged(tag, "BAD", "authentication cancelled"),
            Err(e) => tagged(tag, "NO", &format!("[AUTHENTICATIONFAILED] {e}")),
        }
    }

    /// Untagged updates for the selected mailbox (IDLE, after a change notification).
    pub fn poll(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.sync(&mut out, Sync::Full);
        self.notify_poll(&mut out, false);
        out
    }

    pub fn idle_done(&mut self, tag: &str) -> Vec<u8> {
        let mut out = self.poll();
        line(&mut out, &format!("{tag} OK IDLE terminated"));
        out
    }

    fn sync(&mut self, out: &mut Vec<u8>, mode: Sync) {
        // Kept searches first: their REMOVEFROM numbers are those before expunges are told.
        if mode == Sync::Full {
            self.refresh_contexts(out);
        }
        self.sync_view(out, mode);
        self.refresh_contexts(out);
    }

    fn sync_view(&mut self, out: &mut Vec<u8>, mode: Sync) {
        let (Some(view), Some(backend), Some(user)) = (self.view.as_mut(), self.backend.as_ref(), self.user.as_ref())
        else {
            return;
        };
        match backend.index(user, &view.mailbox) {
            Ok(Some(idx)) => {
                // New mail: this session claims what no other session has seen (\Recent).
                let recent_from = if idx.uid_next > view.uid_next {
                    backend.claim_recent(user, &view.mailbox, &idx, !view.read_only)
                } else {
                    u32::MAX
                };
                for l in view.sync(&idx, mode, recent_from) {
                    line(out, &l);
                }
            }
            Ok(None) => {
                // Deleted or renamed by another session.
                line(out, "* BYE [UNAVAILABLE] the selected mailbox no longer exists");
            }
            Err(e) => tracing::warn!(error = %e, "IMAP sync failed"),
        }
    }

    /// Handle one complete command as read from the client (literals included).
    pub async fn input(&mut self, bytes: &[u8]) -> Reply {
        use imap_codec::decode::Decoder;
        let rewritten;
        let mut bytes = bytes;
        let mut extras = Extras::default();
        if let Some((cmd, options)) = super::preparse::split_search_return(bytes) {
            let tag = super::framing::tag_of(&cmd).unwrap_or("*").to_string();
            if let Err(why) = super::context::check_options(&options) {
                return tagged(&tag, "BAD", &why);
            }
            extras.search_return = Some((tag, options));
            rewritten = cmd;
            bytes = &rewritten;
        }
        let saved_rewritten;
        if bytes.contains(&b'$') {
            if let Some(cmd) = self.substitute_saved(bytes) {
                saved_rewritten = cmd;
                bytes = &saved_rewritten;
            }
        }
        if let Some(tags) = super::context::cancel_update(bytes) {
            let tag = super::framing::tag_of(bytes).unwrap_or("*").to_string();
            if self.view.is_none() {
                return tagged(&tag, "BAD", "select a mailbox first");
            }
            self.contexts.retain(|c| !tags.contains(&c.tag));
            return tagged(&tag, "OK", "CANCELUPDATE completed");
        }
        if let Some(parsed) = super::notify::parse(bytes) {
            let tag = super::framing::tag_of(bytes).unwrap_or("*").to_string();
            return self.notify_command(&tag, parsed);
        }
        if let Some(parsed) = super::append::parse(bytes) {
            let tag = super::framing::tag_of(bytes).unwrap_or("*").to_string();
            return match parsed {
                Ok(a) => self.append_extended(&tag, a).await,
                Err(why) => tagged(&tag, "BAD", &why),
            };
        }
        let list_rewritten;
        match super::preparse::split_list_extended(bytes) {
            Some(Ok((cmd, options))) => {
                extras.list_options = Some(options);
                list_rewritten = cmd;
                bytes = &list_rewritten;
            }
            Some(Err(why)) => return tagged(super::framing::tag_of(bytes).unwrap_or("*"), "BAD", &why),
            None => {}
        }
        match imap_codec::CommandCodec::default().decode(bytes) {
            Ok((b"", cmd)) => self.command(cmd, extras).await,
            _ => {
                let tag = super::framing::tag_of(bytes).unwrap_or("*");
                tagged(tag, "BAD", "syntax error in command")
            }
        }
    }

    /// Handle one parsed command.
    async fn command(&mut self, cmd: Command<'_>, extras: Extras) -> Reply {
        let tag = cmd.tag.as_ref().to_string();
        let authenticated = self.user.is_some();
        let selected = self.view.is_some();
        let needs_auth = !matches!(
            cmd.body,
            CommandBody::Capability
                | CommandBody::Noop
                | CommandBody::Logout
                | CommandBody::Login { .. }
                | CommandBody::Authenticate { .. }
                | CommandBody::StartTLS
                | CommandBody::Id { .. }
        );
        if needs_auth && !authenticated {
            return tagged(&tag, "BAD", "log in first");
        }
        let needs_select = matches!(
            cmd.body,
            CommandBody::Check
                | CommandBody::Close
                | CommandBody::Unselect
                | CommandBody::Expunge
                | CommandBody::ExpungeUid { .. }
                | CommandBody::Search { .. }
                | CommandBody::Sort { .. }
                | CommandBody::Thread { .. }
                | CommandBody::Fetch { .. }
                | CommandBody::Store { .. }
                | CommandBody::Copy { .. }
                | CommandBody::Move { .. }
        );
        if needs_select && !selected {
            return tagged(&tag, "BAD", "select a mailbox first");
        }
        let mut out = Vec::new();
        let result = self.dispatch(&tag, cmd.body, extras, &mut out).await;
        self.finish(&tag, result, out)
    }

    /// The tagged answer to a command's `result`, after the untagged `out` it produced.
    fn finish(&mut self, tag: &str, result: Result<(String, Outcome), Refusal>, mut out: Vec<u8>) -> Reply {
        let (status, text, outcome) = match result {
            Ok((text, outcome)) => ("OK", text, outcome),
            Err(Refusal::No(text)) => ("NO", text, Outcome::Continue),
            Err(Refusal::Bad(text)) => ("BAD", text, Outcome::Continue),
            Err(Refusal::Rejected(r)) => {
                let code = r.imap_code().map(|c| format!("[{c}] ")).unwrap_or_default();
                ("NO", format!("{code}{r}"), Outcome::Continue)
            }
            Err(Refusal::Bye(text)) => {
                line(&mut out, &format!("* BYE {text}"));
                ("NO", text, Outcome::Logout)
            }
        };
        // This command's own changes reach the searches kept up to date, and NOTIFY.
        self.refresh_contexts(&mut out);
        self.notify_poll(&mut out, false);
        if matches!(outcome, Outcome::Continue | Outcome::Logout | Outcome::StartTls) {
            line(&mut out, &format!("{tag} {status} {text}"));
        }
        (out, outcome)
    }

    async fn dispatch(
        &mut self,
        tag: &str,
        body: CommandBody<'_>,
        extras: Extras,
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        let done = |t: &str| Ok((t.to_string(), Outcome::Continue));
        match body {
            CommandBody::Capability => {
                line(out, &format!("* CAPABILITY {}", self.capabilities()));
                done("CAPABILITY completed")
            }
            CommandBody::Noop | CommandBody::Check => {
                self.sync(out, Sync::Full);
                done("completed")
            }
            CommandBody::Logout => {
                line(out, "* BYE logging out");
                Ok(("LOGOUT completed".into(), Outcome::Logout))
            }
            CommandBody::StartTLS => {
                if !self.offer.starttls || self.user.is_some() {
                    return Err(Refusal::Bad("STARTTLS not available".into()));
                }
                Ok(("begin TLS negotiation now".into(), Outcome::StartTls))
            }
            CommandBody::Login { username, password } => {
                if self.user.is_some() {
                    return Err(Refusal::Bad("already logged in".into()));
                }
                if !self.offer.plaintext_auth {
                    return Err(Refusal::No("[PRIVACYREQUIRED] LOGIN needs TLS".into()));
                }
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                let creds = PlainCredentials {
                    authzid: String::new(),
                    authcid: text(username.as_ref()),
                    password: text(password.declassify().as_ref()),
                };
                Ok((String::new(), Outcome::Login { tag: tag.to_string(), creds }))
            }
            CommandBody::Authenticate { mechanism, initial_response } => {
                if self.user.is_some() {
                    return Err(Refusal::Bad("already logged in".into()));
                }
                if !matches!(mechanism, imap_codec::imap_types::auth::AuthMechanism::Plain) {
                    return Err(Refusal::No("unsupported mechanism".into()));
                }
                if !self.offer.plaintext_auth {
                    return Err(Refusal::No("[PRIVACYREQUIRED] AUTHENTICATE needs TLS".into()));
                }
                match initial_response {
                    None => Ok((String::new(), Outcome::SaslContinue { tag: tag.to_string() })),
                    Some(raw) => match sasl::parse_plain(raw.declassify()) {
                        Ok(creds) => Ok((String::new(), Outcome::Login { tag: tag.to_string(), creds })),
                        Err(e) => Err(Refusal::No(format!("[AUTHENTICATIONFAILED] {e}"))),
                    },
                }
            }
            CommandBody::Id { parameters } => {
                // A front node passes the user's mailHost and address here before logging in.
                if self.user.is_none() {
                    for (name, value) in parameters.iter().flatten().take(ID_FIELDS_MAX) {
                        let value = value.0.as_ref().map(|v| String::from_utf8_lossy(v.as_ref()).into_owned());
                        self.hints.set(&String::from_utf8_lossy(name.as_ref()), value.as_deref().unwrap_or(""));
                    }
                }
                line(out, "* ID (\"name\" \"storaged\")");
                done("ID completed")
            }
            CommandBody::Compress { .. } if self.compressed => {
                Err(Refusal::No("[COMPRESSIONACTIVE] DEFLATE is already active".into()))
            }
            // imap-codec knows only DEFLATE, so a parsed COMPRESS names it.
            CommandBody::Compress { .. } => Ok((String::new(), Outcome::Compress { tag: tag.to_string() })),
            CommandBody::Namespace => {
                line(out, "* NAMESPACE ((\"\" \"/\")) NIL NIL");
                done("NAMESPACE completed")
            }
            CommandBody::Enable { capabilities } => {
                use imap_codec::imap_types::extensions::enable::CapabilityEnable;
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    match c {
                        CapabilityEnable::CondStore if !self.condstore => {
                            self.enable_condstore(out);
                            enabled.push("CONDSTORE");
                        }
                        // imap-codec names QRESYNC only as an "other" capability (via Display).
                        other if other.to_string().eq_ignore_ascii_case("QRESYNC") && !self.qresync => {
                            // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                            self.enable_condstore(out);
                            self.qresync = true;
                            if let Some(v) = self.view.as_mut() {
                                v.qresync = true;
                            }
                            enabled.push("QRESYNC");
                        }
                        other if other.to_string().eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 => {
                            self.rev2 = true;
                            if let Some(v) = self.view.as_mut() {
                                v.recent_flag = false;
                            }
                            enabled.push("IMAP4rev2");
                        }
                        _ => {}
                    }
                }
                line(out, &format!("* ENABLED{}{}", if enabled.is_empty() { "" } else { " " }, enabled.join(" ")));
                done("ENABLE completed")
            }
            CommandBody::Select { mailbox, parameters } => self.select(&mailbox, false, &parameters, out),
            CommandBody::Examine { mailbox, parameters } => self.select(&mailbox, true, &parameters, out),
            CommandBody::Create { mailbox } => {
                // `a/b/` declares that names will be made under `a/b`: it creates `a/b`
                // (RFC 3501 §6.3.3).
                let mailbox = match &mailbox {
                    Mailbox::Other(o) if o.as_ref().len() > 1 && o.as_ref().ends_with(b"/") => {
                        let trimmed = o.as_ref()[..o.as_ref().len() - 1].to_vec();
                        Mailbox::try_from(trimmed).map_err(|_| Refusal::No("invalid mailbox name".into()))?
                    }
                    _ => mailbox.clone(),
                };
                let name = mailbox_name(&mailbox, self.rev2).map_err(Refusal::No)?;
                if name.is_inbox() {
                    return Err(Refusal::No("[ALREADYEXISTS] INBOX exists".into()));
                }
                self.create_superiors(&name).await?;
                let op = MailOp::CreateMailbox { user: self.user().as_str().into(), mailbox: name.as_str().into() };
                self.propose(op).await?;
                done("CREATE completed")
            }
            CommandBody::Delete { mailbox } => {
                let name = mailbox_name(&mailbox, self.rev2).map_err(Refusal::No)?;
                if self.view.as_ref().is_some_and(|v| v.mailbox == name) {
                    self.view = None;
                    self.contexts.clear();
                }
                let op = MailOp::DeleteMailbox { user: self.user().as_str().into(), mailbox: name.as_str().into() };
                self.simple_op(op, None).await?;
                done("DELETE completed")
            }
            CommandBody::Rename { from, to } => {
                let (from, to) = (
                    mailbox_name(&from, self.rev2).map_err(Refusal::No)?,
                    mailbox_name(&to, self.rev2).map_err(Refusal::No)?,
                );
                self.create_superiors(&to).await?;
                let op = MailOp::RenameMailbox {
                    user: self.user().as_str().into(),
                    from: from.as_str().into(),
                    to: to.as_str().into(),
                };
                self.propose(op).await?;
                done("RENAME completed")
            }
            CommandBody::Subscribe { mailbox } => self.subscribe(&mailbox, true).await,
            CommandBody::Unsubscribe { mailbox } => self.subscribe(&mailbox, false).await,
            CommandBody::List { reference, mailbox_wildcard } => {
                self.list(&reference, &mailbox_wildcard, extras.list_options, false, out)
            }
            CommandBody::Lsub { reference, mailbox_wildcard } => {
                self.list(&reference, &mailbox_wildcard, None, true, out)
            }
            CommandBody::Status { mailbox, item_names } => self.status(&mailbox, &item_names, out),
            CommandBody::Append { mailbox, flags, date, message } => {
                self.append(&mailbox, &flags, date, message, out).await
            }
            CommandBody::Close => {
                self.saved.clear();
                self.contexts.clear();
                if let Some(v) = self.view.take() {
                    if !v.read_only {
                        let deleted = self.deleted_uids(&v, None);
                        if !deleted.is_empty() {
                            let op = MailOp::Expunge {
                                user: self.user().as_str().into(),
                                mailbox: v.mailbox.as_str().into(),
                                uids: deleted,
                            };
                            self.propose(op).await?;
                        }
                    }
                }
                done("CLOSE completed")
            }
            CommandBody::Unselect => {
                self.saved.clear();
                self.contexts.clear();
                self.view = None;
                done("UNSELECT completed")
            }
            CommandBody::Expunge => self.expunge(None, out).await,
            CommandBody::ExpungeUid { sequence_set } => self.expunge(Some(&sequence_set), out).await,
            CommandBody::Search { charset, criteria, uid } => {
                cmd::search::check_charset(charset.as_ref())?;
                let saves = extras.search_return.as_ref().is_some_and(|(_, o)| o.iter().any(|x| x == "SAVE"));
                let result = self.search(tag, criteria.as_ref(), uid, extras.search_return, out);
                if result.is_err() && saves {
                    // A failed SEARCH that was to save leaves `$` empty (RFC 5182 §2.1).
                    self.saved.clear();
                }
                result
            }
            CommandBody::Sort { sort_criteria, charset, search_criteria, uid } => {
                cmd::search::check_charset(Some(&charset))?;
                self.sort(sort_criteria.as_ref(), search_criteria.as_ref(), uid, extras.search_return, out)
            }
            CommandBody::Thread { algorithm, charset, search_criteria, uid } => {
                cmd::search::check_charset(Some(&charset))?;
                self.thread(&algorithm, search_criteria.as_ref(), uid, out)
            }
            CommandBody::Fetch { sequence_set, macro_or_item_names, uid, modifiers } => {
                use imap_codec::imap_types::command::FetchModifier;
                let mut changed_since = None;
                let mut vanished = false;
                for m in &modifiers {
                    match m {
                        FetchModifier::ChangedSince(n) => changed_since = Some(n.get()),
                        FetchModifier::Vanished => vanished = true,
                    }
                }
                if vanished {
                    // RFC 7162 §3.2.6: UID FETCH only, with CHANGEDSINCE, after ENABLE QRESYNC.
                    let (true, true, Some(since)) = (self.qresync, uid, changed_since) else {
                        return Err(Refusal::Bad("VANISHED needs QRESYNC, UID FETCH and CHANGEDSINCE".into()));
                    };
                    let view = self.selected()?;
                    let idx = self.index_of(&view.mailbox)?;
                    let gone = vanished_since(&idx, since, Some(&sequence_set));
                    if !gone.is_empty() {
                        line(out, &format!("* VANISHED (EARLIER) {}", encode::uid_set(&gone)));
                    }
                }
                self.fetch(&sequence_set, macro_or_item_names, uid, changed_since, out).await
            }
            CommandBody::Store { sequence_set, kind, response, flags, uid, modifiers } => {
                use imap_codec::imap_types::command::StoreModifier;
                let unchanged_since = modifiers.iter().map(|StoreModifier::UnchangedSince(n)| *n).next();
                self.store(&sequence_set, kind, response, &flags, uid, unchanged_since, out).await
            }
            CommandBody::Copy { sequence_set, mailbox, uid } => {
                self.copy(&sequence_set, &mailbox, uid, false, out).await
            }
            CommandBody::Move { sequence_set, mailbox, uid } => {
                self.copy(&sequence_set, &mailbox, uid, true, out).await
            }
            CommandBody::Idle => Ok((String::new(), Outcome::Idle { tag: tag.to_string() })),
            other => Err(Refusal::Bad(format!("{} is not supported", other.name()))),
        }
    }
}

impl<B: Backend> Session<B> {
    async fn propose(&mut self, op: MailOp) -> Result<MailResponse, Refusal> {
        let id = self.op_id();
        match self.backend().propose(id, op).await {
            Ok(MailResponse::Rejected(why)) => Err(Refusal::Rejected(why)),
            Ok(r) => Ok(r),
            Err(BackendError::Unavailable(e)) => Err(Refusal::No(format!("[UNAVAILABLE] not committed: {e}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Propose `op`; refuse with `pre_check` (if given) without proposing.
    async fn simple_op(&mut self, op: MailOp, pre_check: Option<&str>) -> Result<(), Refusal> {
        if let Some(why) = pre_check {
            return Err(Refusal::No(why.to_string()));
        }
        self.propose(op).await.map(|_| ())
    }

    /// Create the missing superiors of `name` (`a` and `a/b` for `a/b/c`), as RFC 3501
    /// §6.3.3 asks, so every level of a hierarchy a client made is a mailbox it can select.
    async fn create_superiors(&mut self, name: &MailboxName) -> Result<(), Refusal> {
        let existing = self.backend().mailboxes(self.user());
        let levels: Vec<usize> = name.as_str().match_indices('/').map(|(at, _)| at).collect();
        for at in levels {
            let parent = &name.as_str()[..at];
            if parent.eq_ignore_ascii_case("INBOX") || existing.iter().any(|m| m.as_str() == parent) {
                continue;
            }
            let op = MailOp::CreateMailbox { user: self.user().as_str().into(), mailbox: parent.into() };
            match self.propose(op).await {
                // Another session made it meanwhile: just as good.
                Err(Refusal::Rejected(Rejection::MailboxExists(_))) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    async fn subscribe(&mut self, mailbox: &Mailbox<'_>, on: bool) -> Result<(String, Outcome), Refusal> {
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let op = MailOp::Subscribe { user: self.user().as_str().into(), mailbox: name.as_str().into(), subscribed: on };
        self.propose(op).await?;
        Ok((if on { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" }.into(), Outcome::Continue))
    }

    /// The selected mailbox's view; commands that need one are refused before they run
    /// when there is none, so this is BAD only if that check was missed, never a panic.
    fn selected(&self) -> Result<&View, Refusal> {
        self.view.as_ref().ok_or_else(|| Refusal::Bad("select a mailbox first".into()))
    }

    fn selected_mut(&mut self) -> Result<&mut View, Refusal> {
        self.view.as_mut().ok_or_else(|| Refusal::Bad("select a mailbox first".into()))
    }

    fn index_of(&self, name: &MailboxName) -> Result<std::sync::Arc<MailboxIndex>, Refusal> {
        match self.backend().index(self.user(), name) {
            Ok(Some(idx)) => Ok(idx),
            Ok(None) => Err(Refusal::No(format!("[NONEXISTENT] no mailbox {name}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// CONDSTORE is on from now; the first time, with a mailbox selected, the client learns
    /// its HIGHESTMODSEQ (RFC 7162 §3.1: a CONDSTORE-enabling command after SELECT).
    fn enable_condstore(&mut self, out: &mut Vec<u8>) {
        let first = !self.condstore;
        self.condstore = true;
        let Some(v) = self.view.as_mut() else { return };
        v.condstore = true;
        let mailbox = v.mailbox.clone();
        if first {
            if let Ok(idx) = self.index_of(&mailbox) {
                line(out, &format!("* OK [HIGHESTMODSEQ {}] highest", idx.highest_modseq.max(1)));
            }
        }
    }

    fn select(
        &mut self,
        mailbox: &Mailbox<'_>,
        read_only: bool,
        parameters: &[imap_codec::imap_types::command::SelectParameter],
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        use imap_codec::imap_types::command::SelectParameter;
        // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1); leaving one says so
        // before anything about the next (RFC 7162 §3.2.11, RFC 9051 [CLOSED]).
        self.contexts.clear();
        if self.view.take().is_some() {
            line(out, "* OK [CLOSED] previous mailbox closed");
        }
        let mut resync = None;
        for p in parameters {
            match p {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync { .. } if !self.qresync => {
                    return Err(Refusal::Bad("ENABLE QRESYNC first".into()));
                }
                SelectParameter::QResync { uid_validity, mod_sequence_value, known_uids, .. } => {
                    resync = Some((uid_validity.get(), mod_sequence_value.get(), known_uids.clone()));
                }
            }
        }
        self.saved.clear();
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let idx = self.index_of(&name)?;
        let recent_from = self.backend().claim_recent(self.user(), &name, &idx, !read_only);
        let (mut view, lines) = View::open(name, read_only, &idx, recent_from);
        view.recent_flag = !self.rev2;
        view.condstore = self.condstore;
        view.qresync = self.qresync;
        for l in lines {
            // IMAP4rev2 has no \Recent and no [UNSEEN] (RFC 9051 §6.3.2).
            if !(self.rev2 && (l.ends_with(" RECENT") || l.starts_with("* OK [UNSEEN "))) {
                line(out, &l);
            }
        }
        if self.rev2 {
            // ... and names the mailbox in a LIST response, as LIST would show it.
            let names = self.backend().mailboxes(self.user());
            let names: std::collections::BTreeSet<&str> = names.iter().map(MailboxName::as_str).collect();
            let attrs = super::list::attributes(view.mailbox.as_str(), &names, special_use_of);
            let mut l = format!("* LIST ({}) \"/\" ", attrs.join(" ")).into_bytes();
            encode::mailbox(&mut l, &wire_name(view.mailbox.as_str(), true));
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\r\n");
        }
        if let Some((_, modseq, known)) = resync.filter(|r| r.0 == idx.uid_validity) {
            // RFC 7162 §3.2.5: what vanished and what changed since the client's modseq.
            let vanished = vanished_since(&idx, modseq, known.as_ref());
            if !vanished.is_empty() {
                line(out, &format!("* VANISHED (EARLIER) {}", encode::uid_set(&vanished)));
            }
            for (k, m) in idx.messages.iter().enumerate().filter(|(_, m)| m.modseq > modseq) {
                let flags = encode::flags_recent(m.flags, &m.keywords, view.shows_recent(m.uid));
                line(out, &format!("* {} FETCH (UID {} FLAGS {flags} MODSEQ ({}))", k + 1, m.uid, m.modseq));
            }
        }
        self.view = Some(view);
        let mode = if read_only { "[READ-ONLY] EXAMINE" } else { "[READ-WRITE] SELECT" };
        Ok((format!("{mode} completed"), Outcome::Continue))
    }

    fn list(
        &mut self,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        options: Option<super::preparse::ListOptions>,
        lsub: bool,
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        use super::preparse::ListOptions;
        let verb = if lsub { "LSUB" } else { "LIST" };
        let first: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let more = options.as_ref().map(|o| o.more_patterns.clone()).unwrap_or_default();
        if first.is_empty() && more.is_empty() {
            line(out, &format!("* {verb} (\\Noselect) \"/\" \"\""));
            return Ok((format!("{verb} completed"), Outcome::Continue));
        }
        let has = |list: fn(&ListOptions) -> &Vec<String>, o: &str| {
            options.as_ref().is_some_and(|x| list(x).iter().any(|v| v == o))
        };
        let patterns = std::iter::once(first.to_vec())
            .chain(more.into_iter().map(String::into_bytes))
            .filter(|p| !p.is_empty())
            .map(|p| self.stored_pattern(&reference, &p))
            .collect();
        let query = super::list::Query {
            patterns,
            lsub,
            subscribed: has(|o| &o.select, "SUBSCRIBED"),
            recursive: has(|o| &o.select, "RECURSIVEMATCH"),
            special_use: has(|o| &o.select, "SPECIAL-USE"),
            show_subscribed: has(|o| &o.select, "SUBSCRIBED") || has(|o| &o.ret, "SUBSCRIBED"),
            nonexistent: if self.rev2 { "\\NonExistent" } else { "\\Noselect" },
        };
        let names = self.backend().mailboxes(self.user());
        let subscriptions = self.backend().subscriptions(self.user());
        let names: Vec<&str> = names.iter().map(MailboxName::as_str).collect();
        let subscriptions: Vec<&str> = subscriptions.iter().map(String::as_str).collect();
        let status_items = options.map(|o| o.status).unwrap_or_default();
        for entry in super::list::select(&query, &names, &subscriptions, special_use_of) {
            self.list_line(verb, &entry, &status_items, out)?;
        }
        Ok((format!("{verb} completed"), Outcome::Continue))
    }

    /// Reference and pattern as one pattern over stored names: modified UTF-7 for an
    /// IMAP4rev2 session (wildcards are ASCII and stay as they are).
    fn stored_pattern(&self, reference: &str, pattern: &[u8]) -> Vec<u8> {
        let full = [reference.as_bytes(), pattern].concat();
        if self.rev2 {
            super::mutf7::encode(&String::from_utf8_lossy(&full)).into_bytes()
        } else {
            full
        }
    }

    /// One LIST/LSUB line, its CHILDINFO, and with LIST-STATUS the mailbox's STATUS after it
    /// (RFC 5819).
    fn list_line(
        &self,
        verb: &str,
        entry: &super::list::Entry,
        status_items: &[String],
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let mut l = format!("* {verb} ({}) \"/\" ", entry.attrs.join(" ")).into_bytes();
        encode::mailbox(&mut l, &wire_name(&entry.name, self.rev2));
        if entry.child_subscribed {
            l.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        }
        out.extend_from_slice(&l);
        out.extend_from_slice(b"\r\n");
        if entry.exists && !status_items.is_empty() {
            let Ok(name) = MailboxName::parse(&entry.name) else { return Ok(()) };
            if let Ok(idx) = self.index_of(&name) {
                let items: Vec<&str> = status_items.iter().map(String::as_str).collect();
                let shown = wire_name(&entry.name, self.rev2);
                let recent = self.unclaimed_recent(&name, &idx);
                out.extend_from_slice(&status_line(&shown, &idx, &items, recent).map_err(Refusal::Bad)?);
            }
        }
        Ok(())
    }

    /// Messages of a mailbox that no session has claimed as `\Recent` (STATUS RECENT).
    fn unclaimed_recent(&self, name: &MailboxName, idx: &MailboxIndex) -> usize {
        let first = self.backend().claim_recent(self.user(), name, idx, false);
        idx.messages.iter().filter(|m| m.uid >= first).count()
    }

    fn status(
        &mut self,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let idx = self.index_of(&name)?;
        let names: Vec<&str> = items
            .iter()
            .map(|item| match item {
                StatusDataItemName::Messages => "MESSAGES",
                StatusDataItemName::Recent => "RECENT",
                StatusDataItemName::UidNext => "UIDNEXT",
                StatusDataItemName::UidValidity => "UIDVALIDITY",
                StatusDataItemName::Unseen => "UNSEEN",
                StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ",
                StatusDataItemName::Deleted => "DELETED",
                StatusDataItemName::Size => "SIZE",
                _ => "?",
            })
            .collect();
        if names.contains(&"HIGHESTMODSEQ") {
            self.enable_condstore(out);
        }
        let recent = self.unclaimed_recent(&name, &idx);
        let shown = wire_name(name.as_str(), self.rev2);
        out.extend_from_slice(&status_line(&shown, &idx, &names, recent).map_err(Refusal::Bad)?);
        Ok(("STATUS completed".into(), Outcome::Continue))
    }

    async fn append(
        &mut self,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<imap_codec::imap_types::datetime::DateTime>,
        message: LiteralOrLiteral8<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let data: &[u8] = match &message {
            LiteralOrLiteral8::Literal(l) => l.data(),
            LiteralOrLiteral8::Literal8(l) => &l.data,
        };
        if data.len() > self.offer.append_limit as usize {
            return Err(Refusal::No(format!("[TOOBIG] message exceeds {} bytes", self.offer.append_limit)));
        }
        if self.backend().index(self.user(), &name).ok().flatten().is_none() {
            return Err(Refusal::No(format!("[TRYCREATE] no mailbox {name}")));
        }
        let (bits, keywords) = flags_of(flags);
        let internal_date = match date {
            Some(d) => d.as_ref().timestamp(),
            None => {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
            }
        };
        let op = MailOp::Append {
            user: self.user().as_str().into(),
            mailbox: name.as_str().into(),
            flags: bits,
            keywords,
            internal_date,
            message: super::sendable::sendable(data).into_owned(),
        };
        let resp = self.propose(op).await?;
        if self.view.as_ref().is_some_and(|v| v.mailbox == name) {
            self.sync(out, Sync::NoExpunge);
        }
        match resp {
            MailResponse::Appended { uid_validity, uid } => {
                Ok((format!("[APPENDUID {uid_validity} {uid}] APPEND completed"), Outcome::Continue))
            }
            _ => Ok(("APPEND completed".into(), Outcome::Continue)),
        }
    }

    /// The command with `$` replaced by the saved search result, as message numbers or
    /// UIDs of the messages the client still knows; `None` if it uses no `$`.
    fn substitute_saved(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let view = self.view.as_ref()?;
        let kept: Vec<(usize, u32)> = self.saved.iter().filter_map(|u| view.seq_of(*u).map(|q| (q, *u))).collect();
        let nothing = super::preparse::SAVED_NOTHING.to_string();
        let set = |numbers: Vec<u32>| if numbers.is_empty() { nothing.clone() } else { encode::uid_set(&numbers) };
        let uids = set(kept.iter().map(|k| k.1).collect());
        let seqs = set(kept.iter().map(|k| k.0 as u32).collect());
        super::preparse::substitute_saved(bytes, &uids, &seqs)
    }

    /// BAD for message numbers the client was never told about (UID sets are lenient).
    fn check_seq_set(&self, set: &SequenceSet, uid: bool) -> Result<(), Refusal> {
        let exists = self.view.as_ref().map_or(0, |v| v.exists()) as u32;
        let empty_saved = search::in_set(set, super::preparse::SAVED_NOTHING, 0) && set.0.as_ref().len() == 1;
        if !uid && !empty_saved && search::names_missing_seq(set, exists) {
            return Err(Refusal::Bad(format!("no such message (mailbox has {exists})")));
        }
        Ok(())
    }

    fn deleted_uids(&self, view: &View, within: Option<&SequenceSet>) -> Vec<u32> {
        let Ok(Some(idx)) = self.backend().index(self.user(), &view.mailbox) else { return Vec::new() };
        let max_uid = idx.messages.last().map_or(0, |m| m.uid);
        idx.messages
            .iter()
            .filter(|m| m.flags & flag::DELETED != 0)
            .filter(|m| within.is_none_or(|set| search::in_set(set, m.uid, max_uid)))
            .map(|m| m.uid)
            .collect()
    }

    async fn expunge(&mut self, within: Option<&SequenceSet>, out: &mut Vec<u8>) -> Result<(String, Outcome), Refusal> {
        let view = self.selected()?;
        if view.read_only {
            return Err(Refusal::No("[READ-ONLY] mailbox is read-only".into()));
        }
        let uids = self.deleted_uids(view, within);
        if !uids.is_empty() {
            let op = MailOp::Expunge { user: self.user().as_str().into(), mailbox: view.mailbox.as_str().into(), uids };
            self.propose(op).await?;
        }
        self.sync(out, Sync::Full);
        Ok(("EXPUNGE completed".into(), Outcome::Continue))
    }
}

/// The bytes a read gave, or `None`; a failed read is kept in `failed` for the caller.
fn keep_read<T>(failed: &std::cell::RefCell<Option<BackendError>>, read: Result<Option<T>, BackendError>) -> Option<T> {
    read.map_err(|e| *failed.borrow_mut() = Some(e)).ok().flatten()
}

/// Why a command did not succeed.
enum Refusal {
    No(String),
    Bad(String),
    /// The store refused the operation: `NO` with the refusal's response code.
    Rejected(Rejection),
    /// The session cannot go on here (this node no longer leads the user's mailhost):
    /// `* BYE` with this text, the tagged `NO`, and the connection closes.
    Bye(String),
}

impl From<BackendError> for Refusal {
    /// A failed read or proposal, as RFC 5530 codes: a damaged copy is `[SERVERBUG]`, a
    /// lost leadership ends the session with `[UNAVAILABLE]` (the client reconnects to the
    /// new leader), anything transient is `NO [UNAVAILABLE]`.
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotLeader { .. } => {
                Refusal::Bye("[UNAVAILABLE] this server no longer holds your mailbox; reconnect".into())
            }
            BackendError::Corrupt { uid } => Refusal::No(format!(
                "[SERVERBUG] message UID {uid} cannot be read (the server log says why); nothing of it was sent"
            )),
            BackendError::Unavailable(why) => Refusal::No(format!("[UNAVAILABLE] {why}")),
        }
    }
}
