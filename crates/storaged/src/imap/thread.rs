//! THREAD (RFC 5256 §2–4): ORDEREDSUBJECT and REFERENCES over the messages a search matched,
//! as a pure function of what their headers say (Message-ID, References, In-Reply-To,
//! Subject, Date, taken from the header cache) and the thread list that answers.
//!
//! Bounded: at most [`REFERENCES_MAX`] references per message (the nearest ancestors, the
//! last ones, are kept), loop checks walk at most [`DEPTH_MAX`] parents, and the tree is
//! walked with explicit stacks, never by recursion. Memory is linear in the messages and
//! references kept.

use std::collections::HashMap;

use super::sort::{base_subject_of, decode_words};

/// References taken per message.
pub const REFERENCES_MAX: usize = 1000;
/// Parents walked to prove that a link makes no loop; a deeper chain is not extended.
pub const DEPTH_MAX: usize = 4096;

/// What threading needs of one message.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// The number the answer uses (sequence number or UID).
    pub number: u32,
    pub message_id: Option<String>,
    /// References (or the In-Reply-To), oldest first.
    pub references: Vec<String>,
    /// The raw Subject value.
    pub subject: Vec<u8>,
    /// Sent date (the Date header in UTC, else the arrival), for ordering.
    pub sent: i64,
}

/// The THREADID of a message (RFC 8474 §5.2) from its sort fields (`header::SORT_FIELDS`):
/// the thread's root is the first of its References, else its In-Reply-To, else its own
/// Message-ID, and every message naming the same root shares the id, in every mailbox; a
/// message with none of them is a thread of its own, named by its EMAILID. An objectid:
/// `T` and 16 hex digits.
pub fn thread_id(fields: &[u8], email_id: u64) -> String {
    let first = |name: &[u8]| {
        let value = super::header::values(fields, name).into_iter().next().unwrap_or_default();
        message_ids(&value).into_iter().next()
    };
    let root = first(b"References").or_else(|| first(b"In-Reply-To")).or_else(|| first(b"Message-ID"));
    let Some(root) = root else { return format!("T{email_id:016x}") };
    let digest = crate::mailstore::OpId::digest(&[b"thread", root.as_bytes()]).0;
    let id = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    format!("T{id:016x}")
}

/// The message ids in a header value (`<id>` tokens), in order.
pub fn message_ids(value: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else { break };
        let id: String = rest[open + 1..open + close].chars().filter(|c| !c.is_whitespace()).collect();
        if !id.is_empty() {
            out.push(id);
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// A thread node: a message, or a dummy standing for a referenced message not in the set.
#[derive(Debug, Clone, Default)]
struct Node {
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// The thread forest under construction.
struct Forest<'m> {
    messages: &'m [Message],
    nodes: Vec<Node>,
}

impl Forest<'_> {
    fn is_ancestor(&self, ancestor: usize, mut of: usize) -> bool {
        for _ in 0..DEPTH_MAX {
            if of == ancestor {
                return true;
            }
            match self.nodes[of].parent {
                Some(p) => of = p,
                None => return false,
            }
        }
        true // Too deep to tell: treat as a loop, so the link is not made.
    }

    fn detach(&mut self, child: usize) {
        if let Some(p) = self.nodes[child].parent.take() {
            self.nodes[p].children.retain(|c| *c != child);
        }
    }

    /// Make `parent` the parent of `child` unless that would make a loop.
    fn link(&mut self, parent: usize, child: usize) {
        if parent == child || self.is_ancestor(child, parent) {
            return;
        }
        self.detach(child);
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
    }

    /// The node's sent date; a dummy's is its first child's.
    fn sent(&self, mut n: usize) -> (i64, u32) {
        for _ in 0..DEPTH_MAX {
            if let Some(m) = self.nodes[n].message {
                return (self.messages[m].sent, self.messages[m].number);
            }
            match self.nodes[n].children.first() {
                Some(c) => n = *c,
                None => break,
            }
        }
        (i64::MAX, u32::MAX)
    }

    /// The node's message, or a dummy's first child's.
    fn message_of(&self, n: usize) -> Option<&Message> {
        let m =
            self.nodes[n].message.or_else(|| self.nodes[n].children.first().and_then(|c| self.nodes[*c].message))?;
        Some(&self.messages[m])
    }

    fn sort_siblings(&self, list: &mut [usize]) {
        list.sort_by_key(|n| self.sent(*n));
    }

    fn new_node(&mut self, message: Option<usize>) -> usize {
        self.nodes.push(Node { message, ..Node::default() });
        self.nodes.len() - 1
    }
}

/// ORDEREDSUBJECT (RFC 5256 §4): messages grouped by base subject, the first (by sent date)
/// the parent of the others; threads ordered by their first message.
pub fn ordered_subject(messages: &[Message]) -> String {
    let mut order: Vec<usize> = (0..messages.len()).collect();
    let subjects: Vec<String> = messages.iter().map(|m| base_subject_of(&decode_words(&m.subject)).0).collect();
    order.sort_by(|a, b| {
        subjects[*a]
            .cmp(&subjects[*b])
            .then((messages[*a].sent, messages[*a].number).cmp(&(messages[*b].sent, messages[*b].number)))
    });
    let mut threads: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match threads.last_mut() {
            Some(t) if subjects[t[0]] == subjects[i] => t.push(i),
            _ => threads.push(vec![i]),
        }
    }
    threads.sort_by_key(|t| (messages[t[0]].sent, messages[t[0]].number));
    let mut out = String::new();
    for t in threads {
        out.push('(');
        out.push_str(&messages[t[0]].number.to_string());
        match &t[1..] {
            [] => {}
            [only] => out.push_str(&format!(" {}", messages[*only].number)),
            rest => {
                out.push(' ');
                for r in rest {
                    out.push_str(&format!("({})", messages[*r].number));
                }
            }
        }
        out.push(')');
    }
    out
}

