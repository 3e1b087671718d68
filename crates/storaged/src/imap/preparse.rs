//! imap-codec's gaps, in one place: the syntax of extensions it does not parse, taken out of
//! a command before it parses the rest. ESEARCH/ESORT `RETURN` options (RFC 4731, 5267),
//! SEARCHRES `$` (RFC 5182), LIST-EXTENDED options and several patterns (RFC 5258) and the
//! FETCH items of later extensions (PREVIEW, RFC 8970) here;
//! MULTIAPPEND/CATENATE in [`super::append`], NOTIFY in [`super::notify`] and CANCELUPDATE in
//! [`super::context`], which own their commands' syntax. Pure; each is bounded by the
//! command line the reader already bounded.

use super::framing::literal_suffix;

/// Whether the command's first word after the tag is one of `verbs` (ASCII, any case):
/// looked at before anything converts the command (an APPEND may carry 30 MB) to text.
pub fn verb_is(bytes: &[u8], verbs: &[&str]) -> bool {
    let line = &bytes[..bytes.iter().position(|b| *b == b'\r' || *b == b'\n').unwrap_or(bytes.len())];
    let mut words = line.splitn(3, |b| *b == b' ');
    let _tag = words.next();
    words.next().is_some_and(|v| verbs.iter().any(|w| v.eq_ignore_ascii_case(w.as_bytes())))
}

/// ESEARCH (RFC 4731) return options of a `[UID] SEARCH RETURN (...)` command, which the
/// parser does not know: the command without them, and the options (upper case; an empty
/// list means `ALL`). `None` for any other command.
pub fn split_search_return(bytes: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    if !verb_is(bytes, &["SEARCH", "SORT", "UID"]) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let (tag, rest) = text.split_once(' ')?;
    let upper = rest.to_ascii_uppercase();
    let prefix = ["UID SEARCH RETURN (", "SEARCH RETURN (", "UID SORT RETURN (", "SORT RETURN ("]
        .into_iter()
        .find(|p| upper.starts_with(p))?;
    let after = &rest[prefix.len()..];
    let close = after.find(')')?;
    let options: Vec<String> = after[..close].split_whitespace().map(|o| o.to_ascii_uppercase()).collect();
    let verb = &rest[..prefix.len() - "RETURN (".len()];
    let remainder = after[close + 1..].trim_start();
    Some((format!("{tag} {verb}{remainder}").into_bytes(), options))
}

/// A FETCH data item imap-codec does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchExtra {
    /// `PREVIEW` or `PREVIEW (LAZY)` (RFC 8970).
    Preview { lazy: bool },
    /// `EMAILID` (RFC 8474).
    EmailId,
    /// `THREADID` (RFC 8474).
    ThreadId,
    /// `SAVEDATE` (RFC 8514).
    SaveDate,
}

