//! Logging in and out (RFC 3501 §6.2, RFC 4959 SASL-IR, RFC 8437 UNAUTHENTICATE): the
//! session never checks a password itself; it hands credentials to the server as
//! [`Outcome::Login`] and is told the result ([`Session::logged_in`], [`Session::login_failed`]).

use super::super::*;
use crate::imap::backend::Backend;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::secret::Secret;
use std::borrow::Cow;

impl<B: Backend> Session<B> {
    pub(in crate::imap::session) fn starttls(&self) -> Answer {
        if !self.offer.starttls || self.user.is_some() {
            return Err(Refusal::Bad("STARTTLS not available".into()));
        }
        Ok(("begin TLS negotiation now".into(), Outcome::StartTls))
    }

    pub(in crate::imap::session) fn login(&self, tag: &str, username: &[u8], password: &[u8]) -> Answer {
        if self.user.is_some() {
            return Err(Refusal::Bad("already logged in".into()));
        }
        if !self.offer.plaintext_auth {
            return Err(Refusal::No("[PRIVACYREQUIRED] LOGIN needs TLS".into()));
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let creds = PlainCredentials { authzid: String::new(), authcid: text(username), password: text(password) };
        Ok((String::new(), Outcome::Login { tag: tag.to_string(), creds }))
    }

    pub(in crate::imap::session) fn authenticate(
        &self,
        tag: &str,
        mechanism: &AuthMechanism<'_>,
        initial_response: Option<Secret<Cow<'_, [u8]>>>,
    ) -> Answer {
        if self.user.is_some() {
            return Err(Refusal::Bad("already logged in".into()));
        }
        if !matches!(mechanism, AuthMechanism::Plain) {
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

    /// Whether UNAUTHENTICATE is offered: not on a session a front node logged in for a
    /// user (it routed the connection by that user's mailhost; another user's login must go
    /// through it again).
    pub(in crate::imap::session) fn may_unauthenticate(&self) -> bool {
        self.user.is_some() && self.hints.mailhost.is_none()
    }

    /// UNAUTHENTICATE (RFC 8437): back to the not-authenticated state, with nothing of the
    /// user's session kept (selected mailbox, enabled extensions, saved results, NOTIFY);
    /// COMPRESS stays on.
    pub(in crate::imap::session) fn unauthenticate(&mut self, tag: &str) -> Reply {
        if !self.may_unauthenticate() {
            return tagged(
                tag,
                "BAD",
                if self.user.is_none() { "log in first" } else { "UNAUTHENTICATE is not available" },
            );
        }
        let fresh = Session::new(self.offer);
        let compressed = self.compressed;
        *self = Session { nonce: self.nonce, ops: self.ops, compressed, ..fresh };
        (format!("{tag} OK UNAUTHENTICATE completed\r\n").into_bytes(), Outcome::Unauthenticated)
    }

    /// Credentials were accepted: `backend` serves `user` from now on. Creates INBOX and
    /// the special-use mailboxes on first login, subscribed: clients that show only
    /// subscribed folders (Roundcube, Thunderbird by default) show them from the start.
    pub async fn logged_in(&mut self, tag: &str, user: UserName, backend: B) -> Reply {
        let existing = backend.mailboxes(&user);
        // A user who never subscribed to anything (an account made before first logins
        // subscribed, or whose INBOX a delivery made) gets the standard folders subscribed.
        let never_subscribed = backend.subscriptions(&user).is_empty();
        let (mut create, mut subscribe) = (Vec::new(), Vec::new());
        for name in std::iter::once("INBOX").chain(SPECIAL_USE.iter().map(|(n, _)| *n)) {
            let missing = !existing.iter().any(|m| m.as_str() == name);
            if missing {
                create.push(name.to_string());
            }
            if missing || never_subscribed {
                subscribe.push(name.to_string());
            }
        }
        if !create.is_empty() || !subscribe.is_empty() {
            // One entry for all of them: a first login costs one Raft round, not twelve.
            let op = MailOp::Provision { user: user.as_str().to_string(), create, subscribe };
            if let Err(e) = backend.propose(self.op_id(), op).await {
                return tagged(tag, "NO", &format!("[UNAVAILABLE] cannot prepare mailboxes: {e}"));
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

    /// The line after `+ ` of AUTHENTICATE PLAIN.
    pub fn sasl_response(&mut self, tag: &str, line: &[u8]) -> Reply {
        match sasl::decode_plain(&String::from_utf8_lossy(line)) {
            Ok(creds) => (Vec::new(), Outcome::Login { tag: tag.to_string(), creds }),
            Err(sasl::SaslError::Cancelled) => tagged(tag, "BAD", "authentication cancelled"),
            Err(e) => tagged(tag, "NO", &format!("[AUTHENTICATIONFAILED] {e}")),
        }
    }
}
