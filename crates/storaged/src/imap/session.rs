//! The IMAP session: state (not authenticated, authenticated, selected), one dispatcher
//! over imap-codec's parsed commands, and every mutation proposed through the backend
//! before its tagged OK. Response bytes out; the server owns the socket, TLS, literals and
//! the IDLE wait, and handles logins for it (see [`Outcome`]).

use std::borrow::Cow;

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::Section as ImapSection;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;

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
    /// UNAUTHENTICATE was answered: the server forgets the login (its group) and reads on.
    Unauthenticated,
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
    /// The logged-in user's quota (unlimited unless a front named one).
    quota: crate::mailstore::quota::Limit,
    /// Both directions are DEFLATE-compressed (RFC 4978).
    compressed: bool,
}

type Reply = (Vec<u8>, Outcome);

/// What a command comes to: the tagged OK's text and what the server does next, or why not.
type Answer = Result<(String, Outcome), Refusal>;

fn ok(text: &str) -> Answer {
    Ok((text.to_string(), Outcome::Continue))
}

/// What the pre-parsers took out of a command before imap-codec parsed the rest (it does not
/// know these extensions' syntax): options the command runs with, passed down as arguments.
#[derive(Default)]
struct Extras {
    /// ESEARCH/ESORT `RETURN` options, with the command's tag (RFC 4731, 5267).
    search_return: Option<(String, Vec<String>)>,
    /// LIST-EXTENDED selection and return options (RFC 5258).
    list_options: Option<super::preparse::ListOptions>,
    /// FETCH items of later extensions (PREVIEW, EMAILID, THREADID).
    fetch_extras: Vec<super::preparse::FetchExtra>,
    /// STATUS asked for MAILBOXID (`true`: nothing else).
    status_mailboxid: Option<bool>,
}

