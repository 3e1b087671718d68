//! Running a checked program on one message for one recipient: commands in order, tests
//! evaluated on demand, actions gathered in `Outcome`. Everything the world knows (the time,
//! scanner verdicts, which mailboxes exist, which duplicate ids were seen) comes in through
//! `Context`; nothing goes out but the returned outcome. This module must never do I/O.

mod eval;
pub mod outcome;
pub mod vacation;
pub mod variables;

use std::collections::HashSet;

use crate::compare::Budget;
use crate::error::RuntimeError;
use crate::limits::Limits;
use crate::message::{Envelope, Field, Message};
use crate::program::{Cmd, FlagOp, Program, Vacation};
use outcome::{Actions, DuplicateMark, Outcome, Reply};
use variables::{flag_set, modify, Variables, FLAGS_VARIABLE};

/// Per-user state a script may ask about.
pub trait State {
    /// Whether the user has this mailbox (RFC 5490 mailboxexists, fileinto without :create).
    fn mailbox_exists(&self, name: &str) -> bool;
    /// Whether this duplicate key was remembered and has not expired (RFC 7352).
    fn duplicate_seen(&self, key: &str) -> bool;
}

/// What the deliverer knows about this delivery.
pub struct Context<'a> {
    pub now_unix_s: i64,
    /// The site's zone, minutes east of UTC (dates are shown in it by default).
    pub zone_min: i32,
    /// spamtest's value 1..=10 and percent 0..=100; None when the message was not scanned.
    pub spam: Option<(u8, u8)>,
    /// virustest's value 1..=5; None when not scanned.
    pub virus: Option<u8>,
    /// environment items (RFC 5183), lower-case names.
    pub environment: Vec<(String, String)>,
    /// The recipient's own addresses (vacation is never sent to them; mail must name one).
    pub own_addresses: Vec<String>,
    pub state: &'a dyn State,
}

/// spamtest's value (1..=10) and percent (0..=100) for a scanner's `score` where `max` is
/// "certainly spam" (RFC 5235 §3.2: 1 is "not spam", 10 "definitely spam"); the same
/// mapping as Pigeonhole's `sieve_spamtest_status_type = score`.
pub fn spamtest_from_score(score: f64, max: f64) -> (u8, u8) {
    if score.is_nan() || score <= 0.0 || max <= 0.0 {
        return (1, 0);
    }
    let value = (1.0 + 9.0 * score / max).floor().clamp(1.0, 10.0) as u8;
    let percent = (score * 100.0 / max).floor().clamp(0.0, 100.0) as u8;
    (value, percent)
}

/// Runs `program` for the message `raw` delivered to `envelope.to`.
pub fn run(
    program: &Program,
    raw: &[u8],
    envelope: &Envelope,
    ctx: &Context,
    limits: &Limits,
) -> Result<Outcome, RuntimeError> {
    let mut exec = Exec {
        program,
        message: Message::parse(raw),
        envelope,
        ctx,
        limits,
        budget: Budget::new(limits.steps),
        vars: Variables { max_bytes: limits.variable_bytes, ..Default::default() },
        actions: Actions::new(limits.actions, limits.redirects),
        included: HashSet::new(),
        edited: false,
        duplicates: Vec::new(),
    };
    exec.block(&program.scripts[0].body)?;
    Ok(exec.finish())
}

enum Flow {
    Next,
    Return,
    Stop,
}

struct Exec<'p, 'm> {
    program: &'p Program,
    message: Message<'m>,
    envelope: &'p Envelope,
    ctx: &'p Context<'p>,
    limits: &'p Limits,
    budget: Budget,
    vars: Variables,
    actions: Actions,
    included: HashSet<usize>,
    edited: bool,
    duplicates: Vec<DuplicateMark>,
}

impl Exec<'_, '_> {
    fn finish(self) -> Outcome {
        let mut actions = self.actions;
        let implicit_keep = !actions.cancelled;
        if implicit_keep {
            let flags = flag_set([self.vars.get(FLAGS_VARIABLE)]);
            // Cannot fail: an INBOX store is only refused after a reject, which cancels.
            let _ = actions.store("INBOX".into(), flags, false, false);
        }
        Outcome {
            actions: actions.list,
            implicit_keep,
            header: self.edited.then(|| self.message.header_bytes()),
            duplicates: self.duplicates,
        }
    }

