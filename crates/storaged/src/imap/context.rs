//! CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4) and PARTIAL results (RFC 9394): searches
//! and sorts a client asked to keep up to date with `RETURN (UPDATE)`, and what each change
//! to the mailbox adds to or removes from their results (`ESEARCH ... ADDTO` /
//! `REMOVEFROM`, with positions in a sorted result). Pure: the session runs the searches
//! again and hands the results here.
//!
//! Bounded: at most [`CONTEXTS_MAX`] searches kept per session, and a sort only while its
//! result has at most [`SORT_CONTEXT_MESSAGES_MAX`] messages (each change sorts it again);
//! beyond that the client is told `NOUPDATE` and gets the one result.

use std::collections::BTreeSet;

use imap_codec::imap_types::extensions::sort::SortCriterion;
use imap_codec::imap_types::search::SearchKey;

use super::encode;

/// Searches kept up to date per session.
pub const CONTEXTS_MAX: usize = 8;
/// Largest sorted result kept up to date.
pub const SORT_CONTEXT_MESSAGES_MAX: usize = 10_000;

/// One search kept up to date.
#[derive(Debug)]
pub struct Context {
    pub tag: String,
    pub uid: bool,
    pub criteria: Vec<SearchKey<'static>>,
    /// The sort order of a kept SORT; `None` for a SEARCH.
    pub sort: Option<Vec<SortCriterion>>,
    /// The UIDs the client was last told match.
    pub matched: BTreeSet<u32>,
    /// The same UIDs in result order (a sort's), which positions count in.
    pub order: Vec<u32>,
}

impl Context {
    /// A search or sort kept up to date, whose result the client was just given (`order`).
    pub fn new(
        tag: String,
        uid: bool,
        criteria: Vec<SearchKey<'static>>,
        sort: Option<Vec<SortCriterion>>,
        order: Vec<u32>,
    ) -> Self {
        Self { tag, uid, criteria, sort, matched: order.iter().copied().collect(), order }
    }

    /// The lines that bring the client from the last result to `now` (UIDs in result order).
    pub fn refresh(&mut self, now: Vec<u32>, number: impl Fn(u32) -> Option<u32>) -> Vec<String> {
        if self.sort.is_some() {
            self.update_sorted(now, number)
        } else {
            self.update(now.into_iter().collect(), number)
        }
    }

    /// For a sorted result (RFC 5267 §4.4): REMOVEFROM with each removed message's position
    /// before it goes, last first (so no position moves under the client), then ADDTO with
    /// each new message's position in the new result, first first. The other messages keep
    /// their order: sort keys do not change.
    fn update_sorted(&mut self, now: Vec<u32>, number: impl Fn(u32) -> Option<u32>) -> Vec<String> {
        let now_set: BTreeSet<u32> = now.iter().copied().collect();
        let pairs = |list: Vec<(usize, u32)>| -> String {
            list.into_iter()
                .filter_map(|(pos, u)| if self.uid { Some(u) } else { number(u) }.map(|n| format!("{pos} {n}")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let removed: Vec<(usize, u32)> = self
            .order
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, u)| !now_set.contains(u))
            .map(|(i, u)| (i + 1, *u))
            .collect();
        let added: Vec<(usize, u32)> =
            now.iter().enumerate().filter(|(_, u)| !self.matched.contains(u)).map(|(i, u)| (i + 1, *u)).collect();
        let (removed, added) = (pairs(removed), pairs(added));
        let uid = if self.uid { " UID" } else { "" };
        let mut out = Vec::new();
        if !removed.is_empty() {
            out.push(format!("* ESEARCH (TAG \"{}\"){uid} REMOVEFROM ({removed})", self.tag));
        }
        if !added.is_empty() {
            out.push(format!("* ESEARCH (TAG \"{}\"){uid} ADDTO ({added})", self.tag));
        }
        self.matched = now_set;
        self.order = now;
        out
    }

    /// The ESEARCH lines that bring the client from the last result to `now` (UIDs).
    /// `number` gives a message's number as the client knows it (its sequence number, for a
    /// search that returns those; `None` if the client does not know the message).
    /// REMOVEFROM comes first: its numbers are the ones before any expunge is announced.
    fn update(&mut self, now: BTreeSet<u32>, number: impl Fn(u32) -> Option<u32>) -> Vec<String> {
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
        self.order = now.iter().copied().collect();
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
        let mut c = Context::new("A1".into(), false, vec![], None, vec![]);
        let seq = |u: u32| Some(u * 10);
        assert_eq!(c.refresh(vec![1, 2, 4], seq), ["* ESEARCH (TAG \"A1\") ADDTO (0 10,20,40)"]);
        assert_eq!(
            c.refresh(vec![4, 5], seq),
            ["* ESEARCH (TAG \"A1\") REMOVEFROM (0 10,20)", "* ESEARCH (TAG \"A1\") ADDTO (0 50)"]
        );
        assert!(c.refresh(vec![4, 5], seq).is_empty(), "no change, nothing sent");
        let mut u = Context::new("B".into(), true, vec![], None, vec![7]);
        assert_eq!(u.refresh(vec![7, 8, 9], |_| None), ["* ESEARCH (TAG \"B\") UID ADDTO (0 8:9)"]);
    }

    #[test]
    fn rfc5267_4_4_sorted_updates_carry_positions() {
        use imap_codec::imap_types::extensions::sort::SortKey;
        let by_date = vec![SortCriterion { reverse: false, key: SortKey::Date }];
        // Sorted result 30, 10, 20; 10 goes, 40 comes between 30 and 20, 50 at the end.
        let mut c = Context::new("S".into(), true, vec![], Some(by_date), vec![30, 10, 20]);
        assert_eq!(
            c.refresh(vec![30, 40, 20, 50], |_| None),
            ["* ESEARCH (TAG \"S\") UID REMOVEFROM (2 10)", "* ESEARCH (TAG \"S\") UID ADDTO (2 40 4 50)"]
        );
        assert!(c.refresh(vec![30, 40, 20, 50], |_| None).is_empty());
        // Several removals: the later positions first, so each is right when applied.
        assert_eq!(c.refresh(vec![40], |_| None), ["* ESEARCH (TAG \"S\") UID REMOVEFROM (4 50 3 20 1 30)"]);
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