/// ID fields looked at (RFC 2971 allows 30).
const ID_FIELDS_MAX: usize = 30;

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The tag of a command as read (`*` when it has none), for answers before it is parsed.
fn tag_of(bytes: &[u8]) -> String {
    super::framing::tag_of(bytes).unwrap_or("*").to_string()
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
            quota: Default::default(),
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
        caps.extend([
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "ESORT",
            "CONTEXT=SEARCH",
            "CONTEXT=SORT",
            "PARTIAL",
        ]);
        caps.extend(["MULTIAPPEND", "CATENATE", "NOTIFY", "STATUS=DELETED", "METADATA", "METADATA-SERVER"]);
        caps.extend(["PREVIEW", "OBJECTID", "SAVEDATE", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"]);
        if self.user.is_some() && !self.compressed {
            caps.push("COMPRESS=DEFLATE");
        }
        if self.may_unauthenticate() {
            caps.push("UNAUTHENTICATE");
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

    /// Both directions are compressed from now on.
    pub fn compression_started(&mut self) {
        self.compressed = true;
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
        let (bytes, extras) = match self.pre_parse(bytes) {
            Ok(parsed) => parsed,
            Err(reply) => return reply,
        };
        if let Some(reply) = self.own_syntax(&bytes).await {
            return reply;
        }
        match imap_codec::CommandCodec::default().decode(&bytes) {
            Ok((b"", cmd)) => self.command(cmd, extras).await,
            _ => tagged(&tag_of(&bytes), "BAD", "syntax error in command"),
        }
    }

    /// imap-codec's gaps taken out of a command before it parses the rest (see
    /// [`super::preparse`]): the command as imap-codec can read it, and what was taken out.
    fn pre_parse<'a>(&self, bytes: &'a [u8]) -> Result<(Cow<'a, [u8]>, Extras), Reply> {
        use super::preparse;
        let mut cmd = Cow::Borrowed(bytes);
        let mut extras = Extras::default();
        if let Some((rest, options)) = preparse::split_search_return(&cmd) {
            let tag = tag_of(&rest);
            super::context::check_options(&options).map_err(|why| tagged(&tag, "BAD", &why))?;
            extras.search_return = Some((tag, options));
            cmd = Cow::Owned(rest);
        }
        if let Some(rest) = cmd.contains(&b'$').then(|| self.substitute_saved(&cmd)).flatten() {
            cmd = Cow::Owned(rest);
        }
        if let Some((rest, alone)) = preparse::split_status_mailboxid(&cmd) {
            extras.status_mailboxid = Some(alone);
            cmd = Cow::Owned(rest);
        }
        if let Some(rest) = self.substitute_search_extras(&cmd) {
            cmd = Cow::Owned(rest);
        }
        if let Some((rest, items)) = preparse::split_fetch_extras(&cmd) {
            extras.fetch_extras = items;
            cmd = Cow::Owned(rest);
        }
        match preparse::split_list_extended(&cmd) {
            Some(Ok((rest, options))) => {
                extras.list_options = Some(options);
                cmd = Cow::Owned(rest);
            }
            Some(Err(why)) => return Err(tagged(&tag_of(&cmd), "BAD", &why)),
            None => {}
        }
        Ok((cmd, extras))
    }

    /// The commands whose whole syntax is ours (imap-codec does not know them): CANCELUPDATE,
    /// UNAUTHENTICATE, NOTIFY, and APPEND of several messages or with CATENATE.
    async fn own_syntax(&mut self, bytes: &[u8]) -> Option<Reply> {
        if let Some(tags) = super::context::cancel_update(bytes) {
            if self.view.is_none() {
                return Some(tagged(&tag_of(bytes), "BAD", "select a mailbox first"));
            }
            self.contexts.retain(|c| !tags.contains(&c.tag));
            return Some(tagged(&tag_of(bytes), "OK", "CANCELUPDATE completed"));
        }
        if super::preparse::verb_is(bytes, &["UNAUTHENTICATE"]) {
            let tag = tag_of(bytes);
            if bytes.trim_ascii_end().len() != tag.len() + " UNAUTHENTICATE".len() {
                return Some(tagged(&tag, "BAD", "UNAUTHENTICATE takes no arguments"));
            }
            return Some(self.unauthenticate(&tag));
        }
        if let Some(parsed) = super::notify::parse(bytes) {
            return Some(self.notify_command(&tag_of(bytes), parsed));
        }
        let parsed = super::append::parse(bytes)?;
        let tag = tag_of(bytes);
        Some(match parsed {
            Ok(a) => self.append_extended(&tag, a).await,
            Err(why) => tagged(&tag, "BAD", &why),
        })
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
    fn finish(&mut self, tag: &str, result: Answer, mut out: Vec<u8>) -> Reply {
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

    /// One line per command: each command group's module does the work.
    async fn dispatch(&mut self, tag: &str, body: CommandBody<'_>, extras: Extras, out: &mut Vec<u8>) -> Answer {
        use CommandBody as C;
        match body {
            C::Capability => self.capability(out),
            C::Noop | C::Check => self.noop(out),
            C::Logout => self.logout(out),
            C::StartTLS => self.starttls(),
            C::Login { username, password } => self.login(tag, username.as_ref(), password.declassify().as_ref()),
            C::Authenticate { mechanism, initial_response } => self.authenticate(tag, &mechanism, initial_response),
            C::Id { parameters } => self.id(parameters, out),
            C::Namespace => self.namespace(out),
            C::Compress { .. } => self.compress(tag),
            C::Enable { capabilities } => self.enable(capabilities.as_ref(), out),
            C::Select { mailbox, parameters } => self.select(&mailbox, false, &parameters, out),
            C::Examine { mailbox, parameters } => self.select(&mailbox, true, &parameters, out),
            C::Create { mailbox } => self.create(&mailbox).await,
            C::Delete { mailbox } => self.delete(&mailbox).await,
            C::Rename { from, to } => self.rename(&from, &to).await,
            C::Subscribe { mailbox } => self.subscribe(&mailbox, true).await,
            C::Unsubscribe { mailbox } => self.subscribe(&mailbox, false).await,
            C::List { reference, mailbox_wildcard } => {
                self.list(&reference, &mailbox_wildcard, extras.list_options, false, out)
            }
            C::Lsub { reference, mailbox_wildcard } => self.list(&reference, &mailbox_wildcard, None, true, out),
            C::Status { mailbox, item_names } => self.status(&mailbox, &item_names, extras.status_mailboxid, out),
            C::Append { mailbox, flags, date, message } => self.append(&mailbox, &flags, date, message, out).await,
            C::Close => self.close().await,
            C::Unselect => self.unselect(),
            C::Expunge => self.expunge(None, out).await,
            C::ExpungeUid { sequence_set } => self.expunge(Some(&sequence_set), out).await,
            C::Search { charset, criteria, uid } => {
                self.search_command(tag, charset, criteria.as_ref(), uid, extras, out)
            }
            C::Sort { sort_criteria, charset, search_criteria, uid } => {
                self.sort_command(&charset, sort_criteria.as_ref(), search_criteria.as_ref(), uid, extras, out)
            }
            C::Thread { algorithm, charset, search_criteria, uid } => {
                self.thread_command(&algorithm, &charset, search_criteria.as_ref(), uid, out)
            }
            C::Fetch { sequence_set, macro_or_item_names, uid, modifiers } => {
                self.fetch_command(&sequence_set, macro_or_item_names, &extras.fetch_extras, uid, &modifiers, out).await
            }
            C::Store { sequence_set, kind, response, flags, uid, modifiers } => {
                self.store(&sequence_set, kind, response, &flags, uid, &modifiers, out).await
            }
            C::Copy { sequence_set, mailbox, uid } => self.copy(&sequence_set, &mailbox, uid, false, out).await,
            C::Move { sequence_set, mailbox, uid } => self.copy(&sequence_set, &mailbox, uid, true, out).await,
            C::Idle => self.idle(tag),
            C::GetMetadata { options, mailbox, entries } => {
                self.get_metadata(&options, &mailbox, entries.as_ref(), out)
            }
            C::SetMetadata { mailbox, entry_values } => self.set_metadata(&mailbox, entry_values.as_ref()).await,
            C::GetQuota { root } => self.get_quota(cmd::root_bytes(&root), out),
            C::GetQuotaRoot { mailbox } => self.get_quota_root(&mailbox, out),
            C::SetQuota { .. } => self.set_quota(),
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

    /// The command with the SEARCH keys imap-codec does not parse (EMAILID, THREADID, the
    /// save-date keys; see [`super::preparse::SearchExtra`]) turned into the UIDs of the
    /// selected mailbox they match.
    fn substitute_search_extras(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        use super::preparse::SearchExtra;
        let view = self.view.as_ref()?;
        if !super::preparse::verb_is(bytes, &["SEARCH", "SORT", "THREAD", "UID"]) {
            return None;
        }
        let idx = self.backend().index(self.user(), &view.mailbox).ok().flatten()?;
        let threads = std::cell::OnceCell::new();
        super::preparse::substitute_search_extras(bytes, |key| {
            let thread_of = |uid: u32| {
                let all = threads
                    .get_or_init(|| self.thread_ids(&idx, idx.messages.iter().map(|m| m.uid)).unwrap_or_default());
                all.get(&uid).cloned()
            };
            let matches = |m: &crate::mailstore::index::MessageMeta| match key {
                SearchExtra::EmailId(id) => cmd::email_id(m.email_id(idx.uid_validity)) == id,
                SearchExtra::ThreadId(id) => thread_of(m.uid).is_some_and(|t| t == id),
                SearchExtra::SavedBefore(d) => search::saved_date(m) < d,
                SearchExtra::SavedOn(d) => search::saved_date(m) == d,
                SearchExtra::SavedSince(d) => search::saved_date(m) >= d,
            };
            let uids: Vec<u32> = idx.messages.iter().filter(|m| matches(m)).map(|m| m.uid).collect();
            if uids.is_empty() {
                super::preparse::SAVED_NOTHING.to_string()
            } else {
                encode::uid_set(&uids)
            }
        })
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
            e @ BackendError::NoRoom => Refusal::No(format!("[LIMIT] {e}")),
        }
    }
}
