//! Prometheus metrics both daemons share: the `/metrics` endpoint (`endpoint`), what a
//! process reports about itself and its disks (`system`), and the names and label sets
//! every daemon uses for the same thing (a reply's fate, a login's result, latency
//! buckets). What this must never do: block or allocate per event on a request path
//! (updates are atomic increments on counters made once; reading happens at scrape time),
//! or expose anything a client sent (label values come from fixed sets, never from input).

pub mod endpoint;
pub mod system;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::registry::Registry;

/// Latency buckets in seconds, 1 ms to 60 s: a delivery waits for a Raft commit (a few ms
/// here), an IMAP command from microseconds to a large FETCH's seconds.
pub const LATENCY_BUCKETS_S: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

/// A latency histogram with [`LATENCY_BUCKETS_S`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_S)
}

/// What became of a message for one recipient, from the reply it got: `accepted` (2xx),
/// `deferred` (4xx: the client will retry) or `refused` (5xx, or anything unparsable).
pub fn fate_of(reply: &str) -> &'static str {
    match reply.as_bytes().first() {
        Some(b'2') => "accepted",
        Some(b'4') => "deferred",
        _ => "refused",
    }
}

/// A protocol's login counts: `mail_logins_total{protocol, result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub protocol: &'static str,
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Sessions opened per protocol: `mail_sessions_total{protocol}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub protocol: &'static str,
}

/// Login counts by protocol and result, registered as `mail_logins`.
#[derive(Debug, Default)]
pub struct Logins(Family<LoginLabels, Counter>);

impl Logins {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("mail_logins", "Logins by protocol and result", self.0.clone());
    }

    pub fn count(&self, protocol: &'static str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.0.get_or_create(&LoginLabels { protocol, result }).inc();
    }
}

/// Session counts by protocol, registered as `mail_sessions`.
#[derive(Debug, Default)]
pub struct Sessions(Family<ProtocolLabels, Counter>);

impl Sessions {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("mail_sessions", "Client sessions opened, by protocol", self.0.clone());
    }

    pub fn opened(&self, protocol: &'static str) {
        self.0.get_or_create(&ProtocolLabels { protocol }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_s_first_digit_is_its_fate() {
        assert_eq!(fate_of("250 2.0.0 ok"), "accepted");
        assert_eq!(fate_of("451 4.3.0 later"), "deferred");
        assert_eq!(fate_of("550 5.1.1 no such user"), "refused");
        assert_eq!(fate_of(""), "refused");
    }

    #[test]
    fn logins_are_counted_by_protocol_and_result() {
        let logins = Logins::default();
        let mut registry = Registry::default();
        logins.register(&mut registry);
        logins.count("imap", true);
        logins.count("imap", false);
        logins.count("imap", false);
        let text = endpoint::render(&registry);
        assert!(text.contains("mail_logins_total{protocol=\"imap\",result=\"failure\"} 2"), "{text}");
        assert!(text.contains("mail_logins_total{protocol=\"imap\",result=\"success\"} 1"), "{text}");
    }
}
