//! The directory's inputs: LDIF files (the embedded directory), the attribute values an
//! LDAP server returns (accounts), lookup keys and password hashes. Parsing fails cleanly
//! or yields accounts whose addresses are lower case and plain mailboxes (no control
//! characters, spaces or `<>`: `common::address`); any value escapes into one RDN.

use common::password::PasswordHash;
use directory::{lookup_key, parse_ldif, Account, Attributes, Purpose};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(records) = parse_ldif(&text) {
        for r in &records {
            if let Ok(account) = Account::from_attributes(&r.dn, &r.attrs) {
                assert_eq!(account.mail, account.mail.to_lowercase(), "mail is lower case");
                let plain = !account.mail.chars().any(|c| c.is_control() || c.is_whitespace() || "<>,".contains(c));
                assert!(plain, "an accepted mail address is a plain mailbox: {:?}", account.mail);
            }
        }
    }
    // Each line as a value of the attributes an LDAP server hands back.
    for word in text.lines().take(64) {
        let _ = lookup_key(word, Purpose::Delivery);
        let _ = lookup_key(word, Purpose::Login);
        if let Ok(h) = PasswordHash::parse(word) {
            let _ = h.verify("x");
        }
        let mut attrs = Attributes::new();
        for name in ["mail", "mailhost", "mailquotasize", "mailquotacount", "mailsizemax", "accountstatus", "uid"] {
            attrs.insert(name.into(), vec![word.to_string()]);
        }
        let _ = Account::from_attributes(word, &attrs);
        // An escaped value never ends its RDN early or starts another: every special
        // character comes out as a hex escape.
        let escaped = directory::rdn_escape(word);
        assert!(!escaped.chars().any(|c| ",+;=<>\"\0".contains(c)), "{word:?} -> {escaped:?}");
    }
}
