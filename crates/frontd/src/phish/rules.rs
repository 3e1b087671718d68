//! The rules that find a phished account, as the campus system ran them and a little
//! more: a login away from home within hours of one at home (geo-velocity), two logins
//! further apart than anyone travels in the time between them (impossible travel), and at
//! submission a spoofed author to many recipients (bulk spoofing), too many messages in an
//! hour (outbound volume) or a high spam score. Pure: a history or a submission in, an
//! alarm out. What this must never do: call an unknown place "away" (private and unlisted
//! addresses are neither home nor away).

use common::logins::LoginRecord;

use crate::config::PhishSection;

/// Below this distance two logins are never impossible travel (geo databases place one
/// address tens or hundreds of kilometres apart from one day to the next).
const TRAVEL_DISTANCE_MIN_KM: f64 = 500.0;
/// The shortest time between two logins used for a speed (clocks of two fronts differ).
const TRAVEL_TIME_MIN_S: f64 = 60.0;

/// Why an account was snagged.
#[derive(Debug, Clone, PartialEq)]
pub enum Alarm {
    /// A login away from home within the window of one at home.
    GeoVelocity {
        home: String,
        away: String,
        apart_s: i64,
    },
    /// Two logins further apart than `travel_kmh_max` allows.
    ImpossibleTravel {
        from: String,
        to: String,
        km: u32,
        kmh: u32,
    },
    /// The envelope sender is not the From address and the message (or the hour) goes to
    /// more recipients than allowed.
    BulkSpoofing {
        from_header: String,
        recipients: usize,
    },
    OutboundVolume {
        messages: u64,
    },
    OutboundSpam {
        score: f64,
    },
}

impl Alarm {
    /// The rule's name, as tickets and logs give it.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::GeoVelocity { .. } => "geo-velocity",
            Self::ImpossibleTravel { .. } => "impossible-travel",
            Self::BulkSpoofing { .. } => "bulk-spoofing",
            Self::OutboundVolume { .. } => "outbound-volume",
            Self::OutboundSpam { .. } => "outbound-spam",
        }
    }

    /// One line for a postmaster.
    pub fn describe(&self) -> String {
        match self {
            Self::GeoVelocity { home, away, apart_s } => {
                format!("login from {away} {:.1} h from a login at home ({home})", *apart_s as f64 / 3600.0)
            }
            Self::ImpossibleTravel { from, to, km, kmh } => format!("{from} to {to}: {km} km at {kmh} km/h"),
            Self::BulkSpoofing { from_header, recipients } => {
                format!("From {from_header} (not the sender) to {recipients} recipients")
            }
            Self::OutboundVolume { messages } => format!("{messages} messages within an hour"),
            Self::OutboundSpam { score } => format!("outbound spam score {score:.1}"),
        }
    }
}

/// Whether a login was at home, away, or somewhere unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whereabouts {
    Home,
    Away,
    Unknown,
}

/// What one submitted message looks like to the rules.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    pub envelope_from: &'a str,
    /// The From field's addresses (lower case).
    pub header_from: &'a [String],
    pub recipients: usize,
    /// Spoofed recipients of the user in the last hour, this message included.
    pub spoofed_recipients_hour: usize,
    /// Messages of the user in the last hour, this one included.
    pub messages_hour: u64,
}

/// The rules in force.
#[derive(Debug, Clone)]
pub struct Rules {
    cfg: PhishSection,
}

impl Rules {
    pub fn new(cfg: &PhishSection) -> Self {
        let mut cfg = cfg.clone();
        cfg.home_continents.iter_mut().for_each(|c| c.make_ascii_uppercase());
        cfg.home_countries.iter_mut().for_each(|c| c.make_ascii_uppercase());
        Self { cfg }
    }

    /// Where `r` was, by the home region.
    pub fn whereabouts(&self, r: &LoginRecord) -> Whereabouts {
        let home = |list: &[String], code: &Option<String>| code.as_ref().is_some_and(|c| list.contains(c));
        if home(&self.cfg.home_countries, &r.country) || home(&self.cfg.home_continents, &r.continent) {
            Whereabouts::Home
        } else if r.country.is_some() || r.continent.is_some() {
            Whereabouts::Away
        } else {
            Whereabouts::Unknown
        }
    }

