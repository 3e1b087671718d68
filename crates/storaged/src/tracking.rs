//! Where a replica keeps the message-tracking records its groups' entries yield
//! (`mailstore::tracked`): one JSON line per record in a file per day, `GROUP/tracking/
//! YYYY-MM-DD.jsonl` beside the group's store (outside it, so snapshots neither carry nor
//! replace them), kept `[tracking] days` and at most `day_max_bytes` a day. Every replica
//! writes its own, so the record is as replicated as the log it comes from; a replica that
//! caught up from a snapshot lacks what came before it, which its peers still hold.
//!
//! Records are appended after each applied batch and synced before a checkpoint makes the
//! entries durable; entries re-applied after a crash are recognised by their log index and
//! not written twice. Answers queries by scanning the day files from the query's start.
//! Never holds message content, and never decides anything about delivery.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use common::tracking::{TraceQuery, TrackRecord, RESULTS_MAX};
use serde::{Deserialize, Serialize};

/// Longest line read back (records are far smaller: every field is cut to 256 chars).
const LINE_MAX_BYTES: usize = 16 * 1024;
const SECONDS_PER_DAY: i64 = 86_400;
const SUFFIX: &str = ".jsonl";

/// `[tracking]`: how long and how much a replica keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingSettings {
    /// Days of records kept (by the records' time); older day files are removed.
    pub days: u32,
    /// Bytes one group writes a day at most; past it, records of that day are dropped
    /// (and the drop logged once).
    pub day_max_bytes: u64,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        Self { days: 30, day_max_bytes: 256 << 20 }
    }
}

impl TrackingSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3660).contains(&self.days) {
            return Err("tracking.days must be 1 to 3660".into());
        }
        if self.day_max_bytes < 1 << 20 {
            return Err("tracking.day_max_bytes must be at least 1 MiB".into());
        }
        Ok(())
    }
}

/// The day files of one group on this replica.
pub struct Tracker {
    dir: PathBuf,
    settings: TrackingSettings,
    /// The highest log index whose records are written: a re-applied entry is skipped.
    written_through: u64,
    /// The day whose file is open, and the file.
    open: Option<(i64, File)>,
    /// The newest day old files were expired for.
    expired_for: i64,
    /// The day whose cap was reported (once a day).
    full_reported: i64,
}

fn day_of(at_s: i64) -> i64 {
    at_s.div_euclid(SECONDS_PER_DAY)
}

fn file_name(day: i64) -> String {
    let date = chrono::DateTime::from_timestamp(day * SECONDS_PER_DAY, 0).unwrap_or_default();
    format!("{}{SUFFIX}", date.format("%Y-%m-%d"))
}

/// The day a file holds, from its name; `None` for anything else.
fn day_of_file(name: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(name.strip_suffix(SUFFIX)?, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp().div_euclid(SECONDS_PER_DAY))
}

