//! Evaluating tests: each test gathers its values from the message, envelope or context and
//! hands them to `compare`. A `:matches` success sets the match variables (RFC 5229 §3.2).
//! This module must never change the message or the actions.

use super::{Exec, FLAGS_VARIABLE};
use crate::compare;
use crate::error::RuntimeError;
use crate::message::Field;
use crate::program::{AddressPart, BodyTransform, DuplicateId, Index, MatchKind, MatchSpec, Str, Test, Zone};

impl Exec<'_, '_> {
    pub(super) fn test(&mut self, test: &Test) -> Result<bool, RuntimeError> {
        self.budget.spend(1)?;
        match test {
            Test::True => Ok(true),
            Test::False => Ok(false),
            Test::Not(inner) => Ok(!self.test(inner)?),
            Test::AllOf(tests) => self.all(tests),
            Test::AnyOf(tests) => self.any(tests),
            Test::Address { spec, part, index, headers, keys } => {
                let values = self.address_values(*part, *index, headers);
                self.matches(*spec, &values, keys)
            }
            Test::Envelope { spec, part, fields, keys } => {
                let values = self.envelope_values(*part, fields);
                self.matches(*spec, &values, keys)
            }
            Test::Header { spec, index, headers, keys } => {
                let values = self.header_values(*index, headers);
                self.matches(*spec, &values, keys)
            }
            Test::Exists(names) => {
                Ok(names.iter().all(|n| self.message.fields_named(&self.vars.expand(n)).next().is_some()))
            }
            Test::Size { over, limit_bytes } => {
                Ok(if *over { self.message.size() > *limit_bytes } else { self.message.size() < *limit_bytes })
            }
            Test::Body { spec, transform, keys } => {
                let values = self.body_values(transform)?;
                self.matches(*spec, &values, keys)
            }
            Test::String { spec, sources, keys } => self.string(*spec, sources, keys),
            Test::HasFlag { spec, variables, keys } => self.hasflag(*spec, variables, keys),
            Test::Date { spec, index, zone, header, part, keys } => self.date(*spec, *index, zone, header, part, keys),
            Test::CurrentDate { spec, zone, part, keys } => self.currentdate(*spec, zone, part, keys),
            Test::Duplicate { handle, id, period_s, last } => Ok(self.duplicate(handle.as_ref(), id, *period_s, *last)),
            Test::SpamTest { spec, percent, keys } => self.spamtest(*spec, *percent, keys),
            Test::VirusTest { spec, keys } => {
                let value = self.ctx.virus.map_or_else(|| "0".to_string(), |v| v.to_string());
                self.matches(*spec, &[value], keys)
            }
            Test::Environment { spec, name, keys } => self.environment(*spec, name, keys),
            Test::MailboxExists(names) => Ok(names.iter().all(|n| {
                let name = self.vars.expand(n);
                name.eq_ignore_ascii_case("inbox") || self.ctx.state.mailbox_exists(&name)
            })),
        }
    }

    fn string(&mut self, spec: MatchSpec, sources: &[Str], keys: &[Str]) -> Result<bool, RuntimeError> {
        let values: Vec<String> = sources.iter().map(|s| self.vars.expand(s)).collect();
        // RFC 5229 §5: :count counts the sources that are not empty.
        let values = match spec.kind {
            MatchKind::Count(_) => values.into_iter().filter(|v| !v.is_empty()).collect(),
            _ => values,
        };
        self.matches(spec, &values, keys)
    }

    fn hasflag(&mut self, spec: MatchSpec, variables: &[Str], keys: &[Str]) -> Result<bool, RuntimeError> {
        let lists: Vec<String> = match variables.is_empty() {
            true => vec![self.vars.get(FLAGS_VARIABLE).to_string()],
            false => {
                variables.iter().map(|v| self.vars.get(&self.vars.expand(v).to_ascii_lowercase()).to_string()).collect()
            }
        };
        let values = super::flag_set(lists.iter().map(String::as_str));
        self.matches(spec, &values, keys)
    }

    fn currentdate(&mut self, spec: MatchSpec, zone: &Zone, part: &Str, keys: &[Str]) -> Result<bool, RuntimeError> {
        let now = crate::date::Instant { unix_s: self.ctx.now_unix_s, zone_min: self.ctx.zone_min };
        let value = self.zoned(now, zone).and_then(|d| d.part(&self.vars.expand(part)));
        self.matches(spec, &value.into_iter().collect::<Vec<_>>(), keys)
    }

    fn spamtest(&mut self, spec: MatchSpec, percent: bool, keys: &[Str]) -> Result<bool, RuntimeError> {
        let value = match self.ctx.spam {
            None => "0".to_string(),
            Some((value, pct)) => {
                if percent {
                    pct.to_string()
                } else {
                    value.to_string()
                }
            }
        };
        self.matches(spec, &[value], keys)
    }

    /// RFC 5183 §4: an item the implementation does not know fails the test.
    fn environment(&mut self, spec: MatchSpec, name: &Str, keys: &[Str]) -> Result<bool, RuntimeError> {
        let name = self.vars.expand(name).to_ascii_lowercase();
        let value = self.ctx.environment.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        match value {
            Some(value) => self.matches(spec, &[value], keys),
            None => Ok(false),
        }
    }

