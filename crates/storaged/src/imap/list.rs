//! Which mailboxes LIST and LSUB return, with which attributes (RFC 3501 §6.3.8–9, RFC 5258
//! LIST-EXTENDED, RFC 6154 SPECIAL-USE), as a pure function of the user's mailbox names,
//! subscriptions and the query. The session formats the lines (and LIST-STATUS); this
//! module decides what they say.
//!
//! Bounded by its inputs: names × patterns × name length for matching (the matcher never
//! backtracks), and ancestors are walked once per name.

use std::collections::{BTreeMap, BTreeSet};

/// What the client asked.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Reference + pattern, each in the stored (modified UTF-7) form.
    pub patterns: Vec<Vec<u8>>,
    /// LSUB.
    pub lsub: bool,
    /// The SUBSCRIBED selection option.
    pub subscribed: bool,
    /// RECURSIVEMATCH: also a matching mailbox whose subscribed descendant does not match.
    pub recursive: bool,
    /// The SPECIAL-USE selection option.
    pub special_use: bool,
    /// Mark subscribed mailboxes `\Subscribed` (RFC 5258 §3: only when asked about).
    pub show_subscribed: bool,
    /// The attribute of a listed level that is no mailbox: `\NonExistent` (IMAP4rev2, and
    /// LIST-EXTENDED), else `\Noselect`.
    pub nonexistent: &'static str,
}

/// One LIST/LSUB line to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub attrs: Vec<&'static str>,
    /// `("CHILDINFO" ("SUBSCRIBED"))` follows (RECURSIVEMATCH).
    pub child_subscribed: bool,
    /// The mailbox exists (LIST-STATUS reports only those).
    pub exists: bool,
}

/// Whether `name` matches `pattern` (RFC 3501 §6.3.8: `*` matches anything, `%` anything
/// but the hierarchy separator `/`). Each name position the pattern so far can reach is
/// carried forward, one pattern byte at a time, so the work is at most pattern length ×
/// name length, and it stops once nothing is reachable.
pub fn list_match(pattern: &[u8], name: &[u8]) -> bool {
    let mut reach = vec![false; name.len() + 1];
    let mut next = vec![false; name.len() + 1];
    reach[0] = true;
    let mut prev_wild: Option<u8> = None;
    for &p in pattern {
        let wild = matches!(p, b'*' | b'%');
        // Runs of wildcards match what their widest member matches.
        if wild && prev_wild.is_some_and(|w| w == b'*' || p == b'%') {
            continue;
        }
        prev_wild = wild.then_some(p);
        match p {
            b'*' | b'%' => {
                let mut on = false;
                for j in 0..=name.len() {
                    if p == b'%' && j > 0 && name[j - 1] == b'/' {
                        on = false;
                    }
                    on |= reach[j];
                    next[j] = on;
                }
            }
            _ => {
                next[0] = false;
                for j in 1..=name.len() {
                    next[j] = reach[j - 1] && name[j - 1].eq_ignore_ascii_case(&p);
                }
            }
        }
        if !next.iter().any(|r| *r) {
            return false;
        }
        std::mem::swap(&mut reach, &mut next);
    }
    reach[name.len()]
}

/// The attributes of existing mailbox `name` among `names`: whether it has children, and
/// its SPECIAL-USE attribute (`special`).
pub fn attributes(name: &str, names: &BTreeSet<&str>, special: fn(&str) -> Option<&'static str>) -> Vec<&'static str> {
    let prefix = format!("{name}/");
    let children = names.range(prefix.as_str()..).next().is_some_and(|c| c.starts_with(&prefix));
    let mut attrs = vec![if children { "\\HasChildren" } else { "\\HasNoChildren" }];
    attrs.extend(special(name));
    attrs
}

/// The strict ancestors of `name` (`a` and `a/b` of `a/b/c`).
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('/').map(move |(at, _)| &name[..at])
}

