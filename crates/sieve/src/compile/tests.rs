//! Tests checked against their signatures: one function per test, one table from name to
//! function. This module must never run a test.

use super::args::{Args, TagSpec, Takes, ADDRESS_TAGS, INDEX_TAGS, MATCH_TAGS};
use super::Scope;
use crate::error::CompileError;
use crate::program::{BodyTransform, Comparator, DuplicateId, Test, Zone};
use crate::syntax::Node;

type Compile = fn(&mut Scope, &Node) -> Result<Test, CompileError>;

const TESTS: &[(&str, Option<&str>, Compile)] = &[
    ("true", None, truth),
    ("false", None, truth),
    ("not", None, not),
    ("allof", None, list),
    ("anyof", None, list),
    ("address", None, address),
    ("envelope", Some("envelope"), envelope),
    ("header", None, header),
    ("exists", None, exists),
    ("size", None, size),
    ("body", Some("body"), body),
    ("string", Some("variables"), string),
    ("hasflag", Some("imap4flags"), hasflag),
    ("date", Some("date"), date),
    ("currentdate", Some("date"), currentdate),
    ("duplicate", Some("duplicate"), duplicate),
    ("spamtest", Some("spamtest"), spamtest),
    ("virustest", Some("virustest"), virustest),
    ("environment", Some("environment"), environment),
    ("mailboxexists", Some("mailbox"), mailboxexists),
];

pub fn test(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let Some((_, extension, compile)) = TESTS.iter().find(|(name, _, _)| *name == node.name) else {
        return Err(CompileError::at(node.pos, format!("unknown test '{}'", node.name)));
    };
    if let Some(extension) = extension {
        scope.need(extension, node)?;
    }
    let takes_tests = matches!(node.name.as_str(), "not" | "allof" | "anyof");
    if !takes_tests && !node.tests.is_empty() {
        return Err(CompileError::at(node.tests[0].pos, format!("{} takes no nested test", node.name)));
    }
    compile(scope, node)
}

fn truth(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    Args::split(scope, node, &[])?.done(&node.name)?;
    Ok(if node.name == "true" { Test::True } else { Test::False })
}

fn not(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    Args::split(scope, node, &[])?.done("not")?;
    match node.tests.as_slice() {
        [inner] => Ok(Test::Not(Box::new(test(scope, inner)?))),
        _ => Err(CompileError::at(node.pos, "not takes exactly one test")),
    }
}

fn list(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    Args::split(scope, node, &[])?.done(&node.name)?;
    if node.tests.is_empty() {
        return Err(CompileError::at(node.pos, format!("{} needs a test list", node.name)));
    }
    let tests = node.tests.iter().map(|t| test(scope, t)).collect::<Result<Vec<_>, _>>()?;
    Ok(if node.name == "allof" { Test::AllOf(tests) } else { Test::AnyOf(tests) })
}

fn address(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[MATCH_TAGS, ADDRESS_TAGS, INDEX_TAGS])?;
    let headers = args.strings(scope, "header names")?;
    let keys = args.strings(scope, "keys")?;
    args.done("address")?;
    let spec = args.match_spec(scope, Comparator::AsciiCasemap)?;
    Ok(Test::Address { spec, part: args.address_part()?, index: args.index()?, headers, keys })
}

fn envelope(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[MATCH_TAGS, ADDRESS_TAGS])?;
    let fields = args.strings(scope, "envelope parts")?;
    let keys = args.strings(scope, "keys")?;
    args.done("envelope")?;
    for field in fields.iter().filter_map(|f| f.constant()) {
        if !matches!(field.to_ascii_lowercase().as_str(), "from" | "to" | "auth") {
            return Err(CompileError::at(node.pos, format!("envelope part {field:?} is not from, to or auth")));
        }
    }
    let spec = args.match_spec(scope, Comparator::AsciiCasemap)?;
    Ok(Test::Envelope { spec, part: args.address_part()?, fields, keys })
}

fn header(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[MATCH_TAGS, INDEX_TAGS])?;
    let headers = args.strings(scope, "header names")?;
    let keys = args.strings(scope, "keys")?;
    args.done("header")?;
    Ok(Test::Header { spec: args.match_spec(scope, Comparator::AsciiCasemap)?, index: args.index()?, headers, keys })
}

fn exists(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[])?;
    let headers = args.strings(scope, "header names")?;
    args.done("exists")?;
    Ok(Test::Exists(headers))
}

fn size(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    const TAGS: &[TagSpec] = &[("over", Takes::Nothing, None), ("under", Takes::Nothing, None)];
    let mut args = Args::split(scope, node, &[TAGS])?;
    if args.has("over") == args.has("under") {
        return Err(CompileError::at(node.pos, "size needs exactly one of :over and :under"));
    }
    let limit_bytes = args.number("a size")?;
    args.done("size")?;
    Ok(Test::Size { over: args.has("over"), limit_bytes })
}

fn body(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    const TAGS: &[TagSpec] =
        &[("raw", Takes::Nothing, None), ("content", Takes::Strings, None), ("text", Takes::Nothing, None)];
    let mut args = Args::split(scope, node, &[MATCH_TAGS, TAGS])?;
    let keys = args.strings(scope, "keys")?;
    args.done("body")?;
    if ["raw", "content", "text"].iter().filter(|t| args.has(t)).count() > 1 {
        return Err(CompileError::at(node.pos, "body takes one of :raw, :content and :text"));
    }
    let transform = match args.tag_strings(scope, "content")? {
        Some(types) => BodyTransform::Content(types),
        None if args.has("raw") => BodyTransform::Raw,
        None => BodyTransform::Text,
    };
    let spec = args.match_spec(scope, Comparator::AsciiCasemap)?;
    if matches!(spec.kind, crate::program::MatchKind::Count(_)) {
        return Err(CompileError::at(node.pos, "body does not take :count"));
    }
    Ok(Test::Body { spec, transform, keys })
}

