//! `mailctl status` and `mailctl queue`: the admin protocol of the storage nodes, spoken
//! with the cluster key to the nodes a front's configuration lists (its `[[groups]]`
//! with `admin` addresses, and its `[queue]` key file). Prints for people; never prints
//! the key or message bodies beyond their header.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use common::admin::{AdminClient, AdminReply, AdminRequest, NodeStatus, QueueItem, RecipientState};
use common::rpc_channel::ClusterKey;
use frontd::cluster::ClusterMap;
use frontd::config::Config;
use frontd::queue::QueueClient;

/// How long to wait for one node.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `status` waits for a node: one that has not answered by then is reported as
/// not answering (a paused node's kernel still accepts the connection).
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a call waits for its group to have a leader (an election takes a few seconds).
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Header bytes of a queued message `queue show` prints at most.
const SHOW_HEADER_MAX: usize = 8192;

/// The cluster as one front sees it.
pub struct Admin {
    cfg: Config,
    key: ClusterKey,
    queue: QueueClient,
}

impl Admin {
    /// From a front's configuration; the key from its `[queue]`, else `cluster.key` beside it.
    /// A group without a leader for [`ROUTE_TIMEOUT`] fails a call.
    pub fn open(front_config: &Path) -> anyhow::Result<Self> {
        Self::open_waiting(front_config, ROUTE_TIMEOUT)
    }

