//! Action and control commands checked against their signatures: one function per
//! command, one table from name to function. `if` and `include` live in `mod.rs` because
//! they compile blocks and other scripts. This module must never compile a test itself
//! (tests are `tests.rs`'s) and never run anything.

use super::args::{Args, TagSpec, Takes};
use super::strings::is_identifier;
use super::Scope;
use crate::error::CompileError;
use crate::program::{Cmd, Comparator, FlagOp, IncludeLocation, SetModifier, Str, Vacation};
use crate::syntax::Node;

type Compile = fn(&mut Scope, &Node) -> Result<Cmd, CompileError>;

/// Every command but `if`/`elsif`/`else`, `require` and `include`: name, extension, body.
const COMMANDS: &[(&str, Option<&str>, Compile)] = &[
    ("stop", None, stop),
    ("keep", None, keep),
    ("discard", None, discard),
    ("fileinto", Some("fileinto"), fileinto),
    ("redirect", None, redirect),
    ("reject", Some("reject"), reject),
    ("ereject", Some("ereject"), reject),
    ("vacation", Some("vacation"), vacation),
    ("setflag", Some("imap4flags"), flags),
    ("addflag", Some("imap4flags"), flags),
    ("removeflag", Some("imap4flags"), flags),
    ("set", Some("variables"), set),
    ("return", Some("include"), ret),
    ("global", Some("include"), global),
    ("addheader", Some("editheader"), addheader),
    ("deleteheader", Some("editheader"), deleteheader),
];

pub fn command(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    let Some((_, extension, compile)) = COMMANDS.iter().find(|(name, _, _)| *name == node.name) else {
        return Err(CompileError::at(node.pos, format!("unknown command '{}'", node.name)));
    };
    if let Some(extension) = extension {
        scope.need(extension, node)?;
    }
    if node.block.is_some() {
        return Err(CompileError::at(node.pos, format!("{} takes no block", node.name)));
    }
    if !node.tests.is_empty() {
        return Err(CompileError::at(node.tests[0].pos, format!("{} takes no test", node.name)));
    }
    compile(scope, node)
}

fn bare(scope: &mut Scope, node: &Node, cmd: Cmd) -> Result<Cmd, CompileError> {
    Args::split(scope, node, &[])?.done(&node.name)?;
    Ok(cmd)
}

fn stop(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    bare(scope, node, Cmd::Stop)
}

fn discard(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    bare(scope, node, Cmd::Discard)
}

fn ret(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    bare(scope, node, Cmd::Return)
}

const FLAGS_TAG: &[TagSpec] = &[("flags", Takes::Strings, Some("imap4flags"))];

fn keep(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    let args = Args::split(scope, node, &[FLAGS_TAG])?;
    args.done("keep")?;
    Ok(Cmd::Keep { flags: args.tag_strings(scope, "flags")? })
}

fn fileinto(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    const TAGS: &[TagSpec] = &[("copy", Takes::Nothing, Some("copy")), ("create", Takes::Nothing, Some("mailbox"))];
    let mut args = Args::split(scope, node, &[TAGS, FLAGS_TAG])?;
    let mailbox = args.text(scope, "a mailbox name")?;
    args.done("fileinto")?;
    if let Some(name) = mailbox.constant() {
        check_mailbox(name).map_err(|why| CompileError::at(args.pos, why))?;
    }
    let flags = args.tag_strings(scope, "flags")?;
    Ok(Cmd::FileInto { mailbox, copy: args.has("copy"), create: args.has("create"), flags })
}

/// A mailbox name fileinto may name: UTF-8 (RFC 5228 §4.1), not empty, no control characters.
pub fn check_mailbox(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 1024 || name.chars().any(char::is_control) {
        return Err(format!("{name:?} is not a valid mailbox name"));
    }
    Ok(())
}

