//! The LDIF file directory: the embedded default, so one machine runs with no LDAP server.
//! Reads content LDIF (RFC 2849: folded lines, `::` base64 values, comments) with the same
//! qmail-ldap attributes as the LDAP backend, keeps an index in memory, and re-reads the
//! file when it changes. A file that does not parse is refused and the previous one stays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;

use super::account::{Account, AttributeError, Attributes};
use super::Purpose;

/// The largest LDIF file read, in bytes: a directory, not a dump of mail.
const FILE_BYTES_MAX: u64 = 256 << 20;
/// How often a lookup may look at the file's metadata to see whether it changed.
const CHANGE_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// One LDIF record: its DN, attributes, and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdifRecord {
    pub dn: String,
    pub attrs: Attributes,
    pub line: usize,
}

/// Why an LDIF file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LdifError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: larger than {FILE_BYTES_MAX} bytes")]
    TooLarge { path: String },
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error(transparent)]
    Attribute(#[from] AttributeError),
    #[error("address {address} belongs to both {first} and {second}")]
    Duplicate { address: String, first: String, second: String },
}

fn syntax(line: usize, reason: impl Into<String>) -> LdifError {
    LdifError::Syntax { line, reason: reason.into() }
}

/// Parse content LDIF into records.
pub fn parse_ldif(text: &str) -> Result<Vec<LdifRecord>, LdifError> {
    // Unfold: a line starting with one space continues the previous line.
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix(' '), lines.last_mut()) {
            (Some(rest), Some((_, prev))) if !prev.is_empty() => prev.push_str(rest),
            (Some(_), _) => return Err(syntax(n + 1, "continuation line without a line to continue")),
            (None, _) => lines.push((n + 1, raw.to_string())),
        }
    }
    let mut records = Vec::new();
    let mut current: Option<LdifRecord> = None;
    for (n, line) in lines {
        if line.is_empty() {
            records.extend(current.take());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, value) = attribute_line(n, &line)?;
        match current.as_mut() {
            None if name.eq_ignore_ascii_case("version") && records.is_empty() => {
                if value != "1" {
                    return Err(syntax(n, format!("unsupported LDIF version {value}")));
                }
            }
            None if name.eq_ignore_ascii_case("dn") => {
                current = Some(LdifRecord { dn: value, attrs: Attributes::new(), line: n });
            }
            None => return Err(syntax(n, format!("record must start with dn:, not {name}:"))),
            Some(_) if name.eq_ignore_ascii_case("changetype") => {
                return Err(syntax(n, "change records are not supported; write the entries themselves"));
            }
            Some(_) if name.eq_ignore_ascii_case("dn") => return Err(syntax(n, "second dn: in one record")),
            Some(record) => record.attrs.entry(name.to_ascii_lowercase()).or_default().push(value),
        }
    }
    records.extend(current);
    Ok(records)
}

/// Attribute spellings to write (records keep names in lower case), in the order written:
/// these, then the account's own ([`crate::account::ACCOUNT_ATTRIBUTES`]).
const LEADING_ATTRIBUTES: &[&str] = &["objectClass", "uid", "cn", "sn"];

/// Every attribute spelling this module knows, in the order written.
fn known_attributes() -> impl Iterator<Item = &'static str> {
    LEADING_ATTRIBUTES.iter().chain(crate::account::ACCOUNT_ATTRIBUTES).copied()
}

