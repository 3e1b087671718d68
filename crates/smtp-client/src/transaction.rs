//! One mail transaction on an open connection: `MAIL`, one `RCPT` per recipient, `DATA`
//! and the body only after a `354`, then the end-of-data reply (SMTP) or one reply per
//! accepted recipient (LMTP, RFC 2033 §4.2). The result is a transcript of the server's
//! replies; [`Transcript::per_recipient`] turns it into one reply per recipient.
//! What this must never do: send the body when `DATA` was not answered `354`, or when no
//! recipient was accepted.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::connection::Connection;
use crate::reply::Reply;
use crate::ClientError;

/// Which protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Smtp,
    Lmtp,
}

/// Who the message is from and for, with the parameters each command carries.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub from: &'a str,
    /// Appended to `MAIL FROM:<from>`, e.g. ` SIZE=1234` (empty for none).
    pub mail_params: &'a str,
    pub recipients: &'a [String],
    /// Appended to every `RCPT TO:<rcpt>`, e.g. ` XMAILHOST=apollo`.
    pub rcpt_params: &'a str,
    /// Appended after `rcpt_params` to the `RCPT` of the recipient at the same position
    /// (empty: none for any).
    pub rcpt_params_each: &'a [String],
}

/// What the server answered, step by step.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub mail: Reply,
    /// One per recipient tried, in order (fewer than the recipients if stopped).
    pub rcpts: Vec<Reply>,
    /// The reply to `DATA`, if it was sent (some recipient was accepted).
    pub data: Option<Reply>,
    /// After the body: one reply (SMTP) or one per accepted recipient (LMTP).
    pub ends: Vec<Reply>,
    /// A `RCPT` reply the caller's `stop_at` matched ended the transaction (the last of `rcpts`).
    pub stopped: bool,
    /// Recipients in the envelope.
    pub recipients: usize,
}

