//! `mailctl trace`: where messages went, from the tracking records every storage replica
//! keeps (`common::tracking`). Asks every node at once (any replica of a group answers for
//! it; a node that does not answer is named, and its peers usually hold the same records),
//! merges the copies, then asks again for the whole story of each message found: every
//! hop of the Message-IDs the first answer named, and the bounces and automatic replies
//! that answer them. Prints a timeline per message, or JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use common::admin::{AdminClient, AdminReply, AdminRequest};
use common::tracking::{TraceQuery, TrackEvent, TrackRecord, QUERY_IDS_MAX};

use super::admin::Admin;

/// How long one node may take to search its records.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the nodes said.
#[derive(Debug, Default)]
pub struct Traced {
    /// Every record once, in time order.
    pub records: Vec<TrackRecord>,
    /// Nodes that did not answer, with why.
    pub silent: Vec<(u64, String)>,
    /// Some node had more matching records than one answer holds, or more messages
    /// matched than one trace follows.
    pub truncated: bool,
}

/// Parse `--since`: a date (`2026-12-06`), a time (RFC 3339), or an age (`90m`, `6h`, `2d`).
pub fn parse_since(text: &str, now_s: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Some(age) = parse_age_s(text) {
        return Ok(now_s.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX)));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp());
    }
    anyhow::bail!("--since {text:?}: give a date (2026-12-06), a time (2026-12-06T10:00:00Z) or an age (90m, 6h, 2d)")
}

/// Seconds of an age or a duration: `90s`, `90m`, `6h`, `2d`; `None` for anything else.
pub fn parse_age_s(text: &str) -> Option<u64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).filter(|k| *k > 0)?;
    let (n, unit) = text.split_at(unit_at);
    let seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.parse::<u64>().ok().map(|n| n.saturating_mul(seconds))
}

/// Ask every node for `query`'s records; each record once.
async fn ask_all(admin: &Admin, query: &TraceQuery) -> Traced {
    let request = AdminRequest::Trace(query.clone());
    let asks = admin.node_addrs().into_iter().map(|(id, addr)| {
        let (key, request) = (admin.key().clone(), request.clone());
        async move {
            let answer = async {
                let mut c =
                    AdminClient::connect(&addr, &key, Duration::from_secs(3)).await.map_err(|e| e.to_string())?;
                c.call(&request, NODE_TIMEOUT).await.map_err(|e| e.to_string())
            }
            .await;
            (id, answer)
        }
    });
    let mut tasks: tokio::task::JoinSet<_> = asks.collect();
    let mut traced = Traced::default();
    let mut seen = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let Ok((id, answer)) = done else { continue };
        match answer {
            Ok(AdminReply::Trace { records, truncated }) => {
                traced.truncated |= truncated;
                for r in records {
                    let (group, index, event, to, queue_id, detail) = r.key();
                    let key =
                        (group.to_string(), index, event, to.to_string(), queue_id.to_string(), detail.to_string());
                    if seen.insert(key) {
                        traced.records.push(r);
                    }
                }
            }
            Ok(other) => traced.silent.push((id, other.to_string())),
            Err(e) => traced.silent.push((id, e)),
        }
    }
    in_time_order(&mut traced.records);
    traced.silent.sort();
    traced
}

/// Sort records by time, then by group and log index (the order within a second).
fn in_time_order(records: &mut [TrackRecord]) {
    records.sort_by(|a, b| (a.at_s, &a.group, a.index, a.event).cmp(&(b.at_s, &b.group, b.index, b.event)));
}

/// The records of every message `query` selects, with all their hops.
pub async fn trace(admin: &Admin, query: TraceQuery) -> Traced {
    let first = ask_all(admin, &query).await;
    let mut ids: Vec<String> = Vec::new();
    for r in &first.records {
        for id in [&r.message_id, &r.answers] {
            if !id.is_empty() && !ids.contains(id) {
                ids.push(id.clone());
            }
        }
    }
    if ids.is_empty() {
        return first;
    }
    let truncated = first.truncated || ids.len() > QUERY_IDS_MAX;
    ids.truncate(QUERY_IDS_MAX);
    let whole = TraceQuery { message_ids: ids, from: None, to: None, since_s: query.since_s };
    let mut all = ask_all(admin, &whole).await;
    // Records without a Message-ID are only found by the first question.
    all.records.extend(first.records.into_iter().filter(|r| r.message_id.is_empty()));
    in_time_order(&mut all.records);
    all.truncated |= truncated;
    all.silent = first.silent;
    all
}

