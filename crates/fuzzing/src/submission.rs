//! What an authenticated user submits, as the front judges it: the From and Sender fields
//! against the user's addresses, and the From addresses the phish rules compare. Whatever
//! the bytes: the decision is one of the three, a refusal is one printable reply line, a
//! rewritten message ends with the original body unchanged and its added field names the
//! user, and the addresses found are lower case.

use frontd::smtp::submission::{check, Decision, FromPolicy};

pub fn run(data: &[u8]) {
    let own = ["alice@example.edu".to_string(), "a.smith@example.edu".to_string()];
    for policy in [FromPolicy::Refuse, FromPolicy::AddSender] {
        match check(data, &own, policy) {
            Decision::AsIs => {}
            Decision::Refuse(reply) => {
                assert!(reply.starts_with("5") && !reply.contains(['\r', '\n']), "{reply:?}");
            }
            Decision::Rewritten(out) => {
                assert!(
                    out.starts_with(b"From: <alice@example.edu>\r\n")
                        || out.starts_with(b"Sender: <alice@example.edu>\r\n")
                );
                let body_at = data.windows(4).position(|w| w == b"\r\n\r\n").map_or(data.len(), |p| p + 2);
                assert!(out.ends_with(&data[body_at..]), "the body is kept");
            }
        }
    }
    for a in frontd::smtp::submission::from_addresses(data) {
        assert_eq!(a, a.to_ascii_lowercase());
    }
}