    /// The alarm a new login `new` raises against the user's `history` (which may hold it);
    /// logins before the account's last release do not count.
    pub fn login(&self, history: &[LoginRecord], new: &LoginRecord) -> Option<Alarm> {
        let history = common::logins::since_release(history);
        let others = || history.iter().filter(move |r| *r != new);
        if self.cfg.geo_velocity {
            let window_s = self.cfg.window_h.saturating_mul(3600) as i64;
            let mine = self.whereabouts(new);
            let opposite = match mine {
                Whereabouts::Home => Whereabouts::Away,
                Whereabouts::Away => Whereabouts::Home,
                Whereabouts::Unknown => Whereabouts::Unknown,
            };
            if mine != Whereabouts::Unknown {
                let hit = others()
                    .filter(|r| self.whereabouts(r) == opposite && (r.at_s - new.at_s).abs() <= window_s)
                    .min_by_key(|r| (r.at_s - new.at_s).abs());
                if let Some(other) = hit {
                    let (home, away) = if mine == Whereabouts::Home { (new, other) } else { (other, new) };
                    return Some(Alarm::GeoVelocity {
                        home: place(home),
                        away: place(away),
                        apart_s: (home.at_s - away.at_s).abs(),
                    });
                }
            }
        }
        if self.cfg.impossible_travel {
            let previous = others().filter(|r| r.location.is_some() && r.at_s <= new.at_s).max_by_key(|r| r.at_s);
            if let Some(alarm) = previous.and_then(|p| self.travel(p, new)) {
                return Some(alarm);
            }
        }
        None
    }

    fn travel(&self, from: &LoginRecord, to: &LoginRecord) -> Option<Alarm> {
        let (a, b) = (from.degrees()?, to.degrees()?);
        let km = great_circle_km(a, b);
        let hours = ((to.at_s - from.at_s) as f64).max(TRAVEL_TIME_MIN_S) / 3600.0;
        let kmh = km / hours;
        (km >= TRAVEL_DISTANCE_MIN_KM && kmh > f64::from(self.cfg.travel_kmh_max)).then(|| Alarm::ImpossibleTravel {
            from: place(from),
            to: place(to),
            km: km as u32,
            kmh: kmh.min(f64::from(u32::MAX)) as u32,
        })
    }

    /// The alarm a submitted message raises.
    pub fn submission(&self, s: &Submission<'_>) -> Option<Alarm> {
        let spoofed = s.header_from.iter().any(|a| !a.eq_ignore_ascii_case(s.envelope_from));
        let limit = self.cfg.bulk_recipients_max;
        if self.cfg.bulk_spoofing && spoofed && (s.recipients > limit || s.spoofed_recipients_hour > limit) {
            let from_header = s.header_from.iter().find(|a| !a.eq_ignore_ascii_case(s.envelope_from));
            return Some(Alarm::BulkSpoofing {
                from_header: from_header.cloned().unwrap_or_default(),
                recipients: s.recipients.max(s.spoofed_recipients_hour),
            });
        }
        if self.cfg.outbound_volume && s.messages_hour > self.cfg.outbound_per_hour_max {
            return Some(Alarm::OutboundVolume { messages: s.messages_hour });
        }
        None
    }

    /// The alarm a submitted message's spam score raises.
    pub fn spam_score(&self, score: f64) -> Option<Alarm> {
        (self.cfg.outbound_spam && score >= self.cfg.outbound_spam_score).then_some(Alarm::OutboundSpam { score })
    }
}

/// `US 192.0.2.1` style.
fn place(r: &LoginRecord) -> String {
    format!("{} {}", r.country.as_deref().unwrap_or("??"), r.ip)
}

