//! Every fuzz target's corpus (`fuzz/corpus/<target>/`, seeds and whatever fuzzing found)
//! replayed through the same bodies cargo-fuzz runs: a regression test that takes seconds.

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

#[test]
fn every_corpus_replays_without_a_failure() {
    for (name, run) in fuzzing::TARGETS {
        let dir = corpus_dir(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut replayed = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            replayed += 1;
        }
        assert!(replayed >= 3, "{name}: the corpus is missing ({replayed} files in {})", dir.display());
        eprintln!("{name}: {replayed} inputs");
    }
}

/// Seeds made by the real encoders: a raftlog record holding a delivery, and the Raft and
/// admin RPCs as a peer sends them. `FUZZ_WRITE_SEEDS=1` writes them into the corpus.
fn real_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use raftlog::record::encode;
    use raftlog::{EntryKind, LogPayload, RecordId};
    use storaged::mailstore::{MailOp, MailRequest, OpId};
    let request = MailRequest {
        op_id: OpId([7; 16]),
        op: MailOp::Append {
            user: "u@example.edu".into(),
            mailbox: "INBOX".into(),
            flags: 1,
            keywords: vec!["$Label1".into()],
            internal_date: 1_700_000_000,
            message: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
            now_s: 1_700_000_001,
        },
    };
    let mut payload = Vec::new();
    request.encode(&mut payload).unwrap();
    let mut record = Vec::new();
    encode(&mut record, 7, RecordId { term: 3, node: 1, index: 42 }, 41, EntryKind::Normal, &payload);
    let vote: storaged::raft::rpc::GroupRequest<storaged::group::sm::MailConfig> = storaged::raft::rpc::GroupRequest {
        group: "g1".into(),
        from: 2,
        session: 9,
        seq: 1,
        request: storaged::raft::rpc::RaftRequest::Vote(openraft::raft::VoteRequest::new(
            openraft::Vote::new(4, 2),
            None,
        )),
    };
    let admin = common::admin::encode(&common::admin::AdminRequest::Status);
    // A store's tree as a snapshot archive: a Maildir message, state, an active Sieve
    // script's link; then the same archive cut short and with a flipped byte.
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("users/u@example.edu/Maildir/cur")).unwrap();
    std::fs::create_dir_all(tree.path().join("users/u@example.edu/sieve")).unwrap();
    std::fs::write(tree.path().join("users/u@example.edu/Maildir/cur/1.M1:2,S"), b"Subject: hi\r\n\r\nbody\r\n")
        .unwrap();
    std::fs::write(tree.path().join("users/u@example.edu/sieve/main.sieve"), b"keep;\r\n").unwrap();
    std::os::unix::fs::symlink("sieve/main.sieve", tree.path().join("users/u@example.edu/.dovecot.sieve")).unwrap();
    std::fs::write(tree.path().join("sm.state"), [3u8; 64]).unwrap();
    let out = tempfile::tempdir().unwrap();
    storaged::mailstore::snapshot::build(tree.path(), &out.path().join("a.snap")).unwrap();
    let archive = std::fs::read(out.path().join("a.snap")).unwrap();
    let mut flipped = archive.clone();
    flipped[archive.len() / 2] ^= 0x20;
    vec![
        ("raftlog_record", "append-record", record),
        ("rpc", "vote-request", storaged::raft::rpc::encode(&vote).unwrap()),
        ("rpc", "admin-status", admin),
        ("snapshot_archive", "tree", archive.clone()),
        ("snapshot_archive", "tree-cut", archive[..archive.len() * 2 / 3].to_vec()),
        ("snapshot_archive", "tree-flipped", flipped),
    ]
}

#[test]
fn real_encodings_pass_through_the_bodies() {
    for (target, name, bytes) in real_seeds() {
        let dir = corpus_dir(target);
        if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
            std::fs::write(dir.join(name), &bytes).unwrap();
        }
        let run = fuzzing::TARGETS.iter().find(|(t, _)| *t == target).unwrap().1;
        run(&bytes);
    }
    // The record decodes as written (the body reseals only what is damaged).
    let (_, _, record) = &real_seeds()[0];
    let header = raftlog::record::decode(record, 7, 1 << 20).unwrap();
    assert_eq!((header.id.index, header.kind), (42, raftlog::EntryKind::Normal));
}