impl Query {
    fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| {
            list_match(p, name.as_bytes()) || (name == "INBOX" && list_match(&p.to_ascii_uppercase(), b"INBOX"))
        })
    }

    /// Whether `name` matches a pattern that ends in `%`: the levels above deeper names
    /// are listed for such patterns only.
    fn matches_at_level(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| p.last() == Some(&b'%') && list_match(p, name.as_bytes()))
    }
}

/// The lines LIST or LSUB sends, in name order. `special` gives a mailbox's SPECIAL-USE
/// attribute.
pub fn select(
    q: &Query,
    names: &[&str],
    subscriptions: &[&str],
    special: fn(&str) -> Option<&'static str>,
) -> Vec<Entry> {
    let existing: BTreeSet<&str> = names.iter().copied().collect();
    let subscribed: BTreeSet<&str> = subscriptions.iter().copied().collect();
    let mut out: BTreeMap<&str, Entry> = BTreeMap::new();
    let listed = |n: &str, exists: bool| Entry {
        name: n.to_string(),
        attrs: if exists { attributes(n, &existing, special) } else { vec![q.nonexistent] },
        child_subscribed: false,
        exists,
    };
    if q.lsub || q.subscribed {
        for s in subscribed.iter().copied().filter(|s| q.matches(s)) {
            let mut e = listed(s, existing.contains(s));
            if !q.lsub && !e.exists {
                e.attrs = vec!["\\NonExistent"];
            }
            if q.show_subscribed {
                e.attrs.push("\\Subscribed");
            }
            out.insert(s, e);
        }
        for s in &subscribed {
            for a in ancestors(s).filter(|a| !subscribed.contains(a)) {
                let (lsub_level, recursive) = (q.lsub && q.matches_at_level(a), q.recursive && q.matches(a));
                if !(lsub_level || recursive) {
                    continue;
                }
                let e = out.entry(a).or_insert_with(|| {
                    let mut e = listed(a, existing.contains(a));
                    if q.lsub {
                        e.attrs = vec!["\\Noselect"];
                    }
                    e
                });
                // CHILDINFO names a subscribed descendant the patterns do not list themselves.
                e.child_subscribed |= recursive && !q.matches(s);
            }
        }
        // RECURSIVEMATCH lists a level only for the CHILDINFO it carries.
        out.retain(|n, e| subscribed.contains(n) || e.child_subscribed || q.lsub);
    } else {
        for n in names.iter().copied().filter(|n| q.matches(n)) {
            if q.special_use && special(n).is_none() {
                continue;
            }
            let mut e = listed(n, true);
            if q.show_subscribed && subscribed.contains(n) {
                e.attrs.push("\\Subscribed");
            }
            out.insert(n, e);
        }
        if !q.special_use {
            for n in names {
                for a in ancestors(n).filter(|a| !existing.contains(a) && q.matches_at_level(a)) {
                    out.entry(a).or_insert_with(|| Entry {
                        name: a.to_string(),
                        attrs: vec![q.nonexistent, "\\HasChildren"],
                        child_subscribed: false,
                        exists: false,
                    });
                }
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_special(_: &str) -> Option<&'static str> {
        None
    }

    fn query(patterns: &[&str]) -> Query {
        Query {
            patterns: patterns.iter().map(|p| p.as_bytes().to_vec()).collect(),
            nonexistent: "\\Noselect",
            ..Query::default()
        }
    }

    fn lines(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                format!("{} ({}){}", e.name, e.attrs.join(" "), if e.child_subscribed { " CHILDINFO" } else { "" })
            })
            .collect()
    }

    #[test]
    fn list_patterns() {
        let yes = |p: &str, n: &str| assert!(list_match(p.as_bytes(), n.as_bytes()), "{p} ~ {n}");
        let no = |p: &str, n: &str| assert!(!list_match(p.as_bytes(), n.as_bytes()), "{p} !~ {n}");
        yes("*", "a/b/c");
        yes("%", "abc");
        no("%", "a/b");
        yes("a/%", "a/b");
        no("a/%", "a/b/c");
        yes("a/*", "a/b/c");
        yes("*c", "a/b/c");
        yes("%/%", "x/y");
        yes("inbox", "INBOX");
        yes("a%*%c", "a/b/c");
        no("a%%c", "a/c");
        yes("", "");
        no("", "a");
        no("a?", "ab");
    }

    #[test]
    fn many_wildcards_cost_no_more_than_the_name() {
        // Exponential for a backtracking matcher; a few thousand steps here.
        let name = "a/".repeat(99) + "b";
        let pattern = "*%".repeat(5000) + "x";
        assert!(!list_match(pattern.as_bytes(), name.as_bytes()));
        let pattern = "%/".repeat(99) + "%" + &"*".repeat(1000);
        assert!(list_match(pattern.as_bytes(), name.as_bytes()));
    }

    #[test]
    fn rfc3501_6_3_9_lsub_lists_unsubscribed_levels_above_subscriptions_as_noselect() {
        let names = ["b", "b/test", "b/test2", "b/test2/test", "b/test3", "b/test3/test3"];
        let subs = ["b/test", "b/test2/test", "b/test3/test3"];
        let q = Query { lsub: true, ..query(&["b/%"]) };
        assert_eq!(
            lines(&select(&q, &names, &subs, no_special)),
            ["b/test (\\HasNoChildren)", "b/test2 (\\Noselect)", "b/test3 (\\Noselect)"]
        );
        let q = Query { lsub: true, ..query(&["*test"]) };
        assert_eq!(
            lines(&select(&q, &names, &subs, no_special)),
            ["b/test (\\HasNoChildren)", "b/test2/test (\\HasNoChildren)"]
        );
    }

    #[test]
    fn rfc5258_3_several_patterns_subscribed_nonexistent_and_recursivematch() {
        let names = ["m", "m/test2", "m/test2/test1", "m/test7", "m/test7/test7", "m/test8/test8", "m/test8/test9"];
        let subs = ["m/test2/test1", "m/test6", "m/test7/test7", "m/test8/test8", "m/test8/test9"];
        let q = query(&["m/*2", "m/test7"]);
        assert_eq!(
            lines(&select(&q, &names, &subs, no_special)),
            ["m/test2 (\\HasChildren)", "m/test7 (\\HasChildren)"]
        );
        let q = Query { subscribed: true, show_subscribed: true, ..query(&["m/*"]) };
        let got = lines(&select(&q, &names, &subs, no_special));
        assert!(got.contains(&"m/test6 (\\NonExistent \\Subscribed)".to_string()), "{got:?}");
        let q = Query { subscribed: true, recursive: true, show_subscribed: true, ..query(&["m*test8"]) };
        assert_eq!(
            lines(&select(&q, &names, &subs, no_special)),
            ["m/test8 (\\Noselect) CHILDINFO", "m/test8/test8 (\\HasNoChildren \\Subscribed)"],
            "CHILDINFO for test8/test9, which the pattern does not list"
        );
        let seven = Query { subscribed: true, recursive: true, show_subscribed: true, ..query(&["m*test7"]) };
        assert_eq!(
            lines(&select(&seven, &names, &subs, no_special)),
            ["m/test7/test7 (\\HasNoChildren \\Subscribed)"],
            "no CHILDINFO when the pattern lists every subscribed child itself"
        );
        let both =
            Query { subscribed: true, recursive: true, show_subscribed: true, ..query(&["m/test2", "m/test2/test1"]) };
        assert_eq!(lines(&select(&both, &names, &subs, no_special)), ["m/test2/test1 (\\HasNoChildren \\Subscribed)"]);
        let one = Query { subscribed: true, recursive: true, ..query(&["m/test2"]) };
        assert_eq!(lines(&select(&one, &names, &subs, no_special)), ["m/test2 (\\HasChildren) CHILDINFO"]);
    }
}