/// The FETCH data items of [`FetchExtra`] taken out of a `[UID] FETCH` command: the command
/// without them (an item list left empty asks for `UID`, which a FETCH response may always
/// carry), and the items in the order given. `None` if the command is not a FETCH or has none.
pub fn split_fetch_extras(bytes: &[u8]) -> Option<(Vec<u8>, Vec<FetchExtra>)> {
    if !verb_is(bytes, &["FETCH", "UID"]) {
        return None;
    }
    let toks = tokens(bytes);
    let is =
        |k: usize, word: &str| toks.get(k).is_some_and(|&(a, b)| bytes[a..b].eq_ignore_ascii_case(word.as_bytes()));
    let first = if is(1, "UID") && is(2, "FETCH") {
        4
    } else if is(1, "FETCH") {
        3
    } else {
        return None;
    };
    let (mut extras, mut cut) = (Vec::new(), Vec::new());
    let listed = is(first, "(");
    let (mut k, mut depth) = (first + usize::from(listed), usize::from(listed));
    while k < toks.len() && (depth > 0 || k == first) {
        let top = depth == usize::from(listed);
        if top && is(k, "PREVIEW") {
            let lazy = is(k + 1, "(") && is(k + 2, "LAZY") && is(k + 3, ")");
            let end = if lazy { k + 3 } else { k };
            extras.push(FetchExtra::Preview { lazy });
            cut.push((toks[k].0, toks[end].1));
            k = end + 1;
            continue;
        }
        let id =
            [("EMAILID", FetchExtra::EmailId), ("THREADID", FetchExtra::ThreadId), ("SAVEDATE", FetchExtra::SaveDate)]
                .into_iter()
                .find_map(|(word, item)| is(k, word).then_some(item));
        if let Some(id) = id.filter(|_| top) {
            extras.push(id);
            cut.push(toks[k]);
            k += 1;
            continue;
        }
        depth = match &bytes[toks[k].0..toks[k].1] {
            b"(" => depth + 1,
            b")" => depth.saturating_sub(1),
            _ => depth,
        };
        k += 1;
    }
    if extras.is_empty() {
        return None;
    }
    let start = toks[first].0;
    if !listed {
        // A lone item: it becomes UID.
        return Some(([&bytes[..start], b"UID", &bytes[toks[first].1..]].concat(), extras));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    for (mut a, mut b) in cut {
        // Take one space along, so the list stays `(A B)`.
        if a > at && bytes[a - 1] == b' ' {
            a -= 1;
        } else if bytes.get(b) == Some(&b' ') {
            b += 1;
        }
        out.extend_from_slice(&bytes[at..a]);
        at = b;
    }
    out.extend_from_slice(&bytes[at..]);
    if out[start..].starts_with(b"()") {
        out.splice(start + 1..start + 1, *b"UID");
    }
    Some((out, extras))
}

/// `STATUS mailbox (... MAILBOXID ...)` (RFC 8474 §4): the command without the item, and
/// whether the item list had nothing else (then it asks for `UIDNEXT`, which the caller
/// leaves out of its answer). `None` if the command is not a STATUS asking for MAILBOXID.
pub fn split_status_mailboxid(bytes: &[u8]) -> Option<(Vec<u8>, bool)> {
    if !verb_is(bytes, &["STATUS"]) {
        return None;
    }
    let toks = tokens(bytes);
    let at = toks.iter().position(|&(a, b)| bytes[a..b].eq_ignore_ascii_case(b"MAILBOXID"))?;
    // The item list is the last parenthesized group: the item is inside it.
    let open = toks[..at].iter().rposition(|&(a, b)| &bytes[a..b] == b"(")?;
    let close = at + toks[at..].iter().position(|&(a, b)| &bytes[a..b] == b")")?;
    let others: Vec<&[u8]> =
        toks[open + 1..close].iter().filter(|t| **t != toks[at]).map(|&(a, b)| &bytes[a..b]).collect();
    let alone = others.is_empty();
    let list = if alone { b"UIDNEXT".to_vec() } else { others.join(&b' ') };
    let cmd = [&bytes[..toks[open].1], &list, &bytes[toks[close].0..]].concat();
    Some((cmd, alone))
}

/// A SEARCH key of a later extension that imap-codec does not parse, for the session to
/// resolve into the UIDs of the selected mailbox it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchExtra<'a> {
    /// `EMAILID id` and `THREADID id` (RFC 8474 §6).
    EmailId(&'a str),
    ThreadId(&'a str),
    /// `SAVEDBEFORE`, `SAVEDON`, `SAVEDSINCE date` (RFC 8514 §4.3).
    SavedBefore(chrono::NaiveDate),
    SavedOn(chrono::NaiveDate),
    SavedSince(chrono::NaiveDate),
}

/// A SEARCH (or SORT, THREAD) with [`SearchExtra`] keys, each replaced by `UID set`, the
/// set `uids_of` gives, and `SAVEDATESUPPORTED` (RFC 8514 §4.3) by `ALL`: every mailbox
/// here records save dates. `None` if the command uses none of them; a SAVED* key whose
/// date is not an IMAP date is left for the parser to refuse.
pub fn substitute_search_extras(bytes: &[u8], uids_of: impl Fn(SearchExtra<'_>) -> String) -> Option<Vec<u8>> {
    if !verb_is(bytes, &["SEARCH", "SORT", "THREAD", "UID"]) {
        return None;
    }
    let toks = tokens(bytes);
    let is =
        |k: usize, word: &str| toks.get(k).is_some_and(|&(a, b)| bytes[a..b].eq_ignore_ascii_case(word.as_bytes()));
    let verb = if is(1, "UID") { 2 } else { 1 };
    if !["SEARCH", "SORT", "THREAD"].iter().any(|v| is(verb, v)) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    let mut k = verb + 1;
    while k < toks.len() {
        // A string argument is not a key (`SUBJECT EMAILID`).
        if STRING_KEYS.iter().any(|w| is(k, w)) {
            k += 2;
            continue;
        }
        if is(k, "HEADER") {
            k += 3;
            continue;
        }
        let arg = toks.get(k + 1).map(|&(a, b)| std::str::from_utf8(&bytes[a..b]).unwrap_or("").trim_matches('"'));
        let key = if is(k, "SAVEDATESUPPORTED") {
            Some(("ALL".to_string(), k + 1))
        } else {
            search_extra(&is, k, arg).map(|key| (format!("UID {}", uids_of(key)), k + 2))
        };
        match key {
            Some((text, next)) => {
                out.extend_from_slice(&bytes[at..toks[k].0]);
                out.extend_from_slice(text.as_bytes());
                at = toks[next - 1].1;
                k = next;
            }
            None => k += 1,
        }
    }
    (at > 0).then(|| {
        out.extend_from_slice(&bytes[at..]);
        out
    })
}

/// The [`SearchExtra`] at token `k` whose argument is `arg`, if it is one.
fn search_extra<'a>(is: &impl Fn(usize, &str) -> bool, k: usize, arg: Option<&'a str>) -> Option<SearchExtra<'a>> {
    let arg = arg?;
    let date = || chrono::NaiveDate::parse_from_str(arg, "%d-%b-%Y").ok();
    if is(k, "EMAILID") {
        Some(SearchExtra::EmailId(arg))
    } else if is(k, "THREADID") {
        Some(SearchExtra::ThreadId(arg))
    } else if is(k, "SAVEDBEFORE") {
        date().map(SearchExtra::SavedBefore)
    } else if is(k, "SAVEDON") {
        date().map(SearchExtra::SavedOn)
    } else if is(k, "SAVEDSINCE") {
        date().map(SearchExtra::SavedSince)
    } else {
        None
    }
}

/// A message number no mailbox reaches: what `$` becomes when the saved result is empty,
/// so the command names nothing (RFC 5182 §2.1: it succeeds and affects no message).
pub const SAVED_NOTHING: u32 = u32::MAX;

/// Search keys followed by one string argument: a `$` there is that string, not a set.
const STRING_KEYS: [&str; 9] = ["BCC", "BODY", "CC", "FROM", "KEYWORD", "SUBJECT", "TEXT", "TO", "UNKEYWORD"];
/// Atoms, quoted strings and parentheses scanned on one command line.
const TOKENS_MAX: usize = 4096;

/// The length of the literal announced at `at` (`{n}` or `{n+}`, then CRLF): the bytes of
/// announcement and data together, if all of it is in `bytes`.
fn literal_at(bytes: &[u8], at: usize) -> Option<usize> {
    let close = at + bytes[at..].iter().take(22).position(|b| *b == b'}')?;
    let (n, _) = literal_suffix(&bytes[..=close])?;
    let data = close + 1 + 2;
    (bytes.get(close + 1..data) == Some(b"\r\n")).then_some(())?;
    let end = data.checked_add(usize::try_from(n).ok()?)?;
    (end <= bytes.len()).then_some(end - at)
}

/// The byte ranges of a whole command's tokens: atoms, quoted strings and literals (each
/// one token), with each parenthesis a token of its own. Stops at the end of the command.
fn tokens(line: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() && out.len() < TOKENS_MAX {
        match line[i] {
            b' ' => i += 1,
            b'{' | b'~' if line[i] == b'{' || line.get(i + 1) == Some(&b'{') => {
                // `~{n}` is a literal8 (RFC 3516).
                let brace = if line[i] == b'~' { i + 1 } else { i };
                let Some(len) = literal_at(line, brace) else { break };
                out.push((i, brace + len));
                i = brace + len;
            }
            b'\r' | b'\n' => break,
            b'(' | b')' => {
                out.push((i, i + 1));
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < line.len() && line[i] != b'"' {
                    i += if line[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(line.len());
                out.push((start, i));
            }
            _ => {
                let start = i;
                while i < line.len() && !b" ()\r\n".contains(&line[i]) {
                    i += 1;
                }
                out.push((start, i));
            }
        }
    }
    out
}

/// The command with `$` (RFC 5182: the result the last `SEARCH RETURN (SAVE)` kept) replaced
/// wherever it stands for a message set: the set of FETCH, STORE, COPY, MOVE and UID
/// EXPUNGE (`uids` for UID commands, `seqs` otherwise), and a search key (as `UID uids`).
/// `None` if the command uses no `$`.
pub fn substitute_saved(bytes: &[u8], uids: &str, seqs: &str) -> Option<Vec<u8>> {
    let toks = tokens(bytes);
    let text = |k: usize| toks.get(k).map(|&(a, b)| &bytes[a..b]);
    let is = |k: usize, word: &str| text(k).is_some_and(|t| t.eq_ignore_ascii_case(word.as_bytes()));
    let uid = is(1, "UID");
    let verb = if uid { 2 } else { 1 };
    let mut replace: Vec<(usize, String)> = Vec::new();
    if ["FETCH", "STORE", "COPY", "MOVE"].iter().any(|v| is(verb, v)) || (uid && is(verb, "EXPUNGE")) {
        if text(verb + 1) == Some(b"$") {
            replace.push((verb + 1, if uid { uids } else { seqs }.to_string()));
        }
    } else if is(verb, "SEARCH") {
        let mut k = verb + 1;
        if is(k, "RETURN") && text(k + 1) == Some(b"(") {
            k += 2;
            while k < toks.len() && text(k) != Some(b")") {
                k += 1;
            }
            k += 1;
        }
        if is(k, "CHARSET") {
            k += 2;
        }
        for i in k..toks.len() {
            if text(i) != Some(b"$") {
                continue;
            }
            let after_string_key =
                STRING_KEYS.iter().any(|key| is(i - 1, key)) || is(i - 1, "HEADER") || is(i - 2, "HEADER");
            if is(i - 1, "UID") {
                replace.push((i, uids.to_string()));
            } else if !after_string_key {
                replace.push((i, format!("UID {uids}")));
            }
        }
    }
    if replace.is_empty() {
        return None;
    }
    let mut out = bytes.to_vec();
    for (k, with) in replace.into_iter().rev() {
        let (a, b) = toks[k];
        out.splice(a..b, with.into_bytes());
    }
    Some(out)
}

/// LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819) options, which the parser does not
/// know: selection options before the reference, return options after the pattern.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// Upper-case selection options (`SUBSCRIBED`, `SPECIAL-USE`, `RECURSIVEMATCH`, ...).
    pub select: Vec<String>,
    /// Upper-case return options other than STATUS.
    pub ret: Vec<String>,
    /// STATUS items requested with `RETURN (STATUS (...))`.
    pub status: Vec<String>,
    /// Patterns after the first of `LIST ref (p1 p2 ...)` (RFC 5258 §3), unquoted.
    pub more_patterns: Vec<String>,
}

/// Selection options RFC 5258 and RFC 6154 define; any other is a BAD command.
const SELECTION_OPTIONS: &[&str] = &["SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"];
/// Return options RFC 5258, 5819 and 6154 define (STATUS is taken apart separately).
const RETURN_OPTIONS: &[&str] = &["SUBSCRIBED", "CHILDREN", "SPECIAL-USE"];

/// The first token of `text` (a quoted string with its quotes, or an atom) and the rest.
fn astring_token(text: &str) -> Option<(&str, &str)> {
    if let Some(inner) = text.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in inner.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => return Some((&text[..i + 2], &text[i + 2..])),
                _ => escaped = false,
            }
        }
        return None;
    }
    let end = text.find([' ', '(']).unwrap_or(text.len());
    (end > 0).then(|| (&text[..end], &text[end..]))
}