/// REFERENCES (RFC 5256 §4): threads from Message-ID, References and In-Reply-To, then
/// merged by base subject.
pub fn references(messages: &[Message]) -> String {
    let mut f = Forest { messages, nodes: Vec::new() };
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    // (1) Every message gets a node under its Message-ID (a missing or repeated one: its own).
    let mut own = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let node = match m.message_id.as_deref().and_then(|id| by_id.get(id).copied()) {
            Some(n) if f.nodes[n].message.is_none() => {
                f.nodes[n].message = Some(i);
                n
            }
            _ => {
                let n = f.new_node(Some(i));
                if let Some(id) = m.message_id.as_deref() {
                    by_id.entry(id).or_insert(n);
                }
                n
            }
        };
        own.push(node);
        // (1A) Link the references in order, each the parent of the next.
        let refs = &m.references[m.references.len().saturating_sub(REFERENCES_MAX)..];
        let mut prev: Option<usize> = None;
        for id in refs {
            let r = match by_id.get(id.as_str()) {
                Some(r) => *r,
                None => {
                    let r = f.new_node(None);
                    by_id.insert(id, r);
                    r
                }
            };
            if let Some(p) = prev {
                if f.nodes[r].parent.is_none() {
                    f.link(p, r);
                }
            }
            prev = Some(r);
        }
        // (1B) The last reference is the message's parent (any other link is broken).
        f.detach(node);
        if let Some(p) = prev {
            f.link(p, node);
        }
    }
    let mut roots: Vec<usize> = (0..f.nodes.len()).filter(|n| f.nodes[*n].parent.is_none()).collect();
    // (4) Prune dummies; (5) order the roots; (6) merge by subject; (7) order the siblings.
    roots = prune(&mut f, roots);
    sort_all(&mut f, &mut roots);
    roots = merge_by_subject(&mut f, roots);
    sort_all(&mut f, &mut roots);
    render(&f, &roots)
}

/// Step 4: a dummy without children goes; one with children gives them to its own level
/// (at the top only if it has just one).
fn prune(f: &mut Forest<'_>, roots: Vec<usize>) -> Vec<usize> {
    // Children first (post-order by an explicit stack), then the top level.
    let mut stack: Vec<(usize, bool)> = roots.iter().map(|r| (*r, false)).collect();
    while let Some((n, done)) = stack.pop() {
        if !done {
            stack.push((n, true));
            stack.extend(f.nodes[n].children.iter().map(|c| (*c, false)));
            continue;
        }
        let children = std::mem::take(&mut f.nodes[n].children);
        let mut kept = Vec::with_capacity(children.len());
        for c in children {
            if f.nodes[c].message.is_some() {
                kept.push(c);
                continue;
            }
            let grandchildren = std::mem::take(&mut f.nodes[c].children);
            for g in &grandchildren {
                f.nodes[*g].parent = Some(n);
            }
            kept.extend(grandchildren);
        }
        f.nodes[n].children = kept;
    }
    let mut out = Vec::with_capacity(roots.len());
    for r in roots {
        match (f.nodes[r].message, f.nodes[r].children.len()) {
            (Some(_), _) => out.push(r),
            (None, 0) => {}
            (None, 1) => {
                let only = f.nodes[r].children.pop().expect("one child");
                f.nodes[only].parent = None;
                out.push(only);
            }
            (None, _) => out.push(r),
        }
    }
    out
}

