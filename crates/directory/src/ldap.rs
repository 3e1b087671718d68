//! The LDAP directory (qmail-ldap attributes) through `ldap3`: a small pool of multiplexed
//! connections, a short TTL cache of answers (negative ones too), filter values escaped
//! per RFC 4515, LDAPS or StartTLS with rustls, and optional bind authentication. An
//! unreachable or failing server is a temporary failure ([`DirectoryError::Unavailable`]),
//! never "no such user"; an address that matches two entries is refused, never guessed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use rustls::pki_types::pem::PemObject;
use tokio::sync::Mutex;

use super::account::{Account, Attributes};
use super::cache::TtlCache;
use super::{DirectoryError, Purpose};

/// Entries a lookup may return before it is refused as ambiguous.
const ENTRIES_MAX: i32 = 2;
/// Cached answers at most.
const CACHE_ENTRIES_MAX: usize = 100_000;
/// Entries [`LdapDirectory::accounts`] lists at most, and its page size.
const LIST_ENTRIES_MAX: usize = 1_000_000;
const LIST_PAGE_SIZE: i32 = 500;

/// How to reach and use the directory server.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// The subtree users live under.
    pub base: String,
    /// Identity for searches; anonymous when `None`.
    pub bind_dn: Option<String>,
    pub bind_password: Option<String>,
    /// Upgrade `ldap://` with the StartTLS extended operation.
    pub starttls: bool,
    /// PEM CA certificates to trust for LDAPS/StartTLS (the system roots otherwise).
    pub ca_file: Option<PathBuf>,
    /// Which entries are mail users.
    pub user_filter: String,
    /// Check passwords by binding as the user instead of comparing `userPassword`.
    pub bind_auth: bool,
    pub cache_ttl: Duration,
    /// Limit for connecting and for each operation.
    pub timeout: Duration,
    pub connections: usize,
}

impl LdapConfig {
    pub fn new(url: &str, base: &str) -> Self {
        Self {
            url: url.to_string(),
            base: base.to_string(),
            bind_dn: None,
            bind_password: None,
            starttls: false,
            ca_file: None,
            user_filter: "(objectClass=qmailUser)".to_string(),
            bind_auth: false,
            cache_ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            connections: 4,
        }
    }
}

type CacheKey = (Purpose, String);

/// A directory on an LDAP server.
pub struct LdapDirectory {
    config: LdapConfig,
    settings: LdapConnSettings,
    pool: Vec<Mutex<Option<Ldap>>>,
    next: AtomicUsize,
    cache: TtlCache<CacheKey, Option<Arc<Account>>>,
}

impl std::fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapDirectory").field("url", &self.config.url).field("base", &self.config.base).finish()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(format!("{what}: {e}"))
}

