//! The SMTP protocol state machine (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
//! ENHANCEDSTATUSCODES, STARTTLS, AUTH PLAIN/LOGIN, CHUNKING), pure: command lines in,
//! replies and requests out. Commands are parsed by `smtp-proto`; what needs the world
//! (recipient lookups, password checks, delivery) is asked of the server as a [`Step`] and
//! answered back. One command table, one dispatcher. Never an open relay: a recipient is
//! accepted only if the directory knows it.

use std::borrow::Cow;

use base64::Engine;
use common::sasl::{self, PlainCredentials};
use directory::Account;
use smtp_proto::Request;

use super::body::{Body, Finished};
use super::memory::{BodyMemory, Reservation};
use super::policy::wildcard;
use crate::delivery::Resolution;
use crate::login::Refusal;

/// Which listener a session is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Port 25: mail from the Internet; no AUTH.
    Mx,
    /// Ports 587/465: users' own mail; AUTH first.
    Submission,
}

/// The listener's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub mode: Mode,
    pub message_max_bytes: usize,
    pub recipients_max: usize,
    /// A certificate is configured (STARTTLS can be offered).
    pub tls_configured: bool,
    /// Domains whose users live here (lower case); mail for any other domain is relaying.
    pub local_domains: Vec<String>,
    /// `(alias, domain)`: recipient domains collapsed before lookup.
    pub domain_aliases: Vec<(String, String)>,
    /// MX: refused HELO names and envelope senders (`*` wildcards).
    pub helo_deny: Vec<String>,
    pub mail_from_deny: Vec<String>,
    /// An outbound queue exists: remote recipients (for those who may relay) and
    /// transactions spanning several mailhosts are accepted and queued.
    pub queue: bool,
    /// This client may relay without AUTH (an IP rule says so).
    pub relay: bool,
    /// The mailbox `postmaster` (no domain) and `postmaster@` every local domain reach (RFC
    /// 5321 §4.5.1); `None`: `postmaster@` the first local domain, as the directory has it.
    pub postmaster: Option<String>,
    /// The memory bodies are held in, and the client's address it is shared by (none:
    /// bounded by `message_max_bytes` alone, as in tests of the protocol).
    pub memory: Option<(std::sync::Arc<BodyMemory>, std::net::IpAddr)>,
    /// Reverses the addresses forwarded mail went out from (SRS), with the clock to judge
    /// their age: a bounce to one goes on to the original sender through the queue.
    pub srs: Option<(common::srs::Srs, u64)>,
}

/// What the server must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write this reply and read the next command.
    Reply(String),
    /// Write this reply, then run the TLS handshake.
    StartTls(String),
    /// Write this reply and close.
    Close(String),
    /// Write this `334` challenge and hand the next line to [`Session::auth_line`].
    AuthChallenge(String),
    /// Check these credentials, then call [`Session::authenticated`].
    Authenticate(PlainCredentials),
    /// Look this recipient up, then call [`Session::resolved`].
    Resolve(String),
    /// Write this `354` and hand DATA lines to [`Session::data_line`].
    Data(String),
    /// Read exactly `size` bytes, hand them to [`Session::chunk_piece`] as they come, then
    /// call [`Session::chunk_end`].
    Chunk { size: usize, last: bool },
    /// Deliver [`Session::envelope`], then call [`Session::delivered`].
    Deliver,
}

/// A complete message to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    /// Local recipients as the client gave them (domain aliases collapsed).
    pub recipients: Vec<String>,
    /// The group every local recipient lives on; `None` if they live on several.
    pub group: Option<String>,
    /// Recipients in remote domains (only accepted where relaying is allowed).
    pub remote: Vec<String>,
    pub message: Vec<u8>,
    /// [`Envelope::retry_key`], hashed once: a transaction asks for it per delivery class
    /// and queue entry, and hashing a 32 MiB message takes tens of milliseconds.
    pub retry_key: std::sync::OnceLock<Option<[u8; 16]>>,
}

impl Envelope {
    /// Whether the message can go straight to one group (otherwise it is queued).
    pub fn direct(&self) -> bool {
        self.remote.is_empty() && self.group.is_some()
    }

    /// Every recipient, local first.
    pub fn all_recipients(&self) -> Vec<String> {
        self.recipients.iter().chain(&self.remote).cloned().collect()
    }

    /// What makes a client's retry of this transaction recognisable (its earlier attempt
    /// may have been committed though the client never got the answer): the sender, the
    /// Message-ID and the bytes the client sent, hashed. Our own trace header and scanning
    /// stamps differ per attempt and are not part of it. `None` without a Message-ID:
    /// two identical messages without one are two messages.
    pub fn retry_key(&self) -> Option<[u8; 16]> {
        *self.retry_key.get_or_init(|| self.hash_retry_key())
    }

    fn hash_retry_key(&self) -> Option<[u8; 16]> {
        use sha2::Digest;
        let message_id = common::message_log::message_id(&self.message)?;
        let mut hash = sha2::Sha256::new();
        for part in [b"smtp-retry-key".as_slice(), self.from.as_bytes(), message_id.as_bytes()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        hash.update(sha2::Sha256::digest(&self.message));
        let mut key = [0u8; 16];
        key.copy_from_slice(&hash.finalize()[..16]);
        Some(key)
    }
}

#[derive(Debug)]
enum AuthState {
    None,
    /// AUTH PLAIN without an initial response.
    Plain,
    LoginUser,
    LoginPassword(String),
}

/// One SMTP session.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    tls: bool,
    helo: Option<String>,
    account: Option<std::sync::Arc<Account>>,
    from: Option<String>,
    /// The size the client declared with `MAIL ... SIZE=` (0: none).
    declared_size: usize,
    recipients: Vec<String>,
    remote: Vec<String>,
    /// The group of the local recipients; `Some(None)` once they span several.
    group: Option<Option<String>>,
    body: Option<Body>,
    /// The body's share of the memory budget, kept until the message is delivered.
    room: Option<Reservation>,
    /// Why the BDAT chunks being read are dropped, when a transaction was refused room.
    chunk_refusal: Option<String>,
    message: Option<Vec<u8>>,
    auth: AuthState,
    /// Recipients refused at `RCPT` since the caller last took them (for tracking).
    refused: Vec<RcptRefusal>,
}

