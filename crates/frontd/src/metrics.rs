//! What a front counts for Prometheus (`[metrics]`): client sessions by listener,
//! connections refused before a session (IP rules, blocklists, limits), logins by protocol
//! and result, SMTP messages and recipients by listener and fate with bytes and the time
//! from the end of DATA to the answer, and the outbound queue's deliveries by fate. Label
//! values come from fixed sets; nothing a client sends becomes a label.

use std::time::Duration;

use common::metrics::{fate_of, latency_histogram, Counter, Family, Logins, Registry, Sessions};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerFateLabels {
    listener: &'static str,
    fate: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboundLabels {
    /// `sent`, `deferred` or `bounced`.
    fate: &'static str,
}

/// The front's counters and histograms.
#[derive(Debug)]
pub struct FrontMetrics {
    pub sessions: Sessions,
    pub logins: Logins,
    refused: Family<RefusedLabels, Counter>,
    smtp_messages: Family<ListenerFateLabels, Counter>,
    smtp_recipients: Family<ListenerFateLabels, Counter>,
    smtp_bytes: Family<ListenerLabels, Counter>,
    smtp_answer_seconds: Family<ListenerLabels, Histogram, fn() -> Histogram>,
    outbound: Family<OutboundLabels, Counter>,
}

impl Default for FrontMetrics {
    fn default() -> Self {
        Self {
            sessions: Sessions::default(),
            logins: Logins::default(),
            refused: Family::default(),
            smtp_messages: Family::default(),
            smtp_recipients: Family::default(),
            smtp_bytes: Family::default(),
            smtp_answer_seconds: Family::new_with_constructor(latency_histogram),
            outbound: Family::default(),
        }
    }
}

impl FrontMetrics {
    /// A connection to `listener` closed before its session began, for `reason`
    /// (`ip-rule`, `dnsbl`, `early-talker`, `address-limit`).
    pub fn refused(&self, listener: &'static str, reason: &'static str) {
        self.refused.get_or_create(&RefusedLabels { listener, reason }).inc();
    }

    /// A message of `size_bytes` on `listener` got `replies` (one per recipient) `elapsed`
    /// after its end of data. The message's fate is `accepted` when any recipient's is,
    /// else `deferred` when any is, else `refused`.
    pub fn smtp_message(&self, listener: &'static str, size_bytes: usize, replies: &[String], elapsed: Duration) {
        let fates: Vec<&'static str> = replies.iter().map(|r| fate_of(r)).collect();
        for fate in &fates {
            self.smtp_recipients.get_or_create(&ListenerFateLabels { listener, fate }).inc();
        }
        let fate = ["accepted", "deferred"].into_iter().find(|f| fates.contains(f)).unwrap_or("refused");
        self.smtp_messages.get_or_create(&ListenerFateLabels { listener, fate }).inc();
        if fate == "accepted" {
            self.smtp_bytes.get_or_create(&ListenerLabels { listener }).inc_by(size_bytes as u64);
        }
        self.smtp_answer_seconds.get_or_create(&ListenerLabels { listener }).observe(elapsed.as_secs_f64());
    }

    /// The queue runner's attempt for one recipient ended `sent`, `deferred` or `bounced`.
    pub fn outbound(&self, fate: &'static str) {
        self.outbound.get_or_create(&OutboundLabels { fate }).inc();
    }

    /// Everything, registered for `/metrics`, with the process's own figures.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        self.sessions.register(&mut r);
        self.logins.register(&mut r);
        r.register("mail_connections_refused", "Connections closed before a session, by reason", self.refused.clone());
        r.register("mail_smtp_messages", "SMTP messages by listener and fate", self.smtp_messages.clone());
        r.register("mail_smtp_recipients", "SMTP recipients by listener and fate", self.smtp_recipients.clone());
        r.register("mail_smtp_accepted_bytes", "Bytes of messages accepted over SMTP", self.smtp_bytes.clone());
        r.register(
            "mail_smtp_answer_seconds",
            "From a message's end of data to its answer (scanning, commit or queueing)",
            self.smtp_answer_seconds.clone(),
        );
        r.register("mail_outbound_recipients", "Queue runner attempts by fate", self.outbound.clone());
        r.register_collector(Box::new(common::metrics::system::Process::default()));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_accepted_when_any_recipient_is() {
        let m = FrontMetrics::default();
        let replies = ["250 ok".to_string(), "550 no".to_string()];
        m.smtp_message("smtp", 1000, &replies, Duration::from_millis(4));
        m.smtp_message("submission", 10, &["451 later".to_string()], Duration::from_millis(4));
        m.refused("smtp", "dnsbl");
        m.outbound("bounced");
        let text = common::metrics::endpoint::render(&m.registry());
        for line in [
            "mail_smtp_messages_total{listener=\"smtp\",fate=\"accepted\"} 1",
            "mail_smtp_messages_total{listener=\"submission\",fate=\"deferred\"} 1",
            "mail_smtp_recipients_total{listener=\"smtp\",fate=\"refused\"} 1",
            "mail_smtp_recipients_total{listener=\"smtp\",fate=\"accepted\"} 1",
            "mail_smtp_accepted_bytes_total{listener=\"smtp\"} 1000",
            "mail_connections_refused_total{listener=\"smtp\",reason=\"dnsbl\"} 1",
            "mail_outbound_recipients_total{fate=\"bounced\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains("listener=\"submission\"} 10"), "deferred bytes are not accepted bytes: {text}");
    }
}