impl Transcript {
    /// The reply that decides each recipient's fate, in order. Only for transcripts that
    /// were not stopped.
    pub fn per_recipient(&self, dialect: Dialect) -> Vec<Reply> {
        debug_assert!(!self.stopped, "a stopped transaction answers for no recipient");
        debug_assert!(!self.mail.is_positive() || self.rcpts.len() == self.recipients, "every RCPT answered");
        if !self.mail.is_positive() {
            return vec![self.mail.clone(); self.recipients];
        }
        let mut ends = self.ends.iter();
        self.rcpts
            .iter()
            .map(|rcpt| match &self.data {
                _ if !rcpt.is_positive() => rcpt.clone(),
                Some(data) if data.code != 354 => data.clone(),
                None => rcpt.clone(),
                Some(_) => match dialect {
                    Dialect::Lmtp => ends.next().cloned().expect("one end reply per accepted recipient"),
                    Dialect::Smtp => self.ends[0].clone(),
                },
            })
            .collect()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Run one transaction: `stuffed` is the message already dot-stuffed and terminated
    /// (see [`dot_stuff`]). `stop_at` may end it at a `RCPT` reply (LMTP: "not the leader",
    /// nothing is worth sending to this server). When the server offered PIPELINING, the
    /// envelope and `DATA` go out in one write (RFC 2920) and the body still only after `354`.
    pub async fn transaction(
        &mut self,
        dialect: Dialect,
        envelope: &Envelope<'_>,
        stuffed: &[u8],
        stop_at: impl Fn(&Reply) -> bool,
    ) -> Result<Transcript, ClientError> {
        debug_assert!(stuffed.ends_with(b"\r\n.\r\n") || stuffed == b".\r\n", "dot-stuffed and terminated");
        let mut t = if self.pipelining() {
            self.pipelined_envelope(envelope, &stop_at).await?
        } else {
            self.stepwise_envelope(envelope, &stop_at).await?
        };
        let go = t.data.as_ref().is_some_and(|d| d.code == 354);
        if t.stopped {
            if go {
                // Invited to send data we do not want delivered: end the conversation so
                // the server drops the transaction.
                self.abandon().await;
            } else {
                self.command("RSET").await?;
            }
            return Ok(t);
        }
        if !go {
            return Ok(t);
        }
        let wait = self.deadlines().data_end;
        self.send_within(stuffed, wait).await?;
        let replies = match dialect {
            Dialect::Lmtp => t.rcpts.iter().filter(|r| r.is_positive()).count(),
            Dialect::Smtp => 1,
        };
        for _ in 0..replies {
            t.ends.push(self.reply_within(wait).await?);
        }
        Ok(t)
    }

    /// MAIL, each RCPT and DATA, one command and reply at a time; DATA only if a recipient
    /// was accepted.
    async fn stepwise_envelope(
        &mut self,
        envelope: &Envelope<'_>,
        stop_at: &impl Fn(&Reply) -> bool,
    ) -> Result<Transcript, ClientError> {
        let mail = self.command(&mail_line(envelope)).await?;
        let mut t = Transcript::new(mail, envelope.recipients.len());
        if !t.mail.is_positive() {
            return Ok(t);
        }
        for (k, rcpt) in envelope.recipients.iter().enumerate() {
            let r = self.command(&rcpt_line(envelope, k, rcpt)).await?;
            t.stopped = stop_at(&r);
            t.rcpts.push(r);
            if t.stopped {
                return Ok(t);
            }
        }
        if t.rcpts.iter().any(Reply::is_positive) {
            t.data = Some(self.command("DATA").await?);
        }
        Ok(t)
    }

    /// MAIL, every RCPT and DATA in one write, then their replies in order (the server
    /// answers each, refusing DATA when no recipient was accepted).
    async fn pipelined_envelope(
        &mut self,
        envelope: &Envelope<'_>,
        stop_at: &impl Fn(&Reply) -> bool,
    ) -> Result<Transcript, ClientError> {
        let mut batch = format!("{}\r\n", mail_line(envelope));
        for (k, rcpt) in envelope.recipients.iter().enumerate() {
            batch.push_str(&rcpt_line(envelope, k, rcpt));
            batch.push_str("\r\n");
        }
        batch.push_str("DATA\r\n");
        let wait = self.deadlines().reply;
        self.send_within(batch.as_bytes(), wait).await?;
        let mail = self.reply().await?;
        let mut t = Transcript::new(mail, envelope.recipients.len());
        for _ in envelope.recipients {
            let r = self.reply().await?;
            if !t.stopped {
                t.stopped = stop_at(&r);
                t.rcpts.push(r);
            }
        }
        t.data = Some(self.reply().await?);
        if !t.mail.is_positive() {
            // The RCPT and DATA replies only repeat that there is no transaction.
            t.rcpts.clear();
            t.data = None;
        }
        Ok(t)
    }
}

fn mail_line(envelope: &Envelope<'_>) -> String {
    format!("MAIL FROM:<{}>{}", envelope.from, envelope.mail_params)
}

fn rcpt_line(envelope: &Envelope<'_>, k: usize, rcpt: &str) -> String {
    let own = envelope.rcpt_params_each.get(k).map_or("", String::as_str);
    format!("RCPT TO:<{rcpt}>{}{own}", envelope.rcpt_params)
}

impl Transcript {
    fn new(mail: Reply, recipients: usize) -> Self {
        Self { mail, rcpts: Vec::new(), data: None, ends: Vec::new(), stopped: false, recipients }
    }
}

/// Prefix lines that start with `.` and end the data with `CRLF.CRLF` (RFC 5321 §4.5.2).
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    dot_stuff_parts(&[message])
}

/// [`dot_stuff`] of the concatenation of `parts` (a header block and a body, say), made
/// in one buffer: lines may run across parts.
pub fn dot_stuff_parts(parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + len / 64 + 5);
    let mut line_start = true;
    for part in parts {
        for piece in part.split_inclusive(|b| *b == b'\n') {
            if line_start && piece.starts_with(b".") {
                out.push(b'.');
            }
            out.extend_from_slice(piece);
            line_start = piece.ends_with(b"\n");
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        if out.ends_with(b"\n") {
            out.pop();
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests;
