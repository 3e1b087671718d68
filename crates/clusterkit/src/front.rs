//! Front configurations: the cluster map of the storage nodes a front routes to, and the
//! file a front reads. Callers adjust the returned `Config` (listeners, TLS, SMTP policy,
//! queue) before writing it.

use std::path::Path;

use frontd::config::{Config, GroupSection, MemberSection};

use crate::storage::NodeAddrs;

/// Groups `names`, every one served by all of `nodes`, as a front's cluster map.
pub fn groups(names: &[&str], nodes: &[NodeAddrs]) -> Vec<GroupSection> {
    let members: Vec<MemberSection> = nodes
        .iter()
        .map(|n| MemberSection {
            id: n.id,
            imap: n.imap.clone(),
            pop3: n.pop3.clone(),
            lmtp: Some(n.lmtp.clone()),
            admin: n.admin.clone(),
            sieve: n.sieve.clone(),
        })
        .collect();
    names.iter().map(|name| GroupSection { name: name.to_string(), members: members.clone() }).collect()
}

/// Write `cfg` to `path`, readable by its owner only (it may hold the proxy password).
pub fn write(path: &Path, cfg: &Config) -> std::io::Result<()> {
    crate::write_private(path, &cfg.to_toml())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Listeners;
    use frontd::config::{BackendSection, DirectorySection, QueueSection, RuleSection};

    #[test]
    fn a_built_front_configuration_loads_back() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("users.ldif"), "").unwrap();
        std::fs::write(tmp.path().join("cluster.key"), "k").unwrap();
        let nodes = crate::storage::NodeAddrs::cluster_on_free_ports(
            3,
            Listeners { imap: true, pop3: true, admin: true, ..Listeners::default() },
        );
        let mut backend = BackendSection::new("frontd");
        backend.proxy_password = Some("pw".into());
        backend.cluster_key_file = Some("cluster.key".into());
        let mut cfg = Config::new(DirectorySection::ldif("users.ldif"), backend, groups(&["hermes", "zeus"], &nodes));
        cfg.listen.smtp = Some("127.0.0.1:2525".into());
        cfg.smtp.local_domains = vec!["example.edu".into()];
        cfg.smtp.domain_aliases.insert("mail.example.edu".into(), "example.edu".into());
        cfg.smtp.rules.push(RuleSection {
            network: "127.0.0.0/8".into(),
            action: "allow".into(),
            skip_dnsbl: false,
            greet_delay_ms: Some(0),
            relay: true,
            listeners: None,
        });
        cfg.queue = Some(QueueSection { cluster_key_file: "cluster.key".into(), ..QueueSection::default() });
        cfg.queue.as_mut().unwrap().routes.insert("remote.test".into(), "127.0.0.1:2526".into());
        let path = tmp.path().join("frontd.toml");
        write(&path, &cfg).unwrap();
        let back = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{}", cfg.to_toml()));
        assert_eq!(back.groups.len(), 2);
        assert_eq!(back.groups[0].members[2].admin, nodes[2].admin);
        assert_eq!(back.smtp.rules.len(), 1);
        assert_eq!(back.smtp.domain_aliases["mail.example.edu"], "example.edu");
        assert_eq!(back.queue.unwrap().routes["remote.test"], "127.0.0.1:2526");
    }
}