    /// Runs an included script with its own local variables (the internal flags variable
    /// is shared: RFC 5232 §3 keeps one per message).
    fn script(&mut self, index: usize) -> Result<Flow, RuntimeError> {
        let flags = self.vars.get(FLAGS_VARIABLE).to_string();
        let locals = std::mem::take(&mut self.vars.locals);
        let declared = std::mem::take(&mut self.vars.declared);
        self.vars.set(FLAGS_VARIABLE, flags);
        let flow = self.block(&self.program.scripts[index].body);
        let flags = self.vars.get(FLAGS_VARIABLE).to_string();
        self.vars.locals = locals;
        self.vars.set(FLAGS_VARIABLE, flags);
        self.vars.declared = declared;
        flow
    }

    fn block(&mut self, cmds: &[Cmd]) -> Result<Flow, RuntimeError> {
        for cmd in cmds {
            self.budget.spend(1)?;
            match self.command(cmd)? {
                Flow::Next => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Next)
    }

    fn command(&mut self, cmd: &Cmd) -> Result<Flow, RuntimeError> {
        match cmd {
            Cmd::If { branches, otherwise } => return self.branch(branches, otherwise.as_deref()),
            Cmd::Stop => return Ok(Flow::Stop),
            Cmd::Return => return Ok(Flow::Return),
            Cmd::Include { script, once } => return self.include(*script, *once),
            Cmd::Keep { flags } => self.store("INBOX".into(), flags.as_deref(), false, true)?,
            Cmd::Discard => self.actions.cancelled = true,
            Cmd::FileInto { mailbox, copy, create, flags } => {
                self.fileinto(mailbox, *copy, *create, flags.as_deref())?
            }
            Cmd::Redirect { address, copy } => self.redirect(address, *copy)?,
            Cmd::Reject { reason, extended } => self.actions.reject(self.vars.expand(reason), *extended)?,
            Cmd::Vacation(vacation) => self.vacation(vacation)?,
            Cmd::Flags { op, variable, flags } => self.flags(*op, variable.as_ref(), flags),
            Cmd::Set { name, value, modifiers } => {
                let value = modify(self.vars.expand(value), modifiers);
                self.vars.set(name, value);
            }
            Cmd::Global(names) => self.vars.declared.extend(names.iter().cloned()),
            Cmd::AddHeader { last, name, value } => self.addheader(*last, name, value)?,
            Cmd::DeleteHeader { index, name, spec, values } => {
                self.deleteheader(*index, name, *spec, values.as_deref())?
            }
        }
        Ok(Flow::Next)
    }

    fn branch(
        &mut self,
        branches: &[(crate::program::Test, Vec<Cmd>)],
        otherwise: Option<&[Cmd]>,
    ) -> Result<Flow, RuntimeError> {
        for (test, body) in branches {
            if self.test(test)? {
                return self.block(body);
            }
        }
        match otherwise {
            Some(body) => self.block(body),
            None => Ok(Flow::Next),
        }
    }

    fn include(&mut self, script: usize, once: bool) -> Result<Flow, RuntimeError> {
        if once && !self.included.insert(script) {
            return Ok(Flow::Next);
        }
        self.included.insert(script);
        match self.script(script)? {
            Flow::Stop => Ok(Flow::Stop),
            Flow::Next | Flow::Return => Ok(Flow::Next),
        }
    }

    fn current_flags(&self, explicit: Option<&[crate::program::Str]>) -> Vec<String> {
        match explicit {
            Some(list) => {
                let expanded: Vec<String> = list.iter().map(|s| self.vars.expand(s)).collect();
                flag_set(expanded.iter().map(String::as_str))
            }
            None => flag_set([self.vars.get(FLAGS_VARIABLE)]),
        }
    }

    fn store(
        &mut self,
        mailbox: String,
        flags: Option<&[crate::program::Str]>,
        create: bool,
        cancels: bool,
    ) -> Result<(), RuntimeError> {
        let flags = self.current_flags(flags);
        self.actions.store(mailbox, flags, create, cancels)
    }

    fn fileinto(
        &mut self,
        mailbox: &crate::program::Str,
        copy: bool,
        create: bool,
        flags: Option<&[crate::program::Str]>,
    ) -> Result<(), RuntimeError> {
        let name = self.vars.expand(mailbox);
        crate::compile::check_mailbox(&name).map_err(|_| RuntimeError::BadMailbox(name.clone()))?;
        let name = if name.eq_ignore_ascii_case("inbox") { "INBOX".to_string() } else { name };
        self.store(name, flags, create, !copy)
    }

    fn redirect(&mut self, address: &crate::program::Str, copy: bool) -> Result<(), RuntimeError> {
        let text = self.vars.expand(address);
        let address = crate::message::plain_address(&text).ok_or(RuntimeError::BadAddress(text))?;
        self.actions.redirect(address, !copy)
    }

    fn flags(&mut self, op: FlagOp, variable: Option<&crate::program::Str>, flags: &[crate::program::Str]) {
        let name = variable.and_then(|v| v.constant()).unwrap_or(FLAGS_VARIABLE).to_string();
        let given: Vec<String> = flags.iter().map(|s| self.vars.expand(s)).collect();
        let given = flag_set(given.iter().map(String::as_str));
        let current = flag_set([self.vars.get(&name)]);
        let next = match op {
            FlagOp::Set => given,
            FlagOp::Add => flag_set(current.iter().chain(&given).map(String::as_str)),
            FlagOp::Remove => {
                current.into_iter().filter(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f))).collect()
            }
        };
        self.vars.set(&name, next.join(" "));
    }

    fn vacation(&mut self, v: &Vacation) -> Result<(), RuntimeError> {
        let body = self.vars.expand(&v.reason);
        let subject = match &v.subject {
            Some(s) => self.vars.expand(s),
            None => {
                format!("Auto: {}", self.message.fields_named("subject").next().map(Field::value).unwrap_or_default())
            }
        };
        let from = v.from.as_ref().map(|s| self.vars.expand(s));
        let mut own = self.ctx.own_addresses.clone();
        own.push(self.envelope.to.clone());
        own.extend(v.addresses.iter().map(|s| self.vars.expand(s)));
        let handle = match &v.handle {
            Some(h) => self.vars.expand(h),
            None => format!(
                "{body}\u{0}{}\u{0}{}\u{0}{}",
                v.subject.as_ref().map(|s| self.vars.expand(s)).unwrap_or_default(),
                from.clone().unwrap_or_default(),
                v.mime
            ),
        };
        let reply = Reply {
            to: self.envelope.from.clone(),
            from,
            subject,
            body,
            mime: v.mime,
            handle,
            period_s: v
                .period_s
                .unwrap_or(7 * 86_400)
                .clamp(self.limits.vacation_min_period_s, self.limits.vacation_max_period_s),
            in_reply_to: self.message.fields_named("message-id").next().map(Field::value),
            suppressed: vacation::suppressed(&self.message, self.envelope, &own),
        };
        self.actions.vacation(reply)
    }

    fn addheader(
        &mut self,
        last: bool,
        name: &crate::program::Str,
        value: &crate::program::Str,
    ) -> Result<(), RuntimeError> {
        let name = self.vars.expand(name);
        crate::compile::check_header_name(&name).map_err(|_| RuntimeError::ProtectedHeader(name.clone()))?;
        if protected(&name) {
            return Ok(());
        }
        let value = encode_value(&self.vars.expand(value), self.limits.header_bytes);
        let field = Field::new(&name, &value);
        self.budget.spend(field.raw.len() as u64)?;
        if last {
            self.message.fields.push(field)
        } else {
            self.message.fields.insert(0, field)
        }
        self.edited = true;
        Ok(())
    }

    fn deleteheader(
        &mut self,
        index: Option<crate::program::Index>,
        name: &crate::program::Str,
        spec: crate::program::MatchSpec,
        values: Option<&[crate::program::Str]>,
    ) -> Result<(), RuntimeError> {
        let name = self.vars.expand(name);
        if protected(&name) {
            return Ok(());
        }
        let mut positions: Vec<usize> =
            (0..self.message.fields.len()).filter(|&i| self.message.fields[i].is(&name)).collect();
        if let Some(index) = index {
            let nth = if index.last { positions.len().checked_sub(index.nth) } else { index.nth.checked_sub(1) };
            positions = nth.and_then(|n| positions.get(n).copied()).into_iter().collect();
        }
        if let Some(patterns) = values {
            let keys: Vec<String> = patterns.iter().map(|s| self.vars.expand(s)).collect();
            let mut kept = Vec::new();
            for i in positions {
                let value = self.message.fields[i].value();
                if crate::compare::test(spec, &[value], &keys, &mut self.budget, None)? {
                    kept.push(i);
                }
            }
            positions = kept;
        }
        for i in positions.into_iter().rev() {
            self.message.fields.remove(i);
            self.edited = true;
        }
        Ok(())
    }
}

/// Fields a script may neither add nor delete (RFC 5293 §6: the trace and loop guards).
fn protected(name: &str) -> bool {
    name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("auto-submitted")
}

/// A header value safe to write: no line breaks, non-ASCII as an RFC 2047 encoded word.
fn encode_value(value: &str, max_bytes: usize) -> String {
    let value: String = variables::truncate(value.to_string(), max_bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if value.is_ascii() {
        return value;
    }
    let mut out = String::from("=?utf-8?q?");
    for b in value.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => out.push(b as char),
            b' ' => out.push('_'),
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out.push_str("?=");
    out
}