impl LdapDirectory {
    /// Set up the directory; connections are made on first use, so a directory that is
    /// down at start only fails lookups until it is back.
    pub fn new(config: LdapConfig) -> Result<Self, DirectoryError> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(config.timeout).set_starttls(config.starttls);
        if let Some(path) = &config.ca_file {
            settings = settings.set_config(Arc::new(tls_config(path)?));
        }
        let pool = (0..config.connections.max(1)).map(|_| Mutex::new(None)).collect();
        let cache = TtlCache::new(config.cache_ttl, CACHE_ENTRIES_MAX);
        Ok(Self { config, settings, pool, next: AtomicUsize::new(0), cache })
    }

    pub fn bind_auth(&self) -> bool {
        self.config.bind_auth
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        // Our own socket, for TCP_NODELAY: a search is a small request waiting for a small
        // answer, and Nagle's algorithm would hold requests back for the peer's ACK.
        let tcp =
            tokio::time::timeout(self.config.timeout, tokio::net::TcpStream::connect(host_port(&self.config.url)?))
                .await
                .map_err(|_| unavailable("connect", "timed out"))?
                .map_err(|e| unavailable("connect", e))?;
        tcp.set_nodelay(true).map_err(|e| unavailable("connect", e))?;
        let std = tcp.into_std().map_err(|e| unavailable("connect", e))?;
        let settings = self.settings.clone().set_std_stream(ldap3::StdStream::Tcp(std));
        let (conn, mut ldap) =
            LdapConnAsync::with_settings(settings, &self.config.url).await.map_err(|e| unavailable("connect", e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.config.timeout);
        Ok(ldap)
    }

    /// A pooled connection, bound as the search identity.
    async fn pooled(&self) -> Result<(usize, Ldap), DirectoryError> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let mut guard = self.pool[slot].lock().await;
        if let Some(ldap) = guard.as_mut() {
            if !ldap.is_closed() {
                return Ok((slot, ldap.clone()));
            }
        }
        let mut ldap = self.connect().await?;
        if let (Some(dn), Some(pw)) = (&self.config.bind_dn, &self.config.bind_password) {
            ldap.simple_bind(dn, pw).await.and_then(|r| r.success()).map_err(|e| unavailable("bind", e))?;
        }
        *guard = Some(ldap.clone());
        Ok((slot, ldap))
    }

    fn filter(&self, key: &str, purpose: Purpose) -> String {
        let k = ldap3::ldap_escape(key);
        let user = &self.config.user_filter;
        match purpose {
            Purpose::Login if !key.contains('@') => format!("(&{user}(uid={k}))"),
            _ => format!("(&{user}(|(mail={k})(mailAlternateAddress={k})))"),
        }
    }

    async fn search(&self, filter: &str) -> Result<Vec<SearchEntry>, DirectoryError> {
        // A pooled connection may have died with the server since its last use: one retry
        // on a fresh connection before calling the directory unavailable.
        let mut last = None;
        for _attempt in 0..2 {
            let (slot, mut ldap) = self.pooled().await?;
            let result = ldap
                .with_timeout(self.config.timeout)
                .with_search_options(ldap3::SearchOptions::new().sizelimit(ENTRIES_MAX))
                .search(&self.config.base, Scope::Subtree, filter, crate::account::ACCOUNT_ATTRIBUTES)
                .await;
            match result {
                Ok(r) => {
                    // sizeLimitExceeded (4) still carries the entries: more than one match.
                    let (entries, res) = (r.0, r.1);
                    if res.rc != 0 && res.rc != 4 {
                        return Err(unavailable("search", format!("result code {} {}", res.rc, res.text)));
                    }
                    return Ok(entries.into_iter().map(SearchEntry::construct).collect());
                }
                Err(e) => {
                    *self.pool[slot].lock().await = None;
                    last = Some(e);
                }
            }
        }
        Err(unavailable("search", last.expect("an attempt failed")))
    }

    /// The account for a lookup key.
    pub async fn lookup(&self, key: &str, purpose: Purpose) -> Result<Option<Arc<Account>>, DirectoryError> {
        let cache_key = (purpose, key.to_string());
        if let Some(hit) = self.cache.get(&cache_key, Instant::now()) {
            return Ok(hit);
        }
        let entries = self.search(&self.filter(key, purpose)).await?;
        let found = match entries.as_slice() {
            [] => None,
            [entry] => Some(Arc::new(account_of(entry)?)),
            many => {
                tracing::error!(key, entries = many.len(), "directory: one name matches several entries; refusing");
                return Err(DirectoryError::Unavailable(format!("{key} matches several directory entries")));
            }
        };
        self.cache.insert(cache_key, found.clone(), Instant::now());
        Ok(found)
    }

    /// Bind as `account` with `password` on a fresh connection.
    pub async fn bind_as(&self, account: &Account, password: &str) -> Result<bool, DirectoryError> {
        self.bind_dn(&account.dn, password).await
    }

    /// Bind as an entry that does not exist, the way [`Self::bind_as`] binds: an unknown
    /// user's login costs what a known user's does (one round trip, one refusal).
    pub async fn bind_nobody(&self, password: &str) -> Result<bool, DirectoryError> {
        let dn = format!("uid=nobody-{:016x},{}", rand::random::<u64>(), self.config.base);
        self.bind_dn(&dn, password).await.map(|_| false)
    }

    async fn bind_dn(&self, dn: &str, password: &str) -> Result<bool, DirectoryError> {
        // An empty password makes an unauthenticated bind, which servers accept (RFC 4513 5.1.2).
        if password.is_empty() {
            return Ok(false);
        }
        let mut ldap = self.connect().await?;
        let result = ldap.simple_bind(dn, password).await.map_err(|e| unavailable("bind", e))?;
        let _ = ldap.unbind().await;
        match result.rc {
            0 => Ok(true),
            49 => Ok(false),
            rc => Err(unavailable("bind", format!("result code {rc} {}", result.text))),
        }
    }
}

impl LdapDirectory {
    /// Every mail user, fetched page by page (operators' tools such as `mailctl move
    /// --plan`; never the lookup path). Entries that are not usable accounts are skipped.
    pub async fn accounts(&self) -> Result<Vec<Account>, DirectoryError> {
        let (slot, mut ldap) = self.pooled().await?;
        let adapters: Vec<Box<dyn Adapter<_, _>>> =
            vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(LIST_PAGE_SIZE))];
        let result = async {
            let mut stream = ldap
                .streaming_search_with(
                    adapters,
                    &self.config.base,
                    Scope::Subtree,
                    &self.config.user_filter,
                    crate::account::ACCOUNT_ATTRIBUTES,
                )
                .await?;
            let mut out = Vec::new();
            while let Some(entry) = stream.next().await? {
                if out.len() >= LIST_ENTRIES_MAX {
                    break;
                }
                match account_of(&SearchEntry::construct(entry)) {
                    Ok(account) => out.push(account),
                    Err(e) => tracing::warn!(error = %e, "directory: skipping an unusable entry"),
                }
            }
            stream.finish().await.success()?;
            Ok::<_, ldap3::LdapError>(out)
        }
        .await;
        if result.is_err() {
            *self.pool[slot].lock().await = None;
        }
        result.map_err(|e| unavailable("list users", e))
    }

    /// Replace attribute `attr` of entry `dn` with `value`, bound as `admin_dn` on a fresh
    /// connection (operators' tools: a move flips `mailHost`). The search identity is not
    /// used: it should not be able to write.
    pub async fn replace_attribute(
        &self,
        admin_dn: &str,
        admin_password: &str,
        dn: &str,
        attr: &str,
        value: &str,
    ) -> Result<(), DirectoryError> {
        let mut ldap = self.connect().await?;
        let result = async {
            ldap.simple_bind(admin_dn, admin_password).await?.success()?;
            let values = std::collections::HashSet::from([value]);
            ldap.modify(dn, vec![Mod::Replace(attr, values)]).await?.success()?;
            Ok::<_, ldap3::LdapError>(())
        }
        .await;
        let _ = ldap.unbind().await;
        result.map_err(|e| unavailable(&format!("set {attr} of {dn}"), e))?;
        self.cache.clear();
        Ok(())
    }
}