/// The message a record belongs to in the printout: the one it answers (a bounce shows
/// under the message that bounced), else its own.
fn story_of(r: &TrackRecord) -> String {
    if !r.answers.is_empty() {
        r.answers.clone()
    } else if !r.message_id.is_empty() {
        r.message_id.clone()
    } else if !r.queue_id.is_empty() && r.event == TrackEvent::Refused {
        // A front's refusal before any data: its own id.
        format!("(no Message-ID, refused as {})", r.queue_id)
    } else if !r.queue_id.is_empty() {
        format!("(no Message-ID, queued as {})", r.queue_id)
    } else {
        format!("(no Message-ID, {}@{})", r.group, r.index)
    }
}

fn when(at_s: i64) -> String {
    chrono::DateTime::from_timestamp(at_s, 0).map_or_else(|| at_s.to_string(), |t| t.format("%F %T").to_string())
}

/// The timeline of each message, for people.
pub fn render(traced: &Traced) -> String {
    let mut stories: BTreeMap<String, Vec<&TrackRecord>> = BTreeMap::new();
    for r in &traced.records {
        stories.entry(story_of(r)).or_default().push(r);
    }
    // Within a second the groups' order is unknown; the front's hop comes first anyway.
    stories
        .values_mut()
        .for_each(|s| s.sort_by_key(|r| (r.event != TrackEvent::Received || !r.answers.is_empty(), r.at_s)));
    let mut out = String::new();
    for (id, records) in &stories {
        let from = records.iter().find(|r| r.answers.is_empty() && !r.from.is_empty()).map_or("", |r| r.from.as_str());
        let _ = writeln!(out, "Message {id}  from <{from}>");
        let mut fronts = BTreeSet::new();
        for r in records {
            // Each group that holds a copy read the same Received field: say it once.
            if r.event == TrackEvent::Received && !fronts.insert((&r.message_id, &r.detail)) {
                continue;
            }
            let place = if r.queue_id.is_empty() { format!("{}@{}", r.group, r.index) } else { r.queue_id.clone() };
            let to = if r.to.is_empty() { String::new() } else { format!("<{}>", r.to) };
            let answer = if r.answers.is_empty() { String::new() } else { format!("[{}] ", r.message_id) };
            let _ = writeln!(
                out,
                "  {}  {:<9} {:<28} {:<14} {answer}{}",
                when(r.at_s),
                r.event.as_str(),
                to,
                place,
                r.detail
            );
        }
        out.push('\n');
    }
    if stories.is_empty() {
        out.push_str("no tracking records match (records are kept [tracking] days, 30 by default)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_dates_times_and_ages() {
        let now = 1_796_000_000;
        assert_eq!(parse_since("90m", now).unwrap(), now - 5400);
        assert_eq!(parse_since("2d", now).unwrap(), now - 172_800);
        assert_eq!(parse_since("2026-12-06", now).unwrap(), 1_796_515_200);
        assert_eq!(parse_since("2026-12-06T01:00:00Z", now).unwrap(), 1_796_518_800);
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5w", now).is_err());
    }

    fn record(event: TrackEvent, index: u64, to: &str, answers: &str) -> TrackRecord {
        TrackRecord {
            at_s: 1_796_515_200 + index as i64,
            group: "hermes".into(),
            index,
            event,
            message_id: if answers.is_empty() { "<m@x>".into() } else { "<bounce.1@f>".into() },
            answers: answers.into(),
            queue_id: String::new(),
            from: "alice@example.edu".into(),
            to: to.into(),
            detail: "by front1 from 192.0.2.1".into(),
        }
    }

    #[test]
    fn a_bounce_is_told_under_the_message_it_answers_and_the_front_once() {
        let traced = Traced {
            records: vec![
                record(TrackEvent::Delivered, 1, "bob@example.edu", ""),
                record(TrackEvent::Received, 1, "", ""),
                record(TrackEvent::Received, 2, "", ""),
                record(TrackEvent::Delivered, 3, "alice@example.edu", "<m@x>"),
            ],
            ..Traced::default()
        };
        let text = render(&traced);
        assert!(text.starts_with("Message <m@x>  from <alice@example.edu>\n"), "{text}");
        assert_eq!(text.matches("received").count(), 1, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("received") && lines[2].contains("<bob@example.edu>"), "{text}");
        assert!(lines[3].contains("[<bounce.1@f>]") && lines[3].contains("<alice@example.edu>"), "{text}");
        assert!(render(&Traced::default()).starts_with("no tracking records match"));
    }
}
