//! Crash test: a child process appends and acknowledges entries as fast as it can and is
//! SIGKILLed at random points; after every kill, every acknowledged entry must be present
//! and intact, and everything the log serves must verify.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use raftlog::{Log, Options};
use rand::{Rng, SeedableRng};
use tests::payload::check_payload;

const ROUNDS: usize = 25;

#[test]
fn sigkill_never_loses_an_acknowledged_entry() {
    let seed: u64 = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { segment_bytes: 256 << 10, max_payload_bytes: 8 << 10, ..Options::default() };
    let mut max_ack_overall: Option<u64> = None;
    let mut rounds_with_acks = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_raftlog-torture"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut max_ack: Option<u64> = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let index: u64 = line.strip_prefix("ack ").and_then(|s| s.parse().ok()).expect("ack line");
                max_ack = Some(max_ack.map_or(index, |m: u64| m.max(index)));
            }
            max_ack
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let max_ack = reader.join().unwrap();
        if max_ack.is_some() {
            rounds_with_acks += 1;
        }
        if let Some(m) = max_ack {
            max_ack_overall = Some(max_ack_overall.map_or(m, |o: u64| o.max(m)));
        }

        let log = Log::open(dir.path(), opts.clone()).unwrap_or_else(|e| panic!("round {round}: open failed: {e}"));
        let (first, last) = log.bounds();
        let last = last.map(|l| l.index);
        if let Some(acked) = max_ack_overall {
            assert!(last.is_some_and(|l| l >= acked), "round {round}: acked {acked} but log ends at {last:?}");
        }
        for index in first..=last.unwrap_or(0) {
            if last.is_none() {
                break;
            }
            let rec = log.read(index).unwrap_or_else(|e| panic!("round {round}: entry {index}: {e}"));
            let rec =
                rec.unwrap_or_else(|| panic!("round {round}: entry {index} missing (first {first}, last {last:?})"));
            assert_eq!(rec.header.id.index, index);
            assert_eq!(check_payload(rec.payload(), 16, 6000), Some(index), "round {round}: payload of {index}");
        }
        eprintln!(
            "round {round}: acked up to {max_ack:?}, log holds {first}..={last:?}, torn tail {:?}",
            log.open_report().torn_tail
        );
    }
    assert!(rounds_with_acks >= ROUNDS / 2, "the child made progress in only {rounds_with_acks} rounds");
}
