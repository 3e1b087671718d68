//! Running a recipient's active Sieve script at delivery, on the group leader, before the
//! delivery is proposed: the entry then carries the script's decisions (copies, outbound
//! messages, memory), so every replica applies the same outcome. A script that does not
//! compile or fails at run time keeps the message in INBOX and is logged (RFC 5228
//! §2.10.6). This module must never write to the store itself: it only builds the entry.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::recipient_rules::RecipientRules;
use sieve::{Action, Context, Envelope, IncludeLocation, Includes, Limits, Outcome, Reply, State};

use crate::group::Group;
use crate::mailstore::ops::flag;
use crate::mailstore::{scripts, sieve_memory, FiledCopy, MailOp, MailboxName, Outbound, UserName};

/// What the recipient's script decided.
pub enum Filtered {
    /// No active script, or it failed: deliver to INBOX as without one.
    Unfiltered,
    /// Refuse the message with this reason (reject/ereject).
    Rejected(String),
    /// Propose this entry.
    Deliver(MailOp),
}

/// The delivery being filtered.
pub struct Delivery<'a> {
    pub envelope_from: &'a str,
    /// Rewrites the envelope sender of what is forwarded (SRS), so SPF at the destination
    /// judges our domain.
    pub srs: &'a common::srs::Srs,
    /// Where `include :global` scripts are.
    pub global_dir: Option<&'a Path>,
    /// Programs compiled before, by their text.
    pub programs: &'a ProgramCache,
    /// The recipient's address as the client gave it.
    pub address: &'a str,
    pub message: &'a [u8],
    pub internal_date: i64,
}

/// Runs `user`'s active script and the directory's rules (`rules`: forwarding, no local
/// copy, auto-reply) on the delivery.
pub fn filter(group: &Group, user: &UserName, delivery: &Delivery, rules: &RecipientRules) -> Filtered {
    let dir = {
        let store = group.sm.store();
        let store = store.lock().expect("store lock");
        store.layout().user_dir(user)
    };
    let directs = !rules.forward.is_empty() || rules.no_local || rules.reply.is_some();
    let script = active_program(user, &dir, delivery);
    if script.is_none() && !directs {
        return Filtered::Unfiltered;
    }
    let envelope = Envelope { from: delivery.envelope_from.into(), to: delivery.address.into(), auth: None };
    let state = UserState { group, user, dir: &dir, now_s: delivery.internal_date };
    // The header fields read here, parsed once (the engine reads its own copy).
    let header = sieve::message::Message::parse(delivery.message);
    let ctx = context(delivery, &state, spam_verdict(&header));
    let looped = delivered_to(&header, delivery.address);
    let limits = Limits::default();
    let mut outcome = match &script {
        Some((name, program)) => sieve::run(program.as_ref(), delivery.message, &envelope, &ctx, &limits)
            .unwrap_or_else(|e| {
                tracing::warn!(user = %user.as_str(), script = %name, error = %e, "Sieve script failed; kept in INBOX");
                keep()
            }),
        None => keep(),
    };
    if let Some(text) = &rules.reply {
        outcome.actions.extend(directory_reply(text, delivery, &envelope, &ctx, &limits));
    }
    decide(user, &dir, delivery, (outcome, looped), rules)
}

/// The user's active script, compiled; None when there is none or it does not compile
/// (logged: mail is then kept in INBOX).
fn active_program(user: &UserName, dir: &Path, delivery: &Delivery) -> Option<(String, Arc<sieve::Program>)> {
    let (name, text) = match scripts::active(dir) {
        Ok(active) => active?,
        Err(e) => {
            tracing::warn!(user = %user.as_str(), error = %e, "cannot read the active Sieve script; kept in INBOX");
            return None;
        }
    };
    if let Some(program) = delivery.programs.get(&name, &text) {
        return Some((name, program));
    }
    let dirs = ScriptDirs { personal: dir, global: delivery.global_dir };
    match sieve::compile(&text, &name, &Limits::default(), &dirs) {
        Ok(program) => Some((name.clone(), delivery.programs.insert(&name, &text, program))),
        Err(e) => {
            tracing::warn!(user = %user.as_str(), script = %name, error = %e, "Sieve script does not compile; kept in INBOX");
            None
        }
    }
}

/// Compiled programs by script name and text, so a script is compiled once, not at every
/// delivery. A program that includes other scripts is not kept (they may change on their
/// own). Bounded: emptied when full.
#[derive(Default)]
pub struct ProgramCache(Mutex<HashMap<[u8; 32], Arc<sieve::Program>>>);

/// Programs kept at most (a few KiB each).
const PROGRAMS_MAX: usize = 10_000;

