//! A full disk degrades, it does not stop the node. Each storage node keeps its data on a
//! 600 MiB tmpfs of its own (its Raft logs preallocate about 256 MiB) with a 64 MiB reserve; while SMTP deliveries run, two of the
//! three disks are filled to below the reserve: new mail is refused for now (`452 4.3.1`)
//! within a second or two, IMAP reads go on, `mailctl status` says why, no node exits,
//! and once the space is freed deliveries resume by themselves. Every acknowledged message
//! is in the mailbox exactly once.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const RESERVE_BYTES: u64 = 64 << 20;

/// tmpfs mounts, unmounted when dropped.
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn tmpfs(dirs: Vec<PathBuf>) -> Self {
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
            let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=600m,mode=0700", "tmpfs"]).arg(d).status();
            assert!(ok.unwrap().success(), "mount tmpfs on {} (the test needs root)", d.display());
        }
        Self(dirs)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = Command::new("umount").arg("-l").arg(d).status();
        }
    }
}

/// Fill `dir`'s file system until only `leave` bytes are free (a file of zeros, written).
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let (free, _) = common::metrics::system::disk_space_bytes(dir).unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = free.saturating_sub(leave);
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    path
}

/// Whether storage node `i` still runs (not exited, not a zombie).
fn alive(storage: &Storage, i: usize) -> bool {
    let Some(pid) = storage.pid(i) else { return false };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

#[test]
fn two_full_replicas_refuse_new_mail_at_once_keep_reads_and_resume_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data: Vec<PathBuf> = (1..=3).map(|i| root.join(format!("data{i}"))).collect();
    let _mounts = Mounts::tmpfs(data.clone());
    let storage = Storage::start_tuned(root, |c| c.limits.disk_reserve_bytes = RESERVE_BYTES);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let tune: Tune = Box::new(|cfg| cfg.smtp.greet_delay_ms = 0);
    let front =
        Front::start_opts(root, &storage, ldif_directory(), FrontOptions { tune: Some(tune), ..Default::default() });
    let leader = storage.leader_for("alice@example.edu");
    let mut acked = Vec::new();
    let smtp = front.smtp.clone();
    let send = |n: usize, acked: &mut Vec<String>| {
        let id = format!("full.{n}@test");
        let reply = smtp_once(&smtp, "alice@example.edu", &id).unwrap_or_default();
        if reply.starts_with("250") {
            acked.push(id);
        }
        reply
    };
    for n in 0..20 {
        assert!(send(n, &mut acked).starts_with("250"));
    }

    // The two followers' disks fill to half their reserve.
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let fillers: Vec<PathBuf> = followers.iter().map(|i| fill(&data[*i], RESERVE_BYTES / 2)).collect();
    let filled = Instant::now();
    let mut n = 20;
    let refusal = loop {
        let reply = send(n, &mut acked);
        n += 1;
        if reply.starts_with('4') {
            break reply;
        }
        assert!(filled.elapsed() < Duration::from_secs(10), "still accepted after 10 s: {reply}");
    };
    let took = filled.elapsed();
    eprintln!("first refusal {took:?} after the disks filled: {refusal}");
    assert!(refusal.starts_with("452 4.3.1") && refusal.contains("storage is full"), "{refusal}");
    assert!(took < Duration::from_secs(2), "refused only after {took:?}");

    // Reads go on; status says why; every node still runs.
    let read = imap_login(&front.imap, "alice", "alice-pw");
    assert_eq!(read["ok"], true, "{read}");
    assert_eq!(read["exists"].as_u64(), Some(acked.len() as u64), "{read}");
    let (ok, status) = mailctl(root, &["status"]);
    assert!(ok && status.contains("NEW MAIL REFUSED") && status.contains("DISK LOW"), "{status}");
    for _ in 0..5 {
        assert!(send(n, &mut acked).starts_with("452"), "still refused while full");
        n += 1;
    }
    assert!((0..3).all(|i| alive(&storage, i)), "a full disk stopped a node");

    // Space returns: deliveries resume without a restart.
    for f in &fillers {
        std::fs::remove_file(f).unwrap();
    }
    let freed = Instant::now();
    loop {
        let reply = send(n, &mut acked);
        n += 1;
        if reply.starts_with("250") {
            break;
        }
        assert!(freed.elapsed() < Duration::from_secs(15), "not resumed 15 s after space returned: {reply}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("resumed {:?} after the space was freed", freed.elapsed());
    assert!((0..3).all(|i| alive(&storage, i)));
    let ids = inbox_message_ids(&front, "alice", "alice-pw");
    for id in &acked {
        assert_eq!(ids.get(id), Some(&1), "{id} once");
    }
    assert_eq!(ids.values().sum::<usize>(), acked.len(), "nothing refused was delivered");
}
