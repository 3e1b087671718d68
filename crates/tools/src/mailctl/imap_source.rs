//! Reading a live IMAP server for `mailctl import --from-imap`: connect (implicit TLS for
//! `imaps://`, the certificate checked against a CA file), log in, list the mailboxes
//! and subscriptions, and per mailbox its UIDVALIDITY, UIDNEXT and each message's UID,
//! flags, keywords, internal date and size, then the bytes of the messages asked for. Read
//! only (EXAMINE, `BODY.PEEK`): the old server's `\Seen` flags stay as they were. Responses
//! are parsed with imap-codec; a response it cannot parse stops the import with what it was.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use imap_codec::decode::Decoder;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::flag::{Flag, FlagFetch, FlagNameAttribute};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::status::StatusDataItem;
use storaged::interchange::plan::Planned;
use storaged::mailstore::ops::flag;

use crate::imap_client::Client;

/// A mailbox of the source: its name as the server spells it, and in the store's form
/// (modified UTF-7, `/` between levels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMailbox {
    pub wire: String,
    pub name: String,
}

/// Where to read: `imap://LOGIN@HOST[:PORT]`, or `imaps://` for implicit TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    pub login: String,
    /// The host name the certificate must name.
    pub host: String,
    pub addr: String,
    pub tls: bool,
}

impl ImapUrl {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        const FORM: &str = "the source URL is imap[s]://LOGIN@HOST[:PORT]";
        let (tls, rest) = match (url.strip_prefix("imaps://"), url.strip_prefix("imap://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => bail!(FORM),
        };
        let (login, authority) = rest.trim_end_matches('/').rsplit_once('@').context(FORM)?;
        if login.is_empty() || authority.is_empty() {
            bail!(FORM);
        }
        let (host, addr) = match authority.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()) {
            Some((host, _)) => (host, authority.to_string()),
            None => (authority, format!("{authority}:{}", if tls { 993 } else { 143 })),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(Self { login: percent_decode(login), host, addr, tls })
    }
}