impl ProgramCache {
    fn key(name: &str, text: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::new()
            .chain_update(name.as_bytes())
            .chain_update([0])
            .chain_update(text.as_bytes())
            .finalize()
            .into()
    }

    fn get(&self, name: &str, text: &str) -> Option<Arc<sieve::Program>> {
        self.0.lock().expect("program cache").get(&Self::key(name, text)).cloned()
    }

    fn insert(&self, name: &str, text: &str, program: sieve::Program) -> Arc<sieve::Program> {
        let program = Arc::new(program);
        if program.scripts.len() == 1 {
            let mut map = self.0.lock().expect("program cache");
            if map.len() >= PROGRAMS_MAX {
                map.clear();
            }
            map.insert(Self::key(name, text), program.clone());
        }
        program
    }
}

/// What happens without a script: the implicit keep.
fn keep() -> Outcome {
    Outcome {
        actions: vec![Action::Store { mailbox: "INBOX".into(), flags: Vec::new(), create: false }],
        implicit_keep: true,
        ..Outcome::default()
    }
}

/// qmail-ldap's auto-reply (`deliveryMode: reply`, `mailReplyText`) as a vacation: the same
/// RFC 3834 rules, answered once per sender per 14 days (qmail-reply's REPLY_TIMEOUT), never
/// to mail the scanning stage marked as spam.
fn directory_reply(
    text: &str,
    delivery: &Delivery,
    envelope: &Envelope,
    ctx: &Context,
    limits: &Limits,
) -> Vec<Action> {
    let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
    let script = format!(
        "require \"vacation\";\nif not header :matches \"x-spam-status\" \"Yes*\" {{ vacation :days 14 :handle \"mailReplyText\" \"{quoted}\"; }}"
    );
    let reply = sieve::compile(&script, "mailReplyText", limits, &sieve::NoIncludes)
        .map_err(|e| e.to_string())
        .and_then(|program| sieve::run(&program, delivery.message, envelope, ctx, limits).map_err(|e| e.to_string()));
    match reply {
        Ok(outcome) => outcome.actions.into_iter().filter(|a| matches!(a, Action::Vacation(_))).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the directory's auto-reply could not be made");
            Vec::new()
        }
    }
}

fn context<'a>(delivery: &Delivery, state: &'a UserState, spam: Option<(u8, u8)>) -> Context<'a> {
    let host = delivery.address.rsplit_once('@').map_or("", |(_, d)| d).to_string();
    Context {
        now_unix_s: delivery.internal_date,
        zone_min: 0,
        spam,
        virus: None,
        environment: vec![
            ("domain".into(), host),
            ("location".into(), "MS".into()),
            ("name".into(), "mailstore".into()),
            ("phase".into(), "during".into()),
            ("version".into(), env!("CARGO_PKG_VERSION").into()),
        ],
        own_addresses: vec![delivery.address.to_string()],
        state,
    }
}