fn redirect(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    const TAGS: &[TagSpec] = &[("copy", Takes::Nothing, Some("copy"))];
    let mut args = Args::split(scope, node, &[TAGS])?;
    let address = args.text(scope, "an address")?;
    args.done("redirect")?;
    if let Some(text) = address.constant() {
        crate::message::plain_address(text)
            .ok_or_else(|| CompileError::at(args.pos, format!("redirect: {text:?} is not a mail address")))?;
    }
    Ok(Cmd::Redirect { address, copy: args.has("copy") })
}

fn reject(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    let mut args = Args::split(scope, node, &[])?;
    let reason = args.text(scope, "a reason")?;
    args.done(&node.name)?;
    Ok(Cmd::Reject { reason, extended: node.name == "ereject" })
}

fn vacation(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    const TAGS: &[TagSpec] = &[
        ("days", Takes::Number, None),
        ("seconds", Takes::Number, Some("vacation-seconds")),
        ("subject", Takes::Text, None),
        ("from", Takes::Text, None),
        ("addresses", Takes::Strings, None),
        ("mime", Takes::Nothing, None),
        ("handle", Takes::Text, None),
    ];
    let mut args = Args::split(scope, node, &[TAGS])?;
    if args.has("days") && args.has("seconds") {
        return Err(CompileError::at(node.pos, "vacation takes :days or :seconds, not both"));
    }
    let period_s = match (args.tag_number("days"), args.tag_number("seconds")) {
        (Some(days), _) => Some(days.saturating_mul(86_400)),
        (_, seconds) => seconds,
    };
    let reason = args.text(scope, "a reason")?;
    args.done("vacation")?;
    Ok(Cmd::Vacation(Box::new(Vacation {
        period_s,
        subject: args.tag_text(scope, "subject")?,
        from: args.tag_text(scope, "from")?,
        addresses: args.tag_strings(scope, "addresses")?.unwrap_or_default(),
        mime: args.has("mime"),
        handle: args.tag_text(scope, "handle")?,
        reason,
    })))
}

/// setflag/addflag/removeflag [variablename] list (RFC 5232 §3).
fn flags(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    let mut args = Args::split(scope, node, &[])?;
    let op = match node.name.as_str() {
        "setflag" => FlagOp::Set,
        "addflag" => FlagOp::Add,
        _ => FlagOp::Remove,
    };
    let variable = match args.remaining() {
        2 => Some(variable_name(scope, &mut args)?),
        _ => None,
    };
    let flags = args.strings(scope, "a flag list")?;
    args.done(&node.name)?;
    Ok(Cmd::Flags { op, variable: variable.map(Str::lit), flags })
}

fn variable_name(scope: &mut Scope, args: &mut Args) -> Result<String, CompileError> {
    if !scope.requires("variables") {
        return Err(CompileError::at(args.pos, "a flag variable needs require \"variables\""));
    }
    let (name, pos) = args.raw_text("a variable name")?;
    let name = name.to_ascii_lowercase();
    let valid = match name.split_once('.') {
        Some(("global", rest)) => is_identifier(rest),
        Some(_) => false,
        None => is_identifier(&name),
    };
    if !valid {
        return Err(CompileError::at(pos, format!("{name:?} is not a variable name")));
    }
    scope.variable(&name, pos)?;
    Ok(name)
}

fn set(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    const TAGS: &[TagSpec] = &[
        ("lower", Takes::Nothing, None),
        ("upper", Takes::Nothing, None),
        ("lowerfirst", Takes::Nothing, None),
        ("upperfirst", Takes::Nothing, None),
        ("quotewildcard", Takes::Nothing, None),
        ("length", Takes::Nothing, None),
    ];
    let mut args = Args::split(scope, node, &[TAGS])?;
    let name = variable_name(scope, &mut args)?;
    let value = args.text(scope, "a value")?;
    args.done("set")?;
    if (args.has("lower") && args.has("upper")) || (args.has("lowerfirst") && args.has("upperfirst")) {
        return Err(CompileError::at(node.pos, "set: conflicting case modifiers"));
    }
    // RFC 5229 §4.1: applied by precedence, highest first.
    let order = [
        ("lower", SetModifier::Lower),
        ("upper", SetModifier::Upper),
        ("lowerfirst", SetModifier::LowerFirst),
        ("upperfirst", SetModifier::UpperFirst),
        ("quotewildcard", SetModifier::QuoteWildcard),
        ("length", SetModifier::Length),
    ];
    let modifiers = order.iter().filter(|(tag, _)| args.has(tag)).map(|(_, m)| *m).collect();
    Ok(Cmd::Set { name, value, modifiers })
}

