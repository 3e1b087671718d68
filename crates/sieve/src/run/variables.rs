//! Variables at run time (RFC 5229): local and global values, match variables, expansion
//! of templates with every value capped at the variable limit, `set`'s modifiers, and the
//! imap4flags flag lists kept in variables (RFC 5232 §3). This module must never let a
//! value grow past `Limits::variable_bytes`.

use std::collections::HashMap;

use crate::program::{Part, SetModifier, Str};

/// The internal variable imap4flags uses when a command names none.
pub const FLAGS_VARIABLE: &str = "\u{0}flags";

#[derive(Debug, Default)]
pub struct Variables {
    pub locals: HashMap<String, String>,
    pub globals: HashMap<String, String>,
    /// Names `global` declared in the running script.
    pub declared: Vec<String>,
    pub matches: Vec<String>,
    pub max_bytes: usize,
}

impl Variables {
    fn slot(&mut self, name: &str) -> &mut String {
        match name.strip_prefix("global.") {
            Some(global) => self.globals.entry(global.to_string()).or_default(),
            None if self.declared.iter().any(|d| d == name) => self.globals.entry(name.to_string()).or_default(),
            None => self.locals.entry(name.to_string()).or_default(),
        }
    }

    pub fn get(&self, name: &str) -> &str {
        let value = match name.strip_prefix("global.") {
            Some(global) => self.globals.get(global),
            None if self.declared.iter().any(|d| d == name) => self.globals.get(name),
            None => self.locals.get(name),
        };
        value.map(String::as_str).unwrap_or("")
    }

    pub fn set(&mut self, name: &str, value: String) {
        let value = truncate(value, self.max_bytes);
        *self.slot(name) = value;
    }

    pub fn set_matches(&mut self, captures: Vec<String>) {
        let max = self.max_bytes;
        self.matches = captures.into_iter().take(10).map(|c| truncate(c, max)).collect();
    }

    pub fn expand(&self, s: &Str) -> String {
        let mut out = String::new();
        for part in &s.parts {
            match part {
                Part::Lit(text) => out.push_str(text),
                Part::Var(name) => out.push_str(self.get(name)),
                Part::Match(n) => out.push_str(self.matches.get(*n).map(String::as_str).unwrap_or("")),
            }
        }
        out
    }
}

/// Cuts `value` to at most `max` bytes at a character boundary.
pub fn truncate(mut value: String, max: usize) -> String {
    if value.len() > max {
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

pub fn modify(mut value: String, modifiers: &[SetModifier]) -> String {
    for modifier in modifiers {
        value = match modifier {
            SetModifier::Lower => value.to_lowercase(),
            SetModifier::Upper => value.to_uppercase(),
            SetModifier::LowerFirst => first_char(&value, |c| c.to_lowercase().collect()),
            SetModifier::UpperFirst => first_char(&value, |c| c.to_uppercase().collect()),
            SetModifier::QuoteWildcard => value.chars().fold(String::new(), |mut out, c| {
                if matches!(c, '*' | '?' | '\\') {
                    out.push('\\');
                }
                out.push(c);
                out
            }),
            SetModifier::Length => value.chars().count().to_string(),
        };
    }
    value
}

fn first_char(value: &str, f: impl Fn(char) -> String) -> String {
    let mut chars = value.chars();
    match chars.next() {
        Some(c) => f(c) + chars.as_str(),
        None => String::new(),
    }
}

/// A flag list's flags: split at spaces, each flag once (case-insensitively), in order.
pub fn flag_set<'a>(lists: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for flag in lists.into_iter().flat_map(str::split_ascii_whitespace) {
        let flag = canonical_flag(flag);
        if !out.iter().any(|f| f.eq_ignore_ascii_case(&flag)) {
            out.push(flag);
        }
    }
    out
}

/// System flags in their usual spelling (`\Seen`); keywords as written.
fn canonical_flag(flag: &str) -> String {
    const SYSTEM: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];
    SYSTEM.iter().find(|s| s.eq_ignore_ascii_case(flag)).map_or_else(|| flag.to_string(), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5229_4_1_modifiers_in_precedence_order() {
        assert_eq!(modify("juMBle".into(), &[SetModifier::Lower, SetModifier::UpperFirst]), "Jumble");
        assert_eq!(modify("a*b?c\\".into(), &[SetModifier::QuoteWildcard]), "a\\*b\\?c\\\\");
        assert_eq!(modify("\u{e9}t\u{e9}".into(), &[SetModifier::Length]), "3");
    }

    #[test]
    fn rfc5232_3_flag_lists_are_sets() {
        assert_eq!(flag_set(["\\seen  $Label1", "\\SEEN x"]), vec!["\\Seen", "$Label1", "x"]);
    }

    #[test]
    fn values_are_capped() {
        let mut v = Variables { max_bytes: 5, ..Default::default() };
        v.set("a", "\u{e9}\u{e9}\u{e9}".into());
        assert_eq!(v.get("a"), "\u{e9}\u{e9}");
        v.declared.push("g".into());
        v.set("g", "x".into());
        assert_eq!(v.get("global.g"), "x");
    }
}