fn string(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[MATCH_TAGS])?;
    let sources = args.strings(scope, "source strings")?;
    let keys = args.strings(scope, "keys")?;
    args.done("string")?;
    Ok(Test::String { spec: args.match_spec(scope, Comparator::AsciiCasemap)?, sources, keys })
}

fn hasflag(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[MATCH_TAGS])?;
    let variables = match args.remaining() {
        2 => args.strings(scope, "variable names")?,
        _ => Vec::new(),
    };
    let keys = args.strings(scope, "flags")?;
    args.done("hasflag")?;
    Ok(Test::HasFlag { spec: args.match_spec(scope, Comparator::AsciiCasemap)?, variables, keys })
}

const ZONE_TAGS: &[TagSpec] = &[("zone", Takes::Text, None), ("originalzone", Takes::Nothing, None)];

fn zone(scope: &mut Scope, args: &Args, node: &Node) -> Result<Zone, CompileError> {
    match (args.tag_text(scope, "zone")?, args.has("originalzone")) {
        (Some(_), true) => Err(CompileError::at(node.pos, "date takes :zone or :originalzone, not both")),
        (Some(zone), _) => {
            if let Some(text) = zone.constant() {
                crate::date::parse_zone(text)
                    .ok_or_else(|| CompileError::at(node.pos, format!("{text:?} is not a zone (+hhmm)")))?;
            }
            Ok(Zone::Fixed(zone))
        }
        (None, true) => Ok(Zone::Original),
        (None, false) => Ok(Zone::Local),
    }
}

fn date_part(node: &Node, part: &crate::program::Str) -> Result<(), CompileError> {
    match part.constant() {
        Some(name) if !crate::date::PARTS.contains(&name.to_ascii_lowercase().as_str()) => {
            Err(CompileError::at(node.pos, format!("{name:?} is not a date part")))
        }
        _ => Ok(()),
    }
}

fn date(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[MATCH_TAGS, INDEX_TAGS, ZONE_TAGS])?;
    let header = args.text(scope, "a header name")?;
    let part = args.text(scope, "a date part")?;
    let keys = args.strings(scope, "keys")?;
    args.done("date")?;
    date_part(node, &part)?;
    let zone = zone(scope, &args, node)?;
    Ok(Test::Date {
        spec: args.match_spec(scope, Comparator::AsciiCasemap)?,
        index: args.index()?,
        zone,
        header,
        part,
        keys,
    })
}

fn currentdate(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    const TAGS: &[TagSpec] = &[("zone", Takes::Text, None)];
    let mut args = Args::split(scope, node, &[MATCH_TAGS, TAGS])?;
    let part = args.text(scope, "a date part")?;
    let keys = args.strings(scope, "keys")?;
    args.done("currentdate")?;
    date_part(node, &part)?;
    let zone = zone(scope, &args, node)?;
    Ok(Test::CurrentDate { spec: args.match_spec(scope, Comparator::AsciiCasemap)?, zone, part, keys })
}

fn duplicate(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    const TAGS: &[TagSpec] = &[
        ("handle", Takes::Text, None),
        ("header", Takes::Text, None),
        ("uniqueid", Takes::Text, None),
        ("seconds", Takes::Number, None),
        ("last", Takes::Nothing, None),
    ];
    let args = Args::split(scope, node, &[TAGS])?;
    args.done("duplicate")?;
    let id = match (args.tag_text(scope, "header")?, args.tag_text(scope, "uniqueid")?) {
        (Some(_), Some(_)) => return Err(CompileError::at(node.pos, "duplicate takes :header or :uniqueid, not both")),
        (Some(header), None) => DuplicateId::Header(header),
        (None, Some(id)) => DuplicateId::Unique(id),
        (None, None) => DuplicateId::MessageId,
    };
    let handle = args.tag_text(scope, "handle")?;
    Ok(Test::Duplicate { handle, id, period_s: args.tag_number("seconds"), last: args.has("last") })
}

fn spamtest(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    const TAGS: &[TagSpec] = &[("percent", Takes::Nothing, Some("spamtestplus"))];
    let mut args = Args::split(scope, node, &[MATCH_TAGS, TAGS])?;
    let keys = args.strings(scope, "a value")?;
    args.done("spamtest")?;
    let spec = args.match_spec(scope, Comparator::AsciiNumeric)?;
    Ok(Test::SpamTest { spec, percent: args.has("percent"), keys })
}

fn virustest(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[MATCH_TAGS])?;
    let keys = args.strings(scope, "a value")?;
    args.done("virustest")?;
    Ok(Test::VirusTest { spec: args.match_spec(scope, Comparator::AsciiNumeric)?, keys })
}

fn environment(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[MATCH_TAGS])?;
    let name = args.text(scope, "an item name")?;
    let keys = args.strings(scope, "keys")?;
    args.done("environment")?;
    Ok(Test::Environment { spec: args.match_spec(scope, Comparator::AsciiCasemap)?, name, keys })
}

fn mailboxexists(scope: &mut Scope, node: &Node) -> Result<Test, CompileError> {
    let mut args = Args::split(scope, node, &[])?;
    let names = args.strings(scope, "mailbox names")?;
    args.done("mailboxexists")?;
    Ok(Test::MailboxExists(names))
}