/// The day files under `dir`, oldest first.
fn day_files(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut out: Vec<(i64, PathBuf)> = match fs::read_dir(dir) {
        Ok(entries) => {
            entries.flatten().filter_map(|e| Some((day_of_file(e.file_name().to_str()?)?, e.path()))).collect()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort();
    Ok(out)
}

/// The log index of the last whole line of `path`, ending a torn last line (a crash in
/// the middle of a write) so the next record starts on its own line.
fn last_index(path: &Path) -> io::Result<u64> {
    let mut file = OpenOptions::new().read(true).append(true).open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(LINE_MAX_BYTES as u64 * 2);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    if !tail.is_empty() && !tail.ends_with(b"\n") {
        file.write_all(b"\n")?;
    }
    let index = tail
        .split(|b| *b == b'\n')
        .rev()
        .filter_map(|line| serde_json::from_slice::<TrackRecord>(line).ok())
        .map(|r| r.index)
        .next();
    Ok(index.unwrap_or(0))
}

impl Tracker {
    /// The records under `dir` (made if missing, mode 0700).
    pub fn open(dir: PathBuf, settings: TrackingSettings) -> io::Result<Self> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let mut written_through = 0;
        // The newest files hold the highest index (records are appended in log order);
        // an empty newest file (a day just begun) says nothing.
        for (_, path) in day_files(&dir)?.iter().rev().take(2) {
            written_through = written_through.max(last_index(path)?);
        }
        Ok(Self { dir, settings, written_through, open: None, expired_for: i64::MIN, full_reported: i64::MIN })
    }

    /// Append the records of entries applied after those already written.
    pub fn append(&mut self, records: &[TrackRecord]) -> io::Result<()> {
        let fresh: Vec<&TrackRecord> = records.iter().filter(|r| r.index > self.written_through).collect();
        let Some(newest) = fresh.iter().map(|r| day_of(r.at_s)).max() else { return Ok(()) };
        self.expire(newest)?;
        let mut k = 0;
        while k < fresh.len() {
            // Consecutive records of one day go out in one write.
            let day = day_of(fresh[k].at_s);
            let mut lines = Vec::new();
            while k < fresh.len() && day_of(fresh[k].at_s) == day {
                serde_json::to_writer(&mut lines, fresh[k]).map_err(io::Error::other)?;
                lines.push(b'\n');
                k += 1;
            }
            self.write_day(day, &lines)?;
        }
        self.written_through = fresh.iter().map(|r| r.index).max().unwrap_or(self.written_through);
        Ok(())
    }

    fn write_day(&mut self, day: i64, lines: &[u8]) -> io::Result<()> {
        if self.open.as_ref().is_none_or(|(d, _)| *d != day) {
            let file = OpenOptions::new().create(true).append(true).mode(0o600).open(self.dir.join(file_name(day)))?;
            self.open = Some((day, file));
        }
        let (_, file) = self.open.as_mut().expect("opened above");
        if file.metadata()?.len() + lines.len() as u64 > self.settings.day_max_bytes {
            if self.full_reported != day {
                self.full_reported = day;
                tracing::warn!(dir = %self.dir.display(), day = %file_name(day), max_bytes = self.settings.day_max_bytes,
                    "message tracking: the day's records reached [tracking] day_max_bytes; later ones of the day are not kept");
            }
            return Ok(());
        }
        file.write_all(lines)
    }

    /// Remove the day files older than the kept days, counted back from `newest`.
    fn expire(&mut self, newest: i64) -> io::Result<()> {
        if newest <= self.expired_for {
            return Ok(());
        }
        self.expired_for = newest;
        let oldest_kept = newest - i64::from(self.settings.days) + 1;
        for (day, path) in day_files(&self.dir)? {
            if day < oldest_kept {
                fs::remove_file(path)?;
                if self.open.as_ref().is_some_and(|(d, _)| *d == day) {
                    self.open = None;
                }
            }
        }
        Ok(())
    }

    /// Make what was appended durable (before a checkpoint records the entries applied).
    pub fn sync(&self) -> io::Result<()> {
        match &self.open {
            Some((_, file)) => file.sync_data(),
            None => Ok(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The records under `dir` that `query` selects, oldest day first; at most
/// [`RESULTS_MAX`], and whether more were left out. Blocking.
pub fn search(dir: &Path, query: &TraceQuery) -> io::Result<(Vec<TrackRecord>, bool)> {
    let mut out = Vec::new();
    let first_day = day_of(query.since_s);
    for (_, path) in day_files(dir)?.into_iter().filter(|(day, _)| *day >= first_day) {
        let mut reader = BufReader::new(File::open(&path)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut reader).take(LINE_MAX_BYTES as u64 + 1).read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if !line.ends_with(b"\n") && n > LINE_MAX_BYTES {
                // Not a record of ours: skip the rest of the line.
                reader.skip_until(b'\n')?;
                continue;
            }
            let Ok(text) = std::str::from_utf8(&line) else { continue };
            if !query.may_match(text) {
                continue;
            }
            match serde_json::from_str::<TrackRecord>(text) {
                Ok(r) if query.matches(&r) => {
                    if out.len() == RESULTS_MAX {
                        return Ok((out, true));
                    }
                    out.push(r);
                }
                _ => {}
            }
        }
    }
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::tracking::TrackEvent;

    fn record(index: u64, at_s: i64, to: &str) -> TrackRecord {
        TrackRecord {
            at_s,
            group: "hermes".into(),
            index,
            event: TrackEvent::Delivered,
            message_id: format!("<m{index}@x>"),
            answers: String::new(),
            queue_id: String::new(),
            from: "ann@example.org".into(),
            to: to.into(),
            detail: "INBOX".into(),
        }
    }

    const DAY: i64 = SECONDS_PER_DAY;

    #[test]
    fn records_are_kept_by_day_found_by_query_and_never_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TrackingSettings { days: 2, ..TrackingSettings::default() };
        let mut t = Tracker::open(dir.path().join("tracking"), settings.clone()).unwrap();
        t.append(&[record(1, 10 * DAY + 5, "alice"), record(2, 10 * DAY + 6, "bob")]).unwrap();
        t.append(&[record(3, 11 * DAY, "alice")]).unwrap();
        // A restart re-applies entries 2 and 3: nothing is written again.
        drop(t);
        let mut t = Tracker::open(dir.path().join("tracking"), settings.clone()).unwrap();
        t.append(&[record(2, 10 * DAY + 6, "bob"), record(3, 11 * DAY, "alice"), record(4, 11 * DAY + 1, "carol")])
            .unwrap();
        let dir = t.dir().to_path_buf();
        let all = |q: &TraceQuery| search(&dir, q).unwrap().0.iter().map(|r| r.index).collect::<Vec<_>>();
        assert_eq!(all(&TraceQuery::default()), [1, 2, 3, 4]);
        assert_eq!(all(&TraceQuery { to: Some("ALICE".into()), ..TraceQuery::default() }), [1, 3]);
        assert_eq!(all(&TraceQuery { message_ids: vec!["<m4@x>".into()], ..TraceQuery::default() }), [4]);
        assert_eq!(all(&TraceQuery { since_s: 11 * DAY, ..TraceQuery::default() }), [3, 4]);
        // Day 12 begins: with 2 days kept, day 10's file goes.
        t.append(&[record(5, 12 * DAY, "dave")]).unwrap();
        assert_eq!(all(&TraceQuery::default()), [3, 4, 5]);
        let mode = fs::metadata(t.dir().join(file_name(12))).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }

    #[test]
    fn a_torn_line_and_a_full_day_lose_only_what_they_must() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TrackingSettings { days: 30, day_max_bytes: 1 << 20 };
        let mut t = Tracker::open(dir.path().to_path_buf(), settings.clone()).unwrap();
        t.append(&[record(1, DAY, "alice")]).unwrap();
        let path = dir.path().join(file_name(1));
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"at_s\":8640").unwrap();
        drop(t);
        let mut t = Tracker::open(dir.path().to_path_buf(), settings).unwrap();
        t.append(&[record(2, DAY, "bob")]).unwrap();
        assert_eq!(
            search(t.dir(), &TraceQuery::default()).unwrap().0.len(),
            2,
            "the torn line ends; the next is whole"
        );
        // Past the day's cap, records of the day are dropped; the next day writes again.
        let big = "x".repeat(200);
        let many: Vec<TrackRecord> = (3..10_000).map(|i| record(i, DAY, &big)).collect();
        t.append(&many).unwrap();
        assert!(fs::metadata(&path).unwrap().len() <= 1 << 20);
        t.append(&[record(10_000, 2 * DAY, "carol")]).unwrap();
        let q = TraceQuery { to: Some("carol".into()), ..TraceQuery::default() };
        assert_eq!(search(t.dir(), &q).unwrap().0.len(), 1);
    }
}
