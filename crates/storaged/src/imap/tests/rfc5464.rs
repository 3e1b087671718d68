//! RFC 5464: METADATA and METADATA-SERVER.

use super::*;

#[tokio::test]
async fn rfc5464_metadata_of_mailboxes_and_the_server() {
    let h = harness();
    let mut s = h.session().await;
    let caps = run(&mut s, "m0 CAPABILITY").await;
    assert!(caps.contains(" METADATA ") && caps.contains(" METADATA-SERVER"), "{caps}");
    // Server entries (mailbox ""), a mailbox's entries, and NIL removing one.
    assert!(run(&mut s, "m1 SETMETADATA \"\" (/private/vendor/x/theme \"dark\")").await.starts_with("m1 OK"));
    let out = run(&mut s, "m2 SETMETADATA INBOX (/shared/Comment \"team inbox\" /private/comment {3+}\r\nmy!)").await;
    assert!(out.starts_with("m2 OK"), "{out}");
    let out = run(&mut s, "m3 GETMETADATA INBOX (/shared/comment /private/comment /private/none)").await;
    assert!(
        out.starts_with(
            "* METADATA \"INBOX\" (\"/private/comment\" \"my!\" \"/shared/comment\" \"team inbox\")\r\nm3 OK"
        ),
        "{out}"
    );
    let out = run(&mut s, "m4 GETMETADATA \"\" /private/vendor/x/theme").await;
    assert!(out.starts_with("* METADATA \"\" (\"/private/vendor/x/theme\" \"dark\")"), "{out}");
    assert!(run(&mut s, "m5 SETMETADATA INBOX (/shared/comment NIL)").await.starts_with("m5 OK"));
    assert!(!run(&mut s, "m6 GETMETADATA INBOX (/shared/comment)").await.contains("* METADATA"));
    // §4.2.2 DEPTH and §4.2.1 MAXSIZE with LONGENTRIES.
    run(&mut s, "m7 SETMETADATA \"\" (/private/vendor/x/a \"1\" /private/vendor/x/a/b \"long value\")").await;
    let out = run(&mut s, "m8 GETMETADATA (DEPTH 1) \"\" (/private/vendor/x)").await;
    assert!(out.contains("/private/vendor/x/a\" \"1\"") && out.contains("theme") && !out.contains("a/b"), "{out}");
    let out = run(&mut s, "m9 GETMETADATA (DEPTH infinity MAXSIZE 4) \"\" (/private/vendor/x)").await;
    assert!(!out.contains("a/b") && out.contains("m9 OK [METADATA LONGENTRIES 10]"), "{out}");
    // RFC 6154 §4: the special-use attribute, read-only.
    let out = run(&mut s, "m10 GETMETADATA Trash /private/specialuse").await;
    assert!(out.contains("(\"/private/specialuse\" \"\\\\Trash\")"), "{out}");
    assert!(run(&mut s, "m11 SETMETADATA Trash (/private/specialuse \"\\\\Junk\")")
        .await
        .starts_with("m11 NO [CANNOT]"));
    // Errors: no such mailbox, invalid names, bounds.
    assert!(run(&mut s, "m12 GETMETADATA Nowhere /private/comment").await.starts_with("m12 NO [NONEXISTENT]"));
    assert!(run(&mut s, "m13 SETMETADATA INBOX (/other/x \"v\")").await.starts_with("m13 BAD"));
    assert!(run(&mut s, "m14 GETMETADATA INBOX /private/*").await.starts_with("m14 BAD"));
    let big = "x".repeat(crate::mailstore::metadata::VALUE_MAX_BYTES + 1);
    let out = run(&mut s, &format!("m15 SETMETADATA INBOX (/private/big {{{}+}}\r\n{big})", big.len())).await;
    assert!(out.starts_with("m15 NO [METADATA MAXSIZE 65536]"), "{out}");
    let many: String = (0..=crate::mailstore::metadata::ENTRIES_MAX).map(|k| format!(" /private/k{k} \"v\"")).collect();
    let out = run(&mut s, &format!("m16 SETMETADATA INBOX ({})", many.trim_start())).await;
    assert!(out.starts_with("m16 NO [METADATA TOOMANY]"), "{out}");
    // §5: a value holding NUL goes in and out as a literal8.
    let (out, _) = s.input(b"m24 SETMETADATA INBOX (/private/bin ~{3+}\r\na\0b)\r\n").await;
    assert!(text(&out).starts_with("m24 OK"), "{}", text(&out));
    let (out, _) = s.input(b"m25 GETMETADATA INBOX /private/bin\r\n").await;
    assert!(out.starts_with(b"* METADATA \"INBOX\" (\"/private/bin\" ~{3}\r\na\0b)\r\n"), "{}", text(&out));
    // Entries go with RENAME and are gone with DELETE.
    run(&mut s, "m17 CREATE Work").await;
    run(&mut s, "m18 SETMETADATA Work (/private/comment \"w\")").await;
    run(&mut s, "m19 RENAME Work Jobs").await;
    assert!(run(&mut s, "m20 GETMETADATA Jobs /private/comment").await.contains("\"w\""));
    run(&mut s, "m21 DELETE Jobs").await;
    run(&mut s, "m22 CREATE Jobs").await;
    assert!(!run(&mut s, "m23 GETMETADATA Jobs /private/comment").await.contains("* METADATA"));
}
