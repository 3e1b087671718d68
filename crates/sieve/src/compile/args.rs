//! Splitting a command's arguments into tagged and positional ones against a table of the
//! tags it accepts, and reading the shared tag groups (comparator, match type, address
//! part, index) into their typed form. This module must never know a command's meaning.

use super::Scope;
use crate::error::{CompileError, Pos};
use crate::program::{AddressPart, Comparator, Index, MatchKind, MatchSpec, RelOp, Str};
use crate::syntax::{Arg, Node};

/// What follows a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    Nothing,
    Text,
    Strings,
    Number,
}

/// A tag a command accepts: its name, what follows it, and the extension that gives it.
pub type TagSpec = (&'static str, Takes, Option<&'static str>);

pub const MATCH_TAGS: &[TagSpec] = &[
    ("is", Takes::Nothing, None),
    ("contains", Takes::Nothing, None),
    ("matches", Takes::Nothing, None),
    ("value", Takes::Text, Some("relational")),
    ("count", Takes::Text, Some("relational")),
    ("comparator", Takes::Text, None),
];
pub const ADDRESS_TAGS: &[TagSpec] = &[
    ("all", Takes::Nothing, None),
    ("localpart", Takes::Nothing, None),
    ("domain", Takes::Nothing, None),
    ("user", Takes::Nothing, Some("subaddress")),
    ("detail", Takes::Nothing, Some("subaddress")),
];
pub const INDEX_TAGS: &[TagSpec] = &[("index", Takes::Number, Some("index")), ("last", Takes::Nothing, Some("index"))];

/// A command's arguments once its tags are taken out.
pub struct Args {
    pub pos: Pos,
    tags: Vec<(&'static str, Option<Arg>, Pos)>,
    positional: std::collections::VecDeque<(Arg, Pos)>,
}

impl Args {
    /// Splits `node`'s arguments by the tag tables; an unknown or repeated tag is an error.
    pub fn split(scope: &Scope, node: &Node, tables: &[&[TagSpec]]) -> Result<Args, CompileError> {
        let mut args = Args { pos: node.pos, tags: Vec::new(), positional: Default::default() };
        let mut iter = node.args.iter().peekable();
        while let Some((arg, pos)) = iter.next() {
            let Arg::Tag(name) = arg else {
                args.positional.push_back((arg.clone(), *pos));
                continue;
            };
            if !args.positional.is_empty() {
                return Err(CompileError::at(*pos, format!("tag ':{name}' must come before the positional arguments")));
            }
            let spec = find_tag(scope, tables, name)
                .ok_or_else(|| CompileError::at(*pos, format!("unknown tag ':{name}' for {}", node.name)))?;
            if args.has(spec.0) {
                return Err(CompileError::at(*pos, format!("tag ':{name}' given twice")));
            }
            let next = if spec.1 == Takes::Nothing { None } else { iter.next() };
            let value = tag_value(spec.1, next, name, *pos)?;
            args.tags.push((spec.0, value, *pos));
        }
        Ok(args)
    }