    /// As [`Admin::open`], for work that runs long enough to see leaders change: a call waits
    /// up to `route_timeout` for its group to have a leader again.
    pub fn open_waiting(front_config: &Path, route_timeout: Duration) -> anyhow::Result<Self> {
        if !front_config.exists() {
            bail!(
                "no front configuration at {}: run `mailctl up` first (it writes mailctl-data/frontd.toml), \
                 or name a front's configuration with --config",
                front_config.display()
            );
        }
        let cfg = Config::load(front_config).with_context(|| format!("reading {}", front_config.display()))?;
        let secret = match cfg.cluster_secret()? {
            Some(s) => s,
            None => {
                let path = front_config.parent().unwrap_or(Path::new(".")).join("cluster.key");
                std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "{} has no [queue] key file and there is no {}: mailctl needs the cluster key \
                         (copy it there, or use a front configuration whose [queue] names it)",
                        front_config.display(),
                        path.display()
                    )
                })?
            }
        };
        let key = ClusterKey::from_secret(&secret);
        let cluster = Arc::new(ClusterMap::new(&cfg.groups));
        let groups = match cfg.queue_groups() {
            g if g.is_empty() => cfg.groups.iter().map(|g| g.name.to_ascii_lowercase()).collect(),
            g => g,
        };
        let queue = QueueClient::new(cluster, key.clone(), groups, route_timeout);
        Ok(Self { cfg, key, queue })
    }

    /// Send `request` to `group`'s leader.
    pub async fn call(&self, group: &str, request: AdminRequest) -> anyhow::Result<AdminReply> {
        self.queue.call(group, request).await.map_err(|e| match e {
            frontd::queue::QueueError::Unavailable { group, reason } => anyhow::anyhow!(
                "mailhost {group} did not answer ({reason}): are a majority of its nodes running? \
                 `mailctl status` shows which answer"
            ),
            other => other.into(),
        })
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.cfg.groups.iter().any(|g| g.name.eq_ignore_ascii_case(group))
    }

    pub fn group_names(&self) -> Vec<String> {
        self.cfg.groups.iter().map(|g| g.name.to_ascii_lowercase()).collect()
    }

    /// The front's configuration.
    pub fn front_config(&self) -> &Config {
        &self.cfg
    }

    /// The admin address of node `id`, from any group the front's map lists it in.
    pub fn node_admin(&self, id: u64) -> Option<String> {
        self.cfg.groups.iter().flat_map(|g| &g.members).find(|m| m.id == id).and_then(|m| m.admin.clone())
    }

    /// Send `request` to one node (not routed to a leader).
    pub async fn call_node(&self, addr: &str, request: &AdminRequest) -> anyhow::Result<AdminReply> {
        let mut c = AdminClient::connect(addr, &self.key, NODE_TIMEOUT).await?;
        Ok(c.call(request, NODE_TIMEOUT * 6).await?)
    }

    /// Create group `name` on its members (each must be in the front's map already, for its
    /// admin address), then wait until it has elected a leader.
    pub async fn create_group(&self, name: &str, members: &[common::admin::GroupMember]) -> anyhow::Result<u64> {
        let request = AdminRequest::CreateGroup { group: name.to_string(), members: members.to_vec() };
        for m in members {
            let addr = self
                .node_admin(m.id)
                .with_context(|| format!("node {} has no admin address in the front's map", m.id))?;
            match self.call_node(&addr, &request).await? {
                AdminReply::Done => {}
                other => bail!("node {}: {other}", m.id),
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            for (_, _, status) in self.status().await {
                let leader =
                    status.ok().and_then(|s| s.groups.into_iter().find(|g| g.name == name)).and_then(|g| g.leader);
                if let Some(l) = leader {
                    return Ok(l);
                }
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "group {name} elected no leader within 30 s: do a majority of its members run and reach \
                     each other's raft addresses? (`mailctl status`, and their logs)"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every storage node of the front's map with an admin address: `(id, address)`.
    pub fn node_addrs(&self) -> Vec<(u64, String)> {
        let mut nodes: Vec<(u64, String)> = self
            .cfg
            .groups
            .iter()
            .flat_map(|g| g.members.iter().filter_map(|m| Some((m.id, m.admin.clone()?))))
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// The cluster key the admin protocol needs.
    pub fn key(&self) -> &ClusterKey {
        &self.key
    }

    /// Every node's status (a node that does not answer is reported as such).
    pub async fn status(&self) -> Vec<(u64, String, Result<NodeStatus, String>)> {
        // Asked at once: a paused node costs one timeout, not one per node.
        let asks = self.node_addrs().into_iter().map(|(id, addr)| {
            let key = self.key.clone();
            async move {
                let answer = async {
                    let mut c = AdminClient::connect(&addr, &key, STATUS_TIMEOUT).await.map_err(|e| e.to_string())?;
                    match c.call(&AdminRequest::Status, STATUS_TIMEOUT).await.map_err(|e| e.to_string())? {
                        AdminReply::Status(s) => Ok(s),
                        _ => Err("answered something other than its status (a different version?)".to_string()),
                    }
                }
                .await;
                (id, addr, answer)
            }
        });
        let mut tasks: tokio::task::JoinSet<_> = asks.collect();
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            out.extend(done.ok());
        }
        out.sort_by_key(|(id, _, _)| *id);
        out
    }

    /// Every queued message of every queue group.
    pub async fn queue_list(&self) -> anyhow::Result<Vec<(String, QueueItem)>> {
        let mut all = Vec::new();
        for group in self.queue.groups() {
            match self.queue.call(group, AdminRequest::List { group: group.clone() }).await? {
                AdminReply::Items(items) => all.extend(items.into_iter().map(|i| (group.clone(), i))),
                other => bail!("queue of {group}: {other}"),
            }
        }
        Ok(all)
    }

    /// One queued message and its header.
    pub async fn queue_show(&self, id: &QueueId) -> anyhow::Result<(QueueItem, Option<Vec<u8>>)> {
        let item = self
            .queue_list()
            .await?
            .into_iter()
            .find(|(g, i)| *g == id.group && i.id == id.id)
            .map(|(_, i)| i)
            .with_context(|| format!("no queued message {id}"))?;
        let body = match self.queue.call(&id.group, AdminRequest::Read { group: id.group.clone(), id: id.id }).await? {
            AdminReply::Message(m) => m,
            AdminReply::KeyedMessage { body, .. } => Some(body.into_vec()),
            other => bail!("{other}"),
        };
        Ok((item, body))
    }

    /// Make messages due now: the given ones, or all of every queue.
    pub async fn queue_flush(&self, ids: &[QueueId]) -> anyhow::Result<()> {
        for group in self.queue.groups() {
            let mine: Vec<u64> = ids.iter().filter(|i| i.group == *group).map(|i| i.id).collect();
            if !ids.is_empty() && mine.is_empty() {
                continue;
            }
            self.expect_done(group, AdminRequest::Flush { group: group.clone(), ids: mine }).await?;
        }
        Ok(())
    }

    /// Drop messages undelivered.
    pub async fn queue_delete(&self, ids: &[QueueId]) -> anyhow::Result<()> {
        for group in self.queue.groups() {
            let mine: Vec<u64> = ids.iter().filter(|i| i.group == *group).map(|i| i.id).collect();
            if !mine.is_empty() {
                self.expect_done(group, AdminRequest::Delete { group: group.clone(), ids: mine }).await?;
            }
        }
        Ok(())
    }

    async fn expect_done(&self, group: &str, request: AdminRequest) -> anyhow::Result<()> {
        match self.queue.call(group, request).await? {
            AdminReply::Done => Ok(()),
            other => bail!("queue of {group}: {other}"),
        }
    }
}

/// A queued message's name: `GROUP/ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueId {
    pub group: String,
    pub id: u64,
}

impl std::str::FromStr for QueueId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (g, id) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected GROUP/ID, as `queue list` shows"))?;
        let id = id.parse().map_err(|_| format!("{s:?}: the ID is a number"))?;
        Ok(Self { group: g.to_ascii_lowercase(), id })
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.group, self.id)
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A group's leader: a node that answered and says it leads (the highest term, if two do),
/// never one only others name, which may be paused or gone. Else the node others name.
pub fn group_leader(views: &[(u64, &common::admin::GroupStatus)]) -> (Option<u64>, Option<u64>) {
    let leader = views.iter().filter(|(id, g)| g.leader == Some(*id)).max_by_key(|(_, g)| g.term).map(|(id, _)| *id);
    let named = views.iter().max_by_key(|(_, g)| g.term).and_then(|(_, g)| g.leader);
    (leader, if leader.is_none() { named } else { None })
}

/// The status as JSON (`status --json`): each node's answer or why it gave none, and per
/// group the leader as [`group_leader`] finds it.
pub fn status_json(nodes: &[(u64, String, Result<NodeStatus, String>)]) -> serde_json::Value {
    let mut names: Vec<&str> = nodes
        .iter()
        .filter_map(|(_, _, s)| s.as_ref().ok())
        .flat_map(|s| s.groups.iter().map(|g| g.name.as_str()))
        .collect();
    names.sort();
    names.dedup();
    let groups: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let views: Vec<(u64, &common::admin::GroupStatus)> = nodes
                .iter()
                .filter_map(|(id, _, s)| s.as_ref().ok()?.groups.iter().find(|g| g.name == *name).map(|g| (*id, g)))
                .collect();
            let (leader, named) = group_leader(&views);
            let members: Vec<serde_json::Value> =
                views.iter().map(|(id, g)| serde_json::json!({ "node": id, "view": g })).collect();
            serde_json::json!({ "name": name, "leader": leader, "named_leader_not_answering": named, "members": members })
        })
        .collect();
    let nodes: Vec<serde_json::Value> = nodes
        .iter()
        .map(|(id, addr, s)| match s {
            Ok(_) => serde_json::json!({ "node": id, "admin": addr, "answered": true }),
            Err(e) => serde_json::json!({ "node": id, "admin": addr, "answered": false, "error": e }),
        })
        .collect();
    serde_json::json!({ "nodes": nodes, "groups": groups })
}