/// Write records as content LDIF (the inverse of [`parse_ldif`]): known attributes first
/// in their usual spelling, the rest sorted; values that LDIF cannot carry plainly (leading
/// space, `:` or `<`, trailing space, non-ASCII, control characters) in base64.
pub fn write_ldif(records: &[LdifRecord]) -> String {
    let plain = |v: &str| {
        !(v.starts_with([' ', ':', '<']) || v.ends_with(' ') || v.chars().any(|c| !c.is_ascii() || c.is_control()))
    };
    let line = |out: &mut String, name: &str, value: &str| {
        if plain(value) {
            out.push_str(&format!("{name}: {value}\n"));
        } else {
            out.push_str(&format!("{name}:: {}\n", base64::engine::general_purpose::STANDARD.encode(value)));
        }
    };
    let mut out = String::new();
    for record in records {
        line(&mut out, "dn", &record.dn);
        let mut names: Vec<&String> = record.attrs.keys().collect();
        let rank = |n: &str| known_attributes().position(|k| k.eq_ignore_ascii_case(n)).unwrap_or(usize::MAX);
        names.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
        for name in names {
            let spelled = known_attributes().find(|k| k.eq_ignore_ascii_case(name)).unwrap_or(name.as_str());
            for value in &record.attrs[name] {
                line(&mut out, spelled, value);
            }
        }
        out.push('\n');
    }
    out
}

/// `name: value`, `name:: base64` (options such as `;lang-en` dropped).
fn attribute_line(n: usize, line: &str) -> Result<(String, String), LdifError> {
    let (name, rest) = line.split_once(':').ok_or_else(|| syntax(n, "expected name: value"))?;
    let name = name.split(';').next().unwrap_or_default();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(syntax(n, format!("bad attribute name {name:?}")));
    }
    let value = if let Some(b64) = rest.strip_prefix(':') {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| syntax(n, format!("bad base64 value of {name}")))?;
        String::from_utf8(bytes).map_err(|_| syntax(n, format!("value of {name} is not UTF-8")))?
    } else if rest.starts_with('<') {
        return Err(syntax(n, "URL values (:<) are not supported"));
    } else {
        rest.trim_start_matches(' ').to_string()
    };
    Ok((name.to_string(), value))
}

/// Accounts by address and by uid.
#[derive(Debug, Default)]
struct Index {
    by_address: HashMap<String, Arc<Account>>,
    by_uid: HashMap<String, Arc<Account>>,
}

impl Index {
    fn build(records: &[LdifRecord]) -> Result<Self, LdifError> {
        let mut index = Self::default();
        for record in records {
            let is_user = record
                .attrs
                .get("objectclass")
                .is_some_and(|classes| classes.iter().any(|c| c.eq_ignore_ascii_case("qmailUser")));
            if !is_user {
                continue;
            }
            let account = Arc::new(Account::from_attributes(&record.dn, &record.attrs)?);
            for address in account.addresses() {
                if let Some(first) = index.by_address.insert(address.to_string(), account.clone()) {
                    return Err(LdifError::Duplicate {
                        address: address.to_string(),
                        first: first.dn.clone(),
                        second: account.dn.clone(),
                    });
                }
            }
            if let Some(uid) = &account.uid {
                index.by_uid.insert(uid.clone(), account.clone());
            }
        }
        Ok(index)
    }
}

/// What identifies a version of the file.
type Stamp = (Option<SystemTime>, u64, u64);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified().ok(), meta.len(), meta.ino()))
}

