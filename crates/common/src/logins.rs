//! A user's login history as the fronts record it and the storage group replicates it:
//! one record per successful login (when, which protocol, from which address and country,
//! through which front), kept bounded — the newest [`RECENT_MAX`], and beyond those the
//! newest login from each country, for at most [`COUNTRIES_MAX`] countries — so "when did
//! this account last log in from home" survives a burst of logins from elsewhere. Pure:
//! what to keep is decided here, the files are the storage node's. Never holds a password.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The protocol of the record `mailctl phish release` writes: logins before it are not held
/// against the account any more (the postmaster looked at them).
pub const RELEASED: &str = "(released)";

/// Newest logins kept whatever their country.
pub const RECENT_MAX: usize = 32;
/// Countries whose newest login is kept beyond the recent ones.
pub const COUNTRIES_MAX: usize = 64;
/// Longest protocol, country or front name kept, in bytes.
const NAME_MAX_BYTES: usize = 64;

/// One successful login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRecord {
    /// Seconds since 1970 (the recording front's clock).
    pub at_s: i64,
    /// `IMAP`, `POP3`, `ManageSieve` or `SMTP`.
    pub protocol: String,
    pub ip: IpAddr,
    /// ISO 3166-1 alpha-2 code, upper case, when the geo database knows the address.
    pub country: Option<String>,
    /// The continent's two-letter code (`NA`, `EU`, ...), when the database has it.
    pub continent: Option<String>,
    /// Latitude and longitude in units of 1e-4 degrees, when the database has them.
    pub location: Option<(i32, i32)>,
    /// The front that saw it.
    pub front: String,
}

impl LoginRecord {
    /// The record with every name bounded and printable (input from the network).
    pub fn bounded(mut self) -> Self {
        let clean = |s: &mut String| {
            *s = s.chars().filter(|c| !c.is_control()).take(NAME_MAX_BYTES).collect();
        };
        clean(&mut self.protocol);
        clean(&mut self.front);
        for c in [&mut self.country, &mut self.continent].into_iter().flatten() {
            clean(c);
        }
        self
    }

    /// Latitude and longitude in degrees.
    pub fn degrees(&self) -> Option<(f64, f64)> {
        self.location.map(|(lat, lon)| (f64::from(lat) / 1e4, f64::from(lon) / 1e4))
    }
}

/// Add `record` to `history` (oldest first) and drop what the bounds leave out: past the
/// newest [`RECENT_MAX`], only the newest record of each country stays, for the
/// [`COUNTRIES_MAX`] most recently seen countries.
pub fn add(history: &mut Vec<LoginRecord>, record: LoginRecord) {
    let record = record.bounded();
    // A record copied again (a move's next round) is kept once.
    if history.contains(&record) {
        return;
    }
    history.push(record);
    history.sort_by_key(|r| r.at_s);
    if history.len() <= RECENT_MAX {
        return;
    }
    let split = history.len() - RECENT_MAX;
    let (older, recent) = history.split_at(split);
    let mut seen: Vec<Option<&str>> = recent.iter().map(|r| r.country.as_deref()).collect();
    let mut kept_older = Vec::new();
    for r in older.iter().rev() {
        let country = r.country.as_deref();
        if seen.contains(&country) || kept_older.len() >= COUNTRIES_MAX {
            continue;
        }
        seen.push(country);
        kept_older.push(r.clone());
    }
    kept_older.reverse();
    kept_older.extend_from_slice(recent);
    *history = kept_older;
    debug_assert!(history.len() <= RECENT_MAX + COUNTRIES_MAX);
}

/// The records since the newest release (all of them if never released).
pub fn since_release(history: &[LoginRecord]) -> &[LoginRecord] {
    match history.iter().rposition(|r| r.protocol == RELEASED) {
        Some(i) => &history[i + 1..],
        None => history,
    }
}

/// The newest login of `history`.
pub fn last(history: &[LoginRecord]) -> Option<&LoginRecord> {
    history.iter().filter(|r| r.protocol != RELEASED).max_by_key(|r| r.at_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(at_s: i64, country: &str) -> LoginRecord {
        LoginRecord {
            at_s,
            protocol: "IMAP".into(),
            ip: IpAddr::from([192, 0, 2, 1]),
            country: Some(country.into()),
            continent: None,
            location: None,
            front: "front1".into(),
        }
    }

    #[test]
    fn the_newest_and_the_newest_per_country_are_kept_within_bounds() {
        let mut h = Vec::new();
        add(&mut h, login(1, "US"));
        add(&mut h, login(2, "DE"));
        for t in 10..(10 + 2 * RECENT_MAX as i64) {
            add(&mut h, login(t, "CN"));
        }
        assert_eq!(h.len(), RECENT_MAX + 2, "the recent ones plus the last US and DE logins");
        assert_eq!((h[0].at_s, h[1].at_s), (1, 2));
        assert_eq!(last(&h).unwrap().at_s, 10 + 2 * RECENT_MAX as i64 - 1);
        for k in 0..1000 {
            add(&mut h, login(10_000 + k, &format!("X{k}")));
        }
        assert_eq!(h.len(), RECENT_MAX + COUNTRIES_MAX);
    }

    #[test]
    fn names_from_the_network_are_bounded() {
        let mut r = login(1, "US");
        r.front = format!("a\r\nb{}", "x".repeat(500));
        let r = r.bounded();
        assert!(!r.front.contains('\r') && r.front.len() <= NAME_MAX_BYTES);
    }
}
