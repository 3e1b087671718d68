//! The Sieve workload of `lmtp-bench --sieve`: one 30-rule script, the kind a campus user
//! builds in webmail (header, address, envelope and size tests, fileinto, flags), active for
//! every user on both sides: our storage nodes and Dovecot with Pigeonhole. A few rules
//! match the bench's messages (`Subject: bench N`), so some mail is filed and flagged.

use std::path::Path;
use std::process::Command;

/// The script: 29 rules that do not match bench mail and one that files a tenth of it.
pub fn script() -> String {
    let mut s = String::from(
        "require [\"fileinto\", \"imap4flags\", \"envelope\", \"relational\", \"comparator-i;ascii-numeric\", \"variables\"];\r\n",
    );
    let lists = ["announce", "dev", "users", "security", "jobs", "events", "sports", "library", "housing", "alumni"];
    for (k, list) in lists.iter().enumerate() {
        s.push_str(&format!(
            "if header :contains \"list-id\" \"{list}.lists.example.edu\" {{ fileinto \"Lists/{list}\"; stop; }}\r\n"
        ));
        s.push_str(&format!(
            "if address :domain :is \"from\" \"partner{k}.example.com\" {{ addflag \"$Partner\"; fileinto \"Partners\"; stop; }}\r\n"
        ));
    }
    let subjects = ["invoice", "receipt", "[SPAM]", "unsubscribe", "newsletter", "password reset"];
    for subject in subjects {
        s.push_str(&format!("if header :contains \"subject\" \"{subject}\" {{ fileinto \"Sorted\"; stop; }}\r\n"));
    }
    s.push_str("if envelope :localpart :is \"from\" \"mailer-daemon\" { fileinto \"Bounces\"; stop; }\r\n");
    s.push_str("if size :over 20M { addflag \"$Large\"; }\r\n");
    s.push_str(
        "if header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-priority\" \"4\" { addflag \"$Low\"; }\r\n",
    );
    s.push_str("if header :matches \"subject\" \"bench *7\" { addflag \"\\\\Flagged\"; fileinto \"Sevens\"; }\r\n");
    s
}

/// Write the script as `home/sieve/bench.sieve`, active through `home/.dovecot.sieve` (the
/// layout both sides read), owned by `owner` when given.
pub fn install(home: &Path, owner: Option<&str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(home.join("sieve"))?;
    std::fs::write(home.join("sieve/bench.sieve"), script())?;
    let link = home.join(".dovecot.sieve");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("sieve/bench.sieve", &link)?;
    if let Some(owner) = owner {
        Command::new("chown").arg("-R").arg(owner).arg(home).status()?;
    }
    Ok(())
}

/// Dovecot's LMTP running Pigeonhole with each user's active script, folders made on
/// fileinto (as our store makes them).
pub const DOVECOT_SIEVE: &str = "protocol lmtp {\n  mail_plugins = $mail_plugins sieve\n}\n\
    plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}\n\
    lda_mailbox_autocreate = yes\nlda_mailbox_autosubscribe = yes\n";

#[cfg(test)]
mod tests {
    #[test]
    fn the_script_compiles_with_thirty_rules() {
        let script = super::script();
        assert_eq!(script.matches("\r\nif ").count(), 30);
        sieve::compile(&script, "bench", &sieve::Limits::default(), &sieve::NoIncludes).unwrap();
    }
}
