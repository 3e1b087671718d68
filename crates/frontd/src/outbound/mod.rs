//! Delivery to remote domains for the queue runner: choose the next hops of a domain (a
//! configured route or smarthost, else its MX hosts by preference, else the domain itself
//! as an implicit MX, RFC 5321 5.1), try them in order, and hold at most a configured
//! number of connections per domain. Returns one SMTP reply per recipient: `2xx`
//! delivered, `5xx` refused for good, `4xx` try again later. Never relays for anyone: it
//! only sends what the queue hands it.

pub mod client;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use hickory_resolver::TokioResolver;
use tokio::sync::Semaphore;

use crate::config::{ConfigError, QueueSection};

/// MX hosts tried per message at most.
const HOPS_MAX: usize = 8;
/// Domains whose connection limits are remembered at most.
const DOMAINS_MAX: usize = 10_000;

/// A place to hand mail to: `host:port` and the name to use for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub addr: String,
    pub host: String,
}

impl std::fmt::Display for Hop {
    /// `host [addr]`, or the address alone when the host is its own IP.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.addr.starts_with(&self.host) || self.addr.starts_with(&format!("[{}]", self.host)) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} [{}]", self.host, self.addr)
        }
    }
}

/// The replies of one transaction and the hop that gave them (empty when none answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub via: String,
    pub replies: Vec<String>,
}

/// Sends queued mail to other mail systems.
pub struct Outbound {
    helo: String,
    routes: BTreeMap<String, String>,
    mx_port: u16,
    resolver: TokioResolver,
    tls: Arc<rustls::ClientConfig>,
    per_domain: Mutex<HashMap<String, Arc<Semaphore>>>,
    domain_connections_max: usize,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").field("routes", &self.routes).finish_non_exhaustive()
    }
}

/// The permanent failure for a domain DNS says does not exist (RFC 3463 X.1.2).
fn no_such_domain(domain: &str) -> String {
    format!("550 5.1.2 {domain} does not exist (no such domain in DNS)")
}

/// `host:port` → the host part (brackets of an IPv6 literal removed).
fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}

impl Outbound {
    pub fn new(helo: &str, queue: &QueueSection, dns_servers: &[String]) -> Result<Self, ConfigError> {
        Ok(Self {
            helo: helo.to_string(),
            routes: queue.routes.iter().map(|(d, a)| (d.to_ascii_lowercase(), a.clone())).collect(),
            mx_port: queue.mx_port,
            resolver: crate::smtp::policy::resolver(dns_servers)?,
            tls: client::opportunistic_tls(),
            per_domain: Mutex::new(HashMap::new()),
            domain_connections_max: queue.domain_connections_max.max(1),
        })
    }

