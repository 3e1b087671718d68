//! CONTEXT=SEARCH (RFC 5267 §4) and PARTIAL results (RFC 9394): searches a client asked to
//! keep up to date with `RETURN (UPDATE)`, and what each change to the mailbox adds to or
//! removes from their results (`ESEARCH ... ADDTO` / `REMOVEFROM`). Pure: the session runs
//! the searches again and hands the results here.
//!
//! Bounded: at most [`CONTEXTS_MAX`] searches kept per session; beyond that the client is
//! told `NOUPDATE` and gets the one result.

use std::collections::BTreeSet;

use imap_codec::imap_types::search::SearchKey;

use super::encode;

/// Searches kept up to date per session.
pub const CONTEXTS_MAX: usize = 8;

/// One search kept up to date.
#[derive(Debug)]
pub struct Context {
    pub tag: String,
    pub uid: bool,
    pub criteria: Vec<SearchKey<'static>>,
    /// The UIDs the client was last told match.
    pub matched: BTreeSet<u32>,
}

impl Context {
    /// The ESEARCH lines that bring the client from the last result to `now` (UIDs).
    /// `number` gives a message's number as the client knows it (its sequence number, for a
    /// search that returns those; `None` if the client does not know the message).
    /// REMOVEFROM comes first: its numbers are the ones before any expunge is announced.
    pub fn update(&mut self, now: BTreeSet<u32>, number: impl Fn(u32) -> Option<u32>) -> Vec<String> {
        let as_numbers = |uids: Vec<u32>| {
            let mut n: Vec<u32> = uids.into_iter().filter_map(|u| if self.uid { Some(u) } else { number(u) }).collect();
            n.sort_unstable();
            n
        };
        let removed = as_numbers(self.matched.difference(&now).copied().collect());
        let added = as_numbers(now.difference(&self.matched).copied().collect());
        let uid = if self.uid { " UID" } else { "" };
        let mut out = Vec::new();
        // Position 0: an unsorted search has no positions (RFC 5267 §4.3).
        if !removed.is_empty() {
            out.push(format!("* ESEARCH (TAG \"{}\"){uid} REMOVEFROM (0 {})", self.tag, encode::uid_set(&removed)));
        }
        if !added.is_empty() {
            out.push(format!("* ESEARCH (TAG \"{}\"){uid} ADDTO (0 {})", self.tag, encode::uid_set(&added)));
        }
        self.matched = now;
        out
    }
}

/// A PARTIAL range (RFC 9394 §3.1): `m:n` of the result's positions, 1-based from the
/// start, or negative from the end; given either way round.
pub fn parse_partial(range: &str) -> Option<(i64, i64)> {
    let (a, b) = range.split_once(':')?;
    let (a, b): (i64, i64) = (a.parse().ok()?, b.parse().ok()?);
    let same_sign = (a > 0 && b > 0) || (a < 0 && b < 0);
    same_sign.then_some((a.min(b), a.max(b)))
}

/// `PARTIAL (m:n set)` for the numbers of `hits` (in result order) at positions `range`,
/// `NIL` for none.
pub fn partial(hits: &[u32], range: (i64, i64)) -> String {
    let len = hits.len() as i64;
    let (from, to) = if range.0 > 0 { (range.0 - 1, range.1 - 1) } else { (len + range.0, len + range.1) };
    let (from, to) = (from.max(0), to.min(len - 1));
    let picked: &[u32] = if from <= to { &hits[from as usize..=to as usize] } else { &[] };
    let set = if picked.is_empty() { "NIL".to_string() } else { encode::uid_set(picked) };
    format!("PARTIAL ({}:{} {set})", range.0, range.1)
}

/// RETURN options of SEARCH and SORT (RFC 4731, 5182, 5267, 9394), checked: `Err` names the
/// first one that is unknown or malformed.
pub fn check_options(options: &[String]) -> Result<(), String> {
    let mut items = options.iter();
    while let Some(o) = items.next() {
        match o.as_str() {
            "MIN" | "MAX" | "ALL" | "COUNT" | "SAVE" | "UPDATE" | "CONTEXT" => {}
            "PARTIAL" => {
                if items.next().and_then(|r| parse_partial(r)).is_none() {
                    return Err("PARTIAL needs a range m:n of positions".into());
                }
            }
            other => return Err(format!("unsupported RETURN option {other}")),
        }
    }
    Ok(())
}

/// `tag CANCELUPDATE "t1" ...` (RFC 5267 §4.2): the tags of the searches to stop updating.
pub fn cancel_update(bytes: &[u8]) -> Option<Vec<String>> {
    if !super::preparse::verb_is(bytes, &["CANCELUPDATE"]) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?.trim_end();
    let (_, rest) = text.split_once(' ')?;
    let (verb, args) = rest.split_once(' ').unwrap_or((rest, ""));
    if !verb.eq_ignore_ascii_case("CANCELUPDATE") {
        return None;
    }
    Some(args.split_whitespace().map(|t| t.trim_matches('"').to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5267_4_3_changes_become_addto_and_removefrom() {
        let mut c = Context { tag: "A1".into(), uid: false, criteria: vec![], matched: BTreeSet::new() };
        let seq = |u: u32| Some(u * 10);
        assert_eq!(c.update([1, 2, 4].into(), seq), ["* ESEARCH (TAG \"A1\") ADDTO (0 10,20,40)"]);
        assert_eq!(
            c.update([4, 5].into(), seq),
            ["* ESEARCH (TAG \"A1\") REMOVEFROM (0 10,20)", "* ESEARCH (TAG \"A1\") ADDTO (0 50)"]
        );
        assert!(c.update([4, 5].into(), seq).is_empty(), "no change, nothing sent");
        let mut u = Context { tag: "B".into(), uid: true, criteria: vec![], matched: [7].into() };
        assert_eq!(u.update([7, 8, 9].into(), |_| None), ["* ESEARCH (TAG \"B\") UID ADDTO (0 8:9)"]);
    }

    #[test]
    fn rfc9394_3_1_partial_ranges() {
        let hits = [1, 2, 4, 5];
        assert_eq!(parse_partial("4:2"), Some((2, 4)));
        assert_eq!(parse_partial("-1:-3"), Some((-3, -1)));
        assert_eq!(parse_partial("0:2"), None);
        assert_eq!(parse_partial("-1:2"), None);
        assert_eq!(partial(&hits, (1, 3)), "PARTIAL (1:3 1:2,4)");
        assert_eq!(partial(&hits, (2, 10)), "PARTIAL (2:10 2,4:5)");
        assert_eq!(partial(&hits, (6, 6)), "PARTIAL (6:6 NIL)");
        assert_eq!(partial(&hits, (-2, -1)), "PARTIAL (-2:-1 4:5)");
        assert_eq!(partial(&[], (1, 1)), "PARTIAL (1:1 NIL)");
    }

    #[test]
    fn options_and_cancelupdate_are_checked() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_options(&o(&["UPDATE", "ALL", "PARTIAL", "1:5"])).is_ok());
        assert!(check_options(&o(&["PARTIAL"])).is_err());
        assert!(check_options(&o(&["PARTIAL", "0:5"])).is_err());
        assert!(check_options(&o(&["FROB"])).is_err());
        assert_eq!(cancel_update(b"c1 CANCELUPDATE \"A1\" \"A2\"\r\n"), Some(vec!["A1".to_string(), "A2".into()]));
        assert_eq!(cancel_update(b"c1 NOOP\r\n"), None);
    }
}