/// Steps 5 and 7: every set of siblings by sent date (a dummy by its first child).
fn sort_all(f: &mut Forest<'_>, roots: &mut [usize]) {
    let mut stack: Vec<usize> = roots.to_vec();
    let mut order = Vec::new();
    while let Some(n) = stack.pop() {
        order.push(n);
        stack.extend(f.nodes[n].children.iter().copied());
    }
    // Deepest first, so a dummy's first child is in place before the dummy is placed.
    for n in order.into_iter().rev() {
        let mut children = std::mem::take(&mut f.nodes[n].children);
        f.sort_siblings(&mut children);
        f.nodes[n].children = children;
    }
    f.sort_siblings(roots);
}

/// Step 6: top-level threads with the same base subject become one.
fn merge_by_subject(f: &mut Forest<'_>, roots: Vec<usize>) -> Vec<usize> {
    let subject = |f: &Forest<'_>, n: usize| {
        f.message_of(n).map(|m| base_subject_of(&decode_words(&m.subject))).unwrap_or_default()
    };
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &roots {
        let (base, reply) = subject(f, r);
        if base.is_empty() {
            continue;
        }
        match table.get(&base).copied() {
            None => {
                table.insert(base, r);
            }
            Some(t) => {
                let t_dummy = f.nodes[t].message.is_none();
                let t_reply = subject(f, t).1;
                if !t_dummy && (f.nodes[r].message.is_none() || (t_reply && !reply)) {
                    table.insert(base, r);
                }
            }
        }
    }
    let mut out = Vec::new();
    for r in roots {
        let (base, reply) = subject(f, r);
        let Some(&t) = table.get(&base).filter(|_| !base.is_empty()) else {
            out.push(r);
            continue;
        };
        if t == r {
            out.push(r);
            continue;
        }
        let (t_dummy, r_dummy) = (f.nodes[t].message.is_none(), f.nodes[r].message.is_none());
        if t_dummy && r_dummy {
            let moved = std::mem::take(&mut f.nodes[r].children);
            for c in moved {
                f.nodes[c].parent = None;
                f.link(t, c);
            }
        } else if t_dummy || (reply && !subject(f, t).1) {
            f.link(t, r);
        } else {
            let dummy = f.new_node(None);
            let place = out.iter().position(|x| *x == t);
            f.link(dummy, t);
            f.link(dummy, r);
            table.insert(base, dummy);
            match place {
                Some(p) => out[p] = dummy,
                None => out.push(dummy),
            }
        }
    }
    out
}

