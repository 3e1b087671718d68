//! What a storage node counts for Prometheus (`[metrics]`): sessions and logins by
//! protocol, LMTP recipients by fate with bytes and commit latency, IMAP commands by name
//! and result with latency, the Raft log's append and fsync latency; and, read from the
//! groups at scrape time, each group's Raft term, leader, log and applied index, follower
//! lag, snapshot size and outbound queue depth and age. Label values come from fixed sets
//! (an unknown IMAP verb counts as `other`): nothing a client sends becomes a label.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::metrics::{latency_histogram, Counter, Family, Logins, Registry, Sessions};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

use crate::node::Node;

/// The IMAP commands counted by name; anything else is `other`.
const IMAP_COMMANDS: &[&str] = &[
    "APPEND",
    "AUTHENTICATE",
    "CAPABILITY",
    "CHECK",
    "CLOSE",
    "COMPRESS",
    "COPY",
    "CREATE",
    "DELETE",
    "ENABLE",
    "EXAMINE",
    "EXPUNGE",
    "FETCH",
    "GETMETADATA",
    "GETQUOTA",
    "GETQUOTAROOT",
    "ID",
    "IDLE",
    "LIST",
    "LOGIN",
    "LOGOUT",
    "LSUB",
    "MOVE",
    "NAMESPACE",
    "NOOP",
    "NOTIFY",
    "RENAME",
    "SEARCH",
    "SELECT",
    "SETMETADATA",
    "SETQUOTA",
    "SORT",
    "STARTTLS",
    "STATUS",
    "STORE",
    "SUBSCRIBE",
    "THREAD",
    "UNAUTHENTICATE",
    "UNSELECT",
    "UNSUBSCRIBE",
    "UID COPY",
    "UID EXPUNGE",
    "UID FETCH",
    "UID MOVE",
    "UID SEARCH",
    "UID SORT",
    "UID STORE",
    "UID THREAD",
    "ESEARCH",
    "CANCELUPDATE",
];

/// The counted name of the command in `line` (`tag SP verb ...`, `UID` joined to its verb).
pub fn imap_command_name(line: &[u8]) -> &'static str {
    let mut words = line.split(|b| *b == b' ' || *b == b'\r' || *b == b'\n').filter(|w| !w.is_empty()).skip(1);
    let Some(verb) = words.next() else { return "other" };
    // Matched in place: this runs for every command, and needs no copy of the line.
    let (verb, uid) = match verb.eq_ignore_ascii_case(b"UID") {
        true => (words.next().unwrap_or_default(), true),
        false => (verb, false),
    };
    let named = |c: &&&str| match c.strip_prefix("UID ") {
        Some(rest) => uid && rest.as_bytes().eq_ignore_ascii_case(verb),
        None => !uid && c.as_bytes().eq_ignore_ascii_case(verb),
    };
    IMAP_COMMANDS.iter().find(named).copied().unwrap_or("other")
}