/// The distance between two points on the Earth (haversine, mean radius).
pub fn great_circle_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(at_s: i64, country: &str, continent: &str, location: Option<(f64, f64)>) -> LoginRecord {
        LoginRecord {
            at_s,
            protocol: "IMAP".into(),
            ip: "192.0.2.1".parse().unwrap(),
            country: (!country.is_empty()).then(|| country.into()),
            continent: (!continent.is_empty()).then(|| continent.into()),
            location: location.map(|(a, b)| ((a * 1e4) as i32, (b * 1e4) as i32)),
            front: "f".into(),
        }
    }

    const NEW_YORK: (f64, f64) = (40.7128, -74.0060);
    const LAGOS: (f64, f64) = (6.5244, 3.3792);
    const BOSTON: (f64, f64) = (42.3601, -71.0589);

    #[test]
    fn a_login_away_within_the_window_of_one_at_home_trips_geo_velocity() {
        let rules = Rules::new(&PhishSection { impossible_travel: false, ..PhishSection::default() });
        let home = login(0, "US", "NA", None);
        let away = login(3 * 3600, "NG", "AF", None);
        let alarm = rules.login(&[home.clone(), away.clone()], &away).expect("alarm");
        assert_eq!(alarm.rule(), "geo-velocity");
        assert!(rules.login(&[home.clone(), away.clone()], &home).is_some(), "either order");
        let later = login(9 * 3600, "NG", "AF", None);
        assert_eq!(rules.login(&[home.clone(), later.clone()], &later), None, "outside the 8 h window");
        let mut released = login(2 * 3600, "", "", None);
        released.protocol = common::logins::RELEASED.into();
        let after = login(4 * 3600, "NG", "AF", None);
        assert_eq!(rules.login(&[home.clone(), released, after.clone()], &after), None, "released: forgiven");
        let unknown = login(3600, "", "", None);
        assert_eq!(rules.login(&[home.clone(), unknown.clone()], &unknown), None, "unknown is not away");
        let canada = login(3600, "CA", "NA", None);
        assert_eq!(rules.login(&[home, canada.clone()], &canada), None, "North America is home");
    }

    #[test]
    fn logins_further_apart_than_anyone_travels_trip_impossible_travel() {
        let rules = Rules::new(&PhishSection { geo_velocity: false, ..PhishSection::default() });
        let ny = login(0, "US", "NA", Some(NEW_YORK));
        let lagos = login(3600, "NG", "AF", Some(LAGOS));
        let Some(Alarm::ImpossibleTravel { km, .. }) = rules.login(&[ny.clone(), lagos.clone()], &lagos) else {
            panic!("no alarm")
        };
        assert!((8000..9000).contains(&km), "{km}");
        let boston = login(60, "US", "NA", Some(BOSTON));
        assert_eq!(rules.login(&[ny.clone(), boston.clone()], &boston), None, "a short hop is never impossible");
        let slow = login(20 * 3600, "NG", "AF", Some(LAGOS));
        assert_eq!(rules.login(&[ny, slow.clone()], &slow), None, "a day's flight is possible");
    }

    #[test]
    fn bulk_spoofing_counts_recipients_per_message_and_per_hour() {
        let rules = Rules::new(&PhishSection::default());
        let from = vec!["bank@example.com".to_string()];
        let sub = |recipients, hour| Submission {
            envelope_from: "alice@example.edu",
            header_from: &from,
            recipients,
            spoofed_recipients_hour: hour,
            messages_hour: 1,
        };
        assert_eq!(rules.submission(&sub(99, 99)), None);
        assert_eq!(rules.submission(&sub(100, 100)), None);
        assert_eq!(rules.submission(&sub(101, 101)).unwrap().rule(), "bulk-spoofing");
        assert_eq!(rules.submission(&sub(10, 150)).unwrap().rule(), "bulk-spoofing", "per hour");
        let own = vec!["alice@example.edu".to_string()];
        let honest = Submission { header_from: &own, ..sub(500, 500) };
        assert_eq!(rules.submission(&honest), None, "not spoofed: many recipients are fine");
        let busy = Submission { messages_hour: 1001, ..honest };
        assert_eq!(rules.submission(&busy).unwrap().rule(), "outbound-volume");
        assert_eq!(rules.spam_score(20.0).unwrap().rule(), "outbound-spam");
        assert_eq!(rules.spam_score(5.0), None);
    }

    #[test]
    fn distances() {
        assert!((great_circle_km(NEW_YORK, BOSTON) - 306.0).abs() < 5.0);
        assert!(great_circle_km(NEW_YORK, NEW_YORK) < 1e-6);
    }
}