/// The text of an astring token: a quoted string unquoted and unescaped, an atom as it is.
fn astring_text(token: &str) -> String {
    match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().unwrap_or(c) } else { c });
            }
            out
        }
        None => token.to_string(),
    }
}

/// `ref (p1 p2 ...)`: the reference token and the pattern tokens, if `args` has that form.
fn pattern_list(args: &str) -> Option<Result<(&str, Vec<String>), String>> {
    let (reference, rest) = astring_token(args.trim_start())?;
    let rest = rest.trim_start();
    if !rest.starts_with('(') {
        return None;
    }
    Some(match paren_items(rest) {
        Some((items, after)) if after.trim().is_empty() && !items.is_empty() => Ok((reference, items)),
        _ => Err("malformed list of patterns".into()),
    })
}

/// RFC 5258 §3: an unknown selection or return option, or RECURSIVEMATCH without an option
/// it could refine, is a BAD command.
fn check_list_options(opts: &ListOptions) -> Result<(), String> {
    if let Some(o) = opts.select.iter().find(|o| !SELECTION_OPTIONS.contains(&o.as_str())) {
        return Err(format!("unknown selection option {o}"));
    }
    let refined = opts.select.iter().any(|o| o == "SUBSCRIBED" || o == "SPECIAL-USE");
    if opts.select.iter().any(|o| o == "RECURSIVEMATCH") && !refined {
        return Err("RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE".into());
    }
    match opts.ret.iter().find(|o| !RETURN_OPTIONS.contains(&o.as_str())) {
        Some(o) => Err(format!("unknown return option {o}")),
        None => Ok(()),
    }
}

