//! Configuration sections both daemons read, with one set of names and one meaning:
//! `[tls]` (the certificate clients see) and `[auth]` (the login policy). What this must
//! never do: accept a key it does not know (a typo in a security setting is an error).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limiter::Policy;
use crate::network::Network;

/// The certificate and key clients are shown (STARTTLS, STLS, implicit TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// How logins are policed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginPolicy {
    /// Networks from which passwords may be sent without TLS.
    pub plaintext_networks: Vec<String>,
    /// Delay before answering a failed login.
    pub failure_delay_ms: u64,
    /// Failed logins per account from one client address and minute before that pair is
    /// refused (a success clears only the pair's own failures).
    pub failures_max: u32,
    /// Failed logins per client address and minute, whatever accounts it tries.
    pub address_failures_max: u32,
    /// Failed logins per account and minute from addresses it has not logged in from
    /// before; its usual addresses stay open (a stranger cannot lock the owner out).
    pub account_failures_max: u32,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        Self {
            plaintext_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            failure_delay_ms: 2000,
            failures_max: 10,
            address_failures_max: 30,
            account_failures_max: 100,
        }
    }
}

/// Failures are counted per minute.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl LoginPolicy {
    /// The plaintext networks, parsed; the first bad one is the error.
    pub fn networks(&self) -> Result<Vec<Network>, String> {
        self.plaintext_networks.iter().map(|n| n.parse::<Network>()).collect()
    }

    /// The throttling this policy describes.
    pub fn throttling(&self) -> Policy {
        Policy {
            failure_delay: Duration::from_millis(self.failure_delay_ms),
            failures_max: self.failures_max,
            address_failures_max: self.address_failures_max,
            account_failures_max: self.account_failures_max,
            window: FAILURE_WINDOW,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_nonsense_is_an_error() {
        assert_eq!(LoginPolicy::default().networks().unwrap().len(), 2);
        let bad = LoginPolicy { plaintext_networks: vec!["nonsense".into()], ..LoginPolicy::default() };
        assert!(bad.networks().is_err());
        assert_eq!(LoginPolicy::default().throttling().failures_max, 10);
    }
}

/// The Prometheus endpoint (`[metrics]`): `GET /metrics` on `listen` (off when unset;
/// keep it on loopback or an operations network), with a bearer token when
/// `token_file` names one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    pub listen: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl MetricsSection {
    /// Whether the endpoint is off (nothing to write in a generated file).
    pub fn is_off(&self) -> bool {
        self.listen.is_none() && self.token_file.is_none()
    }

    /// The bearer token scrapers must present, if one is configured.
    pub fn token(&self) -> std::io::Result<Option<String>> {
        let Some(path) = &self.token_file else { return Ok(None) };
        let token = std::fs::read_to_string(path)?.trim().to_string();
        if token.is_empty() {
            return Err(std::io::Error::other(format!("{}: the metrics token is empty", path.display())));
        }
        Ok(Some(token))
    }

    /// Serve `registry` as configured: nothing when `listen` is unset.
    pub async fn start(&self, registry: crate::metrics::Registry) -> std::io::Result<()> {
        let Some(listen) = &self.listen else { return Ok(()) };
        crate::metrics::endpoint::start(listen, registry, self.token()?).await
    }
}
