//! `mailctl user add|passwd|show|disable|enable|list|forward|reply|quota|delete`: users of an LDIF directory, edited in
//! place (written to a temporary file and renamed, so a reading frontd sees the old file or
//! the new one, never half of one; frontd re-reads it within a second). With `--print-ldif`
//! nothing is written and the change is printed as LDIF for an LDAP server (`ldapmodify`).
//! Passwords are stored as `{SSHA512}` hashes and shown only when generated.

use std::path::Path;

use anyhow::{bail, Context};
use common::password::{Digest, PasswordHash};
use directory::{parse_ldif, write_ldif, Account, Attributes, LdifRecord};
use rand::distributions::{Alphanumeric, DistString};

/// Read the records of `path`.
pub fn load(path: &Path) -> anyhow::Result<Vec<LdifRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_ldif(&text)?)
}

/// Write `records` to `path` atomically (owner-only: it holds password hashes).
pub fn store(path: &Path, records: &[LdifRecord]) -> anyhow::Result<()> {
    directory::ldif::write_file(path, records).with_context(|| format!("writing {}", path.display()))
}

fn is_user(r: &LdifRecord) -> bool {
    r.attrs.get("objectclass").is_some_and(|c| c.iter().any(|c| c.eq_ignore_ascii_case("qmailUser")))
}

/// The user record that `address` (primary, alias or uid) names.
fn find<'a>(records: &'a mut [LdifRecord], address: &str) -> anyhow::Result<&'a mut LdifRecord> {
    let key = address.to_lowercase();
    let names = |r: &LdifRecord| -> Vec<String> {
        ["mail", "mailalternateaddress", "uid"]
            .iter()
            .flat_map(|a| r.attrs.get(*a).cloned().unwrap_or_default())
            .map(|v| v.to_lowercase())
            .collect()
    };
    records
        .iter_mut()
        .find(|r| is_user(r) && names(r).contains(&key))
        .with_context(|| format!("no user {address} in the directory"))
}

fn set(attrs: &mut Attributes, name: &str, value: &str) {
    attrs.insert(name.to_ascii_lowercase(), vec![value.to_string()]);
}

/// One line per user: address, mailhost, status, aliases.
pub fn list(path: &Path) -> anyhow::Result<Vec<String>> {
    let records = load(path)?;
    let mut lines = Vec::new();
    for r in records.iter().filter(|r| is_user(r)) {
        let a = Account::from_attributes(&r.dn, &r.attrs)?;
        let line = format!(
            "{:<32} {:<12} {:<9} {}",
            a.mail,
            a.mail_host.as_deref().unwrap_or("-"),
            format!("{:?}", a.status).to_lowercase(),
            a.alternates.join(",")
        );
        // A directory written by other tools may hold anything: one user, one line.
        lines.push(common::daemon::escape_controls(&line).into_owned());
    }
    Ok(lines)
}

/// The entry of one user as LDIF, without the password hash.
pub fn show(path: &Path, address: &str) -> anyhow::Result<String> {
    let mut records = load(path)?;
    let mut record = find(&mut records, address)?.clone();
    if record.attrs.contains_key("userpassword") {
        set(&mut record.attrs, "userPassword", "(hidden)");
    }
    Ok(write_ldif(&[record]))
}

/// Refuse a mailhost that is no group of the cluster `config` describes (its users would get
/// `451` forever); without a readable configuration, say that it was not checked.
pub fn check_mailhost(config: &Path, mailhost: &str) -> anyhow::Result<()> {
    let cfg = match frontd::config::Config::load(config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("warning: mailhost {mailhost} not checked against the cluster ({e})");
            return Ok(());
        }
    };
    if frontd::cluster::ClusterMap::new(&cfg.groups).group_name(mailhost).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = cfg.groups.iter().map(|g| g.name.as_str()).collect();
    anyhow::bail!(
        "mailhost {mailhost} is not a group of this cluster ({}); the groups are: {} (or make it: mailctl group add)",
        config.display(),
        names.join(", ")
    )
}

