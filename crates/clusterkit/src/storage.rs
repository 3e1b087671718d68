//! Storage node configurations: each node's addresses, the groups it serves (every node a
//! member), and the file a node reads. Callers adjust the returned `Config` (auth, limits,
//! Raft tuning, TLS) before writing it.

use std::path::Path;

use storaged::config::{Config, GroupConfig, Listen, Member};

/// The addresses one storage node listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    pub id: u64,
    pub raft: String,
    pub lmtp: String,
    pub imap: Option<String>,
    pub pop3: Option<String>,
    pub imaps: Option<String>,
    pub pop3s: Option<String>,
    pub admin: Option<String>,
    /// ManageSieve (with IMAP: the same users edit their filters).
    pub sieve: Option<String>,
    /// Prometheus `/metrics`.
    pub metrics: Option<String>,
}

/// Which optional listeners a node gets when its ports are picked for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listeners {
    pub imap: bool,
    pub pop3: bool,
    pub implicit_tls: bool,
    pub admin: bool,
    pub metrics: bool,
}

impl NodeAddrs {
    /// Node `id` on free loopback ports (see `common::testing::free_port`).
    pub fn on_free_ports(id: u64, listeners: Listeners) -> Self {
        let port = || format!("127.0.0.1:{}", common::testing::free_port());
        let some = |on: bool| on.then(port);
        Self {
            id,
            raft: port(),
            lmtp: port(),
            imap: some(listeners.imap),
            pop3: some(listeners.pop3),
            imaps: some(listeners.implicit_tls),
            pop3s: some(listeners.implicit_tls),
            admin: some(listeners.admin),
            sieve: some(listeners.imap),
            metrics: some(listeners.metrics),
        }
    }

    /// Nodes `1..=n` on free loopback ports.
    pub fn cluster_on_free_ports(n: usize, listeners: Listeners) -> Vec<Self> {
        (1..=n as u64).map(|id| Self::on_free_ports(id, listeners)).collect()
    }

    fn listen(&self) -> Listen {
        Listen {
            pop3: self.pop3.clone(),
            imap: self.imap.clone(),
            imaps: self.imaps.clone(),
            pop3s: self.pop3s.clone(),
            admin: self.admin.clone(),
            sieve: self.sieve.clone(),
            ..Listen::new(&self.raft, &self.lmtp)
        }
    }
}

/// Group `name` with every node of `nodes` a member.
pub fn group(name: &str, nodes: &[NodeAddrs]) -> GroupConfig {
    let members = nodes.iter().map(|n| Member { id: n.id, raft: n.raft.clone(), lmtp: n.lmtp.clone() }).collect();
    GroupConfig { name: name.to_string(), members }
}

/// The configuration of `node`, keeping its data in `data{id}` (relative to the file) and
/// serving `groups`.
pub fn node_config(node: &NodeAddrs, groups: &[GroupConfig]) -> Config {
    let mut cfg = Config::new(node.id, format!("data{}", node.id), node.listen(), groups.to_vec());
    cfg.metrics.listen = node.metrics.clone();
    cfg
}

/// `node{id}.toml`, the conventional file name of node `id`'s configuration.
pub fn file_name(id: u64) -> String {
    format!("node{id}.toml")
}

/// Write `cfg` to `path`, readable by its owner only (it names secrets' files and hashes).
pub fn write(path: &Path, cfg: &Config) -> std::io::Result<()> {
    crate::write_private(path, &cfg.to_toml())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_configurations_load_and_name_every_member() {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = NodeAddrs::cluster_on_free_ports(3, Listeners { imap: true, admin: true, ..Listeners::default() });
        let groups = [group("hermes", &nodes), group("zeus", &nodes)];
        for n in &nodes {
            let mut cfg = node_config(n, &groups);
            cfg.cluster_key = Some("secret".into());
            let path = tmp.path().join(file_name(n.id));
            write(&path, &cfg).unwrap();
            let back = Config::load(&path).unwrap();
            assert_eq!(back.node_id, n.id);
            assert_eq!(back.listen.imap, n.imap);
            assert!(back.listen.pop3.is_none());
            assert_eq!(back.groups.len(), 2);
            assert_eq!(back.groups[1].members.len(), 3);
            assert!(back.data_dir.ends_with(format!("data{}", n.id)));
        }
    }
}