/// The status table: per group, its leader and each member's view.
pub fn render_status(nodes: &[(u64, String, Result<NodeStatus, String>)]) -> String {
    let mut out = String::new();
    let mut groups: Vec<String> = nodes
        .iter()
        .filter_map(|(_, _, s)| s.as_ref().ok())
        .flat_map(|s| s.groups.iter().map(|g| g.name.clone()))
        .collect();
    groups.sort();
    groups.dedup();
    for (id, addr, s) in nodes {
        match s {
            Err(e) => {
                let _ = writeln!(out, "node {id} ({addr}): DOWN: {e}");
            }
            Ok(s) if s.disk_low => {
                let free = human_bytes(s.disk_free_bytes);
                let _ = writeln!(out, "node {id} ({addr}): DISK LOW ({free} free, below its reserve)");
            }
            Ok(_) => {}
        }
    }
    for name in groups {
        let views: Vec<(u64, &common::admin::GroupStatus)> = nodes
            .iter()
            .filter_map(|(id, _, s)| {
                s.as_ref().ok().and_then(|s| s.groups.iter().find(|g| g.name == name)).map(|g| (*id, g))
            })
            .collect();
        let (leader, named) = group_leader(&views);
        let leader_view = views.iter().find(|(id, _)| Some(*id) == leader).map(|(_, g)| *g);
        let head = leader_view.and_then(|g| g.last_log_index).unwrap_or(0);
        let _ = writeln!(
            out,
            "group {name}: leader {}  term {}  voters {:?}{}  users {}  queued {}",
            match (leader, named) {
                (Some(l), _) => format!("node {l}"),
                (None, Some(n)) => format!("none answering (node {n} is named but does not answer)"),
                (None, None) => "none".to_string(),
            },
            views.iter().map(|(_, g)| g.term).max().unwrap_or(0),
            leader_view.map(|g| g.voters.clone()).unwrap_or_default(),
            leader_view
                .filter(|g| !g.learners.is_empty())
                .map(|g| format!("  learners {:?}", g.learners))
                .unwrap_or_default(),
            leader_view.map_or(0, |g| g.users),
            leader_view.map_or(0, |g| g.queued),
        );
        if leader_view.is_some_and(|g| !g.has_room) {
            let _ = writeln!(out, "  NEW MAIL REFUSED: a majority of {name}'s disks are below their reserve");
        }
        let _ = writeln!(
            out,
            "  {:<6} {:>10} {:>10} {:>10} {:>8} {:>10}",
            "node", "last log", "applied", "snapshot", "lag", "disk"
        );
        for (id, g) in &views {
            let applied = g.applied_index.unwrap_or(0);
            let _ = writeln!(
                out,
                "  {:<6} {:>10} {:>10} {:>10} {:>8} {:>10}{}",
                id,
                g.last_log_index.map_or("-".into(), |i| i.to_string()),
                g.applied_index.map_or("-".into(), |i| i.to_string()),
                g.snapshot_index.map_or("-".into(), |i| i.to_string()),
                head.saturating_sub(applied),
                human_bytes(g.disk_bytes),
                if Some(*id) == leader {
                    "  (leader)"
                } else if leader_view.is_some_and(|l| l.learners.contains(id)) {
                    "  (backup)"
                } else {
                    ""
                }
            );
        }
    }
    out
}

