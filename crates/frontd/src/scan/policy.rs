//! What a scan means for one recipient: the user's spam policy from the directory, the
//! site's defaults for what it leaves out, and the fate that follows. Pure: no I/O, no
//! clock.

use directory::{SpamAction, SpamPolicy};

use super::rspamd::SpamReport;

/// The site's spam policy, for users whose entry names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteSpamPolicy {
    pub action: SpamAction,
    /// Scores at or above this (hundredths of a point) are spam.
    pub threshold_centi: i32,
}

/// What became of a message, for one recipient or for all of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fate {
    /// Scanned and under the recipient's threshold (or not scanned for spam here).
    Clean,
    /// Spam, delivered to INBOX marked.
    Tagged,
    /// Spam, delivered to the Junk folder.
    Junk,
    /// Spam, kept in the quarantine.
    Quarantined,
    /// Spam, refused for this recipient.
    RejectedSpam,
    /// A virus: the whole message refused, with the signature's name.
    RejectedVirus(String),
    /// A scanner did not answer and the listener defers: `451`.
    TempFailed,
    /// A scanner did not answer and the listener accepts unscanned mail (marked so).
    Unscanned,
}

impl Fate {
    /// The name counted in reports and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Fate::Clean => "clean",
            Fate::Tagged => "tagged",
            Fate::Junk => "junk",
            Fate::Quarantined => "quarantined",
            Fate::RejectedSpam => "rejected-spam",
            Fate::RejectedVirus(_) => "rejected-virus",
            Fate::TempFailed => "temp-failed",
            Fate::Unscanned => "unscanned",
        }
    }
}

/// One recipient's decision on a scored message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub spam: bool,
    pub threshold: f64,
    pub action: SpamAction,
}

impl Decision {
    pub fn fate(&self) -> Fate {
        match (self.spam, self.action) {
            (false, _) => Fate::Clean,
            (true, SpamAction::Tag) => Fate::Tagged,
            (true, SpamAction::Junk) => Fate::Junk,
            (true, SpamAction::Quarantine) => Fate::Quarantined,
            (true, SpamAction::Reject) => Fate::RejectedSpam,
        }
    }
}

/// Decide for a user with policy `user` (their own, or the site's where they set none).
pub fn decide(report: &SpamReport, user: SpamPolicy, site: SiteSpamPolicy) -> Decision {
    let threshold_centi = user.threshold_centi.unwrap_or(site.threshold_centi);
    // Compared in hundredths, as the directory writes thresholds: 5.999 is under 6.
    let score_centi = (report.score * 100.0).round();
    Decision {
        spam: score_centi >= f64::from(threshold_centi),
        threshold: f64::from(threshold_centi) / 100.0,
        action: user.action.unwrap_or(site.action),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(score: f64) -> SpamReport {
        SpamReport { score, required_score: 15.0, action: "no action".into(), symbols: Vec::new() }
    }

    const SITE: SiteSpamPolicy = SiteSpamPolicy { action: SpamAction::Junk, threshold_centi: 600 };

    #[test]
    fn the_users_threshold_and_action_win_over_the_sites() {
        let none = SpamPolicy::default();
        assert_eq!(decide(&scored(5.99), none, SITE).fate(), Fate::Clean);
        assert_eq!(decide(&scored(6.0), none, SITE).fate(), Fate::Junk);
        let strict = SpamPolicy { action: Some(SpamAction::Reject), threshold_centi: Some(300) };
        assert_eq!(decide(&scored(3.0), strict, SITE).fate(), Fate::RejectedSpam);
        let lenient = SpamPolicy { action: None, threshold_centi: Some(2000) };
        let d = decide(&scored(15.0), lenient, SITE);
        assert_eq!((d.fate(), d.threshold), (Fate::Clean, 20.0));
        for (action, fate) in [
            (SpamAction::Tag, Fate::Tagged),
            (SpamAction::Quarantine, Fate::Quarantined),
            (SpamAction::Junk, Fate::Junk),
        ] {
            let p = SpamPolicy { action: Some(action), threshold_centi: None };
            assert_eq!(decide(&scored(15.0), p, SITE).fate(), fate);
        }
    }
}
