//! Comparators (RFC 4790: i;octet, i;ascii-casemap, i;ascii-numeric), match types (RFC 5228
//! §2.7.1: :is, :contains, :matches with its wildcards) and relational matches (RFC 5231).
//! Every character comparison is charged to a `Budget`, so no pattern can take unbounded
//! time. This module must never allocate more than the strings it is given.

use std::cmp::Ordering;

use crate::error::RuntimeError;
use crate::program::{Comparator, MatchKind, MatchSpec, RelOp};

/// Work units left for one execution.
#[derive(Debug)]
pub struct Budget {
    pub left: u64,
    pub limit: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget { left: limit, limit }
    }

    pub fn spend(&mut self, units: u64) -> Result<(), RuntimeError> {
        match self.left.checked_sub(units) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(RuntimeError::StepsExhausted(self.limit)),
        }
    }
}

/// Whether any value matches any key; on a `:matches` success, `captures` gets the whole
/// value then each wildcard's text (RFC 5229 §3.2).
pub fn test(
    spec: MatchSpec,
    values: &[String],
    keys: &[String],
    budget: &mut Budget,
    mut captures: Option<&mut Vec<String>>,
) -> Result<bool, RuntimeError> {
    if let MatchKind::Count(op) = spec.kind {
        let count = values.len().to_string();
        return Ok(keys.iter().any(|key| relation(spec.comparator, &count, key, op)));
    }
    for value in values {
        for key in keys {
            budget.spend(1 + value.len() as u64 / 64)?;
            let hit = match spec.kind {
                MatchKind::Is => order(spec.comparator, value, key) == Ordering::Equal,
                MatchKind::Contains => contains(spec.comparator, value, key, budget)?,
                MatchKind::Matches => glob(spec.comparator, value, key, budget, captures.as_deref_mut())?,
                MatchKind::Value(op) => relation(spec.comparator, value, key, op),
                MatchKind::Count(_) => unreachable!("counted above"),
            };
            if hit {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn fold(comparator: Comparator, c: char) -> char {
    match comparator {
        Comparator::Octet => c,
        _ => c.to_ascii_lowercase(),
    }
}

/// The order of two strings under a comparator (RFC 4790 §9).
pub fn order(comparator: Comparator, a: &str, b: &str) -> Ordering {
    match comparator {
        Comparator::Octet => a.as_bytes().cmp(b.as_bytes()),
        Comparator::AsciiCasemap => {
            a.bytes().map(|c| c.to_ascii_lowercase()).cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
        }
        Comparator::AsciiNumeric => numeric_order(a, b),
    }
}

/// i;ascii-numeric: the leading digits as a number; no leading digit is positive infinity.
fn numeric_order(a: &str, b: &str) -> Ordering {
    let number = |s: &str| {
        let digits: &str = &s[..s.bytes().position(|c| !c.is_ascii_digit()).unwrap_or(s.len())];
        (!digits.is_empty()).then(|| digits.trim_start_matches('0').to_string())
    };
    match (number(a), number(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(&y)),
    }
}

fn relation(comparator: Comparator, value: &str, key: &str, op: RelOp) -> bool {
    let ord = order(comparator, value, key);
    match op {
        RelOp::Gt => ord == Ordering::Greater,
        RelOp::Ge => ord != Ordering::Less,
        RelOp::Lt => ord == Ordering::Less,
        RelOp::Le => ord != Ordering::Greater,
        RelOp::Eq => ord == Ordering::Equal,
        RelOp::Ne => ord != Ordering::Equal,
    }
}

/// i;ascii-numeric has no substring operations (RFC 4790 §9.1.1); like Pigeonhole, :contains
/// and :matches with it compare octets (spamtest's default comparator meets `:matches "*"`).
fn contains(comparator: Comparator, value: &str, key: &str, budget: &mut Budget) -> Result<bool, RuntimeError> {
    let value: Vec<char> = value.chars().map(|c| fold(comparator, c)).collect();
    let key: Vec<Pat> = key.chars().map(|c| Pat::Char(fold(comparator, c))).collect();
    Ok(find(&value, 0, &key, budget)?.is_some())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pat {
    Char(char),
    One,
}

/// The first place at or after `from` where `segment` matches `value`.
fn find(value: &[char], from: usize, segment: &[Pat], budget: &mut Budget) -> Result<Option<usize>, RuntimeError> {
    if segment.len() > value.len().saturating_sub(from) {
        return Ok(None);
    }
    for start in from..=value.len() - segment.len() {
        budget.spend(segment.len() as u64 + 1)?;
        if at(value, start, segment) {
            return Ok(Some(start));
        }
    }
    Ok(None)
}

fn at(value: &[char], start: usize, segment: &[Pat]) -> bool {
    segment.iter().zip(&value[start..]).all(|(p, c)| match p {
        Pat::One => true,
        Pat::Char(x) => x == c,
    })
}

/// A `:matches` pattern split at its `*`s: segments of literal characters and `?`s.
fn segments(comparator: Comparator, key: &str) -> Vec<Vec<Pat>> {
    let mut out = vec![Vec::new()];
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push(Vec::new()),
            '?' => out.last_mut().expect("never empty").push(Pat::One),
            '\\' => out.last_mut().expect("never empty").extend(chars.next().map(|c| Pat::Char(fold(comparator, c)))),
            c => out.last_mut().expect("never empty").push(Pat::Char(fold(comparator, c))),
        }
    }
    out
}

/// `:matches`: each `*` takes as little as it can, left to right, and the last takes the
/// rest; placing each middle segment at its leftmost fit is exact for `*`/`?` patterns.
fn glob(
    comparator: Comparator,
    value: &str,
    key: &str,
    budget: &mut Budget,
    captures: Option<&mut Vec<String>>,
) -> Result<bool, RuntimeError> {
    let original: Vec<char> = value.chars().collect();
    let folded: Vec<char> = original.iter().map(|&c| fold(comparator, c)).collect();
    let segs = segments(comparator, key);
    let Some(starts) = place(&folded, &segs, budget)? else { return Ok(false) };
    if let Some(captures) = captures {
        captures.clear();
        captures.push(value.to_string());
        let mut prev_end = 0;
        for (i, (seg, &start)) in segs.iter().zip(&starts).enumerate() {
            if i > 0 {
                captures.push(original[prev_end..start].iter().collect());
            }
            for (j, p) in seg.iter().enumerate() {
                if *p == Pat::One {
                    captures.push(original[start + j].to_string());
                }
            }
            prev_end = start + seg.len();
        }
    }
    Ok(true)
}

/// Where each segment starts, or None when the pattern does not match.
fn place(value: &[char], segs: &[Vec<Pat>], budget: &mut Budget) -> Result<Option<Vec<usize>>, RuntimeError> {
    let (first, last) = (&segs[0], &segs[segs.len() - 1]);
    if segs.len() == 1 {
        let whole = value.len() == first.len() && at(value, 0, first);
        budget.spend(value.len() as u64 + 1)?;
        return Ok(whole.then(|| vec![0]));
    }
    if first.len() + last.len() > value.len() || !at(value, 0, first) {
        return Ok(None);
    }
    let tail = value.len() - last.len();
    if !at(value, tail, last) {
        return Ok(None);
    }
    let mut starts = vec![0];
    let mut from = first.len();
    for seg in &segs[1..segs.len() - 1] {
        match find(&value[..tail], from, seg, budget)? {
            Some(start) => {
                starts.push(start);
                from = start + seg.len();
            }
            None => return Ok(None),
        }
    }
    starts.push(tail);
    Ok(Some(starts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: MatchKind, comparator: Comparator) -> MatchSpec {
        MatchSpec { kind, comparator }
    }

    fn hit(kind: MatchKind, comparator: Comparator, value: &str, key: &str) -> bool {
        test(spec(kind, comparator), &[value.to_string()], &[key.to_string()], &mut Budget::new(1 << 30), None).unwrap()
    }

    fn caps(value: &str, key: &str) -> Vec<String> {
        let mut c = Vec::new();
        let ok = test(
            spec(MatchKind::Matches, Comparator::AsciiCasemap),
            &[value.into()],
            &[key.into()],
            &mut Budget::new(1 << 30),
            Some(&mut c),
        )
        .unwrap();
        assert!(ok, "{value} ~ {key}");
        c
    }

    #[test]
    fn rfc5228_2_7_1_match_types() {
        use Comparator::*;
        assert!(hit(MatchKind::Is, AsciiCasemap, "Hello", "hello"));
        assert!(!hit(MatchKind::Is, Octet, "Hello", "hello"));
        assert!(hit(MatchKind::Contains, AsciiCasemap, "Make MONEY fast", "money"));
        assert!(hit(MatchKind::Contains, Octet, "abc", ""));
        assert!(hit(MatchKind::Matches, AsciiCasemap, "Frobnitzm", "fr*n?tz*"));
        assert!(hit(MatchKind::Matches, Octet, "a*b", "a\\*b"));
        assert!(!hit(MatchKind::Matches, Octet, "axb", "a\\*b"));
        assert!(hit(MatchKind::Matches, Octet, "", "*"));
        assert!(!hit(MatchKind::Matches, Octet, "ab", "a?b"));
        assert!(hit(MatchKind::Matches, Octet, "aXb", "a?b"));
        assert!(!hit(MatchKind::Matches, Octet, "abc", "*c*b*"));
    }

    #[test]
    fn rfc5229_3_2_captures_are_shortest_left_to_right() {
        assert_eq!(caps("hello world lo", "*l*o*"), vec!["hello world lo", "he", "l", " world lo"]);
        assert_eq!(caps("a@b@c", "*@*"), vec!["a@b@c", "a", "b@c"]);
        assert_eq!(caps("xyz", "?*"), vec!["xyz", "x", "yz"]);
    }

    #[test]
    fn rfc4790_9_ascii_numeric_and_rfc5231_relations() {
        use Comparator::AsciiNumeric;
        assert!(hit(MatchKind::Is, AsciiNumeric, "0010", "10"));
        assert!(hit(MatchKind::Value(RelOp::Gt), AsciiNumeric, "abc", "99999999999999999999999"));
        assert!(hit(MatchKind::Value(RelOp::Lt), AsciiNumeric, "9", "10"));
        assert!(hit(MatchKind::Value(RelOp::Gt), Comparator::AsciiCasemap, "b", "A"));
        let two = ["x".to_string(), "y".to_string()];
        let count = |op, key: &str| {
            test(spec(MatchKind::Count(op), AsciiNumeric), &two, &[key.into()], &mut Budget::new(100), None).unwrap()
        };
        assert!(count(RelOp::Eq, "2"));
        assert!(count(RelOp::Ge, "1"));
        assert!(!count(RelOp::Gt, "2"));
    }

    #[test]
    fn pathological_patterns_hit_the_budget() {
        let value = "a".repeat(4000);
        let key = "*a".repeat(1000) + "b*";
        let mut budget = Budget::new(1_000_000);
        let r = test(spec(MatchKind::Matches, Comparator::Octet), &[value], &[key], &mut budget, None);
        assert!(matches!(r, Ok(false) | Err(RuntimeError::StepsExhausted(_))));
    }
}