/// `mailctl backup status`: every group's backups (its leader's learners), how far each
/// has applied and how far that lags behind the leader's log.
pub async fn backup_status(admin: &Admin) -> anyhow::Result<String> {
    let nodes = admin.status().await;
    if nodes.iter().all(|(_, _, s)| s.is_err()) {
        bail!("no storage node answered: are they running? (mailctl up, or systemctl status storaged)");
    }
    Ok(render_backups(&nodes))
}

/// The backup table (see [`backup_status`]).
pub fn render_backups(nodes: &[(u64, String, Result<NodeStatus, String>)]) -> String {
    let mut out = String::new();
    let mut names: Vec<String> = nodes
        .iter()
        .filter_map(|(_, _, s)| s.as_ref().ok())
        .flat_map(|s| s.groups.iter().map(|g| g.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let views: Vec<(u64, &common::admin::GroupStatus)> = nodes
            .iter()
            .filter_map(|(id, _, s)| s.as_ref().ok()?.groups.iter().find(|g| g.name == name).map(|g| (*id, g)))
            .collect();
        let (leader, _) = group_leader(&views);
        let Some(lead) = views.iter().find(|(id, _)| Some(*id) == leader).map(|(_, g)| *g) else {
            let _ = writeln!(out, "group {name}: no leader answers, backups unknown");
            continue;
        };
        if lead.learners.is_empty() {
            let _ = writeln!(out, "group {name}: no backup");
            continue;
        }
        let head = lead.last_log_index.unwrap_or(0);
        for id in &lead.learners {
            let matched = lead.replication.iter().find(|(n, _)| n == id).and_then(|(_, m)| *m);
            let own = views.iter().find(|(n, _)| n == id).and_then(|(_, g)| g.applied_index);
            let applied = own.or(matched);
            let lag = applied.map_or("unknown".to_string(), |a| head.saturating_sub(a).to_string());
            let answered = if own.is_some() { "" } else { "  (does not answer; from the leader's view)" };
            let _ = writeln!(
                out,
                "group {name}: backup node {id}  applied {}  leader's log {head}  lag {lag}{answered}",
                applied.map_or("-".into(), |a| a.to_string()),
            );
        }
    }
    out
}

/// `queue list` lines.
pub fn render_queue(items: &[(String, QueueItem)], now_s: i64) -> String {
    if items.is_empty() {
        return "queue is empty\n".into();
    }
    let mut out = String::new();
    for (group, i) in items {
        let pending: Vec<&str> = i.pending().collect();
        let _ = writeln!(
            out,
            "{group}/{}  {}  age {}s  attempts {}  next in {}s  <{}> -> {}{}",
            i.id,
            human_bytes(i.size_bytes),
            now_s - i.created_s,
            i.attempts,
            (i.next_attempt_s - now_s).max(0),
            i.sender,
            pending.join(", "),
            i.last_error.as_ref().map(|e| format!("\n    last error: {e}")).unwrap_or_default()
        );
    }
    out
}

/// `queue show` text.
pub fn render_item(group: &str, item: &QueueItem, body: Option<&[u8]>) -> String {
    let mut out = format!(
        "id: {group}/{}\nsender: <{}>\nsize: {}\nqueued at: {}\nattempts: {}\nnext attempt: {}\n",
        item.id,
        item.sender,
        human_bytes(item.size_bytes),
        item.created_s,
        item.attempts,
        item.next_attempt_s
    );
    if let Some(e) = &item.last_error {
        let _ = writeln!(out, "last error: {e}");
    }
    if let Some((holder, until)) = &item.lease {
        let _ = writeln!(out, "leased to: {holder} until {until}");
    }
    for r in &item.recipients {
        let state = match &r.state {
            RecipientState::Pending => "pending".to_string(),
            RecipientState::Delivered => "delivered".to_string(),
            RecipientState::Failed(why) => format!("failed: {why}"),
        };
        let _ = writeln!(out, "recipient: <{}> {state}", r.address);
    }
    if let Some(body) = body {
        let end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(body.len()).min(SHOW_HEADER_MAX);
        let _ = write!(out, "\n{}\n", String::from_utf8_lossy(&body[..end]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_parse() {
        assert_eq!("Hermes/42".parse::<QueueId>(), Ok(QueueId { group: "hermes".into(), id: 42 }));
        assert!("42".parse::<QueueId>().is_err());
        assert!("hermes/x".parse::<QueueId>().is_err());
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
