//! The engine's behaviour named by RFC section, through its public API: what a deliverer
//! sees in an `Outcome` for a script and a message. Cases the reference engine cannot show
//! (includes, duplicate memory, header edits, limits) live here; the rest are also in the
//! differential test against Pigeonhole.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sieve::{
    Action, CompileError, Context, Envelope, IncludeLocation, Includes, Limits, NoIncludes, Outcome, RuntimeError,
    State,
};

const MESSAGE: &[u8] = b"From: Bob <bob@example.org>\r\nTo: me@example.edu\r\nSubject: Hello there\r\n\
Date: Mon, 1 Jun 2026 10:15:30 -0400\r\nMessage-ID: <m1@example.org>\r\nReceived: from x by y\r\n\r\nBody text.\r\n";

#[derive(Default)]
struct Memory {
    seen: HashSet<String>,
    mailboxes: HashSet<String>,
}

impl State for Memory {
    fn mailbox_exists(&self, name: &str) -> bool {
        self.mailboxes.contains(name)
    }
    fn duplicate_seen(&self, key: &str) -> bool {
        self.seen.contains(key)
    }
}

struct Scripts(HashMap<String, String>);

impl Includes for Scripts {
    fn script(&self, location: IncludeLocation, name: &str) -> Option<String> {
        let key = match location {
            IncludeLocation::Personal => name.to_string(),
            IncludeLocation::Global => format!("global/{name}"),
        };
        self.0.get(&key).cloned()
    }
}

fn envelope(from: &str) -> Envelope {
    Envelope { from: from.into(), to: "me@example.edu".into(), auth: None }
}

fn context(state: &Memory) -> Context<'_> {
    Context {
        now_unix_s: 1_780_000_000,
        zone_min: 60,
        spam: Some((9, 85)),
        virus: Some(1),
        environment: vec![("phase".into(), "during".into()), ("domain".into(), "example.edu".into())],
        own_addresses: vec![],
        state,
    }
}

fn run_with(
    script: &str,
    raw: &[u8],
    state: &Memory,
    limits: &Limits,
    includes: &dyn Includes,
) -> Result<Outcome, RuntimeError> {
    let program = sieve::compile(script, "main", limits, includes).unwrap_or_else(|e| panic!("{e}"));
    sieve::run(&program, raw, &envelope("bob@example.org"), &context(state), limits)
}

fn run(script: &str) -> Outcome {
    run_with(script, MESSAGE, &Memory::default(), &Limits::default(), &NoIncludes).unwrap()
}

fn compile_error(script: &str) -> CompileError {
    sieve::compile(script, "main", &Limits::default(), &NoIncludes).unwrap_err()
}