/// Write `records` to `path` atomically (a new file renamed over the old), owner-only
/// from the moment it exists: it holds password hashes.
pub fn write_file(path: &Path, records: &[LdifRecord]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("ldif.tmp");
    let text =
        format!("# edited by mailctl or frontd; frontd re-reads this file when it changes\n{}", write_ldif(records));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Change attributes of the entry `dn` in the file at `path`: each `(name, Some(value))`
/// replaces every value of `name`, each `(name, None)` removes it. The entry must stay a
/// usable account.
pub fn modify_entry(path: &Path, dn: &str, changes: &[(&str, Option<&str>)]) -> Result<(), LdifError> {
    let io = |source| LdifError::Io { path: path.display().to_string(), source };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut records = parse_ldif(&text)?;
    let Some(record) = records.iter_mut().find(|r| r.dn.eq_ignore_ascii_case(dn)) else {
        return Err(syntax(0, format!("no entry {dn}")));
    };
    for (name, value) in changes {
        let key = name.to_ascii_lowercase();
        match value {
            Some(v) => {
                record.attrs.insert(key, vec![v.to_string()]);
            }
            None => {
                record.attrs.remove(&key);
            }
        }
    }
    Account::from_attributes(&record.dn, &record.attrs)?;
    write_file(path, &records).map_err(io)
}

/// A directory read from an LDIF file.
#[derive(Debug)]
pub struct LdifDirectory {
    path: PathBuf,
    index: RwLock<Arc<Index>>,
    /// When the file was last looked at, and the version the index holds.
    checked: Mutex<(Instant, Stamp)>,
}

impl LdifDirectory {
    /// Read `path`; fails if the file is missing or does not parse.
    pub fn open(path: &Path) -> Result<Self, LdifError> {
        let (index, stamp) = Self::read(path)?;
        tracing::info!(path = %path.display(), accounts = index.by_address.len(), "directory loaded");
        Ok(Self {
            path: path.to_path_buf(),
            index: RwLock::new(Arc::new(index)),
            checked: Mutex::new((Instant::now(), stamp)),
        })
    }

    fn read(path: &Path) -> Result<(Index, Stamp), LdifError> {
        let io = |source| LdifError::Io { path: path.display().to_string(), source };
        let before = stamp(path).map_err(io)?;
        if before.1 > FILE_BYTES_MAX {
            return Err(LdifError::TooLarge { path: path.display().to_string() });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Ok((Index::build(&parse_ldif(&text)?)?, before))
    }

    /// Re-read the file if it changed since the last look (at most every 500 ms).
    fn refresh(&self) {
        let now = Instant::now();
        let mut checked = self.checked.lock().expect("ldif lock");
        if now.saturating_duration_since(checked.0) < CHANGE_CHECK_INTERVAL {
            return;
        }
        checked.0 = now;
        match stamp(&self.path) {
            Ok(s) if s == checked.1 => {}
            Ok(_) => match Self::read(&self.path) {
                Ok((index, s)) => {
                    tracing::info!(path = %self.path.display(), accounts = index.by_address.len(), "directory re-read");
                    *self.index.write().expect("ldif lock") = Arc::new(index);
                    checked.1 = s;
                }
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "directory file refused; keeping the previous one")
                }
            },
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "directory file unreadable; keeping the previous one")
            }
        }
    }

    /// Change the entry `dn` in the file (see [`modify_entry`]) and read the file again
    /// at once, so this process sees the change at its next lookup.
    pub fn modify(&self, dn: &str, changes: &[(&str, Option<&str>)]) -> Result<(), LdifError> {
        modify_entry(&self.path, dn, changes)?;
        let (index, stamp) = Self::read(&self.path)?;
        *self.index.write().expect("ldif lock") = Arc::new(index);
        *self.checked.lock().expect("ldif lock") = (Instant::now(), stamp);
        Ok(())
    }

    /// Every account, once each, in address order.
    pub fn accounts(&self) -> Vec<Arc<Account>> {
        self.refresh();
        let index = self.index.read().expect("ldif lock").clone();
        let mut seen = std::collections::BTreeSet::new();
        index.by_address.values().filter(|a| seen.insert(a.dn.clone())).cloned().collect()
    }

    /// The account for a lookup key (see [`super::lookup_key`]).
    pub fn lookup(&self, key: &str, purpose: Purpose) -> Option<Arc<Account>> {
        self.refresh();
        let index = self.index.read().expect("ldif lock").clone();
        match purpose {
            Purpose::Login if !key.contains('@') => index.by_uid.get(key).cloned(),
            _ => index.by_address.get(key).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "version: 1\n\
        # the people\n\
        dn: ou=people,dc=example,dc=edu\n\
        objectClass: organizationalUnit\n\
        ou: people\n\
        \n\
        dn: uid=alice,ou=people,dc=example,dc=edu\n\
        objectClass: inetOrgPerson\n\
        objectClass: qmailUser\n\
        uid: alice\n\
        mail: alice@example.edu\n\
        mailAlternateAddress: a.smith@exam\n ple.edu\n\
        mailHost: hermes\n\
        userPassword:: e1BMQUlOfWFsaWNlLXB3\n\
        \n\
        dn: uid=bob,ou=people,dc=example,dc=edu\n\
        objectClass: qmailUser\n\
        mail: bob@example.edu\n\
        mailHost: apollo\n\
        accountStatus: disabled\n";

    #[test]
    fn content_ldif_parses_with_folding_base64_and_comments() {
        let records = parse_ldif(SAMPLE).unwrap();
        assert_eq!(records.len(), 3);
        let alice = &records[1];
        assert_eq!(alice.dn, "uid=alice,ou=people,dc=example,dc=edu");
        assert_eq!(alice.attrs["mailalternateaddress"], ["a.smith@example.edu"]);
        assert_eq!(alice.attrs["userpassword"], ["{PLAIN}alice-pw"]);
        assert_eq!(alice.attrs["objectclass"].len(), 2);
    }

    #[test]
    fn bad_ldif_is_refused_with_its_line() {
        for (text, line) in [
            ("mail: x\n", 1),
            ("dn: a\nno colon here\n", 2),
            ("dn: a\nmail:: !!!\n", 2),
            ("dn: a\nchangetype: modify\n", 2),
            ("dn: a\njpegPhoto:< file:///etc/passwd\n", 2),
            (" leading continuation\n", 1),
            ("version: 2\n", 1),
        ] {
            match parse_ldif(text) {
                Err(LdifError::Syntax { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn lookups_by_address_alias_and_uid_and_reload_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.ldif");
        std::fs::write(&path, SAMPLE).unwrap();
        let d = LdifDirectory::open(&path).unwrap();
        assert_eq!(d.lookup("alice@example.edu", Purpose::Delivery).unwrap().mail_host.as_deref(), Some("hermes"));
        assert_eq!(d.lookup("a.smith@example.edu", Purpose::Delivery).unwrap().mail, "alice@example.edu");
        assert_eq!(d.lookup("alice", Purpose::Login).unwrap().mail, "alice@example.edu");
        assert!(d.lookup("alice", Purpose::Delivery).is_none());
        assert!(d.lookup("carol@example.edu", Purpose::Login).is_none());
        assert!(!d.lookup("bob@example.edu", Purpose::Login).unwrap().may_log_in());

        // bob moves to hermes; a broken file in between is refused and bob stays where he was.
        std::thread::sleep(CHANGE_CHECK_INTERVAL);
        std::fs::write(&path, format!("{SAMPLE}\ndn: broken\n mail\n")).unwrap();
        std::fs::write(&path, format!("{SAMPLE}mailQuotaSize: many\n")).unwrap();
        assert_eq!(d.lookup("bob@example.edu", Purpose::Login).unwrap().mail_host.as_deref(), Some("apollo"));
        std::thread::sleep(CHANGE_CHECK_INTERVAL);
        std::fs::write(&path, SAMPLE.replace("mailHost: apollo", "mailHost: hermes")).unwrap();
        std::thread::sleep(CHANGE_CHECK_INTERVAL);
        assert_eq!(d.lookup("bob@example.edu", Purpose::Login).unwrap().mail_host.as_deref(), Some("hermes"));
    }

    #[test]
    fn written_ldif_reads_back_the_same() {
        let mut records = parse_ldif(SAMPLE).unwrap();
        records[2].attrs.insert("cn".into(), vec![" Bob Jönsson".into()]);
        let text = write_ldif(&records);
        assert!(text.contains("objectClass: qmailUser\n") && text.contains("mailHost: apollo\n"), "{text}");
        assert!(text.contains("cn:: "), "non-ASCII and a leading space go in base64: {text}");
        let again = parse_ldif(&text).unwrap();
        assert_eq!(
            again.iter().map(|r| (&r.dn, &r.attrs)).collect::<Vec<_>>(),
            records.iter().map(|r| (&r.dn, &r.attrs)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_address_on_two_entries_is_refused() {
        let text = "dn: a\nobjectClass: qmailUser\nmail: x@e\n\ndn: b\nobjectClass: qmailUser\nmail: y@e\nmailAlternateAddress: X@e\n";
        assert!(matches!(Index::build(&parse_ldif(text).unwrap()), Err(LdifError::Duplicate { .. })));
    }
}
