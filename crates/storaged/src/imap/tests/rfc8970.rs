//! RFC 8970: PREVIEW.

use super::*;

#[tokio::test]
async fn rfc8970_preview_fetch_item() {
    let h = harness();
    h.deliver("Subject: lunch\r\n\r\nAre you free\r\non Friday?\r\n").await;
    let mut s = h.session().await;
    assert!(run(&mut s, "p0 CAPABILITY").await.contains(" PREVIEW"));
    run(&mut s, "p1 SELECT INBOX").await;
    let out = run(&mut s, "p2 FETCH 1 (UID PREVIEW)").await;
    assert!(out.starts_with("* 1 FETCH (UID 1 PREVIEW \"Are you free on Friday?\")\r\np2 OK"), "{out}");
    let out = run(&mut s, "p3 UID FETCH 1 (PREVIEW (LAZY) FLAGS)").await;
    assert!(out.contains("PREVIEW \"Are you free on Friday?\"") && out.contains("FLAGS ("), "{out}");
    assert!(!out.contains("\\Seen"), "a preview does not set \\Seen: {out}");
    assert!(run(&mut s, "p4 FETCH 1 (PREVIEW (FAST))").await.contains("p4 BAD"), "unknown modifier");
}