/// Split a parenthesized list at the start of `text` into its top-level items (nested
/// lists stay as one item); returns the items and the rest after the closing paren.
fn paren_items(text: &str) -> Option<(Vec<String>, &str)> {
    let inner = text.strip_prefix('(')?;
    let (mut depth, mut items, mut cur) = (0usize, Vec::new(), String::new());
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in inner.char_indices() {
        if quoted {
            cur.push(c);
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => quoted = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                cur.push(c);
            }
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' if depth == 0 => {
                if !cur.trim().is_empty() {
                    items.push(cur.trim().to_string());
                }
                return Some((items, &inner[i + 1..]));
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ' ' if depth == 0 => {
                if !cur.trim().is_empty() {
                    items.push(cur.trim().to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    None
}

/// The LIST command without its extended options, and the options; `None` for a plain
/// LIST or another command. `Err` carries a reason for BAD.
pub fn split_list_extended(bytes: &[u8]) -> Option<Result<(Vec<u8>, ListOptions), String>> {
    if !verb_is(bytes, &["LIST"]) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let (tag, rest) = text.split_once(' ')?;
    if !rest.get(..5)?.eq_ignore_ascii_case("LIST ") {
        return None;
    }
    let mut args = rest[5..].trim_end_matches(['\r', '\n']).trim_start().to_string();
    let mut opts = ListOptions::default();
    let mut extended = false;
    if args.starts_with('(') {
        let (items, after) = match paren_items(&args) {
            Some(x) => x,
            None => return Some(Err("unbalanced selection options".into())),
        };
        opts.select = items.iter().map(|i| i.to_ascii_uppercase()).collect();
        args = after.trim_start().to_string();
        extended = true;
    }
    let upper = args.to_ascii_uppercase();
    if let Some(at) = upper.rfind(" RETURN (") {
        let (items, after) = match paren_items(&args[at + 8..]) {
            Some(x) => x,
            None => return Some(Err("unbalanced return options".into())),
        };
        if !after.trim().is_empty() {
            return Some(Err("text after the return options".into()));
        }
        let mut items = items.into_iter();
        while let Some(item) = items.next() {
            let up = item.to_ascii_uppercase();
            if up == "STATUS" {
                match items.next().as_deref().and_then(paren_items) {
                    Some((names, rest)) if rest.trim().is_empty() && !names.is_empty() => {
                        opts.status = names.iter().map(|n| n.to_ascii_uppercase()).collect();
                    }
                    _ => return Some(Err("STATUS needs a list of items".into())),
                }
            } else {
                opts.ret.push(up);
            }
        }
        args.truncate(at);
        extended = true;
    }
    match pattern_list(&args) {
        Some(Ok((reference, patterns))) => {
            opts.more_patterns = patterns[1..].iter().map(|p| astring_text(p)).collect();
            args = format!("{reference} {}", patterns[0]);
        }
        Some(Err(why)) => return Some(Err(why)),
        None if !extended => return None,
        None => {}
    }
    if let Err(why) = check_list_options(&opts) {
        return Some(Err(why));
    }
    Some(Ok((format!("{tag} LIST {args}\r\n").into_bytes(), opts)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc8474_status_mailboxid_and_search_by_object_id() {
        let status =
            |c: &str| split_status_mailboxid(c.as_bytes()).map(|(c, alone)| (String::from_utf8(c).unwrap(), alone));
        assert_eq!(
            status("a STATUS INBOX (MESSAGES MAILBOXID)\r\n"),
            Some(("a STATUS INBOX (MESSAGES)\r\n".into(), false))
        );
        assert_eq!(status("a STATUS \"x y\" (MAILBOXID)\r\n"), Some(("a STATUS \"x y\" (UIDNEXT)\r\n".into(), true)));
        assert_eq!(status("a STATUS INBOX (MESSAGES)\r\n"), None);
        let sub = |c: &str| {
            substitute_search_extras(c.as_bytes(), |key| match key {
                SearchExtra::EmailId(id) => format!("E{id}"),
                SearchExtra::ThreadId(id) => format!("T{id}"),
                other => format!("{other:?}"),
            })
            .map(|c| String::from_utf8(c).unwrap())
        };
        assert_eq!(sub("a SEARCH EMAILID M12 SEEN\r\n"), Some("a SEARCH UID EM12 SEEN\r\n".into()));
        assert_eq!(
            sub("a UID SEARCH OR THREADID T1 emailid \"M2\"\r\n"),
            Some("a UID SEARCH OR UID TT1 UID EM2\r\n".into())
        );
        assert_eq!(sub("a SEARCH SUBJECT EMAILID\r\n"), None, "a key needs its argument");
        assert_eq!(sub("a SEARCH SUBJECT EMAILID SEEN\r\n"), None, "a string argument is no key");
        assert_eq!(sub("a FETCH 1 EMAILID\r\n"), None);
        assert_eq!(sub("a UID FETCH 1:* (EMAILID)\r\n"), None);
    }

    #[test]
    fn rfc8514_save_date_keys_become_uid_sets() {
        let sub = |c: &str| {
            substitute_search_extras(c.as_bytes(), |key| match key {
                SearchExtra::SavedBefore(d) => format!("B{}", d.format("%F")),
                SearchExtra::SavedOn(d) => format!("O{}", d.format("%F")),
                SearchExtra::SavedSince(d) => format!("S{}", d.format("%F")),
                other => format!("{other:?}"),
            })
            .map(|c| String::from_utf8(c).unwrap())
        };
        assert_eq!(
            sub("a SEARCH SAVEDSINCE 1-Feb-2026 NOT SAVEDBEFORE \"07-dec-2026\"\r\n"),
            Some("a SEARCH UID S2026-02-01 NOT UID B2026-12-07\r\n".into())
        );
        assert_eq!(sub("a UID SEARCH savedon 3-Mar-2025\r\n"), Some("a UID SEARCH UID O2025-03-03\r\n".into()));
        assert_eq!(sub("a SEARCH SAVEDATESUPPORTED\r\n"), Some("a SEARCH ALL\r\n".into()));
        assert_eq!(sub("a SEARCH SEEN SAVEDATESUPPORTED UNSEEN\r\n"), Some("a SEARCH SEEN ALL UNSEEN\r\n".into()));
        assert_eq!(sub("a SEARCH SAVEDON 31-Feb-2026\r\n"), None, "not a date: the parser refuses it");
        assert_eq!(sub("a SEARCH SAVEDON\r\n"), None, "a key needs its argument");
        assert_eq!(sub("a SEARCH SUBJECT SAVEDATESUPPORTED\r\n"), None, "a string argument is no key");
    }

    #[test]
    fn rfc8970_preview_items_are_taken_out_of_fetch() {
        let split = |c: &str| split_fetch_extras(c.as_bytes()).map(|(cmd, x)| (String::from_utf8(cmd).unwrap(), x));
        let lazy = FetchExtra::Preview { lazy: true };
        let plain = FetchExtra::Preview { lazy: false };
        assert_eq!(split("a FETCH 1:* (UID PREVIEW)\r\n"), Some(("a FETCH 1:* (UID)\r\n".into(), vec![plain])));
        assert_eq!(
            split("a UID FETCH 1 (PREVIEW (LAZY) BODY.PEEK[HEADER.FIELDS (FROM)] FLAGS) (CHANGEDSINCE 5)\r\n"),
            Some(("a UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM)] FLAGS) (CHANGEDSINCE 5)\r\n".into(), vec![lazy]))
        );
        assert_eq!(split("a FETCH 2 PREVIEW\r\n"), Some(("a FETCH 2 UID\r\n".into(), vec![plain])));
        assert_eq!(split("a fetch 2 (preview)\r\n"), Some(("a fetch 2 (UID)\r\n".into(), vec![plain])));
        assert_eq!(split("a FETCH 1 (FLAGS)\r\n"), None);
        assert_eq!(split("a SEARCH PREVIEW\r\n"), None);
        assert_eq!(
            split("a UID FETCH 1:* (EMAILID THREADID FLAGS)\r\n"),
            Some(("a UID FETCH 1:* (FLAGS)\r\n".into(), vec![FetchExtra::EmailId, FetchExtra::ThreadId]))
        );
        // Only at the top of the item list: a header field named PREVIEW stays.
        assert_eq!(split("a FETCH 1 (BODY[HEADER.FIELDS (PREVIEW)])\r\n"), None);
    }

    use super::*;

    #[test]
    fn search_return_options_are_split_off() {
        let (cmd, opts) = split_search_return(b"a1 UID SEARCH RETURN (MIN count) UNSEEN\r\n").unwrap();
        assert_eq!(
            (cmd.as_slice(), opts),
            (&b"a1 UID SEARCH UNSEEN\r\n"[..], vec!["MIN".to_string(), "COUNT".to_string()])
        );
        let (cmd, opts) = split_search_return(b"a2 search return () ALL\r\n").unwrap();
        assert_eq!((cmd.as_slice(), opts.len()), (&b"a2 search ALL\r\n"[..], 0));
        assert!(split_search_return(b"a3 SEARCH UNSEEN\r\n").is_none());
        assert!(split_search_return(b"a4 SEARCH RETURN (MIN UNSEEN\r\n").is_none());
    }

    #[test]
    fn rfc5258_3_unknown_options_are_bad_and_several_patterns_are_taken() {
        for bad in [
            &b"a LIST (imaptest) \"\" \"\"\r\n"[..],
            b"a LIST (recursivematch) \"\" \"\"\r\n",
            b"a LIST (recursivematch remote) \"\" \"\"\r\n",
            b"a LIST \"\" \"\" return (imaptest)\r\n",
            b"a LIST \"\" (a b\r\n",
        ] {
            assert!(split_list_extended(bad).unwrap().is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(split_list_extended(b"a LIST (subscribed recursivematch) \"\" *\r\n").unwrap().is_ok());
        assert!(split_list_extended(b"a LIST (remote) \"\" %\r\n").unwrap().is_ok());
        let (cmd, o) = split_list_extended(b"a LIST \"\" (box/*2 box/test3)\r\n").unwrap().unwrap();
        assert_eq!((cmd.as_slice(), o.more_patterns), (&b"a LIST \"\" box/*2\r\n"[..], vec!["box/test3".to_string()]));
    }

    #[test]
    fn list_extended_options_are_split_off() {
        let (cmd, o) =
            split_list_extended(b"a LIST (SUBSCRIBED) \"\" \"*\" RETURN (STATUS (MESSAGES UNSEEN) CHILDREN)\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(cmd, b"a LIST \"\" \"*\"\r\n");
        assert_eq!(o.select, vec!["SUBSCRIBED"]);
        assert_eq!(o.ret, vec!["CHILDREN"]);
        assert_eq!(o.status, vec!["MESSAGES", "UNSEEN"]);
        let (cmd, o) = split_list_extended(b"b list \"\" % return (special-use)\r\n").unwrap().unwrap();
        assert_eq!((cmd.as_slice(), o.ret), (&b"b LIST \"\" %\r\n"[..], vec!["SPECIAL-USE".to_string()]));
        assert!(split_list_extended(b"c LIST \"\" *\r\n").is_none());
        assert!(split_list_extended(b"d LSUB \"\" *\r\n").is_none());
        assert!(split_list_extended(b"e LIST (SUBSCRIBED \"\" *\r\n").unwrap().is_err());
        let (cmd, o) = split_list_extended(b"f LIST () \"\" (a \"b c\" %)\r\n").unwrap().unwrap();
        assert_eq!((cmd.as_slice(), o.more_patterns), (&b"f LIST \"\" a\r\n"[..], vec!["b c".to_string(), "%".into()]));
        assert!(split_list_extended(b"g LIST \"\" * RETURN (STATUS)\r\n").unwrap().is_err());
    }

    #[test]
    fn saved_results_stand_in_for_dollar() {
        let sub = |cmd: &str| substitute_saved(cmd.as_bytes(), "4:7", "2,5").map(|b| String::from_utf8(b).unwrap());
        assert_eq!(sub("a FETCH $ (FLAGS)\r\n").as_deref(), Some("a FETCH 2,5 (FLAGS)\r\n"));
        assert_eq!(sub("a UID FETCH $ (FLAGS)\r\n").as_deref(), Some("a UID FETCH 4:7 (FLAGS)\r\n"));
        assert_eq!(sub("a uid expunge $\r\n").as_deref(), Some("a uid expunge 4:7\r\n"));
        assert_eq!(sub("a MOVE $ Trash\r\n").as_deref(), Some("a MOVE 2,5 Trash\r\n"));
        assert_eq!(sub("a STORE $ +FLAGS (\\Seen)\r\n").as_deref(), Some("a STORE 2,5 +FLAGS (\\Seen)\r\n"));
        assert_eq!(
            sub("a SEARCH RETURN (SAVE) CHARSET UTF-8 ($ OR UID $ SUBJECT $) NOT $\r\n").as_deref(),
            Some("a SEARCH RETURN (SAVE) CHARSET UTF-8 (UID 4:7 OR UID 4:7 SUBJECT $) NOT UID 4:7\r\n")
        );
        assert_eq!(sub("a SEARCH HEADER $ $ KEYWORD $\r\n"), None);
        // After a literal too (the literal's bytes are one token, whatever they hold).
        assert_eq!(
            sub("a SEARCH SUBJECT {1}\r\n$ $ NOT $\r\n").as_deref(),
            Some("a SEARCH SUBJECT {1}\r\n$ UID 4:7 NOT UID 4:7\r\n")
        );
        assert_eq!(
            sub("a SEARCH SUBJECT {3+}\r\n$\r\n $\r\n").as_deref(),
            Some("a SEARCH SUBJECT {3+}\r\n$\r\n UID 4:7\r\n")
        );
        assert_eq!(sub("a SEARCH SUBJECT {99}\r\n$ $\r\n"), None, "a literal longer than the command");
        // Not a set: a mailbox named `$`, a keyword, a quoted string, no `$` at all.
        assert_eq!(sub("a COPY 1 $\r\n"), None);
        assert_eq!(sub("a STORE 1 +FLAGS ($)\r\n"), None);
        assert_eq!(sub("a SEARCH SUBJECT \"$\"\r\n"), None);
        assert_eq!(sub("a FETCH $1 FLAGS\r\n"), None);
        assert_eq!(sub("a NOOP\r\n"), None);
    }
}