    pub fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|(name, _, _)| *name == tag)
    }

    fn tag(&self, tag: &str) -> Option<(&Option<Arg>, Pos)> {
        self.tags.iter().find(|(name, _, _)| *name == tag).map(|(_, value, pos)| (value, *pos))
    }

    pub fn tag_number(&self, tag: &str) -> Option<u64> {
        match self.tag(tag)? {
            (Some(Arg::Number(n)), _) => Some(*n),
            _ => None,
        }
    }

    pub fn tag_text(&self, scope: &mut Scope, tag: &str) -> Result<Option<Str>, CompileError> {
        match self.tag(tag) {
            Some((Some(Arg::Strings(list)), pos)) => Ok(Some(scope.string(&list[0], pos)?)),
            _ => Ok(None),
        }
    }

    pub fn tag_strings(&self, scope: &mut Scope, tag: &str) -> Result<Option<Vec<Str>>, CompileError> {
        match self.tag(tag) {
            Some((Some(Arg::Strings(list)), pos)) => Ok(Some(scope.strings(list, pos)?)),
            _ => Ok(None),
        }
    }

    /// The positional arguments left, checked against their number when done.
    pub fn remaining(&self) -> usize {
        self.positional.len()
    }

    pub fn strings(&mut self, scope: &mut Scope, what: &str) -> Result<Vec<Str>, CompileError> {
        match self.positional.pop_front() {
            Some((Arg::Strings(list), pos)) => scope.strings(&list, pos),
            Some((_, pos)) => Err(CompileError::at(pos, format!("expected {what} (a string or string list)"))),
            None => Err(CompileError::at(self.pos, format!("missing {what}"))),
        }
    }

    pub fn text(&mut self, scope: &mut Scope, what: &str) -> Result<Str, CompileError> {
        match self.positional.pop_front() {
            Some((Arg::Strings(list), pos)) if list.len() == 1 => scope.string(&list[0], pos),
            Some((_, pos)) => Err(CompileError::at(pos, format!("expected {what} (one string)"))),
            None => Err(CompileError::at(self.pos, format!("missing {what}"))),
        }
    }

    /// A positional string that must be known at compile time (no variables).
    pub fn raw_text(&mut self, what: &str) -> Result<(String, Pos), CompileError> {
        match self.positional.pop_front() {
            Some((Arg::Strings(mut list), pos)) if list.len() == 1 => Ok((list.remove(0), pos)),
            Some((_, pos)) => Err(CompileError::at(pos, format!("expected {what} (one string)"))),
            None => Err(CompileError::at(self.pos, format!("missing {what}"))),
        }
    }

    pub fn raw_strings(&mut self, what: &str) -> Result<(Vec<String>, Pos), CompileError> {
        match self.positional.pop_front() {
            Some((Arg::Strings(list), pos)) => Ok((list, pos)),
            Some((_, pos)) => Err(CompileError::at(pos, format!("expected {what} (a string list)"))),
            None => Err(CompileError::at(self.pos, format!("missing {what}"))),
        }
    }

    pub fn number(&mut self, what: &str) -> Result<u64, CompileError> {
        match self.positional.pop_front() {
            Some((Arg::Number(n), _)) => Ok(n),
            Some((_, pos)) => Err(CompileError::at(pos, format!("expected {what} (a number)"))),
            None => Err(CompileError::at(self.pos, format!("missing {what}"))),
        }
    }

    /// Fails when positional arguments are left over.
    pub fn done(&self, command: &str) -> Result<(), CompileError> {
        match self.positional.front() {
            Some((_, pos)) => Err(CompileError::at(*pos, format!("too many arguments for {command}"))),
            None => Ok(()),
        }
    }

    /// The comparator and match type (RFC 5228 §2.7, RFC 5231), with `default` comparator.
    pub fn match_spec(&self, scope: &Scope, default: Comparator) -> Result<MatchSpec, CompileError> {
        let kinds: Vec<_> =
            ["is", "contains", "matches", "value", "count"].into_iter().filter(|t| self.has(t)).collect();
        if kinds.len() > 1 {
            return Err(CompileError::at(self.pos, "only one match type may be given"));
        }
        let kind = match kinds.first().copied() {
            None | Some("is") => MatchKind::Is,
            Some("contains") => MatchKind::Contains,
            Some("matches") => MatchKind::Matches,
            Some(rel) => {
                let (value, pos) = self.tag(rel).expect("tag present");
                let Some(Arg::Strings(list)) = value else { unreachable!("relational tags take a string") };
                let op = rel_op(&list[0]).ok_or_else(|| {
                    CompileError::at(pos, format!("{:?} is not a relational operator (gt ge lt le eq ne)", list[0]))
                })?;
                if rel == "value" {
                    MatchKind::Value(op)
                } else {
                    MatchKind::Count(op)
                }
            }
        };
        let comparator = match self.tag("comparator") {
            None => default,
            Some((Some(Arg::Strings(list)), pos)) => comparator(scope, &list[0], pos)?,
            Some(_) => unreachable!("comparator takes a string"),
        };
        Ok(MatchSpec { kind, comparator })
    }

    pub fn address_part(&self) -> Result<AddressPart, CompileError> {
        let parts: Vec<_> =
            ["all", "localpart", "domain", "user", "detail"].into_iter().filter(|t| self.has(t)).collect();
        if parts.len() > 1 {
            return Err(CompileError::at(self.pos, "only one address part may be given"));
        }
        Ok(match parts.first().copied() {
            None | Some("all") => AddressPart::All,
            Some("localpart") => AddressPart::LocalPart,
            Some("domain") => AddressPart::Domain,
            Some("user") => AddressPart::User,
            _ => AddressPart::Detail,
        })
    }

    pub fn index(&self) -> Result<Option<Index>, CompileError> {
        match (self.tag_number("index"), self.has("last")) {
            (None, true) => Err(CompileError::at(self.pos, ":last needs :index")),
            (Some(0), _) => Err(CompileError::at(self.pos, ":index counts from 1")),
            (Some(n), last) => Ok(Some(Index { nth: usize::try_from(n).unwrap_or(usize::MAX), last })),
            (None, false) => Ok(None),
        }
    }
}

fn find_tag(scope: &Scope, tables: &[&[TagSpec]], name: &str) -> Option<TagSpec> {
    tables
        .iter()
        .flat_map(|t| t.iter())
        .copied()
        .find(|(tag, _, ext)| *tag == name && ext.is_none_or(|e| scope.requires(e)))
}

fn tag_value(takes: Takes, next: Option<&(Arg, Pos)>, name: &str, pos: Pos) -> Result<Option<Arg>, CompileError> {
    let ok = match (takes, next) {
        (Takes::Nothing, _) => return Ok(None),
        (Takes::Text, Some((Arg::Strings(list), _))) => list.len() == 1,
        (Takes::Strings, Some((Arg::Strings(_), _))) => true,
        (Takes::Number, Some((Arg::Number(_), _))) => true,
        _ => false,
    };
    let wanted = match takes {
        Takes::Text => "a string",
        Takes::Strings => "a string list",
        _ => "a number",
    };
    match next {
        Some((arg, _)) if ok => Ok(Some(arg.clone())),
        _ => Err(CompileError::at(pos, format!("tag ':{name}' must be followed by {wanted}"))),
    }
}

fn rel_op(text: &str) -> Option<RelOp> {
    Some(match text.to_ascii_lowercase().as_str() {
        "gt" => RelOp::Gt,
        "ge" => RelOp::Ge,
        "lt" => RelOp::Lt,
        "le" => RelOp::Le,
        "eq" => RelOp::Eq,
        "ne" => RelOp::Ne,
        _ => return None,
    })
}

fn comparator(scope: &Scope, name: &str, pos: Pos) -> Result<Comparator, CompileError> {
    match name.to_ascii_lowercase().as_str() {
        "i;octet" => Ok(Comparator::Octet),
        "i;ascii-casemap" => Ok(Comparator::AsciiCasemap),
        "i;ascii-numeric" if scope.requires("comparator-i;ascii-numeric") => Ok(Comparator::AsciiNumeric),
        "i;ascii-numeric" => {
            Err(CompileError::at(pos, "comparator i;ascii-numeric needs require \"comparator-i;ascii-numeric\""))
        }
        _ => Err(CompileError::at(pos, format!("unknown comparator {name:?}"))),
    }
}
