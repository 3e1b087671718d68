//! A snapshot archive as a leader sends it (`storaged::mailstore::snapshot::install`): a
//! peer is trusted only as far as the cluster key goes, and a transfer damaged on the way
//! must be refused, not unpacked. Installing never panics and never writes outside its
//! destination; a tree that installed, archived again (`TreeArchive`, as a replica sends
//! its snapshot), installs again to a tree whose archive is the same bytes.

use std::io::Read;
use std::path::Path;

use storaged::mailstore::snapshot::{install, TreeArchive};

/// Input bytes used at most (an archive's lengths are bounded by the code under test; the
/// inputs only need to reach them).
const INPUT_MAX: usize = 1 << 20;

fn archive_of(tree: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    TreeArchive::new(tree.to_path_buf()).read_to_end(&mut bytes).expect("an installed tree archives");
    bytes
}

pub fn run(data: &[u8]) {
    let work = tempfile::tempdir().expect("a temporary directory");
    let archive = work.path().join("in.snap");
    std::fs::write(&archive, &data[..data.len().min(INPUT_MAX)]).expect("the input written");
    let installed = install(&archive, &work.path().join("out")).is_ok();
    let names: Vec<_> =
        std::fs::read_dir(work.path()).expect("the work directory").map(|e| e.expect("an entry").file_name()).collect();
    assert!(names.iter().all(|n| n == "in.snap" || n == "out"), "install wrote outside its destination: {names:?}");
    if !installed {
        return;
    }
    let first = archive_of(&work.path().join("out"));
    std::fs::write(&archive, &first).expect("the archive written");
    install(&archive, &work.path().join("again")).expect("a tree's own archive installs");
    assert_eq!(archive_of(&work.path().join("again")), first, "the archive round-trips");
}