fn stores(outcome: &Outcome) -> Vec<(String, Vec<String>)> {
    outcome
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Store { mailbox, flags, .. } => Some((mailbox.clone(), flags.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn rfc5228_2_10_2_implicit_keep_unless_cancelled() {
    let kept = run("");
    assert!(kept.implicit_keep);
    assert_eq!(stores(&kept), vec![("INBOX".to_string(), vec![])]);
    let discarded = run("discard;");
    assert!(!discarded.implicit_keep && discarded.actions.is_empty());
    let copied = run("require [\"fileinto\", \"copy\"]; fileinto :copy \"A\";");
    assert_eq!(stores(&copied).len(), 2, "fileinto :copy keeps the implicit keep");
}

#[test]
fn rfc5228_2_10_6_a_runtime_error_is_reported_not_half_done() {
    let err = run_with(
        "require [\"reject\", \"fileinto\"]; fileinto \"A\"; reject \"no\";",
        MESSAGE,
        &Memory::default(),
        &Limits::default(),
        &NoIncludes,
    );
    assert!(matches!(err, Err(RuntimeError::Conflict(_))), "{err:?}");
}

#[test]
fn rfc5228_8_1_errors_name_line_and_column() {
    let err = compile_error("require \"fileinto\";\n\nif header :is \"subject\" {\n  fileinto \"x\";\n}");
    assert_eq!(err.pos.line, 3, "{err}");
    let err = compile_error("keep;\nkeep;\nfrobnicate \"x\";");
    assert_eq!((err.pos.line, err.pos.column), (3, 1));
    assert!(err.to_string().contains("unknown command 'frobnicate'"), "{err}");
}

#[test]
fn rfc5232_flags_reach_the_store() {
    let out = run(
        "require [\"imap4flags\", \"fileinto\"]; addflag \"\\\\seen\"; fileinto \"A\"; removeflag \"\\\\Seen\"; keep;",
    );
    assert_eq!(stores(&out), vec![("A".into(), vec!["\\Seen".into()]), ("INBOX".into(), vec![])]);
}

#[test]
fn rfc5230_vacation_reply_and_its_suppression() {
    let script = "require \"vacation\"; vacation :days 3 :subject \"Away\" :from \"me@example.edu\" \"Back soon.\";";
    let out = run(script);
    let Some(Action::Vacation(reply)) = out.actions.iter().find(|a| matches!(a, Action::Vacation(_))) else {
        panic!("{out:?}")
    };
    assert_eq!(
        (reply.to.as_str(), reply.subject.as_str(), reply.body.as_str()),
        ("bob@example.org", "Away", "Back soon.")
    );
    assert_eq!(reply.period_s, 3 * 86_400);
    assert_eq!(reply.in_reply_to.as_deref(), Some("<m1@example.org>"));
    assert_eq!(reply.suppressed, None);
    let list = [b"List-Id: <l.example.org>\r\n".as_slice(), MESSAGE].concat();
    let out = run_with(script, &list, &Memory::default(), &Limits::default(), &NoIncludes).unwrap();
    let Some(Action::Vacation(reply)) = out.actions.iter().find(|a| matches!(a, Action::Vacation(_))) else { panic!() };
    assert!(reply.suppressed.is_some(), "list mail is never answered");
    let default_subject = run("require \"vacation\"; vacation \"x\";");
    let Some(Action::Vacation(reply)) = default_subject.actions.iter().find(|a| matches!(a, Action::Vacation(_)))
    else {
        panic!()
    };
    assert_eq!(reply.subject, "Auto: Hello there");
}

#[test]
fn rfc5229_variables_and_match_variables() {
    let out = run("require [\"variables\", \"fileinto\"]; if header :matches \"subject\" \"* *\" { set :upper \"w\" \"${2}\"; } fileinto \"F/${w}\";");
    assert_eq!(stores(&out)[0].0, "F/THERE");
}

#[test]
fn rfc6609_include_global_and_return() {
    let scripts = Scripts(HashMap::from([
        ("lib".to_string(), "require [\"include\", \"variables\", \"fileinto\"]; global \"box\"; set \"box\" \"FromLib\"; return; fileinto \"Never\";".to_string()),
        ("global/site".to_string(), "require \"fileinto\"; fileinto \"Site\";".to_string()),
    ]));
    let main = "require [\"include\", \"variables\", \"fileinto\"]; global \"box\"; include \"lib\"; include :global :once \"site\"; include :global :once \"site\"; fileinto \"${box}\";";
    let out = run_with(main, MESSAGE, &Memory::default(), &Limits::default(), &scripts).unwrap();
    assert_eq!(stores(&out).iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), vec!["Site", "FromLib"]);
    assert!(sieve::compile("require \"include\"; include \"absent\";", "main", &Limits::default(), &scripts).is_err());
    assert!(sieve::compile("require \"include\"; include :optional \"absent\";", "main", &Limits::default(), &scripts)
        .is_ok());
}

#[test]
fn rfc6609_3_2_recursive_include_is_refused() {
    let scripts = Scripts(HashMap::from([
        ("a".to_string(), "require \"include\"; include \"b\";".to_string()),
        ("b".to_string(), "require \"include\"; include \"a\";".to_string()),
        ("main".to_string(), "require \"include\"; include \"main\";".to_string()),
    ]));
    let err = sieve::compile("require \"include\"; include \"a\";", "main", &Limits::default(), &scripts).unwrap_err();
    assert!(err.message.contains("includes itself"), "{err}");
    let err =
        sieve::compile("require \"include\"; include \"main\";", "main", &Limits::default(), &scripts).unwrap_err();
    assert!(err.message.contains("includes itself"), "{err}");
}

#[test]
fn rfc7352_duplicate_marks_and_memory() {
    let script = "require [\"duplicate\", \"fileinto\"]; if duplicate :seconds 600 { fileinto \"Dup\"; }";
    let first = run(script);
    assert_eq!(stores(&first), vec![("INBOX".into(), vec![])]);
    assert_eq!(first.duplicates.len(), 1);
    assert_eq!(first.duplicates[0].period_s, 600);
    let state = Memory { seen: HashSet::from([first.duplicates[0].key.clone()]), ..Default::default() };
    let again = run_with(script, MESSAGE, &state, &Limits::default(), &NoIncludes).unwrap();
    assert_eq!(stores(&again)[0].0, "Dup");
}

#[test]
fn rfc5293_editheader_changes_what_is_stored() {
    let out = run("require \"editheader\"; addheader \"X-Sorted\" \"caf\u{e9}\"; deleteheader \"subject\"; deleteheader \"received\";");
    let header = String::from_utf8(out.header.expect("edited")).unwrap();
    assert!(header.starts_with("X-Sorted: =?utf-8?q?caf=C3=A9?=\r\n"), "{header}");
    assert!(!header.contains("Subject:"));
    assert!(header.contains("Received: from x by y"), "Received is protected");
    assert!(run("keep;").header.is_none());
}

#[test]
fn rfc5235_spamtest_virustest_and_rfc5183_environment() {
    let out = run("require [\"spamtestplus\", \"virustest\", \"environment\", \"relational\", \"comparator-i;ascii-numeric\", \"fileinto\"];
        if spamtest :value \"ge\" :comparator \"i;ascii-numeric\" \"9\" { fileinto \"Spam\"; }
        if spamtest :percent :value \"gt\" :comparator \"i;ascii-numeric\" \"80\" { fileinto \"Pct\"; }
        if virustest :value \"eq\" :comparator \"i;ascii-numeric\" \"1\" { fileinto \"Clean\"; }
        if environment :is \"phase\" \"during\" { fileinto \"During\"; }
        if environment :is \"nonexistent\" \"\" { fileinto \"Never\"; }");
    let boxes: Vec<String> = stores(&out).into_iter().map(|s| s.0).collect();
    assert_eq!(boxes, vec!["Spam", "Pct", "Clean", "During"]);
    assert_eq!(sieve::spamtest_from_score(2.5, 10.0), (3, 25));
    assert_eq!(sieve::spamtest_from_score(-3.0, 10.0), (1, 0));
    assert_eq!(sieve::spamtest_from_score(40.0, 10.0), (10, 100));
}

#[test]
fn rfc5260_currentdate_and_zones() {
    // 1_780_000_000 is 2026-05-28 20:26:40 UTC; the site zone is +0100.
    let out = run("require [\"date\", \"variables\", \"fileinto\"]; if currentdate :matches \"iso8601\" \"*\" { fileinto \"${1}\"; }");
    assert_eq!(stores(&out)[0].0, "2026-05-28T21:26:40+01:00");
}

#[test]
fn rfc5490_mailboxexists_and_create() {
    let state = Memory { mailboxes: HashSet::from(["Lists".to_string()]), ..Default::default() };
    let script = "require [\"mailbox\", \"fileinto\"]; if mailboxexists \"Lists\" { fileinto :create \"Lists/x\"; } if mailboxexists \"Nope\" { discard; }";
    let out = run_with(script, MESSAGE, &state, &Limits::default(), &NoIncludes).unwrap();
    assert_eq!(out.actions[0], Action::Store { mailbox: "Lists/x".into(), flags: vec![], create: true });
}

#[test]
fn bounded_hostile_scripts() {
    let limits = Limits::default();
    // A 1 MiB script: refused with a clear error.
    let big = format!("# {}\nkeep;", "x".repeat(1 << 20));
    assert!(compile_error(&big).message.contains("larger than"));
    // 10^6 nested tests: refused, no stack overflow.
    let nested = format!("if {} true {{ keep; }}", "not ".repeat(1_000_000));
    assert!(sieve::compile(&nested, "main", &Limits { script_bytes: 8 << 20, ..limits.clone() }, &NoIncludes).is_err());
    // 10^5 variables: refused at a limit (the element count, or the variable count first
    // when the script is small enough).
    let vars: String = (0..100_000).map(|i| format!("set \"v{i}\" \"x\";")).collect();
    let script = format!("require \"variables\"; {vars}");
    let err =
        sieve::compile(&script, "main", &Limits { script_bytes: 8 << 20, ..limits.clone() }, &NoIncludes).unwrap_err();
    assert!(err.message.contains("more than"), "{err}");
    let vars: String = (0..300).map(|i| format!("set \"v{i}\" \"x\";")).collect();
    let err = compile_error(&format!("require \"variables\"; {vars}"));
    assert!(err.message.contains("more than 255 variables"), "{err}");
    // Pathological :matches on a long value: ends within the step budget, quickly.
    let long = format!("Subject: {}\r\n\r\nx\r\n", "a".repeat(60_000));
    let pattern = "*a".repeat(2_000) + "b";
    let script = format!("if header :matches \"subject\" \"{pattern}\" {{ discard; }}");
    let started = Instant::now();
    let result = run_with(&script, long.as_bytes(), &Memory::default(), &limits, &NoIncludes);
    assert!(matches!(result, Err(RuntimeError::StepsExhausted(_)) | Ok(_)), "{result:?}");
    let pattern = format!("*{}b*", "a".repeat(2_000));
    let script = format!("if header :matches \"subject\" \"{pattern}\" {{ discard; }}");
    let result = run_with(&script, long.as_bytes(), &Memory::default(), &limits, &NoIncludes);
    assert!(matches!(result, Err(RuntimeError::StepsExhausted(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    // Redirect limit.
    let redirects: String = (0..10).map(|i| format!("redirect \"r{i}@example.com\";")).collect();
    let err = run_with(&redirects, MESSAGE, &Memory::default(), &limits, &NoIncludes).unwrap_err();
    assert_eq!(err, RuntimeError::TooManyRedirects(4));
}

#[test]
fn variable_values_are_capped_even_when_doubled() {
    let script = "require [\"variables\", \"fileinto\"]; set \"a\" \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\";
        set \"a\" \"${a}${a}\"; set \"a\" \"${a}${a}\"; set \"a\" \"${a}${a}\"; set \"a\" \"${a}${a}\"; set \"a\" \"${a}${a}\";
        set \"a\" \"${a}${a}\"; set \"a\" \"${a}${a}\"; set \"a\" \"${a}${a}\"; set \"a\" \"${a}${a}\"; set \"a\" \"${a}${a}\";
        set :length \"n\" \"${a}\"; fileinto \"${n}\";";
    assert_eq!(stores(&run(script))[0].0, "4096");
}
