//! RFC 7162: CONDSTORE and QRESYNC.

use super::*;

#[tokio::test]
async fn rfc7162_condstore() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    h.deliver("Subject: two\r\n\r\n2\r\n").await;
    run(&mut h.session().await, "k SELECT INBOX").await; // not \Recent in s
    let mut s = h.session().await;
    assert!(run(&mut s, "k0 CAPABILITY").await.contains("CONDSTORE"));
    assert!(run(&mut s, "k1 ENABLE CONDSTORE").await.contains("* ENABLED CONDSTORE"));
    let out = run(&mut s, "k2 SELECT INBOX").await;
    let highest: u64 = out
        .split("[HIGHESTMODSEQ ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let out = run(&mut s, "k3 FETCH 1:* (MODSEQ)").await;
    assert!(out.contains("* 1 FETCH (MODSEQ (") && out.contains("* 2 FETCH (MODSEQ ("), "{out}");
    // A STORE raises the message's mod-sequence above the mailbox's old highest.
    let out = run(&mut s, "k4 STORE 1 +FLAGS.SILENT (\\Seen)").await;
    assert!(out.contains("* 1 FETCH (MODSEQ ("), "{out}");
    let out = run(&mut s, &format!("k5 FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")).await;
    assert!(out.contains("* 1 FETCH (FLAGS (\\Seen) MODSEQ (") && !out.contains("* 2 FETCH"), "{out}");
    // UNCHANGEDSINCE below the current mod-sequence fails for that message only.
    let out = run(&mut s, &format!("k6 STORE 1,2 (UNCHANGEDSINCE {highest}) +FLAGS (\\Flagged)")).await;
    assert!(out.contains("k6 OK [MODIFIED 1]") && out.contains("* 2 FETCH (FLAGS (\\Flagged) MODSEQ ("), "{out}");
    assert!(run(&mut s, "k7 SEARCH FLAGGED").await.contains("* SEARCH 2\r\n"));
    let out = run(&mut s, &format!("k8 SEARCH MODSEQ {}", highest + 1)).await;
    assert!(out.contains("* SEARCH 1 2 (MODSEQ "), "{out}");
    assert!(run(&mut s, "k9 STATUS INBOX (HIGHESTMODSEQ)").await.contains("HIGHESTMODSEQ "));
    // Another session's flag change arrives with its MODSEQ.
    let mut other = h.session().await;
    run(&mut other, "o1 SELECT INBOX").await;
    run(&mut other, "o2 STORE 2 -FLAGS (\\Flagged)").await;
    assert!(run(&mut s, "k10 NOOP").await.contains("* 2 FETCH (UID 2 FLAGS () MODSEQ ("));
}

#[tokio::test]
async fn rfc7162_qresync() {
    let h = harness();
    for k in 0..5 {
        h.deliver(&format!("Subject: m{k}\r\n\r\n{k}\r\n")).await;
    }
    let mut s = h.session().await;
    assert!(run(&mut s, "v0 CAPABILITY").await.contains("QRESYNC"));
    assert!(run(&mut s, "v1 SELECT INBOX (QRESYNC (1 1))").await.starts_with("v1 BAD"), "needs ENABLE");
    assert!(run(&mut s, "v2 ENABLE QRESYNC").await.contains("* ENABLED QRESYNC"));
    let out = run(&mut s, "v3 SELECT INBOX").await;
    let field = |out: &str, name: &str| -> u64 {
        out.split(&format!("[{name} ")).nth(1).and_then(|r| r.split(']').next()).and_then(|n| n.parse().ok()).unwrap()
    };
    let (uv, modseq) = (field(&out, "UIDVALIDITY"), field(&out, "HIGHESTMODSEQ"));
    // Another session expunges UIDs 2 and 4 and flags UID 5.
    let mut other = h.session().await;
    run(&mut other, "o1 SELECT INBOX").await;
    run(&mut other, "o2 STORE 2,4 +FLAGS.SILENT (\\Deleted)").await;
    run(&mut other, "o3 EXPUNGE").await;
    run(&mut other, "o4 UID STORE 5 +FLAGS (\\Flagged)").await;
    // With QRESYNC enabled, expunges arrive as VANISHED, not EXPUNGE.
    let out = run(&mut s, "v4 NOOP").await;
    assert!(out.contains("* VANISHED 2,4") && !out.contains("EXPUNGE"), "{out}");
    // A reconnecting client learns what vanished and what changed since its modseq.
    let mut again = h.session().await;
    run(&mut again, "w0 ENABLE QRESYNC").await;
    let out = run(&mut again, &format!("w1 SELECT INBOX (QRESYNC ({uv} {modseq}))")).await;
    assert!(out.contains("* VANISHED (EARLIER) 2,4"), "{out}");
    assert!(out.contains("* 3 FETCH (UID 5 FLAGS (\\Flagged) MODSEQ ("), "{out}");
    assert!(!out.contains("UID 1 FLAGS"), "unchanged messages are not resent: {out}");
    // A wrong UIDVALIDITY gets a plain SELECT.
    let out = run(&mut again, &format!("w2 SELECT INBOX (QRESYNC ({} {modseq}))", uv + 1)).await;
    assert!(!out.contains("VANISHED") && out.contains("w2 OK"), "{out}");
    let out = run(&mut again, &format!("w3 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")).await;
    assert!(out.contains("* VANISHED (EARLIER) 2,4") && out.contains("UID 5"), "{out}");
    assert!(run(&mut again, &format!("w4 FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"))
        .await
        .contains("w4 BAD"));
}

#[tokio::test]
async fn rfc7162_3_1_condstore_enabled_after_select_reports_highestmodseq_and_esearch_modseq_of_returned() {
    let h = harness();
    for k in 1..=4 {
        h.deliver(&format!("Subject: {k}\r\n\r\nbody\r\n")).await;
    }
    let mut s = h.session().await;
    run(&mut s, "s1 SELECT INBOX").await;
    let out = run(&mut s, "s2 FETCH 1 MODSEQ").await;
    assert!(out.starts_with("* OK [HIGHESTMODSEQ "), "the first CONDSTORE-enabling command: {out}");
    assert!(!run(&mut s, "s3 FETCH 1 MODSEQ").await.contains("HIGHESTMODSEQ"), "only the first");
    let mut modseq = std::collections::HashMap::new();
    for n in [1, 3, 2, 4] {
        let out = run(&mut s, &format!("t{n} STORE {n} +FLAGS \\Seen")).await;
        let m: u64 = out.split("MODSEQ (").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
        modseq.insert(n, m);
    }
    let esearch = |out: String| out.lines().find(|l| l.starts_with("* ESEARCH")).unwrap().to_string();
    let min = esearch(run(&mut s, "e1 SEARCH RETURN (MIN) 1:3 MODSEQ \"/flags/\\\\seen\" all 1").await);
    assert!(min.ends_with(&format!("MIN 1 MODSEQ {}", modseq[&1])), "MIN: the min's modseq: {min}");
    let max = esearch(run(&mut s, "e2 SEARCH RETURN (MAX) 1:3 MODSEQ \"/flags/\\\\seen\" all 1").await);
    assert!(max.ends_with(&format!("MAX 3 MODSEQ {}", modseq[&3])), "MAX: the max's modseq: {max}");
    let all = esearch(run(&mut s, "e3 SEARCH RETURN () 1:3 MODSEQ \"/flags/\\\\seen\" all 1").await);
    assert!(all.ends_with(&format!("ALL 1:3 MODSEQ {}", modseq[&2])), "ALL: the highest: {all}");
}