/// The status of the tagged answer to the command tagged like `line`'s, in `out`: `OK`,
/// `NO`, `BAD`, or `none` (no tagged answer yet: a continuation, IDLE, a SASL exchange).
pub fn imap_result(line: &[u8], out: &[u8]) -> &'static str {
    let tag = line.split(|b| *b == b' ').next().unwrap_or_default();
    let last = out.strip_suffix(b"\r\n").unwrap_or(out);
    let last = last.rsplit(|b| *b == b'\n').next().unwrap_or_default();
    match last.strip_prefix(tag).and_then(|rest| rest.strip_prefix(b" ")) {
        Some(rest) if rest.starts_with(b"OK") => "OK",
        Some(rest) if rest.starts_with(b"NO") => "NO",
        Some(rest) if rest.starts_with(b"BAD") => "BAD",
        _ => "none",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FateLabels {
    fate: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandResultLabels {
    command: &'static str,
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The node's counters and histograms.
#[derive(Debug)]
pub struct NodeMetrics {
    pub sessions: Sessions,
    pub logins: Logins,
    lmtp_recipients: Family<FateLabels, Counter>,
    lmtp_bytes: Counter,
    lmtp_commit_seconds: Histogram,
    imap_commands: Family<CommandResultLabels, Counter>,
    imap_command_seconds: HistogramFamily<CommandLabels>,
    log_written_seconds: Histogram,
    log_durable_seconds: Histogram,
    write_queue_seconds: Histogram,
    write_commit_seconds: Histogram,
    apply_seconds: Histogram,
    replicate_seconds: Histogram,
    follower_append_seconds: Histogram,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self {
            sessions: Sessions::default(),
            logins: Logins::default(),
            lmtp_recipients: Family::default(),
            lmtp_bytes: Counter::default(),
            lmtp_commit_seconds: latency_histogram(),
            imap_commands: Family::default(),
            imap_command_seconds: Family::new_with_constructor(latency_histogram),
            log_written_seconds: latency_histogram(),
            log_durable_seconds: latency_histogram(),
            write_queue_seconds: latency_histogram(),
            write_commit_seconds: latency_histogram(),
            apply_seconds: latency_histogram(),
            replicate_seconds: latency_histogram(),
            follower_append_seconds: latency_histogram(),
        }
    }
}

impl NodeMetrics {
    /// One LMTP recipient answered `reply` for a message of `size_bytes`, `elapsed` after
    /// the message was in.
    pub fn lmtp_recipient(&self, reply: &str, size_bytes: usize, elapsed: Duration) {
        let fate = common::metrics::fate_of(reply);
        self.lmtp_recipients.get_or_create(&FateLabels { fate }).inc();
        if fate == "accepted" {
            self.lmtp_bytes.inc_by(size_bytes as u64);
            self.lmtp_commit_seconds.observe(elapsed.as_secs_f64());
        }
    }

    /// One IMAP command line, answered with `out` after `elapsed`.
    pub fn imap_command(&self, line: &[u8], out: &[u8], elapsed: Duration) {
        let command = imap_command_name(line);
        let result = imap_result(line, out);
        self.imap_commands.get_or_create(&CommandResultLabels { command, result }).inc();
        self.imap_command_seconds.get_or_create(&CommandLabels { command }).observe(elapsed.as_secs_f64());
    }

    /// A write on the leader waited `elapsed` for its Raft entry: in the batcher's queue
    /// and for one of the entries allowed in flight.
    pub fn write_queued(&self, elapsed: Duration) {
        self.write_queue_seconds.observe(elapsed.as_secs_f64());
    }

    /// An entry took `elapsed` from its proposal to its outcome on the leader: the log
    /// append and fsync, replication to a quorum and apply.
    pub fn write_committed(&self, elapsed: Duration) {
        self.write_commit_seconds.observe(elapsed.as_secs_f64());
    }

    /// The state machine applied a run of committed entries in `elapsed` (every replica).
    pub fn applied(&self, elapsed: Duration) {
        self.apply_seconds.observe(elapsed.as_secs_f64());
    }

    /// Everything, registered for `/metrics`: these counters, the groups of `node` read at
    /// scrape time, the process and the data directory's disk.
    pub fn registry(self: &Arc<Self>, node: Weak<Node>, data_dir: PathBuf) -> Registry {
        let mut r = Registry::default();
        self.sessions.register(&mut r);
        self.logins.register(&mut r);
        r.register("mail_lmtp_recipients", "LMTP recipients by fate", self.lmtp_recipients.clone());
        r.register("mail_lmtp_delivered_bytes", "Bytes of messages delivered over LMTP", self.lmtp_bytes.clone());
        r.register(
            "mail_lmtp_commit_seconds",
            "From the end of DATA to the recipient's commit",
            self.lmtp_commit_seconds.clone(),
        );
        r.register("mail_imap_commands", "IMAP commands by name and result", self.imap_commands.clone());
        r.register("mail_imap_command_seconds", "IMAP command latency", self.imap_command_seconds.clone());
        r.register("mail_raftlog_written_seconds", "Raft log append until written", self.log_written_seconds.clone());
        r.register("mail_raftlog_durable_seconds", "Raft log append until fsynced", self.log_durable_seconds.clone());
        r.register(
            "mail_write_queue_seconds",
            "A write's wait for its Raft entry on the leader (batching, entries in flight)",
            self.write_queue_seconds.clone(),
        );
        r.register(
            "mail_write_commit_seconds",
            "From proposing an entry to its outcome on the leader (log, replication, apply)",
            self.write_commit_seconds.clone(),
        );
        r.register("mail_raft_apply_seconds", "Applying a run of committed entries", self.apply_seconds.clone());
        r.register(
            "mail_raft_replicate_seconds",
            "On the leader: an AppendEntries with entries, from sending it to the follower's answer",
            self.replicate_seconds.clone(),
        );
        r.register(
            "mail_raft_follower_append_seconds",
            "On a follower: taking an AppendEntries with entries (log write and fsync through Raft)",
            self.follower_append_seconds.clone(),
        );
        r.register_collector(Box::new(Groups(node)));
        r.register_collector(Box::new(common::metrics::system::Process::default()));
        r.register_collector(Box::new(common::metrics::system::Disks::new(vec![data_dir])));
        r
    }
}

impl crate::raft::RpcTiming for NodeMetrics {
    fn replicated(&self, elapsed: Duration) {
        self.replicate_seconds.observe(elapsed.as_secs_f64());
    }

    fn follower_appended(&self, elapsed: Duration) {
        self.follower_append_seconds.observe(elapsed.as_secs_f64());
    }
}

impl raftlog::AppendObserver for NodeMetrics {
    fn written(&self, elapsed: Duration) {
        self.log_written_seconds.observe(elapsed.as_secs_f64());
    }

    fn durable(&self, elapsed: Duration) {
        self.log_durable_seconds.observe(elapsed.as_secs_f64());
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FollowerLabels {
    group: String,
    follower: String,
}

/// One group's figures at a scrape.
struct GroupFigures {
    labels: GroupLabels,
    gauges: [f64; GAUGES.len()],
    /// Entries each follower is behind this node's log (on the leader only).
    lag: Vec<(u64, u64)>,
}

/// The per-group gauges, in the order of [`GroupFigures::gauges`].
const GAUGES: [(&str, &str); 11] = [
    ("mail_raft_term", "The group's current Raft term"),
    ("mail_raft_leader_id", "The node id of the group's leader as this node sees it (0: none)"),
    ("mail_raft_is_leader", "1 if this node leads the group"),
    ("mail_raft_last_log_index", "The last index in this node's log of the group"),
    ("mail_raft_applied_index", "The last index this node applied"),
    ("mail_raft_snapshot_index", "The last index in this node's current snapshot of the group"),
    ("mail_raft_purged_index", "The last index purged from this node's log (a replica behind it needs a snapshot)"),
    ("mail_raft_snapshot_bytes", "Size of this node's current snapshot of the group"),
    ("mail_queue_messages", "Messages in the group's outbound queue"),
    ("mail_queue_oldest_age_seconds", "Age of the oldest message in the group's outbound queue (0: empty)"),
    ("mail_group_has_room", "1 if the group takes new mail (a majority of its disks above their reserve)"),
];

/// The groups of a node, read at scrape time.
#[derive(Debug)]
struct Groups(Weak<Node>);

fn figures(group: &crate::group::Group, node_id: u64, now_s: i64) -> GroupFigures {
    let m = group.raft.metrics().borrow().clone();
    let last = m.last_log_index.unwrap_or(0);
    let lag = match &m.replication {
        Some(r) => r
            .iter()
            .filter(|(id, _)| **id != node_id)
            .map(|(id, matched)| (*id, last.saturating_sub(matched.map_or(0, |l| l.index))))
            .collect(),
        None => Vec::new(),
    };
    let (queued, oldest_s) = {
        let store = group.sm.store();
        let store = store.lock().expect("store lock");
        let queue = store.queue();
        let oldest = queue.items().map(|i| i.created_s).min();
        (queue.len(), oldest.map_or(0, |c| now_s.saturating_sub(c).max(0)))
    };
    let gauges = [
        m.current_term as f64,
        m.current_leader.unwrap_or(0) as f64,
        f64::from(u8::from(m.current_leader == Some(node_id))),
        last as f64,
        m.last_applied.map_or(0, |l| l.index) as f64,
        m.snapshot.map_or(0, |l| l.index) as f64,
        m.purged.map_or(0, |l| l.index) as f64,
        group.sm.snapshot_bytes().unwrap_or(0) as f64,
        queued as f64,
        oldest_s as f64,
        f64::from(u8::from(group.has_room())),
    ];
    GroupFigures { labels: GroupLabels { group: group.name.clone() }, gauges, lag }
}

impl Collector for Groups {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(node) = self.0.upgrade() else { return Ok(()) };
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let all: Vec<GroupFigures> = node.all_groups().iter().map(|g| figures(g, node.id, now_s)).collect();
        for (k, (name, help)) in GAUGES.iter().enumerate() {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for g in &all {
                ConstGauge::new(g.gauges[k]).encode(family.encode_family(&g.labels)?)?;
            }
        }
        let help = "Entries a follower is behind the leader's log (reported by the leader)";
        let mut family = encoder.encode_descriptor("mail_raft_follower_lag_entries", help, None, MetricType::Gauge)?;
        for g in &all {
            for (follower, lag) in &g.lag {
                let labels = FollowerLabels { group: g.labels.group.clone(), follower: follower.to_string() };
                ConstGauge::new(*lag as f64).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_commands_are_named_from_a_fixed_set() {
        assert_eq!(imap_command_name(b"a1 fetch 1:* (FLAGS)\r\n"), "FETCH");
        assert_eq!(imap_command_name(b"a2 UID fetch 1:* (FLAGS)\r\n"), "UID FETCH");
        assert_eq!(imap_command_name(b"a3 NOOP\r\n"), "NOOP");
        assert_eq!(imap_command_name(b"a4 XSECRET hunter2\r\n"), "other");
        assert_eq!(imap_command_name(b"a5 UID\r\n"), "other");
        assert_eq!(imap_command_name(b""), "other");
    }

    #[test]
    fn the_tagged_status_is_the_result() {
        assert_eq!(imap_result(b"a1 NOOP\r\n", b"* 3 EXISTS\r\na1 OK NOOP completed\r\n"), "OK");
        assert_eq!(imap_result(b"a1 SELECT x\r\n", b"a1 NO [NONEXISTENT] no such mailbox\r\n"), "NO");
        assert_eq!(imap_result(b"a1 FOO\r\n", b"a1 BAD unknown command\r\n"), "BAD");
        assert_eq!(imap_result(b"a1 IDLE\r\n", b"+ idling\r\n"), "none");
        assert_eq!(imap_result(b"a1 NOOP\r\n", b"a10 OK other tag\r\n"), "none");
    }

    #[test]
    fn lmtp_recipients_are_counted_by_fate_with_bytes_of_the_delivered() {
        let m = Arc::new(NodeMetrics::default());
        m.lmtp_recipient("250 2.0.0 <a@x> delivered", 100, Duration::from_millis(3));
        m.lmtp_recipient("451 4.3.0 <b@x> later", 100, Duration::from_millis(3));
        m.lmtp_recipient("550 5.1.1 <c@x> unknown", 100, Duration::from_millis(3));
        m.imap_command(b"a1 NOOP\r\n", b"a1 OK done\r\n", Duration::from_micros(50));
        let text = common::metrics::endpoint::render(&m.registry(Weak::new(), std::env::temp_dir()));
        for line in [
            "mail_lmtp_recipients_total{fate=\"accepted\"} 1",
            "mail_lmtp_recipients_total{fate=\"deferred\"} 1",
            "mail_lmtp_recipients_total{fate=\"refused\"} 1",
            "mail_lmtp_delivered_bytes_total 100",
            "mail_lmtp_commit_seconds_count 1",
            "mail_imap_commands_total{command=\"NOOP\",result=\"OK\"} 1",
            "mail_imap_command_seconds_count{command=\"NOOP\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