/// Whether `host` is this machine (where a password in the clear stays).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A TLS client trusting the CA certificates of `ca_file` (PEM).
fn tls_config(ca_file: &std::path::Path) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("reading CA certificates from {}", ca_file.display()))?;
    for cert in certs {
        roots.add(cert.with_context(|| format!("a certificate of {}", ca_file.display()))?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// `%40` and the like in a URL's login.
fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An IMAP string for a command: quoted, with `"` and `\` escaped.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A logged-in connection to the old server.
pub struct ImapSource {
    client: Client,
}

impl ImapSource {
    /// Log in at `url` over TLS checked against `ca_file`: implicit for `imaps://`,
    /// STARTTLS for `imap://`. The password goes in the clear only to a server on this
    /// machine (a loopback address) that offers no STARTTLS.
    pub fn connect(url: &ImapUrl, password: &str, ca_file: &std::path::Path) -> anyhow::Result<Self> {
        let connecting = || format!("connecting to {}", url.addr);
        let mut client = if url.tls {
            Client::connect_tls(&url.addr, &url.host, tls_config(ca_file)?).with_context(connecting)?
        } else {
            let mut plain = Client::connect(&url.addr).with_context(connecting)?;
            let caps = plain.command("CAPABILITY").with_context(connecting)?;
            let offers_tls = String::from_utf8_lossy(&caps.data)
                .split_ascii_whitespace()
                .any(|c| c.eq_ignore_ascii_case("STARTTLS"));
            if offers_tls {
                plain
                    .start_tls(&url.host, tls_config(ca_file)?)
                    .with_context(|| format!("STARTTLS with {}", url.addr))?
            } else if is_loopback(&url.host) {
                plain
            } else {
                bail!(
                    "{} offers no STARTTLS: the password would go in the clear (use imaps:// if it has implicit TLS)",
                    url.addr
                );
            }
        };
        let login = client.command(&format!("LOGIN {} {}", quoted(&url.login), quoted(password)))?;
        if !login.ok() {
            bail!("{} refused the login of {}: {}", url.addr, url.login, login.text);
        }
        Ok(Self { client })
    }

    fn untagged(&mut self, command: &str) -> anyhow::Result<Vec<Data<'static>>> {
        let answer = self.client.command(command)?;
        if !answer.ok() {
            bail!("the old server answered {command:?} with {}", answer.text);
        }
        parse_data(&answer.data)
    }

    /// The selectable mailboxes.
    pub fn mailboxes(&mut self) -> anyhow::Result<Vec<SourceMailbox>> {
        Ok(list_of(self.untagged("LIST \"\" \"*\"")?, false))
    }

    /// The subscribed mailboxes (store form).
    pub fn subscribed(&mut self) -> anyhow::Result<Vec<String>> {
        Ok(list_of(self.untagged("LSUB \"\" \"*\"")?, true).into_iter().map(|m| m.name).collect())
    }

    /// UIDVALIDITY, UIDNEXT and every message of `mb` (`file` unused: 0).
    pub fn listing(&mut self, mb: &SourceMailbox) -> anyhow::Result<(u32, u32, Vec<Planned>)> {
        let status = self.untagged(&format!("STATUS {} (UIDVALIDITY UIDNEXT)", quoted(&mb.wire)))?;
        let (mut validity, mut next) = (0, 1);
        for d in status {
            if let Data::Status { items, .. } = d {
                for item in items.iter() {
                    match item {
                        StatusDataItem::UidValidity(v) => validity = v.get(),
                        StatusDataItem::UidNext(n) => next = n.get(),
                        _ => {}
                    }
                }
            }
        }
        if validity == 0 {
            bail!("the old server gave no UIDVALIDITY for {}", mb.wire);
        }
        self.select(mb)?;
        let fetched = self.untagged("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)")?;
        let mut messages: Vec<Planned> = fetched.into_iter().filter_map(planned_of).collect();
        messages.sort_by_key(|m| m.uid);
        messages.dedup_by_key(|m| m.uid);
        let next = next.max(messages.last().map_or(1, |m| m.uid + 1));
        Ok((validity, next, messages))
    }

    /// Open `mb` read-only for [`ImapSource::bodies`].
    pub fn select(&mut self, mb: &SourceMailbox) -> anyhow::Result<()> {
        self.untagged(&format!("EXAMINE {}", quoted(&mb.wire))).map(drop)
    }

    /// The bytes of `uids` of the mailbox last opened.
    pub fn bodies(&mut self, uids: &[u32]) -> anyhow::Result<BTreeMap<u32, Vec<u8>>> {
        let set: Vec<String> = uids.iter().map(u32::to_string).collect();
        let fetched = self.untagged(&format!("UID FETCH {} (UID BODY.PEEK[])", set.join(",")))?;
        Ok(fetched.into_iter().filter_map(body_of).collect())
    }
}

/// Every untagged data response in `bytes`.
fn parse_data(bytes: &[u8]) -> anyhow::Result<Vec<Data<'static>>> {
    use imap_codec::imap_types::ToStatic;
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (next, response) = imap_codec::ResponseCodec::default().decode(rest).map_err(|e| {
            let shown = String::from_utf8_lossy(&rest[..rest.len().min(120)]).into_owned();
            anyhow::anyhow!("cannot parse the old server's answer ({e:?}): {shown:?}")
        })?;
        if let Response::Data(d) = response {
            out.push(d.to_static());
        }
        rest = next;
    }
    Ok(out)
}

