//! The engine against the reference: every script of `differential/scripts.txt` run on
//! every message of `differential/messages/` by our engine and by Pigeonhole's `sieve-test`
//! (Debian `dovecot-sieve`), and the actions both report compared: keep, fileinto with
//! flags, discard, redirect, reject, vacation, a runtime failure or a compile failure.
//! Cases where the two may differ, and the RFC text that decides, are in
//! `differential/disagreements.txt`; every other difference fails the test.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sieve::{Action, Context, Envelope, Limits, NoIncludes, State};

const ENVELOPE_FROM: &str = "alice+lists@ext.example.org";
const ENVELOPE_TO: &str = "me+work@example.edu";
/// Pigeonhole's default `sieve_vacation_min_period`.
/// spamtest reads X-Spam-Score as a score out of 10, as our deliverer maps a scanner's score.
const CONFIG: &str = "mail_uid = nobody\nmail_gid = nogroup\nlog_path = /dev/stderr\nhostname = localhost\n\
    plugin {\n  sieve_extensions = +vacation-seconds +editheader +spamtest +spamtestplus\n\
    sieve_spamtest_status_type = score\n  sieve_spamtest_status_header = X-Spam-Score\n\
    sieve_spamtest_max_value = 10\n}\n";
const SPAM_MAX: f64 = 10.0;

/// The message's X-Spam-Score, as the spamtest context our deliverer would pass.
fn spam_score(message: &[u8]) -> Option<(u8, u8)> {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next().unwrap_or("");
    let value = header.lines().find_map(|l| l.strip_prefix("X-Spam-Score:"))?;
    let score: f64 = value.trim().parse().ok()?;
    Some(sieve::spamtest_from_score(score, SPAM_MAX))
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential")
}

/// `### name` headed scripts.
fn scripts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(corpus().join("scripts.txt")).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        match line.strip_prefix("### ") {
            Some(name) => out.push((name.trim().to_string(), String::new())),
            None => match out.last_mut() {
                Some((_, body)) => body.push_str(line),
                None => assert!(line.trim().is_empty() || line.starts_with('#'), "text before the first ### heading"),
            },
        }
    }
    out
}

fn messages() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus().join("messages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let raw = std::fs::read(&p).unwrap();
            // Stored with LF line ends for review; mail has CRLF.
            let crlf = String::from_utf8(raw).unwrap().replace("\r\n", "\n").replace('\n', "\r\n");
            (p.file_name().unwrap().to_string_lossy().into_owned(), crlf.into_bytes())
        })
        .collect();
    out.sort();
    out
}

/// Lines like `# case: script message expected-by-us ... why` of known disagreements.
fn disagreements() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(corpus().join("disagreements.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            (words.next().unwrap().to_string(), words.next().unwrap().to_string())
        })
        .collect()
}

struct NoState;

impl State for NoState {
    fn mailbox_exists(&self, name: &str) -> bool {
        name == "Existing"
    }
    fn duplicate_seen(&self, _: &str) -> bool {
        false
    }
}

fn ours(script: &str, message: &[u8]) -> BTreeSet<String> {
    let limits = Limits::default();
    let program = match sieve::compile(script, "case", &limits, &NoIncludes) {
        Ok(program) => program,
        Err(err) => {
            eprintln!("ours: compile error: {err}");
            return ["compile-error".to_string()].into();
        }
    };
    let envelope = Envelope { from: ENVELOPE_FROM.into(), to: ENVELOPE_TO.into(), auth: None };
    let ctx = Context {
        now_unix_s: 1_780_000_000,
        zone_min: 0,
        spam: spam_score(message),
        virus: None,
        environment: Vec::new(),
        own_addresses: vec![],
        state: &NoState,
    };
    let outcome = match sieve::run(&program, message, &envelope, &ctx, &limits) {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("ours: runtime error: {err}");
            return ["error".to_string()].into();
        }
    };
    outcome.actions.iter().map(describe).collect()
}

fn describe(action: &Action) -> String {
    match action {
        Action::Store { mailbox, flags, .. } => {
            let mut flags: Vec<String> = flags.iter().map(|f| f.to_ascii_lowercase()).collect();
            flags.sort();
            format!("store {mailbox} [{}]", flags.join(" "))
        }
        Action::Redirect { address } => format!("redirect {}", address.to_ascii_lowercase()),
        // sieve-test prints control characters as '?'.
        Action::Reject { reason, .. } => format!("reject {:?}", reason.replace(['\r', '\n'], "?")),
        Action::Vacation(reply) => format!("vacation {}s {:?}", reply.period_s, reply.body.trim_end_matches("\r\n")),
    }
}

