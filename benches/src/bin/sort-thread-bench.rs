//! SORT and THREAD over a large mailbox with hostile headers: the work after the headers are
//! in memory (key extraction, base subjects, ordering, the REFERENCES threading), which is
//! where a quadratic walk or a recursion would show.
//!
//! `cargo build --release -p benches && target/release/sort-thread-bench --messages 100000`
//!
//! The mailbox: `--messages` ordinary messages in reply chains of 10, plus three strangers'
//! messages: a subject of 10,000 nested `Re: [x]` prefixes, a 1 MiB subject, and a
//! References header of 100,000 ids (the RFC 5256 acceptance case of issue 20).

use std::time::Instant;

use clap::Parser;
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use storaged::imap::sort::{key_of, order};
use storaged::imap::thread::{message_ids, ordered_subject, references, Message};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
}

fn header(k: usize) -> Vec<u8> {
    let thread = k / 10;
    let parent = if k.is_multiple_of(10) { String::new() } else { format!("References: <m{}@x>\r\n", k - 1) };
    let re = if k.is_multiple_of(10) { "" } else { "Re: " };
    format!(
        "Message-ID: <m{k}@x>\r\n{parent}Subject: {re}topic {thread}\r\nFrom: user{} <u{}@example.org>\r\n\
         Date: Mon, {} Jan 2024 10:{:02}:00 +0000\r\n\r\n",
        k % 997,
        k % 997,
        1 + k % 28,
        k % 60
    )
    .into_bytes()
}

fn hostile() -> Vec<Vec<u8>> {
    let nested = format!("Subject: {}end\r\n\r\n", "Re: [x] ".repeat(10_000));
    let huge = format!("Subject: {}\r\n\r\n", "y".repeat(1 << 20));
    let refs: String = (0..100_000).map(|k| format!("<r{k}@x> ")).collect();
    let many = format!("Message-ID: <many@x>\r\nReferences: {refs}\r\nSubject: refs\r\n\r\n");
    vec![nested.into_bytes(), huge.into_bytes(), many.into_bytes()]
}

fn field(h: &[u8], name: &[u8]) -> Vec<u8> {
    storaged::imap::header::values(h, name).into_iter().next().unwrap_or_default()
}

fn main() {
    let args = Args::parse();
    let mut headers: Vec<Vec<u8>> = (0..args.messages).map(header).collect();
    headers.extend(hostile());
    let criteria = [
        SortCriterion { reverse: false, key: SortKey::Subject },
        SortCriterion { reverse: true, key: SortKey::Date },
        SortCriterion { reverse: false, key: SortKey::From },
    ];
    let started = Instant::now();
    let keys: Vec<Vec<_>> =
        headers.iter().map(|h| criteria.iter().map(|c| key_of(&c.key, h, h.len() as u64, 0)).collect()).collect();
    let sorted = order(&criteria, &keys);
    let sort_s = started.elapsed().as_secs_f64();
    assert_eq!(sorted.len(), headers.len());

    let started = Instant::now();
    let messages: Vec<Message> = headers
        .iter()
        .enumerate()
        .map(|(k, h)| Message {
            number: k as u32 + 1,
            message_id: message_ids(&field(h, b"Message-ID")).into_iter().next(),
            references: message_ids(&field(h, b"References")),
            subject: field(h, b"Subject"),
            sent: storaged::imap::sort::sent_or_arrival(h, 0),
        })
        .collect();
    let parse_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let threads = references(&messages);
    let references_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let ordered = ordered_subject(&messages);
    let ordered_s = started.elapsed().as_secs_f64();
    println!("| messages | SORT (SUBJECT REVERSE DATE FROM) s | THREAD header fields s | THREAD REFERENCES s | THREAD ORDEREDSUBJECT s |");
    println!("|---|---|---|---|---|");
    println!("| {} + 3 hostile | {sort_s:.2} | {parse_s:.2} | {references_s:.2} | {ordered_s:.2} |", args.messages);
    println!("(answers: {} and {} bytes)", threads.len(), ordered.len());
    fields_file(&headers);
}

/// The sort fields of every message kept on disk (`group::fields_file`) and read back, as a
/// restarted node's first SORT reads them instead of the message files.
fn fields_file(headers: &[Vec<u8>]) {
    use storaged::group::fields_file::{self, FileKey};
    use storaged::imap::header::{only_fields, SORT_FIELDS};
    let dir = std::env::temp_dir().join(format!("sort-thread-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join(fields_file::FIELDS_FILE);
    let records: Vec<(FileKey, Vec<u8>)> = headers
        .iter()
        .enumerate()
        .map(|(k, h)| {
            let key = FileKey {
                base: format!("1700000000.R{k}_0.bench,S={}", h.len()),
                size: h.len() as u64,
                crc32c: k as u32,
            };
            (key, only_fields(h, &SORT_FIELDS))
        })
        .collect();
    let started = Instant::now();
    let appended: Vec<(FileKey, &[u8])> = records.iter().map(|(k, f)| (k.clone(), &f[..])).collect();
    fields_file::append(&path, &appended).expect("fields file written");
    let write_s = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    let started = Instant::now();
    let (found, _) = fields_file::load(&path);
    let load_s = started.elapsed().as_secs_f64();
    println!(
        "fields file: {} records kept, {:.0} B a message, written in {write_s:.2} s, loaded in {load_s:.2} s",
        found.len(),
        bytes as f64 / headers.len() as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