/// A recipient refused at `RCPT`: the sender, the recipient as the client gave it, and the
/// reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptRefusal {
    pub from: String,
    pub to: String,
    pub reply: String,
}

/// Refusals held between two [`Session::take_refused`] calls (the caller takes them after
/// every command, so one is the most it sees).
const REFUSED_HELD_MAX: usize = 16;

/// The reply when the body memory budget has no room (`super::memory`).
fn no_room(why: super::memory::NoRoom) -> String {
    format!("452 4.3.1 {why}, try again later")
}

fn reply(s: impl Into<String>) -> Step {
    Step::Reply(s.into())
}

impl Session {
    pub fn new(settings: Settings, tls: bool) -> Self {
        Self {
            settings,
            tls,
            helo: None,
            account: None,
            from: None,
            declared_size: 0,
            recipients: Vec::new(),
            remote: Vec::new(),
            group: None,
            body: None,
            room: None,
            chunk_refusal: None,
            message: None,
            auth: AuthState::None,
            refused: Vec::new(),
        }
    }

    /// The recipients refused at `RCPT` since the last call.
    pub fn take_refused(&mut self) -> Vec<RcptRefusal> {
        std::mem::take(&mut self.refused)
    }

    /// Note `step` if it refuses recipient `to` of the transaction under way.
    fn note_rcpt(&mut self, to: &str, step: Step) -> Step {
        if let (Step::Reply(text), Some(from)) = (&step, &self.from) {
            if super::refusals::refuses(text) && self.refused.len() < REFUSED_HELD_MAX {
                self.refused.push(RcptRefusal { from: from.clone(), to: to.to_string(), reply: text.clone() });
            }
        }
        step
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn greeting(&self) -> String {
        format!("220 {} ESMTP ready", self.settings.host)
    }

    /// The HELO/EHLO name the client gave.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The authenticated user, if any.
    pub fn account(&self) -> Option<&Account> {
        self.account.as_deref()
    }

    /// The authenticated account, shared.
    pub fn account_arc(&self) -> Option<&std::sync::Arc<Account>> {
        self.account.as_ref()
    }

    /// TLS is now active: the session starts over (RFC 3207 4.2).
    pub fn tls_started(&mut self) {
        let settings = self.settings.clone();
        *self = Self::new(settings, true);
    }

    fn reset_transaction(&mut self) {
        self.from = None;
        self.declared_size = 0;
        self.recipients.clear();
        self.remote.clear();
        self.group = None;
        self.body = None;
        self.room = None;
        self.chunk_refusal = None;
        self.message = None;
    }

    /// Start a body: a new transaction's share of the memory budget, if there is one.
    fn begin_body(&mut self) -> Result<(), String> {
        if let Some((memory, address)) = &self.settings.memory {
            let room = memory.begin(*address).map_err(no_room)?;
            self.room = Some(room);
        }
        self.body = Some(Body::new(self.settings.message_max_bytes));
        Ok(())
    }

    /// After the body grew: hold room for it, or drop it if the budget has none.
    fn account_body(&mut self) {
        let (Some(body), Some(room)) = (self.body.as_mut(), self.room.as_mut()) else { return };
        if let Err(why) = room.grow_to(body.len()) {
            body.no_room(why);
            room.release_bytes();
        }
    }

    /// Handle one command line (with its line ending).
    pub fn command(&mut self, line: &[u8]) -> Step {
        if !matches!(self.auth, AuthState::None) {
            return self.auth_line(line);
        }
        let mut with_lf = self.domainless_postmaster(line).unwrap_or_else(|| line.to_vec());
        if !with_lf.ends_with(b"\n") {
            with_lf.push(b'\n');
        }
        match Request::parse(&mut with_lf.iter()) {
            Ok(request) => self.dispatch(request),
            Err(smtp_proto::Error::UnknownCommand) => reply("500 5.5.1 command unrecognized"),
            Err(smtp_proto::Error::InvalidSenderAddress) => reply("501 5.1.7 bad sender address syntax"),
            Err(smtp_proto::Error::InvalidRecipientAddress) => reply("501 5.1.3 bad recipient address syntax"),
            Err(smtp_proto::Error::UnsupportedParameter { param }) => {
                reply(format!("555 5.5.4 unsupported parameter {}", param.chars().take(64).collect::<String>()))
            }
            Err(smtp_proto::Error::InvalidParameter { param }) => reply(format!("501 5.5.4 invalid value for {param}")),
            Err(smtp_proto::Error::SyntaxError { syntax }) => reply(format!("501 5.5.2 syntax: {syntax}")),
            Err(_) => reply("500 5.5.2 syntax error"),
        }
    }

    /// One handler per command: an exhaustive match, so a request smtp-proto adds cannot
    /// go unanswered.
    fn dispatch(&mut self, request: Request<Cow<'_, str>>) -> Step {
        match request {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Lhlo { .. } => reply("500 5.5.1 this is SMTP: use EHLO"),
            Request::StartTls => self.starttls(),
            Request::Auth { mechanism, initial_response } => self.auth(mechanism, initial_response),
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => {
                let address = to.address.to_string();
                let step = self.rcpt(to);
                self.note_rcpt(&address, step)
            }
            Request::Data => self.data(),
            Request::Bdat { chunk_size, is_last } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.reset_transaction();
                reply("250 2.0.0 reset")
            }
            Request::Noop { .. } => reply("250 2.0.0 ok"),
            Request::Vrfy { .. } | Request::Expn { .. } => reply("252 2.5.0 cannot verify; send mail and see"),
            Request::Help { .. } => reply("214 2.0.0 see RFC 5321"),
            Request::Quit => Step::Close(format!("221 2.0.0 {} closing", self.settings.host)),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                reply("502 5.5.1 command not implemented")
            }
        }
    }

    fn ehlo(&mut self, host: Cow<'_, str>, extended: bool) -> Step {
        self.reset_transaction();
        if self.settings.mode == Mode::Mx && self.settings.helo_deny.iter().any(|p| wildcard(p, &host)) {
            self.helo = None;
            return reply(format!("550 5.7.1 HELO {} refused", host.chars().take(64).collect::<String>()));
        }
        self.helo = Some(host.chars().take(255).collect());
        let name = &self.settings.host;
        if !extended {
            return reply(format!("250 {name}"));
        }
        let mut lines = vec![
            name.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.settings.message_max_bytes),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if self.settings.tls_configured && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.settings.mode == Mode::Submission && self.tls && self.account.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        let n = lines.len();
        let text: Vec<String> = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}", if i + 1 == n { ' ' } else { '-' }))
            .collect();
        reply(text.join("\r\n"))
    }

    fn starttls(&mut self) -> Step {
        if self.tls || !self.settings.tls_configured {
            return reply("503 5.5.1 TLS not available");
        }
        Step::StartTls("220 2.0.0 ready to start TLS".into())
    }

    fn auth(&mut self, mechanism: u64, initial_response: Cow<'_, str>) -> Step {
        if self.settings.mode != Mode::Submission {
            return reply("503 5.5.1 AUTH is for the submission port");
        }
        if !self.tls {
            return reply("538 5.7.11 encryption required: STARTTLS first");
        }
        if self.account.is_some() {
            return reply("503 5.5.1 already authenticated");
        }
        if self.from.is_some() {
            return reply("503 5.5.1 AUTH not allowed during a transaction");
        }
        let decode = |s: &str| base64::engine::general_purpose::STANDARD.decode(s.trim()).ok();
        match mechanism {
            smtp_proto::AUTH_PLAIN if initial_response.is_empty() => {
                self.auth = AuthState::Plain;
                Step::AuthChallenge("334 ".into())
            }
            smtp_proto::AUTH_PLAIN => self.plain_response(&initial_response),
            smtp_proto::AUTH_LOGIN if initial_response.is_empty() => {
                self.auth = AuthState::LoginUser;
                Step::AuthChallenge("334 VXNlcm5hbWU6".into())
            }
            smtp_proto::AUTH_LOGIN => match decode(&initial_response).and_then(|u| String::from_utf8(u).ok()) {
                Some(user) => {
                    self.auth = AuthState::LoginPassword(user);
                    Step::AuthChallenge("334 UGFzc3dvcmQ6".into())
                }
                None => reply("501 5.5.2 bad base64"),
            },
            _ => reply("504 5.5.4 mechanism not supported; use PLAIN or LOGIN"),
        }
    }

    fn plain_response(&mut self, b64: &str) -> Step {
        self.auth = AuthState::None;
        match sasl::decode_plain(b64) {
            Ok(creds) => Step::Authenticate(creds),
            Err(sasl::SaslError::Cancelled) => reply("501 5.0.0 authentication cancelled"),
            Err(e) => reply(format!("501 5.5.2 {e}")),
        }
    }

    /// A line answering a `334` challenge.
    pub fn auth_line(&mut self, line: &[u8]) -> Step {
        let text = String::from_utf8_lossy(line).trim_end().to_string();
        if text == "*" {
            self.auth = AuthState::None;
            return reply("501 5.0.0 authentication cancelled");
        }
        let decoded =
            || base64::engine::general_purpose::STANDARD.decode(&text).ok().and_then(|b| String::from_utf8(b).ok());
        match std::mem::replace(&mut self.auth, AuthState::None) {
            AuthState::None => reply("503 5.5.1 no authentication in progress"),
            AuthState::Plain => self.plain_response(&text),
            AuthState::LoginUser => match decoded() {
                Some(user) => {
                    self.auth = AuthState::LoginPassword(user);
                    Step::AuthChallenge("334 UGFzc3dvcmQ6".into())
                }
                None => reply("501 5.5.2 bad base64"),
            },
            AuthState::LoginPassword(user) => match decoded() {
                Some(password) => {
                    Step::Authenticate(PlainCredentials { authzid: String::new(), authcid: user, password })
                }
                None => reply("501 5.5.2 bad base64"),
            },
        }
    }

    /// The outcome of [`Step::Authenticate`].
    pub fn authenticated(&mut self, result: Result<std::sync::Arc<Account>, Refusal>) -> Step {
        match result {
            Ok(account) => {
                self.account = Some(account);
                reply("235 2.7.0 authentication successful")
            }
            Err(Refusal::Unavailable(why)) => reply(format!("454 4.7.0 {why}")),
            Err(Refusal::Throttled | Refusal::TooManySessions) => reply("454 4.7.0 too many attempts, try later"),
            Err(Refusal::Disabled) => reply("535 5.7.8 account disabled"),
            Err(Refusal::NeedsTls) => reply("538 5.7.11 encryption required"),
            Err(Refusal::Failed) => reply("535 5.7.8 authentication failed"),
        }
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<Cow<'_, str>>) -> Step {
        if self.helo.is_none() {
            return reply("503 5.5.1 say EHLO first");
        }
        if self.from.is_some() {
            return reply("503 5.5.1 nested MAIL command");
        }
        if from.size > self.settings.message_max_bytes {
            return reply(format!(
                "552 5.3.4 message size exceeds the limit of {} bytes",
                self.settings.message_max_bytes
            ));
        }
        let sender = self.canonical(&from.address);
        let address = sender.to_lowercase();
        if self.settings.mode == Mode::Mx && self.settings.mail_from_deny.iter().any(|p| wildcard(p, &address)) {
            return reply(format!("550 5.7.1 sender <{}> refused", from.address));
        }
        if self.settings.mode == Mode::Submission {
            let Some(account) = &self.account else { return reply("530 5.7.0 authentication required") };
            // Users send as themselves: the envelope sender is one of their addresses.
            if !account.addresses().any(|a| a == address) {
                return reply(format!("553 5.7.1 <{}> is not one of your addresses", from.address));
            }
        }
        self.declared_size = from.size;
        self.from = Some(sender);
        reply("250 2.1.0 sender ok")
    }

    /// The recipient domain with configured aliases collapsed.
    fn canonical(&self, address: &str) -> String {
        let Some((local, domain)) = address.rsplit_once('@') else { return address.to_string() };
        match self.settings.domain_aliases.iter().find(|(alias, _)| alias.eq_ignore_ascii_case(domain)) {
            Some((_, target)) => format!("{local}@{target}"),
            None => address.to_string(),
        }
    }

    /// `RCPT TO:<Postmaster>` (RFC 5321 §4.1.1.3: the one path without a domain, which the
    /// parser does not take) written with the first local domain.
    fn domainless_postmaster(&self, line: &[u8]) -> Option<Vec<u8>> {
        const PREFIX: &[u8] = b"RCPT TO:";
        let head = line.get(..PREFIX.len()).filter(|h| h.eq_ignore_ascii_case(PREFIX))?;
        let rest = line[head.len()..].trim_ascii_start();
        let path = rest.get(..b"<postmaster>".len()).filter(|p| p.eq_ignore_ascii_case(b"<postmaster>"))?;
        let domain = self.settings.local_domains.first()?;
        Some([PREFIX, format!("<postmaster@{domain}>").as_bytes(), &rest[path.len()..]].concat())
    }

    /// The mailbox a postmaster address is delivered to (RFC 5321 §4.5.1: `postmaster`
    /// without a domain, and `postmaster@` each local domain, must be accepted), if
    /// `address` is one.
    fn postmaster(&self, address: &str) -> Option<String> {
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
        let local_domain =
            domain.is_empty() || self.settings.local_domains.iter().any(|d| d.eq_ignore_ascii_case(domain));
        if !local.eq_ignore_ascii_case("postmaster") || !local_domain {
            return None;
        }
        let first_domain = self.settings.local_domains.first()?;
        Some(self.settings.postmaster.clone().unwrap_or_else(|| format!("postmaster@{first_domain}")))
    }

    fn rcpt(&mut self, to: smtp_proto::RcptTo<Cow<'_, str>>) -> Step {
        if self.from.is_none() {
            return reply("503 5.5.1 need MAIL first");
        }
        if self.recipients.len() + self.remote.len() >= self.settings.recipients_max {
            return reply("452 4.5.3 too many recipients");
        }
        let address = self.canonical(&to.address);
        let address = self.postmaster(&address).unwrap_or(address);
        let domain = address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        if let Some(step) = self.srs_bounce(&address, &domain) {
            return step;
        }
        if !self.settings.local_domains.contains(&domain) {
            // Relaying: only for authenticated users and clients an IP rule trusts, and only
            // through the queue. Never an open relay.
            let may_relay = self.account.is_some() || self.settings.relay;
            if !(self.settings.queue && may_relay) || domain.is_empty() {
                return reply(format!("554 5.7.1 <{address}> relay access denied"));
            }
            if !self.remote.iter().any(|r| r.eq_ignore_ascii_case(&address)) {
                self.remote.push(address);
            }
            return reply("250 2.1.5 recipient ok (remote, will be queued)");
        }
        Step::Resolve(address)
    }

    /// A recipient that is an SRS address of ours (`SRS0=...@local-domain`, what forwarded
    /// mail went out from): valid and young, the original sender is queued for (the bounce
    /// goes home); anything else with that prefix is nobody.
    fn srs_bounce(&mut self, address: &str, domain: &str) -> Option<Step> {
        let local = address.rsplit_once('@')?.0;
        if !self.settings.local_domains.iter().any(|d| d == domain) || !local.get(..5)?.eq_ignore_ascii_case("SRS0=") {
            return None;
        }
        let original = self.settings.srs.as_ref().and_then(|(srs, now_s)| srs.reverse(address, *now_s));
        match original {
            Some(original) if self.settings.queue => {
                if !self.remote.iter().any(|r| r.eq_ignore_ascii_case(&original)) {
                    self.remote.push(original);
                }
                Some(reply("250 2.1.5 recipient ok (returned to the original sender)"))
            }
            _ => Some(reply(format!("550 5.1.1 <{address}> no such user"))),
        }
    }

    /// The outcome of [`Step::Resolve`].
    pub fn resolved(&mut self, address: &str, resolution: Resolution) -> Step {
        let step = self.resolution_reply(address, resolution);
        self.note_rcpt(address, step)
    }

    fn resolution_reply(&mut self, address: &str, resolution: Resolution) -> Step {
        match resolution {
            Resolution::Refused(text) => reply(text),
            Resolution::Local { account, .. }
                if account.message_size_max_bytes.is_some_and(|max| self.declared_size as u64 > max) =>
            {
                // The recipient's own limit (mailSizeMax), known before the data is sent.
                reply(format!(
                    "552 5.3.4 <{address}> accepts messages of at most {} bytes",
                    account.message_size_max_bytes.unwrap_or(0)
                ))
            }
            Resolution::Local { group, .. } => {
                // One mailhost: delivered in one commit, so the reply to DATA is true for
                // every recipient. Several: queued (one commit too), or, without a queue,
                // the others come in the next transaction.
                match &self.group {
                    Some(Some(g)) if *g != group && !self.settings.queue => {
                        return reply(format!(
                            "452 4.5.3 <{address}> is on another mailhost; send it in a new transaction"
                        ));
                    }
                    Some(Some(g)) if *g != group => self.group = Some(None),
                    Some(_) => {}
                    None => self.group = Some(Some(group)),
                }
                self.recipients.push(address.to_string());
                reply("250 2.1.5 recipient ok")
            }
        }
    }

    fn data(&mut self) -> Step {
        if self.body.is_some() {
            // Between BDAT chunks (RFC 3030 §2: DATA and BDAT never share a transaction).
            return reply("503 5.5.1 DATA after BDAT: send RSET first");
        }
        if self.from.is_none() || self.recipients.is_empty() && self.remote.is_empty() {
            return reply("503 5.5.1 need MAIL and RCPT first");
        }
        if let Err(refusal) = self.begin_body() {
            return reply(refusal);
        }
        Step::Data("354 3.0.0 go ahead, end with <CRLF>.<CRLF>".into())
    }

    /// One DATA line (with its line ending).
    pub fn data_line(&mut self, raw: &[u8]) -> Option<Step> {
        let finished = self.body.as_mut().expect("data_line only in DATA").data_line(raw);
        match finished {
            Some(f) => Some(self.finished(f)),
            None => {
                self.account_body();
                None
            }
        }
    }

    fn finished(&mut self, finished: Finished) -> Step {
        self.body = None;
        match finished {
            Finished::NoRoom(why) => {
                self.reset_transaction();
                reply(no_room(why))
            }
            Finished::Message(m) => {
                self.message = Some(m);
                Step::Deliver
            }
            Finished::TooBig => {
                self.reset_transaction();
                reply(format!("552 5.3.4 message exceeds the limit of {} bytes", self.settings.message_max_bytes))
            }
            Finished::BareLineEnding => {
                self.reset_transaction();
                reply("550 5.6.11 bare CR or LF in the message: use CRLF line endings")
            }
        }
    }

    fn bdat(&mut self, chunk_size: usize, is_last: bool) -> Step {
        if self.from.is_none() || self.recipients.is_empty() && self.remote.is_empty() {
            // The chunk still follows and must be read and dropped.
            self.body = None;
            return Step::Chunk { size: chunk_size, last: is_last };
        }
        if self.body.is_none() && self.chunk_refusal.is_none() {
            if let Err(refusal) = self.begin_body() {
                self.chunk_refusal = Some(refusal);
            }
        }
        Step::Chunk { size: chunk_size, last: is_last }
    }

    /// Whether a message body is being received (DATA, or BDAT chunks before the last).
    pub fn receiving(&self) -> bool {
        self.body.is_some() || self.chunk_refusal.is_some()
    }

    /// Bytes of the BDAT chunk being read, as they arrive (dropped if there is no
    /// transaction).
    pub fn chunk_piece(&mut self, piece: &[u8]) {
        if let Some(body) = self.body.as_mut() {
            let done = body.chunk(piece, false);
            debug_assert!(done.is_none(), "only the end of the last chunk finishes a body");
            self.account_body();
        }
    }

    /// The BDAT chunk of `size` bytes was read whole.
    pub fn chunk_end(&mut self, size: usize, last: bool) -> Step {
        if let Some(refusal) = &self.chunk_refusal {
            let refusal = refusal.clone();
            if last {
                self.reset_transaction();
            }
            return reply(refusal);
        }
        let Some(body) = self.body.as_mut() else {
            return reply("503 5.5.1 need MAIL and RCPT first");
        };
        match body.chunk(&[], last) {
            None => reply(format!("250 2.0.0 {size} octets received")),
            Some(finished) => self.finished(finished),
        }
    }

    /// The bytes of a whole BDAT chunk.
    pub fn chunk(&mut self, bytes: &[u8], last: bool) -> Step {
        self.chunk_piece(bytes);
        self.chunk_end(bytes.len(), last)
    }

    /// The message to deliver after [`Step::Deliver`] (taken: asked for once).
    pub fn envelope(&mut self) -> Envelope {
        Envelope {
            from: self.from.clone().unwrap_or_default(),
            recipients: self.recipients.clone(),
            group: self.group.clone().flatten(),
            remote: self.remote.clone(),
            message: self.message.take().unwrap_or_default(),
            retry_key: std::sync::OnceLock::new(),
        }
    }

    /// Room in the memory budget for `bytes` of copies a delivery makes; `Err` with the
    /// reply if there is none (then answer it with [`Session::delivered`]).
    pub fn room_for_copies(&self, bytes: usize) -> Result<Option<Reservation>, String> {
        let Some((memory, _)) = &self.settings.memory else { return Ok(None) };
        memory.for_copies(bytes).map(Some).map_err(no_room)
    }

    /// The per-recipient replies of the delivery; the reply to DATA/BDAT.
    pub fn delivered(&mut self, replies: &[String]) -> Step {
        self.reset_transaction();
        let ok = replies.iter().filter(|r| r.starts_with('2')).count();
        if ok == replies.len() {
            if let Some(queued) = replies.iter().find(|r| r.contains(" queued as ")) {
                return reply(queued.clone());
            }
            return reply("250 2.0.0 message accepted for delivery");
        }
        if ok > 0 {
            // One group commits all or nothing; a partial answer means the directory changed
            // between RCPT and DATA. The committed copies stand.
            return reply("250 2.0.0 message accepted for some recipients; others refused it");
        }
        // A temporary failure of one recipient must reach the client, or it gives up on all.
        let answer = replies.iter().find(|r| r.starts_with('4')).or(replies.first());
        reply(answer.cloned().unwrap_or_else(|| "451 4.3.0 delivery failed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: Mode) -> Settings {
        Settings {
            host: "mx.example.edu".into(),
            mode,
            message_max_bytes: 1000,
            recipients_max: 3,
            tls_configured: true,
            local_domains: vec!["example.edu".into()],
            domain_aliases: vec![("mail.example.edu".into(), "example.edu".into())],
            helo_deny: vec!["*.dynamic.example.net".into()],
            mail_from_deny: vec!["*@spam.example".into()],
            queue: false,
            relay: false,
            postmaster: None,
            srs: Some((common::srs::Srs::new([3; 32]), 1_780_000_000)),
            memory: None,
        }
    }

    fn text(step: Step) -> String {
        match step {
            Step::Reply(t) | Step::Close(t) | Step::StartTls(t) | Step::AuthChallenge(t) | Step::Data(t) => t,
            other => panic!("{other:?}"),
        }
    }

    fn local(group: &str) -> Resolution {
        let mut attrs = directory::Attributes::new();
        attrs.insert("mail".into(), vec!["x@example.edu".into()]);
        Resolution::Local {
            account: std::sync::Arc::new(Account::from_attributes("x", &attrs).unwrap()),
            group: group.into(),
        }
    }

    #[test]
    fn an_mx_transaction_on_one_mailhost() {
        let mut s = Session::new(settings(Mode::Mx), false);
        assert!(text(s.command(b"MAIL FROM:<a@b>\r\n")).starts_with("503"), "EHLO first");
        let ehlo = text(s.command(b"EHLO client.example.org\r\n"));
        assert!(ehlo.contains("STARTTLS") && ehlo.contains("250-CHUNKING") && !ehlo.contains("AUTH"), "{ehlo}");
        assert!(text(s.command(b"AUTH PLAIN AGEAYg==\r\n")).starts_with("503"), "no AUTH on MX");
        assert!(text(s.command(b"MAIL FROM:<a@b.org> SIZE=5000\r\n")).starts_with("552"));
        assert!(text(s.command(b"MAIL FROM:<x@SPAM.example>\r\n")).starts_with("550 5.7.1"), "denied sender");
        assert!(text(s.command(b"HELO h1.dynamic.example.net\r\n")).starts_with("550 5.7.1"), "denied HELO");
        assert!(text(s.command(b"MAIL FROM:<a@b.org>\r\n")).starts_with("503"), "a refused HELO is no HELO");
        text(s.command(b"EHLO client.example.org\r\n"));
        assert!(text(s.command(b"MAIL FROM:<a@b.org> BODY=8BITMIME\r\n")).starts_with("250"));
        assert!(text(s.command(b"RCPT TO:<x@remote.org>\r\n")).starts_with("554 5.7.1"), "no relaying");
        assert!(text(s.command(b"RCPT TO:<postmaster@remote.org>\r\n")).starts_with("554 5.7.1"), "not ours");
        // RFC 5321 §4.5.1: postmaster, with no domain or ours, is always a recipient.
        assert_eq!(s.command(b"RCPT TO:<Postmaster>\r\n"), Step::Resolve("postmaster@example.edu".into()));
        let mut pm =
            Session::new(Settings { postmaster: Some("alice@example.edu".into()), ..settings(Mode::Mx) }, false);
        text(pm.command(b"EHLO c\r\n"));
        text(pm.command(b"MAIL FROM:<a@b.org>\r\n"));
        for to in ["<postmaster>", "<POSTMASTER@example.edu>", "<postmaster@mail.example.edu>"] {
            let step = pm.command(format!("RCPT TO:{to}\r\n").as_bytes());
            assert_eq!(step, Step::Resolve("alice@example.edu".into()), "{to}");
        }
        assert_eq!(s.command(b"RCPT TO:<alice@Mail.Example.edu>\r\n"), Step::Resolve("alice@example.edu".into()));
        assert!(text(s.resolved("alice@example.edu", local("hermes"))).starts_with("250"));
        assert_eq!(s.command(b"RCPT TO:<bob@example.edu>\r\n"), Step::Resolve("bob@example.edu".into()));
        assert!(text(s.resolved("bob@example.edu", local("apollo"))).starts_with("452 4.5.3"), "other mailhost");
        assert!(text(s.command(b"DATA\r\n")).starts_with("354"));
        assert_eq!(s.data_line(b"Subject: hi\r\n"), None);
        assert_eq!(s.data_line(b".\r\n"), Some(Step::Deliver));
        let env = s.envelope();
        assert_eq!(
            (env.recipients, env.group, env.message),
            (vec!["alice@example.edu".to_string()], Some("hermes".to_string()), b"Subject: hi\r\n".to_vec())
        );
        assert!(text(s.delivered(&["250 2.1.5 ok".into()])).starts_with("250"));
        assert!(text(s.command(b"RCPT TO:<alice@example.edu>\r\n")).starts_with("503"), "transaction over");
        assert!(matches!(s.command(b"QUIT\r\n"), Step::Close(_)));
    }

    #[test]
    fn recipients_refused_at_rcpt_are_kept_for_tracking_until_taken() {
        let mut s = Session::new(settings(Mode::Mx), false);
        text(s.command(b"EHLO client.example.org\r\n"));
        assert!(text(s.command(b"RCPT TO:<x@remote.org>\r\n")).starts_with("503"));
        assert!(s.take_refused().is_empty(), "no transaction, nothing to track");
        text(s.command(b"MAIL FROM:<a@b.org>\r\n"));
        text(s.command(b"RCPT TO:<x@remote.org>\r\n"));
        assert_eq!(s.command(b"RCPT TO:<nobody@example.edu>\r\n"), Step::Resolve("nobody@example.edu".into()));
        let unknown = Resolution::Refused("550 5.1.1 <nobody@example.edu> no such user".into());
        assert!(text(s.resolved("nobody@example.edu", unknown)).starts_with("550"));
        s.command(b"RCPT TO:<alice@example.edu>\r\n");
        assert!(text(s.resolved("alice@example.edu", local("hermes"))).starts_with("250"));
        let refused = s.take_refused();
        let got: Vec<(&str, &str, &str)> =
            refused.iter().map(|r| (r.from.as_str(), r.to.as_str(), &r.reply[..3])).collect();
        assert_eq!(got, [("a@b.org", "x@remote.org", "554"), ("a@b.org", "nobody@example.edu", "550")]);
        assert!(s.take_refused().is_empty(), "taken once");
    }

    #[test]
    fn submission_needs_tls_and_auth_and_the_users_own_sender() {
        let mut s = Session::new(settings(Mode::Submission), false);
        assert!(!text(s.command(b"EHLO c\r\n")).contains("AUTH"), "no AUTH before TLS");
        assert!(text(s.command(b"AUTH PLAIN AGEAYg==\r\n")).starts_with("538"));
        assert!(matches!(s.command(b"STARTTLS\r\n"), Step::StartTls(_)));
        s.tls_started();
        assert!(text(s.command(b"EHLO c\r\n")).contains("250 AUTH PLAIN LOGIN"));
        assert!(text(s.command(b"MAIL FROM:<x@example.edu>\r\n")).starts_with("530"));
        assert_eq!(text(s.command(b"AUTH LOGIN\r\n")), "334 VXNlcm5hbWU6");
        assert_eq!(text(s.command(b"eEBleGFtcGxlLmVkdQ==\r\n")), "334 UGFzc3dvcmQ6");
        let Step::Authenticate(creds) = s.command(b"cHc=\r\n") else { panic!() };
        assert_eq!((creds.authcid.as_str(), creds.password.as_str()), ("x@example.edu", "pw"));
        assert!(text(s.authenticated(Err(Refusal::Failed))).starts_with("535"));
        assert_eq!(s.command(b"AUTH PLAIN AHhAZXhhbXBsZS5lZHUAcHc=\r\n"), Step::Authenticate(creds.clone()));
        let Resolution::Local { account, .. } = local("hermes") else { unreachable!() };
        assert!(text(s.authenticated(Ok(account))).starts_with("235"));
        assert!(text(s.command(b"MAIL FROM:<someone.else@example.edu>\r\n")).starts_with("553"), "forged sender");
        assert!(text(s.command(b"MAIL FROM:<X@example.edu>\r\n")).starts_with("250"));
        assert!(text(s.command(b"RCPT TO:<y@remote.org>\r\n")).starts_with("554 5.7.1"), "no queue, no relay");
    }

    #[test]
    fn with_a_queue_users_and_trusted_networks_relay_and_mailhosts_mix() {
        let queued = |mode, relay| Session::new(Settings { queue: true, relay, ..settings(mode) }, true);
        // The MX relays for nobody but trusted networks, queue or not.
        let mut mx = queued(Mode::Mx, false);
        text(mx.command(b"EHLO c\r\n"));
        text(mx.command(b"MAIL FROM:<a@b.org>\r\n"));
        assert!(text(mx.command(b"RCPT TO:<y@remote.org>\r\n")).starts_with("554 5.7.1"));
        mx.command(b"RCPT TO:<alice@example.edu>\r\n");
        assert!(text(mx.resolved("alice@example.edu", local("hermes"))).starts_with("250"));
        mx.command(b"RCPT TO:<bob@example.edu>\r\n");
        assert!(text(mx.resolved("bob@example.edu", local("apollo"))).starts_with("250"), "several mailhosts");
        assert_eq!(mx.command(b"DATA\r\n"), Step::Data("354 3.0.0 go ahead, end with <CRLF>.<CRLF>".into()));
        assert_eq!(mx.data_line(b"x\r\n"), None);
        assert_eq!(mx.data_line(b".\r\n"), Some(Step::Deliver));
        let env = mx.envelope();
        assert_eq!((env.group.clone(), env.remote.len(), env.direct()), (None, 0, false), "queued, not direct");

        let mut trusted = queued(Mode::Mx, true);
        text(trusted.command(b"EHLO c\r\n"));
        text(trusted.command(b"MAIL FROM:<a@b.org>\r\n"));
        assert!(text(trusted.command(b"RCPT TO:<y@Remote.org>\r\n")).starts_with("250"));
        assert!(text(trusted.command(b"RCPT TO:<y@remote.org>\r\n")).starts_with("250"));
        let r = text(trusted.command(b"RCPT TO:<nodomain>\r\n"));
        assert!(r.starts_with("554") || r.starts_with("501"), "no domain, no relay: {r}");
        assert!(matches!(trusted.command(b"DATA\r\n"), Step::Data(_)), "remote recipients alone suffice");
        trusted.data_line(b".\r\n");
        let env = trusted.envelope();
        assert_eq!(env.all_recipients(), vec!["y@Remote.org".to_string()], "one copy per address");
    }

    #[test]
    fn a_recipients_size_limit_applies_to_the_declared_size() {
        let mut s = Session::new(settings(Mode::Mx), false);
        text(s.command(b"EHLO c\r\n"));
        let mut attrs = directory::Attributes::new();
        attrs.insert("mail".into(), vec!["small@example.edu".into()]);
        attrs.insert("mailsizemax".into(), vec!["500".into()]);
        let small = || Resolution::Local {
            account: std::sync::Arc::new(Account::from_attributes("x", &attrs).unwrap()),
            group: "g".into(),
        };
        text(s.command(b"MAIL FROM:<a@b.org> SIZE=900\r\n"));
        assert!(text(s.resolved("small@example.edu", small())).starts_with("552 5.3.4"));
        assert!(text(s.resolved("x@example.edu", local("g"))).starts_with("250"), "others take it");
        text(s.command(b"RSET\r\n"));
        text(s.command(b"MAIL FROM:<a@b.org> SIZE=400\r\n"));
        assert!(text(s.resolved("small@example.edu", small())).starts_with("250"));
    }

    #[test]
    fn bdat_and_bad_input() {
        let mut s = Session::new(settings(Mode::Mx), false);
        text(s.command(b"EHLO c\r\n"));
        assert_eq!(s.command(b"BDAT 5 LAST\r\n"), Step::Chunk { size: 5, last: true });
        assert!(text(s.chunk(b"hello", true)).starts_with("503"), "a chunk without a transaction is dropped");
        text(s.command(b"MAIL FROM:<>\r\n"));
        s.command(b"RCPT TO:<a@example.edu>\r\n");
        s.resolved("a@example.edu", local("g"));
        assert_eq!(s.command(b"BDAT 3\r\n"), Step::Chunk { size: 3, last: false });
        assert!(text(s.chunk(b"a\nb", false)).starts_with("250"));
        s.command(b"BDAT 2 LAST\r\n");
        assert_eq!(s.chunk(b"c\n", true), Step::Deliver);
        assert_eq!(s.envelope().message, b"a\r\nbc\r\n");
        // Bare CRs become CRLF too, also when a CR ends one chunk; DATA inside BDAT is 503.
        s.command(b"MAIL FROM:<>\r\n");
        s.command(b"RCPT TO:<a@example.edu>\r\n");
        s.resolved("a@example.edu", local("g"));
        s.command(b"BDAT 4\r\n");
        assert!(text(s.chunk(b"x\ry\r", false)).starts_with("250"));
        assert!(text(s.command(b"DATA\r\n")).starts_with("503 5.5.1"), "DATA after BDAT");
        s.command(b"BDAT 3 LAST\r\n");
        assert_eq!(s.chunk(b"\nz\r", true), Step::Deliver);
        assert_eq!(s.envelope().message, b"x\r\ny\r\nz\r\n");
        for junk in [&b"\xff\xfe\r\n"[..], b"MAIL FROM:<<<\r\n", b"RCPT\r\n", b"\r\n", b"BDAT x\r\n"] {
            assert!(text(s.command(junk)).starts_with('5'), "{junk:?}");
        }
    }

    #[test]
    fn srs_bounces_go_home_through_the_queue_and_forgeries_find_nobody() {
        let srs = common::srs::Srs::new([3; 32]);
        let ours = srs.forward("bob@remote.org", "example.edu", 1_780_000_000);
        let mut s = Session::new(Settings { queue: true, ..settings(Mode::Mx) }, true);
        s.command(b"EHLO x\r\n");
        s.command(b"MAIL FROM:<>\r\n");
        let r = text(s.command(format!("RCPT TO:<{ours}>\r\n").as_bytes()));
        assert!(r.starts_with("250"), "{r}");
        let forged = ours.replacen("remote.org", "victim.org", 1);
        assert!(text(s.command(format!("RCPT TO:<{forged}>\r\n").as_bytes())).starts_with("550 5.1.1"));
        let other = "SRS0=abcd=aa=remote.org=bob@elsewhere.test";
        assert!(
            text(s.command(format!("RCPT TO:<{other}>\r\n").as_bytes())).starts_with("554 5.7.1"),
            "not ours: relaying"
        );
        s.command(b"DATA\r\n");
        s.data_line(b"Subject: bounce\r\n");
        assert_eq!(s.data_line(b".\r\n"), Some(Step::Deliver));
        assert_eq!(s.envelope().remote, vec!["bob@remote.org".to_string()]);
    }

    #[test]
    fn a_retry_of_the_same_message_has_the_same_key_and_another_message_another() {
        let envelope = |from: &str, message: &[u8]| Envelope {
            from: from.into(),
            recipients: vec!["bob@example.edu".into()],
            group: Some("hermes".into()),
            remote: Vec::new(),
            message: message.to_vec(),
            retry_key: Default::default(),
        };
        let message = b"Message-ID: <1@x>\r\nSubject: hi\r\n\r\nbody\r\n";
        let key = envelope("a@x", message).retry_key().expect("a Message-ID makes a key");
        assert_eq!(envelope("a@x", message).retry_key(), Some(key), "a retry");
        assert_ne!(envelope("b@x", message).retry_key(), Some(key), "another sender");
        let edited = b"Message-ID: <1@x>\r\nSubject: hi\r\n\r\nbody!\r\n";
        assert_ne!(envelope("a@x", edited).retry_key(), Some(key), "other bytes");
        assert_eq!(envelope("a@x", b"Subject: hi\r\n\r\nbody\r\n").retry_key(), None, "no Message-ID, no key");
    }
}