fn pigeonhole(dir: &Path, script: &str, message: &[u8]) -> BTreeSet<String> {
    std::fs::write(dir.join("case.sieve"), script).unwrap();
    std::fs::write(dir.join("case.eml"), message).unwrap();
    let _ = std::fs::remove_file(dir.join("case.svbin"));
    for f in ["case.sieve", "case.eml"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = Command::new("sieve-test")
        .args(["-c", "dovecot.conf", "-f", ENVELOPE_FROM, "-r", ENVELOPE_TO, "case.sieve", "case.eml"])
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .expect("sieve-test runs (Debian package dovecot-sieve; scripts/install-test-deps installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("failed to compile") {
        return ["compile-error".to_string()].into();
    }
    assert!(!stderr.contains("Fatal"), "sieve-test failed: {stderr}");
    if stderr.contains("final result: failed") {
        return ["error".to_string()].into();
    }
    parse_report(&String::from_utf8_lossy(&out.stdout))
}

/// sieve-test's "Performed actions" and "Implicit keep" listing to our action lines.
fn parse_report(stdout: &str) -> BTreeSet<String> {
    let mut actions: Vec<(String, Vec<String>)> = Vec::new();
    let mut body: Option<String> = None;
    for line in stdout.lines() {
        if let Some(text) = body.as_mut() {
            if line == "END MESSAGE" {
                let (head, _) = actions.last_mut().unwrap();
                *head = format!("{head} {:?}", text.trim_end_matches("\r\n"));
                body = None;
            } else {
                text.push_str(line);
                text.push_str("\r\n");
            }
            continue;
        }
        let trimmed = line.trim();
        if let Some(folder) = trimmed.strip_prefix("* store message in folder: ") {
            // INBOX is one mailbox in any case (RFC 3501 §5.1); sieve-test prints it as written.
            let folder = if folder.eq_ignore_ascii_case("inbox") { "INBOX" } else { folder };
            actions.push((format!("store {folder}"), Vec::new()));
        } else if let Some(flags) = trimmed.strip_prefix("+ add IMAP flags: ") {
            actions.last_mut().unwrap().1 = flags.split_whitespace().map(|f| f.to_ascii_lowercase()).collect();
        } else if let Some(to) = trimmed.strip_prefix("* redirect message to: ") {
            actions.push((format!("redirect {}", to.trim_matches(['<', '>']).to_ascii_lowercase()), Vec::new()));
        } else if let Some(reason) = trimmed.strip_prefix("* reject message with reason: ") {
            actions.push((format!("reject {reason:?}"), Vec::new()));
        } else if trimmed == "* send vacation message:" {
            actions.push(("vacation".to_string(), Vec::new()));
        } else if let Some(seconds) = trimmed.strip_prefix("=> seconds : ") {
            actions.last_mut().unwrap().0 = format!("vacation {seconds}s");
        } else if line == "START MESSAGE" {
            body = Some(String::new());
        }
    }
    actions
        .into_iter()
        .map(|(head, mut flags)| match head.starts_with("store ") {
            true => {
                flags.sort();
                format!("{head} [{}]", flags.join(" "))
            }
            false => head,
        })
        .collect()
}

#[test]
fn pigeonhole_and_we_take_the_same_actions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!("{CONFIG}base_dir = {0}/run\nmail_location = maildir:{0}/mail\n", dir.path().display());
    std::fs::write(dir.path().join("dovecot.conf"), config).unwrap();
    let known = disagreements();
    let (scripts, messages) = (scripts(), messages());
    let mut cases = 0;
    let mut interesting = 0;
    let mut failures = Vec::new();
    for (name, script) in &scripts {
        for (message_name, message) in &messages {
            cases += 1;
            let (theirs, ours) = (pigeonhole(dir.path(), script, message), ours(script, message));
            interesting += usize::from(theirs != BTreeSet::from(["store INBOX []".to_string()]));
            let excused = known.iter().any(|(s, m)| s == name && (m == "*" || m == message_name));
            if theirs != ours && !excused {
                failures.push(format!("{name} on {message_name}:\n  sieve-test: {theirs:?}\n  ours:       {ours:?}"));
            }
        }
    }
    assert!(cases >= 150, "the corpus has only {cases} cases");
    // Most cases must do something but keep: a corpus of implicit keeps proves nothing.
    assert!(interesting * 2 > cases, "only {interesting} of {cases} cases do more than keep");
    assert!(failures.is_empty(), "{} of {cases} cases differ:\n{}", failures.len(), failures.join("\n"));
}
