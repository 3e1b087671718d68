//! A user's Sieve scripts on disk, in the layout Dovecot's Pigeonhole reads: each script is
//! `USER/sieve/NAME.sieve` and the active one is named by the symbolic link
//! `USER/.dovecot.sieve` -> `sieve/NAME.sieve`, beside the user's `Maildir`. So a Dovecot
//! pointed at a replica (`sieve = file:~/sieve;active=~/.dovecot.sieve`) runs the same
//! filters. Files are written to a temporary name and renamed (snapshots hard-link the
//! tree), 0600. Every bound is here: name length, script size, scripts per user, bytes per
//! user. This module must never compile a script (the proposer checks what it uploads) and
//! never decide how a refusal is worded on the wire.

use std::fs;
use std::io;

use std::path::{Path, PathBuf};

/// Directory of a user's scripts, in the user's directory.
pub const SCRIPT_DIR: &str = "sieve";
/// The active-script link, in the user's directory.
pub const ACTIVE_LINK: &str = ".dovecot.sieve";
const SUFFIX: &str = ".sieve";
/// Longest script name, in bytes.
pub const NAME_MAX_BYTES: usize = 128;
/// Largest script (as `sieve::Limits::default().script_bytes`).
pub const SCRIPT_MAX_BYTES: usize = 512 * 1024;
/// Scripts one user may keep.
pub const SCRIPTS_MAX: usize = 16;
/// All of one user's scripts together.
pub const USER_MAX_BYTES: usize = 2 * 1024 * 1024;

/// Why a script operation is refused.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("{0:?} is not a valid script name")]
    BadName(String),
    #[error("no script named {0:?}")]
    NoSuchScript(String),
    #[error("a script named {0:?} exists")]
    Exists(String),
    #[error("script {0:?} is active")]
    Active(String),
    #[error("{0}")]
    Quota(String),
    #[error("script I/O: {0}")]
    Io(#[from] io::Error),
}

/// One script as LISTSCRIPTS shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptInfo {
    pub name: String,
    pub active: bool,
    pub bytes: u64,
}

/// A name RFC 5804 §1.6 allows (no control characters) that is also a safe file name.
pub fn check_name(name: &str) -> Result<(), ScriptError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX_BYTES
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}');
    ok.then_some(()).ok_or_else(|| ScriptError::BadName(name.to_string()))
}

fn script_path(user_dir: &Path, name: &str) -> PathBuf {
    user_dir.join(SCRIPT_DIR).join(format!("{name}{SUFFIX}"))
}

