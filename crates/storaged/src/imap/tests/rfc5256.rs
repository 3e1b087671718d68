//! RFC 5256: SORT and THREAD.

use super::*;

#[tokio::test]
async fn rfc5256_3_sort_by_subject_size_and_reverse_with_search_criteria() {
    let h = harness();
    h.deliver("Subject: Re: b\r\nFrom: zed@x\r\n\r\nbody bigger than the others\r\n").await;
    h.deliver("Subject: a\r\nFrom: amy@x\r\n\r\nbody\r\n").await;
    h.deliver("Subject: [list] Fwd: b\r\nFrom: bob@x\r\n\r\nbody\r\n").await;
    let mut s = h.session().await;
    run(&mut s, "s1 SELECT INBOX").await;
    assert!(
        run(&mut s, "s2 SORT (SUBJECT) US-ASCII ALL").await.starts_with("* SORT 2 1 3\r\n"),
        "base subjects a, b, b"
    );
    assert!(
        run(&mut s, "s3 SORT (REVERSE SUBJECT) UTF-8 ALL").await.starts_with("* SORT 1 3 2\r\n"),
        "ties keep mailbox order"
    );
    assert!(run(&mut s, "s4 SORT (FROM) UTF-8 ALL").await.starts_with("* SORT 2 3 1\r\n"));
    assert!(run(&mut s, "s5 SORT (SIZE) UTF-8 SUBJECT b").await.starts_with("* SORT 3 1\r\n"), "only matches");
    assert!(run(&mut s, "s6 UID SORT (ARRIVAL) UTF-8 ALL").await.starts_with("* SORT 1 2 3\r\n"));
    assert!(run(&mut s, "s7 SORT (SUBJECT) KOI8-R ALL").await.contains("s7 NO [BADCHARSET"));
    assert!(run(&mut s, "s8 CAPABILITY").await.contains(" SORT SORT=DISPLAY"));
}

#[tokio::test]
async fn rfc5256_4_thread_references_and_orderedsubject() {
    let h = harness();
    h.deliver("Message-ID: <a@x>\r\nSubject: hello\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n").await;
    h.deliver("Message-ID: <z@x>\r\nSubject: other\r\nDate: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\nbody\r\n").await;
    h.deliver("Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nSubject: Re: hello\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\nbody\r\n").await;
    let mut s = h.session().await;
    run(&mut s, "t1 SELECT INBOX").await;
    assert!(run(&mut s, "t2 THREAD REFERENCES US-ASCII ALL").await.starts_with("* THREAD (1 3)(2)\r\n"));
    assert!(run(&mut s, "t3 UID THREAD ORDEREDSUBJECT UTF-8 ALL").await.starts_with("* THREAD (1 3)(2)\r\n"));
    assert!(run(&mut s, "t4 THREAD REFERENCES UTF-8 SUBJECT other").await.starts_with("* THREAD (2)\r\n"));
    assert!(run(&mut s, "t5 THREAD REFS UTF-8 ALL").await.contains("t5 BAD"));
    assert!(run(&mut s, "t6 CAPABILITY").await.contains("THREAD=ORDEREDSUBJECT THREAD=REFERENCES"));
}