/// The address and mailhost of the user `address` names.
pub fn mailhost_of(path: &Path, address: &str) -> anyhow::Result<(String, String)> {
    let mut records = load(path)?;
    let record = find(&mut records, address)?;
    let get = |name: &str| record.attrs.get(name).and_then(|v| v.first()).cloned();
    match (get("mail"), get("mailhost")) {
        (Some(mail), Some(host)) => Ok((mail.to_ascii_lowercase(), host.to_ascii_lowercase())),
        _ => anyhow::bail!("{address} has no mail address or mailHost"),
    }
}

/// A login history as `user show` prints it: `lastlogin`, then one line per login, newest
/// first.
pub fn render_logins(history: &[common::logins::LoginRecord]) -> String {
    let when = |at_s: i64| {
        chrono::DateTime::from_timestamp(at_s, 0)
            .map_or_else(|| at_s.to_string(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
    };
    let Some(last) = common::logins::last(history) else { return "lastlogin: never\n".into() };
    let mut out = format!("lastlogin: {}\nlogins (newest first):\n", when(last.at_s));
    for r in history.iter().rev() {
        let country = r.country.as_deref().unwrap_or("??");
        out += &format!("  {}  {:<11}  {:<39}  {country}  via {}\n", when(r.at_s), r.protocol, r.ip, r.front);
    }
    out
}

/// What a change did: the LDIF that expresses it, and a generated password to show.
pub struct Change {
    pub ldif: String,
    pub generated_password: Option<String>,
}

fn password_or_generated(password: Option<&str>) -> (String, Option<String>) {
    match password {
        Some(p) => (p.to_string(), None),
        None => {
            let p = Alphanumeric.sample_string(&mut rand::thread_rng(), 14);
            (p.clone(), Some(p))
        }
    }
}

/// Add a user; `base` is the DN the entry goes under (`dc=example,dc=edu`).
pub fn add(
    path: &Path,
    address: &str,
    mail_host: &str,
    aliases: &[String],
    password: Option<&str>,
    base: &str,
    write: bool,
) -> anyhow::Result<Change> {
    let address = address.to_lowercase();
    for name in std::iter::once(&address).chain(aliases) {
        common::address::validate(name)?;
    }
    let Some((local, _domain)) = address.rsplit_once('@') else { bail!("{address} is not an address") };
    let mut records = load(path)?;
    for name in std::iter::once(&address).chain(aliases) {
        if find(&mut records, name).is_ok() {
            bail!("{name} already belongs to a user");
        }
    }
    let (password, generated_password) = password_or_generated(password);
    let mut attrs = Attributes::new();
    attrs.insert("objectclass".into(), vec!["inetOrgPerson".into(), "qmailUser".into()]);
    for (name, value) in [("uid", local), ("cn", local), ("sn", local), ("mail", &address), ("mailHost", mail_host)] {
        set(&mut attrs, name, value);
    }
    set(&mut attrs, "accountStatus", "active");
    set(&mut attrs, "userPassword", &PasswordHash::salted(Digest::Sha512, &password).to_stored());
    if !aliases.is_empty() {
        attrs.insert("mailalternateaddress".into(), aliases.iter().map(|a| a.to_lowercase()).collect());
    }
    let record = LdifRecord { dn: format!("uid={},{base}", directory::rdn_escape(local)), attrs, line: 0 };
    Account::from_attributes(&record.dn, &record.attrs)?;
    let ldif = write_ldif(std::slice::from_ref(&record));
    if write {
        records.push(record);
        store(path, &records)?;
    }
    Ok(Change { ldif, generated_password })
}

/// Replace one attribute of a user.
fn modify(path: &Path, address: &str, attribute: &str, value: &str, write: bool) -> anyhow::Result<String> {
    let mut records = load(path)?;
    let record = find(&mut records, address)?;
    set(&mut record.attrs, attribute, value);
    Account::from_attributes(&record.dn, &record.attrs)?;
    let dn = record.dn.clone();
    if write {
        store(path, &records)?;
    }
    Ok(format!("dn: {dn}\nchangetype: modify\nreplace: {attribute}\n{attribute}: {value}\n-\n"))
}

/// Remove the user `address` names from the directory (the LDIF change for LDAP: a
/// delete of their entry).
pub fn delete(path: &Path, address: &str, write: bool) -> anyhow::Result<Change> {
    let mut records = load(path)?;
    let dn = find(&mut records, address)?.dn.clone();
    records.retain(|r| r.dn != dn);
    if write {
        store(path, &records)?;
    }
    Ok(Change { ldif: format!("dn: {dn}\nchangetype: delete\n"), generated_password: None })
}

/// Replace every value of several attributes of a user at once (an empty list removes
/// the attribute); the LDIF change for LDAP names each.
fn modify_values(path: &Path, address: &str, changes: &[(&str, Vec<String>)], write: bool) -> anyhow::Result<String> {
    let mut records = load(path)?;
    let record = find(&mut records, address)?;
    for (attribute, values) in changes {
        match values.is_empty() {
            true => record.attrs.remove(&attribute.to_ascii_lowercase()),
            false => record.attrs.insert(attribute.to_ascii_lowercase(), values.clone()),
        };
    }
    Account::from_attributes(&record.dn, &record.attrs)?;
    let dn = record.dn.clone();
    if write {
        store(path, &records)?;
    }
    let mut out = format!("dn: {dn}\nchangetype: modify\n");
    for (attribute, values) in changes {
        out.push_str(&format!("replace: {attribute}\n"));
        for value in values {
            out.push_str(&ldif_line(attribute, value));
        }
        out.push_str("-\n");
    }
    Ok(out)
}

/// `name: value`, or `name:: base64` for what LDIF cannot carry plainly (RFC 2849).
fn ldif_line(name: &str, value: &str) -> String {
    use base64::Engine;
    let plain = !(value.starts_with([' ', ':', '<']) || value.ends_with(' '))
        && value.chars().all(|c| c.is_ascii() && !c.is_control());
    match plain {
        true => format!("{name}: {value}\n"),
        false => format!("{name}:: {}\n", base64::engine::general_purpose::STANDARD.encode(value)),
    }
}

/// The user's `deliveryMode` values with `add` present (or absent when false).
fn modes_with(path: &Path, address: &str, mode: &str, add: bool) -> anyhow::Result<Vec<String>> {
    let mut records = load(path)?;
    let record = find(&mut records, address)?;
    let mut modes: Vec<String> = record.attrs.get("deliverymode").cloned().unwrap_or_default();
    // The older names of "no local copy" go with it.
    let same = |m: &str| {
        let m = m.to_ascii_lowercase();
        m == mode || (mode == "nolocal" && (m == "forwardonly" || m == "nombox"))
    };
    modes.retain(|m| !same(m));
    if add {
        modes.push(mode.to_string());
    }
    Ok(modes)
}

/// Forwarding (qmail-ldap `mailForwardingAddress`): `to` replaces the addresses (none
/// removes forwarding); `only` keeps no local copy (`deliveryMode: nolocal`).
pub fn forward(path: &Path, address: &str, to: &[String], only: bool, write: bool) -> anyhow::Result<Change> {
    for a in to {
        common::address::validate(a).with_context(|| format!("forwarding address {a:?}"))?;
    }
    let modes = modes_with(path, address, "nolocal", only && !to.is_empty())?;
    let changes = [("mailForwardingAddress", to.to_vec()), ("deliveryMode", modes)];
    Ok(Change { ldif: modify_values(path, address, &changes, write)?, generated_password: None })
}

/// The auto-reply (`mailReplyText` with `deliveryMode: reply`); `None` turns it off.
pub fn reply(path: &Path, address: &str, text: Option<&str>, write: bool) -> anyhow::Result<Change> {
    if text.is_some_and(|t| t.len() > common::recipient_rules::REPLY_MAX_BYTES) {
        bail!("the reply text may hold at most {} bytes", common::recipient_rules::REPLY_MAX_BYTES);
    }
    let modes = modes_with(path, address, "reply", text.is_some())?;
    let changes = [("mailReplyText", text.map(|t| vec![t.to_string()]).unwrap_or_default()), ("deliveryMode", modes)];
    Ok(Change { ldif: modify_values(path, address, &changes, write)?, generated_password: None })
}

/// Quota (`mailQuotaSize` bytes, `mailQuotaCount` messages; 0 is unlimited) and the
/// largest message (`mailSizeMax`); what is `None` stays as it is.
pub fn quota(
    path: &Path,
    address: &str,
    (bytes, messages, size_max): (Option<u64>, Option<u64>, Option<u64>),
    write: bool,
) -> anyhow::Result<Change> {
    let mut changes = Vec::new();
    for (attribute, value) in [("mailQuotaSize", bytes), ("mailQuotaCount", messages), ("mailSizeMax", size_max)] {
        if let Some(v) = value {
            changes.push((attribute, vec![v.to_string()]));
        }
    }
    if changes.is_empty() {
        bail!("give --size, --count or --size-max");
    }
    Ok(Change { ldif: modify_values(path, address, &changes, write)?, generated_password: None })
}

/// Set a user's password (generated when `password` is `None`).
pub fn passwd(path: &Path, address: &str, password: Option<&str>, write: bool) -> anyhow::Result<Change> {
    let (password, generated_password) = password_or_generated(password);
    let hash = PasswordHash::salted(Digest::Sha512, &password).to_stored();
    let ldif = modify(path, address, "userPassword", &hash, write)?;
    Ok(Change { ldif, generated_password })
}

/// Set a user's `accountStatus` (`active`, `disabled`, ...).
pub fn set_status(path: &Path, address: &str, status: &str, write: bool) -> anyhow::Result<Change> {
    Ok(Change { ldif: modify(path, address, "accountStatus", status, write)?, generated_password: None })
}

/// Point a user at another mailhost (`mailHost`), as the last step of a move.
pub fn set_mailhost(path: &Path, address: &str, mail_host: &str, write: bool) -> anyhow::Result<Change> {
    Ok(Change { ldif: modify(path, address, "mailHost", mail_host, write)?, generated_password: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use directory::{AccountStatus, LdifDirectory, Purpose};

    #[test]
    fn users_are_added_changed_and_read_by_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("users.ldif");
        std::fs::write(&path, "dn: dc=example,dc=edu\nobjectClass: dcObject\ndc: example\n\n").unwrap();
        let added =
            add(&path, "Dana@example.edu", "hermes", &["d.x@example.edu".into()], None, "dc=example,dc=edu", true)
                .unwrap();
        let password = added.generated_password.unwrap();
        assert!(added.ldif.contains("dn: uid=dana,dc=example,dc=edu") && !added.ldif.contains(&password));
        assert!(
            add(&path, "x@example.edu", "hermes", &["D.X@example.edu".into()], Some("p"), "dc=e", true).is_err(),
            "alias taken"
        );
        // Finding (hardening): `user add 'a,dc=evil@example.edu'` made the DN
        // `uid=a,dc=evil,dc=example,dc=edu`, and names with line breaks or spaces were kept.
        for bad in ["a,dc=evil@example.edu", "eve\n@example.edu", "e ve@example.edu", "<e>@example.edu", "eve"] {
            assert!(add(&path, bad, "hermes", &[], Some("p"), "dc=example,dc=edu", true).is_err(), "{bad:?}");
        }
        assert!(add(&path, "f@example.edu", "hermes", &["f\r\n@example.edu".into()], Some("p"), "dc=e", true).is_err());
        let odd = add(&path, "o=k+1@example.edu", "hermes", &[], Some("p"), "dc=example,dc=edu", true).unwrap();
        assert!(odd.ldif.contains("dn: uid=o\\3dk\\2b1,dc=example,dc=edu"), "one escaped RDN: {}", odd.ldif);

        let dir = LdifDirectory::open(&path).unwrap();
        let dana = dir.lookup("d.x@example.edu", Purpose::Delivery).unwrap();
        assert_eq!(dana.mail_host.as_deref(), Some("hermes"));
        assert!(dana.password.as_ref().unwrap().verify(&password));

        passwd(&path, "dana", Some("new secret"), true).unwrap();
        set_status(&path, "dana@example.edu", "disabled", true).unwrap();
        let dir = LdifDirectory::open(&path).unwrap();
        let dana = dir.lookup("dana@example.edu", Purpose::Login).unwrap();
        assert!(dana.password.as_ref().unwrap().verify("new secret"));
        assert_eq!(dana.status, AccountStatus::Disabled);
        assert!(show(&path, "dana").unwrap().contains("userPassword: (hidden)"));
        assert!(list(&path).unwrap()[0].starts_with("dana@example.edu"));
        assert!(set_status(&path, "dana", "sleepy", true).is_err(), "invalid values are refused");

        // --print-ldif: the change as LDIF, the file untouched.
        let before = std::fs::read_to_string(&path).unwrap();
        let change = set_status(&path, "dana", "active", false).unwrap();
        assert!(change.ldif.contains("changetype: modify\nreplace: accountStatus\naccountStatus: active"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn forwarding_reply_and_quota_are_edited_as_qmail_ldap_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("users.ldif");
        std::fs::write(&path, "").unwrap();
        add(&path, "eve@example.edu", "hermes", &[], Some("pw"), "dc=example,dc=edu", true).unwrap();
        let account = || LdifDirectory::open(&path).unwrap().lookup("eve@example.edu", Purpose::Delivery).unwrap();
        forward(&path, "eve@example.edu", &["eve@elsewhere.org".into()], true, true).unwrap();
        let rules = account().recipient_rules();
        assert_eq!((rules.forward.clone(), rules.no_local), (vec!["eve@elsewhere.org".to_string()], true));
        assert!(forward(&path, "eve@example.edu", &["not an address".into()], false, true).is_err());
        let change = reply(&path, "eve@example.edu", Some("Away.\nBack in May."), true).unwrap();
        assert!(change.ldif.contains("mailReplyText:: "), "multi-line text in base64: {}", change.ldif);
        assert_eq!(account().recipient_rules().reply.as_deref(), Some("Away.\nBack in May."));
        quota(&path, "eve@example.edu", (Some(1000), Some(0), Some(0)), true).unwrap();
        let a = account();
        assert_eq!((a.quota_size_bytes, a.quota_count, a.message_size_max_bytes), (Some(1000), None, None));
        forward(&path, "eve@example.edu", &[], false, true).unwrap();
        reply(&path, "eve@example.edu", None, true).unwrap();
        let rules = account().recipient_rules();
        assert!(rules.forward.is_empty() && !rules.no_local && rules.reply.is_none());
    }

    /// Hole (issue 24): `user add --mailhost zeus` accepted a mailhost no group serves.
    #[test]
    fn an_unknown_mailhost_is_refused_naming_the_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("frontd.toml");
        std::fs::write(tmp.path().join("users.ldif"), "").unwrap();
        std::fs::write(
            &config,
            "[directory]\nldif = \"users.ldif\"\n[backend]\nproxy_user = \"f\"\nproxy_password = \"p\"\n\
             [[groups]]\nname = \"hermes\"\nmembers = [{ id = 1 }]\n[[groups]]\nname = \"apollo\"\nmembers = [{ id = 2 }]\n",
        )
        .unwrap();
        assert!(check_mailhost(&config, "Hermes").is_ok());
        let refused = check_mailhost(&config, "zeus").unwrap_err().to_string();
        assert!(refused.contains("zeus") && refused.contains("hermes, apollo"), "{refused}");
        assert!(check_mailhost(&tmp.path().join("missing.toml"), "zeus").is_ok(), "no cluster to ask: a warning");
    }
}
