//! Dates for the `date` and `currentdate` tests (RFC 5260 §4): an instant with the zone it
//! is shown in, and its named parts. Pure calendar arithmetic (proleptic Gregorian), no
//! clock: the caller passes "now". This module must never read the system time.

/// The date parts RFC 5260 §4.2 names.
pub const PARTS: &[&str] = &[
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601", "std11", "zone", "weekday",
];

/// An instant (seconds since 1970 UTC) shown in a zone (minutes east of UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant {
    pub unix_s: i64,
    pub zone_min: i32,
}

/// `+hhmm` or `-hhmm` to minutes east of UTC.
pub fn parse_zone(text: &str) -> Option<i32> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 60 + minutes))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if month <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, month, day)
}

/// A Date header's value as an instant in the zone it was written in; None when unparsable.
pub fn from_header(raw_value: &[u8]) -> Option<Instant> {
    let mail_parser::HeaderValue::DateTime(dt) = mail_parser::parsers::MessageStream::new(raw_value).parse_date()
    else {
        return None;
    };
    let valid = dt.year > 0
        && (1..=12).contains(&dt.month)
        && (1..=31).contains(&dt.day)
        && dt.hour < 24
        && dt.minute < 60
        && dt.second < 61;
    if !valid {
        return None;
    }
    let zone_min = (i32::from(dt.tz_hour) * 60 + i32::from(dt.tz_minute)) * if dt.tz_before_gmt { -1 } else { 1 };
    let local = days_from_civil(i64::from(dt.year), u32::from(dt.month), u32::from(dt.day)) * 86_400
        + i64::from(dt.hour) * 3600
        + i64::from(dt.minute) * 60
        + i64::from(dt.second);
    Some(Instant { unix_s: local - i64::from(zone_min) * 60, zone_min })
}

impl Instant {
    pub fn in_zone(self, zone_min: i32) -> Instant {
        Instant { zone_min, ..self }
    }

    fn zone(&self, colon: bool) -> String {
        let sign = if self.zone_min < 0 { '-' } else { '+' };
        let (h, m) = (self.zone_min.abs() / 60, self.zone_min.abs() % 60);
        if colon {
            format!("{sign}{h:02}:{m:02}")
        } else {
            format!("{sign}{h:02}{m:02}")
        }
    }

    /// The named part (one of `PARTS`), as RFC 5260 §4.2 writes it.
    pub fn part(&self, name: &str) -> Option<String> {
        let local = self.unix_s + i64::from(self.zone_min) * 60;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
        let weekday = (days + 4).rem_euclid(7);
        Some(match name.to_ascii_lowercase().as_str() {
            "year" => format!("{year:04}"),
            "month" => format!("{month:02}"),
            "day" => format!("{day:02}"),
            "date" => format!("{year:04}-{month:02}-{day:02}"),
            "julian" => (days + 40_587).to_string(),
            "hour" => format!("{hour:02}"),
            "minute" => format!("{minute:02}"),
            "second" => format!("{second:02}"),
            "time" => format!("{hour:02}:{minute:02}:{second:02}"),
            "iso8601" => {
                // RFC 3339's form, as Pigeonhole writes it: "Z" for UTC.
                let zone = if self.zone_min == 0 { "Z".to_string() } else { self.zone(true) };
                format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{zone}")
            }
            "std11" => {
                const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
                const MONTHS: [&str; 12] =
                    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
                let (wd, mo) = (DAYS[weekday as usize], MONTHS[month as usize - 1]);
                format!("{wd}, {day:02} {mo} {year:04} {hour:02}:{minute:02}:{second:02} {}", self.zone(false))
            }
            "zone" => self.zone(false),
            "weekday" => weekday.to_string(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5260_4_2_parts_of_a_header_date() {
        let d = from_header(b" Wed, 6 Jul 2005 13:34:15 -0700\r\n").unwrap();
        assert_eq!(d.part("date").unwrap(), "2005-07-06");
        assert_eq!(d.part("time").unwrap(), "13:34:15");
        assert_eq!(d.part("zone").unwrap(), "-0700");
        assert_eq!(d.part("weekday").unwrap(), "3");
        assert_eq!(d.part("julian").unwrap(), "53557");
        assert_eq!(d.part("iso8601").unwrap(), "2005-07-06T13:34:15-07:00");
        assert_eq!(d.part("std11").unwrap(), "Wed, 06 Jul 2005 13:34:15 -0700");
        let utc = d.in_zone(0);
        assert_eq!(utc.part("hour").unwrap(), "20");
    }

    #[test]
    fn zones_parse_strictly() {
        assert_eq!(parse_zone("+0130"), Some(90));
        assert_eq!(parse_zone("-0800"), Some(-480));
        assert_eq!(parse_zone("0800"), None);
        assert_eq!(parse_zone("+2500"), None);
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 59, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
