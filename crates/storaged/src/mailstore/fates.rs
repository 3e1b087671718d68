//! The cluster-wide tally of message fates the fronts' scanning stages report (clean,
//! tagged, junk, quarantined, rejected-spam, rejected-virus with its signature,
//! temp-failed, unscanned), per UTC day. Part of the checkpointed state, so an entry
//! replayed after a crash is never counted twice; fronts send each batch under one
//! operation id, so a retried batch is never counted twice either. Bounded: days older
//! than [`DAYS_KEPT`] before the newest are dropped, and past [`DETAILS_MAX`] details (virus
//! names) in a day and fate, the rest count as `other`.

use std::collections::BTreeMap;

/// Days kept (a little over a year).
pub const DAYS_KEPT: i64 = 400;
/// Distinct details per day and fate.
pub const DETAILS_MAX: usize = 200;
/// Longest fate or detail kept, in bytes.
const NAME_MAX_BYTES: usize = 128;

/// `(day since 1970-01-01 UTC, fate, detail)` → messages.
pub type FateRow = (i64, String, String, u64);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fates {
    counts: BTreeMap<(i64, String, String), u64>,
}

fn bounded(text: &str) -> String {
    let mut end = text.len().min(NAME_MAX_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].chars().filter(|c| !c.is_control()).collect()
}

impl Fates {
    pub fn from_rows(rows: Vec<FateRow>) -> Self {
        let mut f = Self::default();
        f.add(&rows);
        f
    }

    /// Count `rows` in, then drop what the bounds leave out.
    pub fn add(&mut self, rows: &[FateRow]) {
        for (day, fate, detail, n) in rows {
            let (fate, mut detail) = (bounded(fate), bounded(detail));
            let details = self
                .counts
                .range((*day, fate.clone(), String::new())..)
                .take_while(|((d, f, _), _)| d == day && *f == fate)
                .count();
            if !self.counts.contains_key(&(*day, fate.clone(), detail.clone())) && details >= DETAILS_MAX {
                detail = "other".into();
            }
            let slot = self.counts.entry((*day, fate, detail)).or_default();
            *slot = slot.saturating_add(*n);
        }
        if let Some(newest) = self.counts.keys().next_back().map(|k| k.0) {
            self.counts.retain(|k, _| k.0 > newest - DAYS_KEPT);
        }
    }

    pub fn rows(&self) -> Vec<FateRow> {
        self.counts.iter().map(|((d, f, x), n)| (*d, f.clone(), x.clone(), *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: i64, fate: &str, detail: &str, n: u64) -> FateRow {
        (day, fate.into(), detail.into(), n)
    }

    #[test]
    fn counts_add_up_per_day_fate_and_detail_within_bounds() {
        let mut f = Fates::default();
        f.add(&[row(10, "clean", "", 3), row(10, "rejected-virus", "Eicar", 1)]);
        f.add(&[row(10, "clean", "", 2), row(11, "clean", "", 1)]);
        assert_eq!(
            f.rows(),
            vec![row(10, "clean", "", 5), row(10, "rejected-virus", "Eicar", 1), row(11, "clean", "", 1)]
        );
        let many: Vec<FateRow> = (0..DETAILS_MAX + 5).map(|k| row(11, "rejected-virus", &format!("v{k}"), 1)).collect();
        f.add(&many);
        assert_eq!(f.rows().iter().filter(|r| r.0 == 11 && r.1 == "rejected-virus").count(), DETAILS_MAX + 1);
        assert!(f.rows().contains(&row(11, "rejected-virus", "other", 5)));
        f.add(&[row(11 + DAYS_KEPT, "clean", "", 1)]);
        assert!(f.rows().iter().all(|r| r.0 > 11), "a year back is dropped");
        assert_eq!(Fates::from_rows(f.rows()), f);
    }
}
