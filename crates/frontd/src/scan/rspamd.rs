//! A client of rspamd's HTTP protocol: `POST /checkv2` on the normal worker with the SMTP
//! envelope in request headers (`From`, `Rcpt`, `Ip`, `Helo`, `User`), and `learnspam` /
//! `learnham` on the controller. It owns the wire format only and reads at most
//! [`REPLY_MAX_BYTES`] of a reply; what a score means for a recipient is decided elsewhere
//! (`super::policy`), and it never sends the controller password anywhere but the
//! controller.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use common::http::HttpError;
use serde::Deserialize;

/// Longest reply read: a check's JSON with every symbol is a few KiB.
pub const REPLY_MAX_BYTES: usize = 1 << 20;

/// Why rspamd gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RspamdError {
    #[error("rspamd: {0}")]
    Http(#[from] HttpError),
    #[error("rspamd answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("rspamd sent an unreadable reply: {0}")]
    Reply(String),
}

/// The SMTP facts rspamd scores with.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub from: &'a str,
    pub recipients: &'a [String],
    pub ip: IpAddr,
    pub helo: Option<&'a str>,
    /// The authenticated user (submission).
    pub user: Option<&'a str>,
}

/// rspamd's verdict on a message.
#[derive(Debug, Clone, PartialEq)]
pub struct SpamReport {
    pub score: f64,
    pub required_score: f64,
    /// rspamd's action: `no action`, `greylist`, `add header`, `rewrite subject`, `reject`.
    pub action: String,
    /// Symbols that fired, highest score first.
    pub symbols: Vec<(String, f64)>,
}

impl SpamReport {
    /// Whether a symbol fired.
    pub fn has(&self, symbol: &str) -> bool {
        self.symbols.iter().any(|(s, _)| s == symbol)
    }
}

#[derive(Deserialize)]
struct CheckReply {
    score: f64,
    #[serde(default)]
    required_score: f64,
    action: String,
    #[serde(default)]
    symbols: BTreeMap<String, SymbolReply>,
}

#[derive(Deserialize)]
struct SymbolReply {
    #[serde(default)]
    score: f64,
}

/// An rspamd to ask.
#[derive(Debug, Clone)]
pub struct Rspamd {
    /// The normal worker, `host:port`.
    address: String,
    timeout: Duration,
}

impl Rspamd {
    pub fn new(address: String, timeout: Duration) -> Self {
        Self { address, timeout }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Score `message`.
    pub async fn check(&self, envelope: &Envelope<'_>, message: Bytes) -> Result<SpamReport, RspamdError> {
        let mut headers = vec![("from", envelope.from.to_string()), ("ip", envelope.ip.to_string())];
        headers.extend(envelope.recipients.iter().map(|r| ("rcpt", r.clone())));
        headers.extend(envelope.helo.map(|h| ("helo", h.to_string())));
        headers.extend(envelope.user.map(|u| ("user", u.to_string())));
        let (status, body) =
            common::http::post(&self.address, "/checkv2", &headers, message, self.timeout, REPLY_MAX_BYTES).await?;
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
            return Err(RspamdError::Status { status, body: text });
        }
        parse_check(&body)
    }
}

/// A `/checkv2` reply: score, action and the symbols that fired (names checked).
pub fn parse_check(body: &[u8]) -> Result<SpamReport, RspamdError> {
    let reply: CheckReply = serde_json::from_slice(body).map_err(|e| RspamdError::Reply(e.to_string()))?;
    if !reply.score.is_finite() {
        return Err(RspamdError::Reply(format!("score {}", reply.score)));
    }
    let mut symbols: Vec<(String, f64)> = reply
        .symbols
        .into_iter()
        .filter(|(name, _)| name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|(name, s)| (name, if s.score.is_finite() { s.score } else { 0.0 }))
        .collect();
    symbols.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(SpamReport { score: reply.score, required_score: reply.required_score, action: reply.action, symbols })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_reply_becomes_a_report_with_symbols_by_score() {
        let body = br#"{"is_skipped":false,"score":9.8,"required_score":15.0,"action":"add header",
            "symbols":{"MISSING_MID":{"name":"MISSING_MID","score":2.5},"R_SPF_ALLOW":{"score":-0.2},
            "HFILTER_HOSTNAME_UNKNOWN":{"score":2.5},"BAD NAME\r\n":{"score":1}},"messages":{}}"#;
        let r = parse_check(body).unwrap();
        assert_eq!(r.score, 9.8);
        assert_eq!(r.action, "add header");
        let names: Vec<&str> = r.symbols.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["HFILTER_HOSTNAME_UNKNOWN", "MISSING_MID", "R_SPF_ALLOW"]);
        assert!(r.has("R_SPF_ALLOW"));
        assert!(matches!(parse_check(b"<html>"), Err(RspamdError::Reply(_))));
        assert!(matches!(parse_check(br#"{"score":"x","action":"reject"}"#), Err(RspamdError::Reply(_))));
    }
}
