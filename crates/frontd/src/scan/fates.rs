//! The fates this front's scanning stage decided, counted per UTC day and reported to the
//! cluster's tally (a storage group's replicated state, read by `mailctl report`) by
//! `crate::reports`, which never counts a batch twice. Bounded: at most [`ROWS_MAX`]
//! distinct rows wait (beyond, details fold into `other`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::admin::AdminRequest;

use super::policy::Fate;

/// Distinct `(day, fate, detail)` rows held between reports.
pub const ROWS_MAX: usize = 10_000;

/// A report's rows: `(day since 1970-01-01 UTC, fate, detail, messages)`.
pub type Rows = Vec<(i64, String, String, u64)>;

/// Counts not yet reported.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<(i64, String, String), u64>>,
}

/// Today, in days since 1970-01-01 UTC.
pub fn today() -> i64 {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (s / 86_400) as i64
}

impl Tally {
    /// Count `n` messages (or copies) with `fate` today.
    pub fn count(&self, fate: &Fate, n: u64) {
        self.count_on(today(), fate, n);
    }

    fn count_on(&self, day: i64, fate: &Fate, n: u64) {
        let detail = match fate {
            Fate::RejectedVirus(name) => name.clone(),
            _ => String::new(),
        };
        let mut counts = self.counts.lock().expect("fate tally lock");
        let mut key = (day, fate.name().to_string(), detail);
        if !counts.contains_key(&key) && counts.len() >= ROWS_MAX {
            key.2 = "other".into();
        }
        *counts.entry(key).or_default() += n;
    }

    /// Everything counted so far, leaving the tally empty.
    pub fn take(&self) -> Rows {
        let counts = std::mem::take(&mut *self.counts.lock().expect("fate tally lock"));
        counts.into_iter().map(|((d, f, x), n)| (d, f, x, n)).collect()
    }
}

/// Report the tally through `reporter`, forever.
pub async fn report(tally: Arc<Tally>, reporter: crate::reports::Reporter) {
    let request = |group, op_id, counts| AdminRequest::CountFates { group, op_id, counts };
    reporter.run("fates", || tally.take(), request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_are_counted_per_day_with_the_virus_named() {
        let t = Tally::default();
        t.count_on(20_000, &Fate::Clean, 2);
        t.count_on(20_000, &Fate::Clean, 1);
        t.count_on(20_000, &Fate::RejectedVirus("Eicar".into()), 1);
        t.count_on(20_001, &Fate::Junk, 3);
        assert_eq!(
            t.take(),
            vec![
                (20_000, "clean".into(), String::new(), 3),
                (20_000, "rejected-virus".into(), "Eicar".into(), 1),
                (20_001, "junk".into(), String::new(), 3)
            ]
        );
        assert!(t.take().is_empty());
        for k in 0..ROWS_MAX + 3 {
            t.count_on(20_000, &Fate::RejectedVirus(format!("v{k}")), 1);
        }
        let rows = t.take();
        assert_eq!(rows.len(), ROWS_MAX + 1);
        assert!(rows.contains(&(20_000, "rejected-virus".into(), "other".into(), 3)));
    }
}