impl LdapDirectory {
    /// Change attributes of entry `dn`, bound as `admin_dn` on a fresh connection: each
    /// `(name, Some(value))` replaces every value of `name`, each `(name, None)` removes
    /// it; `object_class` is added first when given (an auxiliary class the new attributes
    /// need; already there is fine).
    pub async fn modify_attributes(
        &self,
        (admin_dn, admin_password): (&str, &str),
        dn: &str,
        object_class: Option<&str>,
        changes: &[(&str, Option<&str>)],
    ) -> Result<(), DirectoryError> {
        let mut ldap = self.connect().await?;
        let result = async {
            ldap.simple_bind(admin_dn, admin_password).await?.success()?;
            if let Some(class) = object_class {
                let added =
                    ldap.modify(dn, vec![Mod::Add("objectClass", std::collections::HashSet::from([class]))]).await?;
                // 20: attributeOrValueExists (the entry has the class already).
                if added.rc != 0 && added.rc != 20 {
                    added.success()?;
                }
            }
            let mods =
                changes.iter().map(|(name, value)| Mod::Replace(*name, value.iter().copied().collect())).collect();
            ldap.modify(dn, mods).await?.success()?;
            Ok::<_, ldap3::LdapError>(())
        }
        .await;
        let _ = ldap.unbind().await;
        result.map_err(|e| unavailable(&format!("modify {dn}"), e))?;
        self.cache.clear();
        Ok(())
    }
}

/// The account an entry describes.
fn account_of(entry: &SearchEntry) -> Result<Account, DirectoryError> {
    let mut attrs: Attributes = entry.attrs.clone();
    for (name, values) in &entry.bin_attrs {
        let texts = values.iter().filter_map(|v| String::from_utf8(v.clone()).ok());
        attrs.entry(name.clone()).or_default().extend(texts);
    }
    Account::from_attributes(&entry.dn, &attrs).map_err(|e| unavailable("entry unusable", e))
}

/// `host:port` of an `ldap://` or `ldaps://` URL (ports 389 and 636 by default).
fn host_port(url: &str) -> Result<String, DirectoryError> {
    let bad = || DirectoryError::Unavailable(format!("bad LDAP URL {url:?}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "ldap" => 389,
        "ldaps" => 636,
        _ => return Err(bad()),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad());
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        && !authority.ends_with(']');
    Ok(if has_port { authority.to_string() } else { format!("{authority}:{default_port}") })
}

fn tls_config(ca_file: &std::path::Path) -> Result<rustls::ClientConfig, DirectoryError> {
    let bad = |e: &dyn std::fmt::Display| unavailable(&format!("CA file {}", ca_file.display()), e);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        let d = LdapDirectory::new(LdapConfig::new("ldap://127.0.0.1:1", "dc=example,dc=edu")).unwrap();
        assert_eq!(d.filter("*)(uid=*", Purpose::Login), "(&(objectClass=qmailUser)(uid=\\2a\\29\\28uid=\\2a))");
        assert_eq!(
            d.filter("a\\b@x", Purpose::Delivery),
            "(&(objectClass=qmailUser)(|(mail=a\\5cb@x)(mailAlternateAddress=a\\5cb@x)))"
        );
        assert!(!d.filter("\0@x", Purpose::Delivery).contains('\0'));
    }

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(host_port("ldap://127.0.0.1:3890/").unwrap(), "127.0.0.1:3890");
        assert_eq!(host_port("ldaps://ldap.example.edu").unwrap(), "ldap.example.edu:636");
        assert_eq!(host_port("LDAP://[::1]/").unwrap(), "[::1]:389");
        assert_eq!(host_port("ldap://[::1]:10389").unwrap(), "[::1]:10389");
        assert!(host_port("http://x").is_err());
        assert!(host_port("ldap://").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_temporary_failure() {
        let mut config = LdapConfig::new("ldap://127.0.0.1:1", "dc=example,dc=edu");
        config.timeout = Duration::from_secs(2);
        let d = LdapDirectory::new(config).unwrap();
        assert!(matches!(d.lookup("alice@example.edu", Purpose::Login).await, Err(DirectoryError::Unavailable(_))));
    }
}
