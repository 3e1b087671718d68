//! Validated user and mailbox names, and the only mapping from names to paths.
//!
//! Every path the store touches is built here from a [`UserName`] and a [`MailboxName`],
//! both of which reject anything that could leave the user's Maildir: `/`, `..`, NUL,
//! control characters, leading dots, over-long names. Nothing else in the store may join a
//! client-supplied string onto a path.

use std::fmt;
use std::path::{Path, PathBuf};

/// Longest user name, in bytes.
pub const USER_MAX: usize = 128;
/// Longest mailbox name (all levels), in bytes.
pub const MAILBOX_MAX: usize = 200;
/// Deepest mailbox hierarchy.
pub const MAILBOX_DEPTH_MAX: usize = 16;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("name too long")]
    TooLong,
    #[error("name contains a forbidden character")]
    BadChar,
    #[error("name has an empty, '.' or '..' level")]
    BadLevel,
    #[error("mailbox hierarchy too deep")]
    TooDeep,
}

/// A user name: lowercase `[a-z0-9._+-@]`, not starting with `.`, no `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let name = raw.to_ascii_lowercase();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > USER_MAX {
            return Err(NameError::TooLong);
        }
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._+-@".contains(c);
        if !name.chars().all(ok) {
            return Err(NameError::BadChar);
        }
        if name.starts_with('.') || name.contains("..") {
            return Err(NameError::BadLevel);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox name in IMAP form with `/` as the hierarchy separator; `INBOX` (any case) is
/// the user's root Maildir. Levels may not contain `.` (the Maildir++ separator on disk),
/// `/`, NUL or control characters, nor be `.`/`..`-like or empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailboxName(String);

/// The quarantine's mailbox name (the front files held spam there: `XFOLDER=Quarantine`).
pub const QUARANTINE: &str = "Quarantine";

impl MailboxName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > MAILBOX_MAX {
            return Err(NameError::TooLong);
        }
        if raw.eq_ignore_ascii_case("INBOX") {
            return Ok(Self("INBOX".into()));
        }
        let levels: Vec<&str> = raw.split('/').collect();
        if levels.len() > MAILBOX_DEPTH_MAX {
            return Err(NameError::TooDeep);
        }
        for level in &levels {
            if level.is_empty() {
                return Err(NameError::BadLevel);
            }
            if level.chars().any(|c| c == '.' || c == '\\' || c.is_control()) {
                return Err(NameError::BadChar);
            }
        }
        // `INBOX/x` stays under INBOX's namespace but is stored as `.INBOX.x`, never as the root.
        Ok(Self(raw.to_string()))
    }

    /// The user's inbox.
    pub fn inbox() -> Self {
        Self("INBOX".into())
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }

    /// The quarantine the scanning stage fills (`Quarantine`): clients take messages out
    /// of it (a release) or expunge them, but never file one in.
    pub fn is_quarantine(&self) -> bool {
        self.0 == QUARANTINE
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Directory name relative to the user's Maildir root: `""` for INBOX, else
    /// `.a.b` for `a/b` (Maildir++).
    fn dir_name(&self) -> String {
        if self.is_inbox() {
            String::new()
        } else {
            format!(".{}", self.0.replace('/', "."))
        }
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Paths under a store root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/users/USER`: everything of one user.
    pub fn user_dir(&self, user: &UserName) -> PathBuf {
        self.root.join("users").join(user.as_str())
    }

    /// `ROOT/users/USER/Maildir`.
    pub fn maildir(&self, user: &UserName) -> PathBuf {
        self.user_dir(user).join("Maildir")
    }

    /// The Maildir++ directory of a mailbox (holds `cur`, `new`, `tmp`).
    pub fn mailbox_dir(&self, user: &UserName, mailbox: &MailboxName) -> PathBuf {
        let dir = mailbox.dir_name();
        let base = self.maildir(user);
        if dir.is_empty() {
            base
        } else {
            base.join(dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(UserName::parse("Alice@Example.EDU").unwrap().as_str(), "alice@example.edu");
        for bad in ["", "a/b", "..", ".hidden", "a..b", "a\0b", "a b", "a\nb", &"x".repeat(200)] {
            assert!(UserName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mailboxes_never_escape_the_maildir() {
        let layout = Layout::new("/srv/mail");
        let u = UserName::parse("bob").unwrap();
        let root = layout.maildir(&u);
        for good in ["INBOX", "inbox", "Sent", "Archive/2024", "Ünïcödé", "a b"] {
            let m = MailboxName::parse(good).unwrap();
            let p = layout.mailbox_dir(&u, &m);
            assert!(p.starts_with(&root), "{good}");
            assert!(p
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::RootDir)));
        }
        assert_eq!(layout.mailbox_dir(&u, &MailboxName::parse("Archive/2024").unwrap()), root.join(".Archive.2024"));
        for bad in ["", "../x", "a/../b", "a/./b", ".", "..", "a.b", "a//b", "/a", "a/", "x\0y", "x\ry", "a\\b"] {
            assert!(MailboxName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