/// The user's scripts, by name.
pub fn list(user_dir: &Path) -> io::Result<Vec<ScriptInfo>> {
    let active = active_name(user_dir)?;
    let entries = match fs::read_dir(user_dir.join(SCRIPT_DIR)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(SUFFIX).filter(|n| check_name(n).is_ok()) else { continue };
        let bytes = entry.metadata()?.len();
        out.push(ScriptInfo { active: active.as_deref() == Some(name), name: name.to_string(), bytes });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A script's text, or None when there is no such script.
pub fn read(user_dir: &Path, name: &str) -> Result<Option<String>, ScriptError> {
    check_name(name)?;
    match fs::read(script_path(user_dir, name)) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The name the active link points at, if there is one.
pub fn active_name(user_dir: &Path) -> io::Result<Option<String>> {
    match fs::read_link(user_dir.join(ACTIVE_LINK)) {
        Ok(target) => {
            let target = target.to_string_lossy().into_owned();
            let name = target.strip_prefix(&format!("{SCRIPT_DIR}/")).and_then(|t| t.strip_suffix(SUFFIX));
            Ok(name.filter(|n| check_name(n).is_ok()).map(str::to_string))
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The active script's name and text, if one is active and present.
pub fn active(user_dir: &Path) -> Result<Option<(String, String)>, ScriptError> {
    let Some(name) = active_name(user_dir)? else { return Ok(None) };
    Ok(read(user_dir, &name)?.map(|text| (name, text)))
}

/// Whether a script of `bytes` may be stored as `name` (RFC 5804 HAVESPACE).
pub fn have_space(user_dir: &Path, name: &str, bytes: usize) -> Result<(), ScriptError> {
    check_name(name)?;
    if bytes > SCRIPT_MAX_BYTES {
        return Err(ScriptError::Quota(format!("a script may hold at most {SCRIPT_MAX_BYTES} bytes")));
    }
    let scripts = list(user_dir)?;
    let others: Vec<&ScriptInfo> = scripts.iter().filter(|s| s.name != name).collect();
    if others.len() >= SCRIPTS_MAX {
        return Err(ScriptError::Quota(format!("at most {SCRIPTS_MAX} scripts per user")));
    }
    let total: u64 = others.iter().map(|s| s.bytes).sum::<u64>() + bytes as u64;
    if total > USER_MAX_BYTES as u64 {
        return Err(ScriptError::Quota(format!("scripts may hold at most {USER_MAX_BYTES} bytes together")));
    }
    Ok(())
}

/// Stores (or replaces) a script.
pub fn put(user_dir: &Path, name: &str, text: &str) -> Result<(), ScriptError> {
    have_space(user_dir, name, text.len())?;
    let file = script_path(user_dir, name);
    let file_name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    super::fileio::replace_private(&user_dir.join(SCRIPT_DIR), &file_name, text.as_bytes())?;
    Ok(())
}

/// Deletes a script; the active one cannot be (RFC 5804 §2.10).
pub fn delete(user_dir: &Path, name: &str) -> Result<(), ScriptError> {
    check_name(name)?;
    if active_name(user_dir)?.as_deref() == Some(name) {
        return Err(ScriptError::Active(name.to_string()));
    }
    match fs::remove_file(script_path(user_dir, name)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ScriptError::NoSuchScript(name.to_string())),
        other => Ok(other?),
    }
}

/// Renames a script; the active link follows it (RFC 5804 §2.11.1).
pub fn rename(user_dir: &Path, from: &str, to: &str) -> Result<(), ScriptError> {
    check_name(from)?;
    check_name(to)?;
    if read(user_dir, to)?.is_some() {
        return Err(ScriptError::Exists(to.to_string()));
    }
    if read(user_dir, from)?.is_none() {
        return Err(ScriptError::NoSuchScript(from.to_string()));
    }
    fs::rename(script_path(user_dir, from), script_path(user_dir, to))?;
    if active_name(user_dir)?.as_deref() == Some(from) {
        link_active(user_dir, Some(to))?;
    }
    Ok(())
}

/// Makes `name` the active script, or none (RFC 5804 §2.8: the empty name).
pub fn set_active(user_dir: &Path, name: Option<&str>) -> Result<(), ScriptError> {
    if let Some(name) = name {
        check_name(name)?;
        if read(user_dir, name)?.is_none() {
            return Err(ScriptError::NoSuchScript(name.to_string()));
        }
    }
    link_active(user_dir, name)
}

fn link_active(user_dir: &Path, name: Option<&str>) -> Result<(), ScriptError> {
    let link = user_dir.join(ACTIVE_LINK);
    let Some(name) = name else {
        return match fs::remove_file(&link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        };
    };
    fs::create_dir_all(user_dir)?;
    let tmp = user_dir.join(format!("{ACTIVE_LINK}.tmp"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("{SCRIPT_DIR}/{name}{SUFFIX}"), &tmp)?;
    fs::rename(&tmp, &link)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rfc5804_script_lifecycle_in_pigeonholes_layout() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        put(home, "vacation", "keep;").unwrap();
        put(home, "spam", "discard;").unwrap();
        set_active(home, Some("spam")).unwrap();
        assert_eq!(fs::read_link(home.join(".dovecot.sieve")).unwrap(), Path::new("sieve/spam.sieve"));
        assert_eq!(fs::read_to_string(home.join("sieve/spam.sieve")).unwrap(), "discard;");
        let mode = fs::metadata(home.join("sieve/spam.sieve")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(delete(home, "spam"), Err(ScriptError::Active(_))));
        rename(home, "spam", "filters").unwrap();
        assert_eq!(active(home).unwrap(), Some(("filters".into(), "discard;".into())));
        assert!(matches!(rename(home, "vacation", "filters"), Err(ScriptError::Exists(_))));
        set_active(home, None).unwrap();
        delete(home, "filters").unwrap();
        assert!(matches!(delete(home, "filters"), Err(ScriptError::NoSuchScript(_))));
        let names: Vec<String> = list(home).unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["vacation"]);
    }

    #[test]
    fn bounds_and_names() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", ".hidden", "a/b", "new\nline", &"x".repeat(200)] {
            assert!(matches!(put(dir.path(), bad, "keep;"), Err(ScriptError::BadName(_))), "{bad:?}");
        }
        assert!(matches!(put(dir.path(), "big", &"#".repeat(SCRIPT_MAX_BYTES + 1)), Err(ScriptError::Quota(_))));
        for i in 0..SCRIPTS_MAX {
            put(dir.path(), &format!("s{i}"), "keep;").unwrap();
        }
        assert!(matches!(put(dir.path(), "one-more", "keep;"), Err(ScriptError::Quota(_))));
        put(dir.path(), "s0", "discard;").unwrap();
    }
}
