//! What the MX asks about its clients, in the spirit of the RBL checks of the campus
//! exchangers (the IP rules of every listener are `crate::access`): DNS blocklists looked
//! up with hickory (a listed client is refused with the list's reason), and HELO and MAIL
//! FROM deny patterns (`*` wildcards). A blocklist that cannot be asked
//! does not refuse anyone (it is logged): a DNS outage must not stop mail.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::config::{ConfigError, SmtpSection};

/// How long one blocklist may take to answer.
const DNSBL_TIMEOUT: Duration = Duration::from_secs(3);

/// The MX's blocklists.
pub struct Policy {
    zones: Vec<String>,
    resolver: Option<TokioResolver>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("zones", &self.zones).finish_non_exhaustive()
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (ASCII
/// case-insensitive). Iterative, so no input can make it recurse deeply.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) =
        (pattern.to_ascii_lowercase().chars().collect(), text.to_ascii_lowercase().chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The DNSBL name for `ip` in `zone` (reversed octets, or nibbles for IPv6).
pub fn dnsbl_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let nibbles: Vec<String> =
                v6.octets().iter().rev().flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)]).collect();
            format!("{}.{zone}.", nibbles.join("."))
        }
    }
}

impl Policy {
    pub fn new(smtp: &SmtpSection) -> Result<Self, ConfigError> {
        let resolver = if smtp.dnsbl_zones.is_empty() { None } else { Some(resolver(&smtp.dns_servers)?) };
        Ok(Self { zones: smtp.dnsbl_zones.clone(), resolver })
    }

    /// The refusal for a client on a blocklist, if it is on one.
    pub async fn dnsbl(&self, ip: IpAddr) -> Option<String> {
        let resolver = self.resolver.as_ref()?;
        for zone in &self.zones {
            let name = dnsbl_name(ip, zone);
            match tokio::time::timeout(DNSBL_TIMEOUT, resolver.ipv4_lookup(name.as_str())).await {
                Ok(Ok(answer)) if answer.answers().iter().next().is_some() => {
                    let reason = match tokio::time::timeout(DNSBL_TIMEOUT, resolver.txt_lookup(name.as_str())).await {
                        Ok(Ok(txt)) => txt.answers().iter().map(|r| r.data.to_string()).next().unwrap_or_default(),
                        _ => String::new(),
                    };
                    let reason = reason.chars().filter(|c| !c.is_control()).take(200).collect::<String>();
                    tracing::info!(%ip, zone, reason, "client on a blocklist");
                    return Some(format!(
                        "554 5.7.1 service unavailable; client [{ip}] blocked using {zone}: {reason}"
                    ));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => {}
                Ok(Err(e)) => tracing::warn!(%ip, zone, error = %e, "blocklist lookup failed; not refusing"),
                Err(_) => tracing::warn!(%ip, zone, "blocklist lookup timed out; not refusing"),
            }
        }
        None
    }
}

/// A resolver on the configured servers (`host:port`), or the system's.
pub(crate) fn resolver(servers: &[String]) -> Result<TokioResolver, ConfigError> {
    let bad = |e: &dyn std::fmt::Display| ConfigError::Invalid(format!("DNS resolver: {e}"));
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| bad(&e))?
    } else {
        let mut name_servers = Vec::new();
        for s in servers {
            let addr: std::net::SocketAddr = s.parse().map_err(|_| bad(&format!("{s:?} is not IP:port")))?;
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                *c = {
                    let mut conn: ConnectionConfig = c.clone();
                    conn.port = addr.port();
                    conn
                };
            }
            name_servers.push(ns);
        }
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    builder.options_mut().timeout = DNSBL_TIMEOUT;
    builder.build().map_err(|e| bad(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*.dynamic.example.net", "host-1-2.DYNAMIC.example.net"));
        assert!(!wildcard("*.dynamic.example.net", "dynamic.example.net"));
        assert!(wildcard("localhost", "LOCALHOST"));
        assert!(wildcard("*@spam.example", "a@spam.example"));
        assert!(wildcard("a*b*c", "axxbyyc") && !wildcard("a*b*c", "axxbyy"));
        assert!(wildcard("*", ""));
        assert!(!wildcard(&"*a".repeat(50), &"a".repeat(40)), "no blow-up on hostile patterns");
    }

    #[test]
    fn dnsbl_names() {
        assert_eq!(dnsbl_name("192.0.2.99".parse().unwrap(), "zen.example"), "99.2.0.192.zen.example.");
        let v6 = dnsbl_name("2001:db8::1".parse().unwrap(), "bl.example.");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0.") && v6.ends_with(".8.b.d.0.1.0.0.2.bl.example."), "{v6}");
    }
}