    fn all(&mut self, tests: &[Test]) -> Result<bool, RuntimeError> {
        for test in tests {
            if !self.test(test)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn any(&mut self, tests: &[Test]) -> Result<bool, RuntimeError> {
        for test in tests {
            if self.test(test)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Compares values to the expanded keys; `:matches` successes set match variables.
    fn matches(&mut self, spec: MatchSpec, values: &[String], keys: &[Str]) -> Result<bool, RuntimeError> {
        let keys: Vec<String> = keys.iter().map(|k| self.vars.expand(k)).collect();
        let mut captures = Vec::new();
        let want = spec.kind == MatchKind::Matches;
        let hit = compare::test(spec, values, &keys, &mut self.budget, want.then_some(&mut captures))?;
        if hit && want {
            self.vars.set_matches(captures);
        }
        Ok(hit)
    }

    fn fields(&self, index: Option<Index>, names: &[Str]) -> Vec<&Field> {
        let mut fields: Vec<&Field> = Vec::new();
        for name in names {
            let name = self.vars.expand(name);
            let named: Vec<&Field> = self.message.fields_named(&name).collect();
            match index {
                None => fields.extend(named),
                Some(Index { nth, last }) => {
                    let at = if last { named.len().checked_sub(nth) } else { nth.checked_sub(1) };
                    fields.extend(at.and_then(|i| named.get(i).copied()));
                }
            }
        }
        fields
    }

    fn header_values(&self, index: Option<Index>, names: &[Str]) -> Vec<String> {
        self.fields(index, names).into_iter().map(Field::value).collect()
    }

    fn address_values(&self, part: AddressPart, index: Option<Index>, names: &[Str]) -> Vec<String> {
        let fields = self.fields(index, names);
        fields.iter().flat_map(|f| f.addresses()).filter_map(|a| address_part(&a, part)).collect()
    }

    fn envelope_values(&self, part: AddressPart, fields: &[Str]) -> Vec<String> {
        let mut values = Vec::new();
        for field in fields {
            let address = match self.vars.expand(field).to_ascii_lowercase().as_str() {
                "from" => Some(self.envelope.from.clone()),
                "to" => Some(self.envelope.to.clone()),
                "auth" => self.envelope.auth.clone(),
                _ => None,
            };
            match address {
                // RFC 5228 §5.4: the null reverse-path is the empty string, for :all only.
                Some(a) if a.is_empty() => values.extend((part == AddressPart::All).then(String::new)),
                Some(a) => values.extend(address_part(&a, part)),
                None => {}
            }
        }
        values
    }

    fn body_values(&mut self, transform: &BodyTransform) -> Result<Vec<String>, RuntimeError> {
        let values: Vec<String> = match transform {
            BodyTransform::Raw => vec![self.message.raw_body().into_owned()],
            BodyTransform::Text => self.parts_of(&["text".to_string()]),
            BodyTransform::Content(types) => {
                let types: Vec<String> = types.iter().map(|t| self.vars.expand(t).to_ascii_lowercase()).collect();
                self.parts_of(&types)
            }
        };
        let bytes: u64 = values.iter().map(|v| v.len() as u64).sum();
        self.budget.spend(bytes / 16)?;
        Ok(values)
    }

    fn parts_of(&self, types: &[String]) -> Vec<String> {
        let wanted = |ct: &str| {
            types
                .iter()
                .any(|t| t.is_empty() || t == ct || (!t.contains('/') && ct.split('/').next() == Some(t.as_str())))
        };
        self.message.parts().iter().filter(|p| wanted(&p.content_type)).map(|p| p.text.clone()).collect()
    }

    fn zoned(&self, instant: crate::date::Instant, zone: &Zone) -> Option<crate::date::Instant> {
        match zone {
            Zone::Local => Some(instant.in_zone(self.ctx.zone_min)),
            Zone::Original => Some(instant),
            Zone::Fixed(text) => crate::date::parse_zone(&self.vars.expand(text)).map(|z| instant.in_zone(z)),
        }
    }

    fn date(
        &mut self,
        spec: MatchSpec,
        index: Option<Index>,
        zone: &Zone,
        header: &Str,
        part: &Str,
        keys: &[Str],
    ) -> Result<bool, RuntimeError> {
        let part = self.vars.expand(part);
        let values: Vec<String> = self
            .fields(index, std::slice::from_ref(header))
            .into_iter()
            .filter_map(|f| crate::date::from_header(&f.raw_value()))
            .filter_map(|d| self.zoned(d, zone))
            .filter_map(|d| d.part(&part))
            .collect();
        self.matches(spec, &values, keys)
    }

    /// RFC 7352: true when this id was seen within the period; remembered either way.
    fn duplicate(&mut self, handle: Option<&Str>, id: &DuplicateId, period_s: Option<u64>, last: bool) -> bool {
        let id = match id {
            DuplicateId::MessageId => self.message.fields_named("message-id").next().map(Field::value),
            DuplicateId::Header(name) => self.message.fields_named(&self.vars.expand(name)).next().map(Field::value),
            DuplicateId::Unique(value) => Some(self.vars.expand(value)),
        };
        let Some(id) = id.filter(|id| !id.is_empty()) else { return false };
        let handle = handle.map(|h| self.vars.expand(h)).unwrap_or_default();
        let key = format!("{handle}\u{0}{id}");
        let seen = self.ctx.state.duplicate_seen(&key) || self.duplicates.iter().any(|d| d.key == key);
        if !self.duplicates.iter().any(|d| d.key == key) {
            self.duplicates.push(super::DuplicateMark { key, period_s: period_s.unwrap_or(14 * 86_400), last });
        }
        seen
    }
}

/// An address's part (RFC 5228 §2.7.4, RFC 5233 §4 with "+" as the separator).
fn address_part(address: &str, part: AddressPart) -> Option<String> {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    match part {
        AddressPart::All => Some(address.to_string()),
        AddressPart::LocalPart => Some(local.to_string()),
        AddressPart::Domain => Some(domain.to_string()),
        AddressPart::User => Some(local.split_once('+').map_or(local, |(u, _)| u).to_string()),
        AddressPart::Detail => local.split_once('+').map(|(_, d)| d.to_string()),
    }
}
