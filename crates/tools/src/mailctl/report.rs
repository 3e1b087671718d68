//! `mailctl report fates|viruses`: the cluster's tally of what the scanning stages did with
//! each message (read from the stats group's replicated state), as the tables a postmaster
//! looks at: the top fates of the last days, the top viruses. It only reads.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use common::admin::{AdminReply, AdminRequest};

use super::admin::Admin;

/// Rows listed at most.
const TOP: usize = 10;

/// `(day, fate, detail, messages)` rows of the whole tally.
pub async fn tally(admin: &Admin) -> anyhow::Result<Vec<(i64, String, String, u64)>> {
    let group = admin.front_config().stats_group().context("the configuration names no group")?;
    match admin.call(&group, AdminRequest::Fates { group: group.clone() }).await? {
        AdminReply::Fates(rows) => Ok(rows),
        other => bail!("{group}: {other}"),
    }
}

/// Sum `rows` of the `days` up to `today` by `key`, largest first, at most [`TOP`].
fn top(
    rows: &[(i64, String, String, u64)],
    today: i64,
    days: u32,
    key: impl Fn(&(i64, String, String, u64)) -> Option<String>,
) -> (u64, Vec<(String, u64)>) {
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    let recent = rows.iter().filter(|r| r.0 > today - i64::from(days) && r.0 <= today);
    for r in recent {
        if let Some(k) = key(r) {
            *sums.entry(k).or_default() += r.3;
        }
    }
    let total = sums.values().sum();
    let mut sorted: Vec<(String, u64)> = sums.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(TOP);
    (total, sorted)
}

/// The top fates of the last `days` days (UTC, today included).
pub fn render_fates(rows: &[(i64, String, String, u64)], today: i64, days: u32) -> String {
    let (total, top) = top(rows, today, days, |r| Some(r.1.clone()));
    let mut out = format!("top e-mail fates in {days} days ({total} messages)\nFATE              MESSAGES   SHARE\n");
    for (fate, n) in top {
        out.push_str(&format!("{fate:<16} {n:>9} {:>6.1}%\n", 100.0 * n as f64 / total.max(1) as f64));
    }
    out
}

/// The top viruses of the last `days` days.
pub fn render_viruses(rows: &[(i64, String, String, u64)], today: i64, days: u32) -> String {
    let (total, top) = top(rows, today, days, |r| (r.1 == "rejected-virus").then(|| r.2.clone()));
    let mut out =
        format!("top viruses in {days} days ({total} messages)\nVIRUS                                      MESSAGES\n");
    for (name, n) in top {
        out.push_str(&format!("{name:<42} {n:>9}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_sum_the_window_and_rank_by_count() {
        let r = |d: i64, f: &str, x: &str, n: u64| (d, f.to_string(), x.to_string(), n);
        let rows = vec![
            r(100, "clean", "", 50),
            r(93, "clean", "", 1000),
            r(99, "junk", "", 20),
            r(100, "rejected-virus", "Eicar", 3),
            r(98, "rejected-virus", "Eicar", 2),
            r(97, "rejected-virus", "Mailstore-Test", 1),
        ];
        let fates = render_fates(&rows, 100, 7);
        assert!(fates.starts_with("top e-mail fates in 7 days (76 messages)\n"), "{fates}");
        let lines: Vec<&str> = fates.lines().skip(2).collect();
        assert!(lines[0].starts_with("clean") && lines[0].contains(" 50 ") && lines[1].starts_with("junk"), "{fates}");
        let viruses = render_viruses(&rows, 100, 30);
        assert!(viruses.contains("(6 messages)") && viruses.lines().nth(2).unwrap().starts_with("Eicar "), "{viruses}");
    }
}
