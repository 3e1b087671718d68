//! RFC 3516: BINARY fetches and binary APPEND.

use super::*;

#[tokio::test]
async fn rfc3516_binary() {
    let h = harness();
    h.deliver(
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
         --b\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b\r\nContent-Transfer-Encoding: x-weird\r\n\r\nz\r\n--b--\r\n",
    )
    .await;
    let mut s = h.session().await;
    assert!(run(&mut s, "y0 CAPABILITY").await.contains("BINARY"));
    run(&mut s, "y1 SELECT INBOX").await;
    let out = run(&mut s, "y2 FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])").await;
    assert!(out.contains("BINARY[2] ~{4}\r\n\0\x01\x02\x03 BINARY.SIZE[2] 4)"), "{out:?}");
    let out = run(&mut s, "y3 FETCH 1 (BINARY.PEEK[1]<0.3>)").await;
    assert!(out.contains("BINARY[1]<0> {3}\r\nhel)"), "{out:?}");
    assert!(!run(&mut s, "y4 FETCH 1 (FLAGS)").await.contains("\\Seen"), "PEEK leaves \\Seen alone");
    assert!(run(&mut s, "y5 FETCH 1 (BINARY[3])").await.contains("y5 NO [UNKNOWN-CTE]"));
    assert!(run(&mut s, "y6 FETCH 1 (BINARY[1])").await.contains("\\Seen"), "BINARY without PEEK sets \\Seen");
    assert!(run(&mut s, "y7 FETCH 1 (BINARY.PEEK[9])").await.contains("BINARY[9] NIL"));
}

#[tokio::test]
async fn rfc3516_4_4_append_of_binary_content_never_puts_nul_in_a_plain_literal() {
    let h = harness();
    let mut s = h.session().await;
    let msg = b"From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\r\n\r\n";
    let mut cmd = format!("a1 APPEND INBOX ~{{{}+}}\r\n", msg.len()).into_bytes();
    cmd.extend_from_slice(msg);
    cmd.extend_from_slice(b"\r\n");
    let (out, _) = s.input(&cmd).await;
    assert!(text(&out).starts_with("a1 OK [APPENDUID"), "{}", text(&out));
    run(&mut s, "a2 SELECT INBOX").await;
    for c in ["a3 FETCH 1 (BODY.PEEK[1])", "a4 FETCH 1 (BODY.PEEK[])"] {
        let (out, _) = s.input(format!("{c}\r\n").as_bytes()).await;
        assert!(!out.contains(&0), "{c}: a NUL in a literal: {}", text(&out));
        assert!(text(&out).contains("OK FETCH completed"), "{c}");
    }
    let (out, _) = s.input(b"a5 FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])\r\n").await;
    let want = [&b"* 1 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n"[..], b"\x00-\xe4\r\n\r\n)\r\n"].concat();
    assert!(out.starts_with(&want), "BINARY gives back the octets: {}", text(&out));
}
