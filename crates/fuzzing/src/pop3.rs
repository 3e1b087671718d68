//! POP3 from a client: the front's pre-login machine and the storage node's session with a
//! three-message maildrop. A command's first reply line is `+`/`-ERR`; RETR/TOP/DELE only ever name
//! messages of the maildrop; the commit at QUIT only expunges what DELE marked.

use storaged::pop3::session::{Action, DropEntry, Offer, Session};

use crate::input::lines;

fn pre_login(data: &[u8]) {
    use frontd::login::PreLogin;
    use frontd::pop3::{Offer, PreAuth, Step};
    let mut s = PreAuth::new(Offer { starttls: data.len().is_multiple_of(2), plaintext_auth: true });
    let mut lines = lines(data);
    while let Some(line) = lines.next() {
        let mut step = s.input(line);
        if step == Step::SaslContinue {
            let Some(response) = lines.next() else { return };
            step = s.sasl_response(Some(response));
        }
        match step {
            Step::Reply(b) | Step::Close(b) | Step::StartTls(b) => {
                assert!(b.starts_with(b"+OK") || b.starts_with(b"-ERR"), "{b:?}")
            }
            Step::SaslContinue => panic!("a SASL response was continued"),
            Step::Login(_) => return,
        }
    }
}

const DROP: [u32; 3] = [3, 7, 9];

pub fn run(data: &[u8]) {
    pre_login(data);
    let mut s = Session::new("h", Offer { starttls: true, plaintext_auth: true });
    let mut deleted = Vec::new();
    for line in lines(data) {
        let mut actions = s.line(line);
        if actions.iter().any(|a| matches!(a, Action::Authenticate(_))) {
            let entries = DROP
                .iter()
                .map(|&uid| DropEntry { uid, size: 100 + u64::from(uid), uidl: format!("u{uid}") })
                .collect();
            actions.extend(s.logged_in(entries));
        }
        let status = actions.iter().find_map(|a| if let Action::Reply(r) = a { Some(r) } else { None });
        assert!(status.is_none_or(|r| r.starts_with('+') || r.starts_with("-ERR")), "{line:?} -> {status:?}");
        for a in &actions {
            match a {
                Action::Reply(r) => assert!(!r.contains(['\r', '\n']), "one line per reply: {r:?}"),
                Action::Send { uid, .. } => assert!(DROP.contains(uid), "RETR of a message not in the drop: {uid}"),
                Action::Commit(uids) => {
                    assert!(uids.iter().all(|u| DROP.contains(u)), "commit {uids:?}");
                    deleted.extend_from_slice(uids);
                }
                Action::Authenticate(_) | Action::StartTls | Action::Close => {}
            }
        }
        if actions.iter().any(|a| matches!(a, Action::Close | Action::Commit(_))) {
            break;
        }
    }
    deleted.sort_unstable();
    let before = deleted.len();
    deleted.dedup();
    assert_eq!(before, deleted.len(), "a message expunged twice");
}