/// spamtest's value from the scanning stage's stamp (`X-Spam-Score`, and the threshold in
/// `X-Spam-Status: ... required=N`; the front removes any a sender wrote): a score at the
/// threshold is 10, "definitely spam". None when the message was not scored.
fn spam_verdict(parsed: &sieve::message::Message) -> Option<(u8, u8)> {
    let score: f64 = parsed.fields_named("x-spam-score").next()?.value().parse().ok()?;
    let status = parsed.fields_named("x-spam-status").next().map(|f| f.value()).unwrap_or_default();
    let threshold = status
        .split_whitespace()
        .find_map(|w| w.strip_prefix("required="))
        .and_then(|t| t.trim_end_matches([',', ';']).parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(10.0);
    Some(sieve::spamtest_from_score(score, threshold))
}

/// The outcome, with the directory's forwarding and local-copy rules, as the entry to propose
/// (`looped`: the message already passed this recipient).
fn decide(
    user: &UserName,
    dir: &Path,
    delivery: &Delivery,
    (outcome, looped): (Outcome, bool),
    rules: &RecipientRules,
) -> Filtered {
    let message = match &outcome.header {
        Some(header) => sieve::message::with_header(delivery.message, header),
        None => delivery.message.to_vec(),
    };
    let domain = delivery.address.rsplit_once('@').map_or("", |(_, d)| d);
    let sender = delivery.srs.forward(delivery.envelope_from, domain, delivery.internal_date.max(0) as u64);
    let mut copies = Vec::new();
    let mut outbound = Vec::new();
    let mut remember: Vec<(String, i64)> = outcome
        .duplicates
        .iter()
        .map(|d| (format!("duplicate\u{0}{}", d.key), delivery.internal_date.saturating_add(d.period_s as i64)))
        .collect();
    for action in &outcome.actions {
        match action {
            Action::Reject { reason, .. } => return Filtered::Rejected(reason.clone()),
            // deliveryMode nolocal: no copy in the user's own mailboxes.
            Action::Store { .. } if rules.no_local => {}
            Action::Store { mailbox, flags, create } => copies.push(filed(mailbox, flags, *create)),
            // A message that already passed this recipient is not sent on again: kept instead.
            Action::Redirect { .. } if looped => copies.push(filed("INBOX", &[], false)),
            Action::Redirect { address } => outbound.push(Outbound {
                sender: sender.clone(),
                recipients: vec![address.clone()],
                message: [format!("Delivered-To: {}\r\n", delivery.address).as_bytes(), &message].concat(),
            }),
            Action::Vacation(reply) => {
                if let Some((out, key)) = vacation(dir, delivery, reply) {
                    outbound.push(out);
                    remember.push((key, delivery.internal_date.saturating_add(reply.period_s as i64)));
                }
            }
        }
    }
    if !rules.forward.is_empty() {
        match looped {
            // Round a loop: kept instead of forwarded again.
            true if copies.is_empty() => copies.push(filed("INBOX", &[], false)),
            true => {}
            false => outbound.push(Outbound {
                sender,
                recipients: rules.forward.clone(),
                message: [format!("Delivered-To: {}\r\n", delivery.address).as_bytes(), &message].concat(),
            }),
        }
    }
    tracing::info!(user = %user.as_str(), copies = copies.len(), outbound = outbound.len(), "filtered");
    Filtered::Deliver(MailOp::DeliverFiltered {
        user: user.as_str().to_string(),
        internal_date: delivery.internal_date,
        message,
        copies,
        outbound,
        remember,
    })
}

fn filed(mailbox: &str, flags: &[String], create: bool) -> FiledCopy {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for f in flags {
        match flag::system(f) {
            Some(bit) => bits |= bit,
            None if !f.starts_with('\\') && f.bytes().all(|b| b.is_ascii_graphic() && !b"(){%*\"]".contains(&b)) => {
                keywords.push(f.clone())
            }
            None => {}
        }
    }
    let mailbox = if mailbox.eq_ignore_ascii_case("INBOX") {
        MailboxName::inbox().as_str().to_string()
    } else {
        mailbox.to_string()
    };
    FiledCopy { mailbox, flags: bits, keywords, create }
}

/// Whether the message already carries `Delivered-To: address` (it came round a loop).
fn delivered_to(parsed: &sieve::message::Message, address: &str) -> bool {
    parsed.fields_named("delivered-to").any(|f| f.value().eq_ignore_ascii_case(address))
}

/// The reply to send and the memory key, unless RFC 3834 forbids a reply or this sender
/// was answered within the period.
fn vacation(dir: &Path, delivery: &Delivery, reply: &Reply) -> Option<(Outbound, String)> {
    if let Some(why) = reply.suppressed {
        tracing::info!(to = %reply.to, why, "vacation reply not sent");
        return None;
    }
    let key = format!("vacation\u{0}{}\u{0}{}", reply.handle, reply.to.to_ascii_lowercase());
    if sieve_memory::remembers(dir, &key, delivery.internal_date).unwrap_or(false) {
        return None;
    }
    let message = crate::lmtp::vacation::reply_message(reply, delivery.address, delivery.internal_date);
    // RFC 3834 §3.3: automatic replies go from the null sender, so they bounce nowhere.
    Some((Outbound { sender: String::new(), recipients: vec![reply.to.clone()], message }, key))
}

/// The user's own scripts (`include :personal`) and the site's (`include :global`).
struct ScriptDirs<'a> {
    personal: &'a Path,
    global: Option<&'a Path>,
}

impl Includes for ScriptDirs<'_> {
    fn script(&self, location: IncludeLocation, name: &str) -> Option<String> {
        scripts::check_name(name).ok()?;
        match location {
            IncludeLocation::Personal => scripts::read(self.personal, name).ok().flatten(),
            IncludeLocation::Global => {
                let bytes = std::fs::read(self.global?.join(format!("{name}.sieve"))).ok()?;
                (bytes.len() <= scripts::SCRIPT_MAX_BYTES).then(|| String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }
}

/// What a script may ask about the user: mailboxes and duplicate memory.
struct UserState<'a> {
    group: &'a Group,
    user: &'a UserName,
    dir: &'a Path,
    now_s: i64,
}

impl State for UserState<'_> {
    fn mailbox_exists(&self, name: &str) -> bool {
        let Ok(mailbox) = MailboxName::parse(name) else { return false };
        matches!(self.group.mailbox_index(self.user, &mailbox), Ok(Some(_)))
    }

    fn duplicate_seen(&self, key: &str) -> bool {
        sieve_memory::remembers(self.dir, &format!("duplicate\u{0}{key}"), self.now_s).unwrap_or(false)
    }
}
