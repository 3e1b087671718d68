//! The cluster map: which storage nodes serve each mailhost group, on which addresses, and
//! which member was last seen leading it. Knows nothing of protocols beyond their names;
//! never invents a group: an unknown mailHost is the caller's operator error to report.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::GroupSection;

/// A protocol a storage node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    Lmtp,
    /// The admin protocol (status, outbound queue).
    Admin,
    /// ManageSieve (RFC 5804).
    Sieve,
}

impl Protocol {
    /// The name logs and login histories give it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Imap => "IMAP",
            Self::Pop3 => "POP3",
            Self::Lmtp => "LMTP",
            Self::Admin => "admin",
            Self::Sieve => "ManageSieve",
        }
    }
}

/// One storage node in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub imap: Option<String>,
    pub pop3: Option<String>,
    pub lmtp: Option<String>,
    pub admin: Option<String>,
    pub sieve: Option<String>,
}

impl Member {
    pub fn address(&self, protocol: Protocol) -> Option<&str> {
        match protocol {
            Protocol::Imap => self.imap.as_deref(),
            Protocol::Pop3 => self.pop3.as_deref(),
            Protocol::Lmtp => self.lmtp.as_deref(),
            Protocol::Admin => self.admin.as_deref(),
            Protocol::Sieve => self.sieve.as_deref(),
        }
    }
}

/// How long a member that did not answer in time is tried last, and a refusal that names
/// it as the leader is not followed: about an election's length, so a paused or dead
/// leader costs one timeout, not one per delivery, while its group elects another.
pub const SUSPECT_FOR: Duration = Duration::from_secs(5);

/// Groups by (lower-case) name, with the last leader seen for each and the members that
/// recently did not answer.
#[derive(Debug)]
pub struct ClusterMap {
    groups: HashMap<String, Vec<Member>>,
    leaders: Mutex<HashMap<String, u64>>,
    /// (group, member) → when it last failed to answer.
    suspects: Mutex<HashMap<(String, u64), Instant>>,
}

impl ClusterMap {
    pub fn new(groups: &[GroupSection]) -> Self {
        let groups = groups
            .iter()
            .map(|g| {
                let members = g
                    .members
                    .iter()
                    .map(|m| Member {
                        id: m.id,
                        imap: m.imap.clone(),
                        pop3: m.pop3.clone(),
                        lmtp: m.lmtp.clone(),
                        admin: m.admin.clone(),
                        sieve: m.sieve.clone(),
                    })
                    .collect();
                (g.name.to_ascii_lowercase(), members)
            })
            .collect();
        Self { groups, leaders: Mutex::new(HashMap::new()), suspects: Mutex::new(HashMap::new()) }
    }

    /// The canonical name of a group, if the map has it.
    pub fn group_name(&self, mail_host: &str) -> Option<String> {
        let key = mail_host.to_ascii_lowercase();
        self.groups.contains_key(&key).then_some(key)
    }

    /// The members of `group` that serve `protocol`, in the order to try them: the hinted
    /// member, then the last leader seen, then the rest in configuration order. Members
    /// that recently did not answer (see [`SUSPECT_FOR`]) are left out while another is
    /// left: each try of a silent member costs a whole greeting timeout.
    pub fn candidates(&self, group: &str, protocol: Protocol, hint: Option<u64>) -> Vec<Member> {
        let Some(members) = self.groups.get(group) else { return Vec::new() };
        let leader = self.leaders.lock().expect("leaders lock").get(group).copied();
        let mut ordered: Vec<Member> = members.iter().filter(|m| m.address(protocol).is_some()).cloned().collect();
        if ordered.iter().any(|m| !self.is_suspect(group, m.id)) {
            ordered.retain(|m| !self.is_suspect(group, m.id));
        }
        let rank = |m: &Member| {
            if Some(m.id) == hint {
                0
            } else if Some(m.id) == leader {
                1
            } else {
                2
            }
        };
        ordered.sort_by_key(rank);
        ordered
    }

    /// Remember that `id` leads `group` now (and answers).
    pub fn set_leader(&self, group: &str, id: u64) {
        self.leaders.lock().expect("leaders lock").insert(group.to_string(), id);
        self.suspects.lock().expect("suspects lock").remove(&(group.to_string(), id));
    }

    /// Remember that `id` of `group` did not answer in time.
    pub fn mark_down(&self, group: &str, id: u64) {
        let mut suspects = self.suspects.lock().expect("suspects lock");
        suspects.retain(|_, since| since.elapsed() < SUSPECT_FOR);
        suspects.insert((group.to_string(), id), Instant::now());
    }

    /// Whether `id` of `group` failed to answer within the last [`SUSPECT_FOR`].
    pub fn is_suspect(&self, group: &str, id: u64) -> bool {
        let suspects = self.suspects.lock().expect("suspects lock");
        suspects.get(&(group.to_string(), id)).is_some_and(|since| since.elapsed() < SUSPECT_FOR)
    }

    /// The member of `group` whose `protocol` address is `addr`.
    pub fn member_by_address(&self, group: &str, protocol: Protocol, addr: &str) -> Option<u64> {
        self.groups.get(group)?.iter().find(|m| m.address(protocol) == Some(addr)).map(|m| m.id)
    }

    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemberSection;

    fn map() -> ClusterMap {
        let member = |id, imap: bool| MemberSection {
            id,
            imap: imap.then(|| format!("127.0.0.1:{}", 1000 + id)),
            pop3: Some(format!("127.0.0.1:{}", 2000 + id)),
            lmtp: None,
            sieve: None,
            admin: None,
        };
        ClusterMap::new(&[GroupSection {
            name: "Hermes".into(),
            members: vec![member(1, true), member(2, false), member(3, true)],
        }])
    }

    #[test]
    fn candidates_put_the_hint_and_the_known_leader_first() {
        let m = map();
        assert_eq!(m.group_name("HERMES").as_deref(), Some("hermes"));
        assert_eq!(m.group_name("apollo"), None);
        let ids = |v: Vec<Member>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(m.candidates("hermes", Protocol::Imap, None)), [1, 3], "node 2 has no IMAP");
        m.set_leader("hermes", 3);
        assert_eq!(ids(m.candidates("hermes", Protocol::Pop3, None)), [3, 1, 2]);
        assert_eq!(ids(m.candidates("hermes", Protocol::Pop3, Some(2))), [2, 3, 1]);
        assert!(m.candidates("apollo", Protocol::Imap, None).is_empty());
        assert!(m.candidates("hermes", Protocol::Lmtp, None).is_empty());
    }

    #[test]
    fn a_member_that_did_not_answer_is_skipped_until_it_answers_again() {
        let m = map();
        let ids = |v: Vec<Member>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        m.set_leader("hermes", 3);
        m.mark_down("hermes", 3);
        assert!(m.is_suspect("hermes", 3));
        assert_eq!(ids(m.candidates("hermes", Protocol::Pop3, None)), [1, 2], "the silent leader is skipped");
        assert_eq!(ids(m.candidates("hermes", Protocol::Pop3, Some(3))), [1, 2], "even when named");
        m.mark_down("hermes", 1);
        m.mark_down("hermes", 2);
        assert_eq!(ids(m.candidates("hermes", Protocol::Pop3, None)), [3, 1, 2], "all silent: all are tried");
        m.set_leader("hermes", 3);
        assert!(!m.is_suspect("hermes", 3));
        assert_eq!(ids(m.candidates("hermes", Protocol::Pop3, None)), [3], "3 answered again; 1 and 2 did not yet");
    }
}