/// The mailboxes of LIST (or LSUB) data: selectable ones only, unless `all`.
fn list_of(data: Vec<Data<'static>>, all: bool) -> Vec<SourceMailbox> {
    let mut out = Vec::new();
    for d in data {
        let (Data::List { items, delimiter, mailbox } | Data::Lsub { items, delimiter, mailbox }) = d else { continue };
        let unselectable = items
            .iter()
            .any(|a| matches!(a, FlagNameAttribute::Noselect) || format!("{a}").eq_ignore_ascii_case("\\NonExistent"));
        if unselectable && !all {
            continue;
        }
        let wire = match &mailbox {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let name = match delimiter.map(|d| d.inner()) {
            Some(d) if d != '/' && wire != "INBOX" => wire.replace(d, "/"),
            _ => wire.clone(),
        };
        out.push(SourceMailbox { wire, name });
    }
    out
}

/// A message of a `UID FETCH (UID FLAGS INTERNALDATE RFC822.SIZE)` response.
fn planned_of(d: Data<'static>) -> Option<Planned> {
    let Data::Fetch { items, .. } = d else { return None };
    let mut m = Planned { uid: 0, file: 0, flags: 0, keywords: Vec::new(), internal_date: 0, len_bytes: 0 };
    for item in items.as_ref() {
        match item {
            MessageDataItem::Uid(u) => m.uid = u.get(),
            MessageDataItem::Flags(flags) => {
                for f in flags {
                    let FlagFetch::Flag(f) = f else { continue };
                    match f {
                        Flag::Keyword(k) => m.keywords.push(k.as_ref().to_string()),
                        other => m.flags |= flag::system(&other.to_string()).unwrap_or(0),
                    }
                }
            }
            MessageDataItem::InternalDate(t) => m.internal_date = t.as_ref().timestamp(),
            MessageDataItem::Rfc822Size(n) => m.len_bytes = u64::from(*n),
            _ => {}
        }
    }
    (m.uid > 0).then_some(m)
}

/// `(uid, bytes)` of a `UID FETCH (UID BODY.PEEK[])` response.
fn body_of(d: Data<'static>) -> Option<(u32, Vec<u8>)> {
    let Data::Fetch { items, .. } = d else { return None };
    let (mut uid, mut data) = (None, None);
    for item in items.as_ref() {
        match item {
            MessageDataItem::Uid(u) => uid = Some(u.get()),
            MessageDataItem::BodyExt { section: None, data: body, .. } => {
                data = body.0.as_ref().map(|s| s.as_ref().to_vec());
            }
            _ => {}
        }
    }
    Some((uid?, data?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_may_get_a_password_in_the_clear() {
        for host in ["127.0.0.1", "127.8.9.1", "::1", "localhost", "LocalHost"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "mail.example.edu", "localhost.example.edu", "::ffff:10.0.0.1"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn urls_name_login_and_address() {
        let u = ImapUrl::parse("imap://alice%40example.edu@old.example.edu").unwrap();
        assert_eq!((u.login.as_str(), u.addr.as_str(), u.tls), ("alice@example.edu", "old.example.edu:143", false));
        assert_eq!(ImapUrl::parse("imap://bob@127.0.0.1:1143/").unwrap().addr, "127.0.0.1:1143");
        let s = ImapUrl::parse("imaps://bob@mail.example.edu").unwrap();
        assert_eq!((s.host.as_str(), s.addr.as_str(), s.tls), ("mail.example.edu", "mail.example.edu:993", true));
        assert_eq!(ImapUrl::parse("imaps://bob@[::1]:9993").unwrap().host, "::1");
        for bad in ["http://x@y", "imap://nohost@", "imap://host-only", "imaps://@b"] {
            assert!(ImapUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_fetch_and_bodies_are_read_from_responses() {
        let list = b"* LIST (\\HasChildren) \".\" INBOX\r\n* LIST (\\Noselect \\HasChildren) \".\" Lists\r\n\
                     * LIST (\\HasNoChildren) \".\" Lists.rust\r\n* LIST () \".\" \"A b\"\r\n";
        let got = list_of(parse_data(list).unwrap(), false);
        let names: Vec<(&str, &str)> = got.iter().map(|m| (m.wire.as_str(), m.name.as_str())).collect();
        assert_eq!(names, [("INBOX", "INBOX"), ("Lists.rust", "Lists/rust"), ("A b", "A b")]);
        let fetch = b"* 1 FETCH (UID 7 FLAGS (\\Seen $Label1 \\Recent) INTERNALDATE \"13-Sep-2020 12:26:40 +0000\" RFC822.SIZE 42)\r\n";
        let m = planned_of(parse_data(fetch).unwrap().remove(0)).unwrap();
        assert_eq!(
            (m.uid, m.flags, m.keywords.clone(), m.internal_date, m.len_bytes),
            (7, flag::SEEN, vec!["$Label1".to_string()], 1_600_000_000, 42)
        );
        let body = b"* 1 FETCH (UID 7 BODY[] {5}\r\nhello)\r\n";
        assert_eq!(body_of(parse_data(body).unwrap().remove(0)), Some((7, b"hello".to_vec())));
        assert!(parse_data(b"* garbage (\r\n").is_err());
    }
}
