//! The short chaos run CI does (the long one is `chaos --seed N --duration-s 600`): a real
//! three-node cluster in network namespaces under kills, pauses, partitions and degraded
//! links, with the checker's verdict. Needs root, iproute2 and tc.

use std::process::Command;

#[test]
fn a_short_chaos_run_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["--seed", "7", "--duration-s", "45", "--dir"])
        .arg(dir.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chaos failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().find(|l| l.starts_with("seed 7:")).unwrap_or_else(|| panic!("no summary: {stdout}"));
    assert!(summary.ends_with(" 0 violations"), "{summary}");
    let number = |after: &str| -> usize {
        summary
            .split(after)
            .nth(1)
            .and_then(|r| r.trim().split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(number("seed 7:") >= 5, "the nemesis struck: {summary}");
    assert!(number("deliveries") > 100 && number("appends") > 50, "the workload ran: {summary}");
    assert!(stderr.contains("nemesis: kill node") || stderr.contains("nemesis: isolate"), "{stderr}");
}