    /// Where mail for `domain` goes, in order; `Err(reply)` when it cannot go anywhere.
    pub async fn hops(&self, domain: &str) -> Result<Vec<Hop>, String> {
        let domain = domain.to_ascii_lowercase();
        if let Some(route) = self.routes.get(&domain).or_else(|| self.routes.get("*")) {
            return Ok(vec![Hop { addr: route.clone(), host: host_of(route) }]);
        }
        let port = self.mx_port;
        let hop = |host: &str| Hop { addr: format!("{host}:{port}"), host: host.to_string() };
        match self.resolver.mx_lookup(format!("{domain}.").as_str()).await {
            Ok(mx) => {
                let mut records: Vec<(u16, String)> = mx
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::MX(m) => {
                            Some((m.preference, m.exchange.to_utf8().trim_end_matches('.').to_string()))
                        }
                        _ => None,
                    })
                    .collect();
                records.sort();
                // RFC 7505: a null MX says the domain takes no mail.
                if records.len() == 1 && records[0].1.is_empty() {
                    return Err(format!("556 5.1.10 {domain} accepts no mail (null MX)"));
                }
                if !records.is_empty() {
                    return Ok(records.iter().take(HOPS_MAX).map(|(_, h)| hop(h)).collect());
                }
            }
            // The domain does not exist: no retry will make it (a bounce now, not in 5 days).
            Err(e) if e.is_nx_domain() => return Err(no_such_domain(&domain)),
            Err(e) => tracing::debug!(domain, error = %e, "no MX records; trying the domain itself"),
        }
        match self.resolver.lookup_ip(format!("{domain}.").as_str()).await {
            Ok(ips) => Ok(ips
                .iter()
                .take(HOPS_MAX)
                .map(|ip| Hop { addr: std::net::SocketAddr::new(ip, port).to_string(), host: domain.clone() })
                .collect()),
            Err(e) if e.is_nx_domain() => Err(no_such_domain(&domain)),
            Err(e) => Err(format!("451 4.4.3 cannot find a mail server for {domain}: {e}")),
        }
    }

    fn domain_slots(&self, domain: &str) -> Arc<Semaphore> {
        let mut map = self.per_domain.lock().expect("per-domain lock");
        if map.len() >= DOMAINS_MAX && !map.contains_key(domain) {
            // Forget idle domains; busy ones keep their semaphore through their holders.
            map.retain(|_, s| s.available_permits() < self.domain_connections_max);
        }
        map.entry(domain.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.domain_connections_max))).clone()
    }

    /// Send `message` from `from` to `recipients` (all in `domain`): one reply each, and
    /// the hop that gave them.
    pub async fn send(&self, domain: &str, from: &str, recipients: &[String], message: &[u8]) -> Sent {
        let slots = self.domain_slots(&domain.to_ascii_lowercase());
        let _slot = slots.acquire().await.expect("semaphore never closed");
        let hops = match self.hops(domain).await {
            Ok(h) => h,
            Err(reply) => return Sent { via: String::new(), replies: vec![reply; recipients.len()] },
        };
        let t = client::Transaction { helo: &self.helo, from, recipients, message };
        let mut last = String::from("no mail server answered");
        for hop in hops {
            match client::deliver(&hop.addr, &hop.host, &self.tls, &t).await {
                Ok(replies) => {
                    tracing::info!(domain, hop = %hop.addr, recipients = recipients.len(), first = %replies.first().map(String::as_str).unwrap_or(""), "outbound attempt");
                    return Sent { via: hop.to_string(), replies };
                }
                Err(e) => {
                    tracing::info!(domain, error = %e, "next hop failed");
                    last = e.to_string();
                }
            }
        }
        Sent { via: String::new(), replies: vec![format!("451 4.4.1 {last}"); recipients.len()] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routes_and_the_smarthost_come_before_dns() {
        let q = QueueSection {
            routes: [("Remote.test".to_string(), "127.0.0.1:2525".to_string())].into_iter().collect(),
            ..QueueSection::default()
        };
        let out = Outbound::new("front", &q, &["127.0.0.1:1".into()]).unwrap();
        assert_eq!(
            out.hops("remote.TEST").await.unwrap(),
            vec![Hop { addr: "127.0.0.1:2525".into(), host: "127.0.0.1".into() }]
        );
        let q = QueueSection { routes: [("*".to_string(), "[::1]:25".to_string())].into_iter().collect(), ..q };
        let out = Outbound::new("front", &q, &["127.0.0.1:1".into()]).unwrap();
        assert_eq!(out.hops("any.example").await.unwrap()[0].host, "::1");
    }

    /// Hole (issue 24): a domain that does not exist was retried for days as a temporary
    /// failure; DNS that cannot answer is still temporary.
    #[tokio::test]
    async fn a_domain_that_does_not_exist_fails_for_good_and_a_dns_outage_for_now() {
        let nx = common::refusing_dns::RefusingDns::start_nxdomain().unwrap();
        let out = Outbound::new("front", &QueueSection::default(), &[nx.addr.to_string()]).unwrap();
        let refusal = out.hops("nowhere.invalid").await.unwrap_err();
        assert!(refusal.starts_with("550 5.1.2 nowhere.invalid does not exist"), "{refusal}");
        let refusing = common::refusing_dns::RefusingDns::start().unwrap();
        let out = Outbound::new("front", &QueueSection::default(), &[refusing.addr.to_string()]).unwrap();
        assert!(out.hops("example.org").await.unwrap_err().starts_with("451 4.4.3"));
    }
}