/// The thread list (RFC 5256 §4 `thread-list`): a single child continues its parent's list,
/// several are each parenthesized; a dummy shows only its children.
fn render(f: &Forest<'_>, roots: &[usize]) -> String {
    enum Step {
        Node(usize),
        Text(&'static str),
    }
    let mut out = String::new();
    let mut stack: Vec<Step> = Vec::new();
    for r in roots.iter().rev() {
        stack.extend([Step::Text(")"), Step::Node(*r), Step::Text("(")]);
    }
    while let Some(step) = stack.pop() {
        let n = match step {
            Step::Text(t) => {
                out.push_str(t);
                continue;
            }
            Step::Node(n) => n,
        };
        let is_message = match f.nodes[n].message {
            Some(m) => {
                out.push_str(&f.messages[m].number.to_string());
                true
            }
            None => false,
        };
        let children = &f.nodes[n].children;
        if let [only] = children[..] {
            stack.push(Step::Node(only));
        } else {
            for c in children.iter().rev() {
                stack.extend([Step::Text(")"), Step::Node(*c), Step::Text("(")]);
            }
        }
        if is_message && !children.is_empty() {
            stack.push(Step::Text(" "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8474_5_2_a_thread_shares_its_root_s_id() {
        let root = thread_id(b"Message-ID: <root@x>\r\n\r\n", 1);
        let reply = thread_id(b"Message-ID: <r1@x>\r\nIn-Reply-To: <root@x>\r\nReferences: <root@x>\r\n\r\n", 2);
        let deeper = thread_id(b"Message-ID: <r2@x>\r\nReferences: <root@x>\r\n <r1@x>\r\n\r\n", 3);
        let parent_only = thread_id(b"Message-ID: <r3@x>\r\nIn-Reply-To: <root@x>\r\n\r\n", 4);
        assert!(root == reply && reply == deeper && deeper == parent_only, "{root} {reply} {deeper} {parent_only}");
        assert_ne!(thread_id(b"Message-ID: <other@x>\r\n\r\n", 5), root);
        let alone = thread_id(b"Subject: no ids\r\n\r\n", 6);
        assert_eq!(alone, "T0000000000000006", "a thread of its own, by EMAILID");
        assert!(root.len() == 17 && root.starts_with('T') && root[1..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    fn msg(number: u32, id: &str, refs: &str, subject: &str, sent: i64) -> Message {
        Message {
            number,
            message_id: message_ids(id.as_bytes()).into_iter().next(),
            references: message_ids(refs.as_bytes()),
            subject: subject.as_bytes().to_vec(),
            sent,
        }
    }

    #[test]
    fn rfc5256_4_references_link_parents_and_children() {
        let m = [
            msg(1, "<a@b>", "", "hello", 1),
            msg(2, "<b@b>", "<a@b>", "Re: hello", 2),
            msg(3, "<c@b>", "<a@b> <b@b>", "Re: hello", 3),
            msg(4, "<d@b>", "<a@b>", "Re: hello", 4),
            msg(5, "<e@b>", "", "other", 5),
        ];
        assert_eq!(references(&m), "(1 (2 3)(4))(5)");
    }

    #[test]
    fn rfc5256_4_missing_parents_become_dummies_and_subjects_merge() {
        // 2 and 3 answer a message not in the set: they become siblings under a dummy.
        let m = [
            msg(1, "<x@b>", "", "alone", 1),
            msg(2, "<y@b>", "<gone@b>", "Re: q", 2),
            msg(3, "<z@b>", "<gone@b>", "Re: q", 3),
        ];
        assert_eq!(references(&m), "(1)((2)(3))");
        // Same base subject, no references: the original gets the reply as a child.
        let m = [msg(1, "<p@b>", "", "topic", 1), msg(2, "<q@b>", "", "Re: topic", 2)];
        assert_eq!(references(&m), "(1 2)");
        // A loop in References is not followed; a repeated Message-ID is its own.
        let m = [msg(1, "<l@b>", "<m@b>", "a", 1), msg(2, "<m@b>", "<l@b>", "b", 2), msg(3, "<l@b>", "", "c", 3)];
        let out = references(&m);
        assert!(out.contains('1') && out.contains('2') && out.contains('3'), "{out}");
    }

    #[test]
    fn rfc5256_4_ordered_subject_groups_by_base_subject() {
        let m = [
            msg(1, "", "", "b", 3),
            msg(2, "", "", "a", 1),
            msg(3, "", "", "Re: a", 2),
            msg(4, "", "", "re: a", 4),
            msg(5, "", "", "b", 5),
        ];
        assert_eq!(ordered_subject(&m), "(2 (3)(4))(1 5)");
    }

    #[test]
    fn a_deep_chain_and_many_references_are_bounded() {
        let n = 20_000;
        let mut m: Vec<Message> = (0..n)
            .map(|k| msg(k + 1, &format!("<{k}@b>"), &format!("<{}@b>", k.saturating_sub(1)), "s", i64::from(k)))
            .collect();
        let refs: String = (0..100_000).map(|k| format!("<r{k}@b> ")).collect();
        m.push(msg(n + 1, "<big@b>", &refs, "t", 0));
        let started = std::time::Instant::now();
        let out = references(&m);
        assert!(out.starts_with('(') && out.ends_with(')'), "{}", &out[..40]);
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }
}
