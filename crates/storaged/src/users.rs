//! The users this node accepts mail for, the group each lives in and their password hash,
//! from a plain file: one `address [group] [{SCHEME}hash]` per line, `#` comments. A
//! stand-in for the directory that frontd brings later; read at start and on SIGHUP.
//! A user without a hash receives mail but cannot log in. Without a file the node knows no
//! user of its own: it serves only those a front's directory names (LMTP `XMAILHOST=` from
//! an authenticated cluster member, a proxy login with `x-mailhost`), and never makes a
//! mailbox for a name nobody listed.

use std::collections::HashMap;
use std::path::Path;

use crate::auth::PasswordHash;
use crate::mailstore::UserName;

/// One user's entry.
#[derive(Debug, Clone)]
struct Entry {
    user: UserName,
    group: String,
    password: Option<PasswordHash>,
}

/// Address → user, group and password.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    users: HashMap<String, Entry>,
}

/// A users file problem.
#[derive(Debug, thiserror::Error)]
pub enum UserDbError {
    #[error("users file: {0}")]
    Io(#[from] std::io::Error),
    #[error("users file line {line}: {reason}")]
    Bad { line: usize, reason: String },
}

impl UserDb {
    /// Load `path`; `default_group` applies to lines without a group.
    pub fn load(path: &Path, groups: &[String], default_group: Option<&str>) -> Result<Self, UserDbError> {
        let text = std::fs::read_to_string(path)?;
        let mut users = HashMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let addr = parts.next().expect("non-empty line");
            let bad = |reason: String| UserDbError::Bad { line: n + 1, reason };
            let user = UserName::parse(addr).map_err(|e| bad(e.to_string()))?;
            let mut group = None;
            let mut password = None;
            for field in parts {
                if field.starts_with('{') {
                    password = Some(PasswordHash::parse(field).map_err(|e| bad(e.to_string()))?);
                } else if group.is_none() {
                    group = Some(field);
                } else {
                    return Err(bad(format!("unexpected field {field:?}")));
                }
            }
            let group = match group.or(default_group) {
                Some(g) if groups.iter().any(|x| x == g) => g.to_string(),
                Some(g) => return Err(bad(format!("unknown group {g}"))),
                None => return Err(bad("no group".into())),
            };
            users.insert(user.as_str().to_string(), Entry { user, group, password });
        }
        Ok(Self { users })
    }

    /// The user and group for an address.
    pub fn resolve(&self, address: &str) -> Option<(UserName, String)> {
        let user = UserName::parse(address).ok()?;
        let found = self.users.get(user.as_str())?;
        Some((found.user.clone(), found.group.clone()))
    }

    /// The password hash of a listed user (none: the user cannot log in).
    pub fn password(&self, user: &UserName) -> Option<&PasswordHash> {
        self.users.get(user.as_str())?.password.as_ref()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