fn global(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    scope.need("variables", node)?;
    let mut args = Args::split(scope, node, &[])?;
    let (names, pos) = args.raw_strings("variable names")?;
    args.done("global")?;
    let mut out = Vec::new();
    for name in names {
        let name = name.to_ascii_lowercase();
        if !is_identifier(&name) {
            return Err(CompileError::at(pos, format!("{name:?} is not a variable name")));
        }
        scope.variable(&name, pos)?;
        out.push(name);
    }
    Ok(Cmd::Global(out))
}

/// `include` arguments (RFC 6609 §3.2): location, :once, :optional and the script name.
pub fn include_args(scope: &mut Scope, node: &Node) -> Result<(IncludeLocation, bool, bool, String), CompileError> {
    const TAGS: &[TagSpec] = &[
        ("personal", Takes::Nothing, None),
        ("global", Takes::Nothing, None),
        ("once", Takes::Nothing, None),
        ("optional", Takes::Nothing, None),
    ];
    if node.block.is_some() || !node.tests.is_empty() {
        return Err(CompileError::at(node.pos, "include takes no test and no block"));
    }
    let mut args = Args::split(scope, node, &[TAGS])?;
    if args.has("personal") && args.has("global") {
        return Err(CompileError::at(node.pos, "include takes :personal or :global, not both"));
    }
    let (name, pos) = args.raw_text("a script name")?;
    args.done("include")?;
    if name.is_empty() || name.len() > 256 || name.contains('/') || name.chars().any(char::is_control) {
        return Err(CompileError::at(pos, format!("{name:?} is not a script name")));
    }
    let location = if args.has("global") { IncludeLocation::Global } else { IncludeLocation::Personal };
    Ok((location, args.has("once"), args.has("optional"), name))
}

fn addheader(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    const TAGS: &[TagSpec] = &[("last", Takes::Nothing, None)];
    let mut args = Args::split(scope, node, &[TAGS])?;
    let name = args.text(scope, "a header name")?;
    let value = args.text(scope, "a header value")?;
    args.done("addheader")?;
    if let Some(name) = name.constant() {
        check_header_name(name).map_err(|why| CompileError::at(node.pos, why))?;
    }
    Ok(Cmd::AddHeader { last: args.has("last"), name, value })
}

fn deleteheader(scope: &mut Scope, node: &Node) -> Result<Cmd, CompileError> {
    const INDEX: &[TagSpec] = &[("index", Takes::Number, None), ("last", Takes::Nothing, None)];
    let mut args = Args::split(scope, node, &[INDEX, super::args::MATCH_TAGS])?;
    let spec = args.match_spec(scope, Comparator::AsciiCasemap)?;
    let index = args.index()?;
    let name = args.text(scope, "a header name")?;
    let values = match args.remaining() {
        0 => None,
        _ => Some(args.strings(scope, "value patterns")?),
    };
    args.done("deleteheader")?;
    if let Some(name) = name.constant() {
        check_header_name(name).map_err(|why| CompileError::at(node.pos, why))?;
    }
    Ok(Cmd::DeleteHeader { index, name, spec, values })
}

/// A field name (RFC 5322 §3.6.8): printable ASCII but ':' and space.
pub fn check_header_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.len() <= 256 && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    ok.then_some(()).ok_or_else(|| format!("{name:?} is not a header field name"))
}
