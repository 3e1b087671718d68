//! Script text to a checked `Program`: tokens, the generic grammar, then every command and
//! test checked against its signature and the extensions the script requires. Included
//! scripts are compiled here too (RFC 6609), so a missing or recursive include is found
//! before any message arrives. This module must never run a script.

mod args;
mod commands;
mod strings;
mod tests;

use std::collections::{HashMap, HashSet};

pub use commands::{check_header_name, check_mailbox};

use crate::error::{CompileError, Pos};
use crate::limits::Limits;
use crate::program::{Cmd, IncludeLocation, Program, Script, Str};
use crate::syntax::Node;

/// Extensions this engine implements, as `require` names them.
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "copy",
    "mailbox",
    "vacation",
    "vacation-seconds",
    "imap4flags",
    "variables",
    "body",
    "relational",
    "subaddress",
    "include",
    "date",
    "index",
    "editheader",
    "duplicate",
    "spamtest",
    "spamtestplus",
    "virustest",
    "environment",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
    "comparator-i;ascii-numeric",
];

/// Where `include` finds other scripts of the same user (`:personal`) or the site (`:global`).
pub trait Includes {
    fn script(&self, location: IncludeLocation, name: &str) -> Option<String>;
}

/// For scripts that include nothing: every include is missing.
pub struct NoIncludes;

impl Includes for NoIncludes {
    fn script(&self, _: IncludeLocation, _: &str) -> Option<String> {
        None
    }
}

/// Compiles `text`, the user's script called `name`, and every script it includes.
pub fn compile(text: &str, name: &str, limits: &Limits, includes: &dyn Includes) -> Result<Program, CompileError> {
    let stack = vec![(IncludeLocation::Personal, name.to_string())];
    let mut compiler = Compiler { limits, includes, scripts: Vec::new(), stack, done: HashMap::new() };
    compiler.scripts.push(Script { name: name.to_string(), location: IncludeLocation::Personal, body: Vec::new() });
    let body = compiler.script_body(text)?;
    compiler.scripts[0].body = body;
    Ok(Program { scripts: compiler.scripts })
}

struct Compiler<'a> {
    limits: &'a Limits,
    includes: &'a dyn Includes,
    scripts: Vec<Script>,
    /// Scripts being compiled, outermost first: an include of one of them is a loop.
    stack: Vec<(IncludeLocation, String)>,
    done: HashMap<(IncludeLocation, String), usize>,
}

impl Compiler<'_> {
    fn script_body(&mut self, text: &str) -> Result<Vec<Cmd>, CompileError> {
        if text.len() > self.limits.script_bytes {
            return Err(CompileError::at(
                Pos { line: 1, column: 1 },
                format!("script is larger than {} bytes", self.limits.script_bytes),
            ));
        }
        let tokens = crate::lexer::tokenize(text)?;
        let nodes = crate::syntax::parse(&tokens, self.limits)?;
        let mut scope = Scope { required: HashSet::new(), variables: HashSet::new(), limits: self.limits.clone() };
        let rest = scope.require_prefix(&nodes)?;
        self.block(&mut scope, rest)
    }

    fn block(&mut self, scope: &mut Scope, nodes: &[Node]) -> Result<Vec<Cmd>, CompileError> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < nodes.len() {
            let node = &nodes[at];
            at += 1;
            match node.name.as_str() {
                "if" => {
                    let chain = nodes[at..].iter().take_while(|n| n.name == "elsif" || n.name == "else").count();
                    out.push(self.if_chain(scope, &nodes[at - 1..at + chain])?);
                    at += chain;
                }
                "elsif" | "else" => {
                    return Err(CompileError::at(node.pos, format!("{} without a preceding if", node.name)))
                }
                "require" => return Err(CompileError::at(node.pos, "require must come before every other command")),
                "include" => out.extend(self.include(scope, node)?),
                _ => out.push(commands::command(scope, node)?),
            }
        }
        Ok(out)
    }

    fn if_chain(&mut self, scope: &mut Scope, chain: &[Node]) -> Result<Cmd, CompileError> {
        let mut branches = Vec::new();
        let mut otherwise = None;
        for (i, node) in chain.iter().enumerate() {
            let block = node
                .block
                .as_deref()
                .ok_or_else(|| CompileError::at(node.pos, format!("{} needs a block", node.name)))?;
            if !node.args.is_empty() {
                return Err(CompileError::at(node.args[0].1, format!("{} takes no arguments", node.name)));
            }
            if node.name == "else" {
                if !node.tests.is_empty() || i + 1 != chain.len() {
                    return Err(CompileError::at(node.pos, "else takes no test and must end the if"));
                }
                otherwise = Some(self.block(scope, block)?);
                break;
            }
            let [test] = node.tests.as_slice() else {
                return Err(CompileError::at(node.pos, format!("{} needs exactly one test", node.name)));
            };
            branches.push((tests::test(scope, test)?, self.block(scope, block)?));
        }
        Ok(Cmd::If { branches, otherwise })
    }

    /// RFC 6609 §3.2: the named script compiled once per program; `:optional` makes a
    /// missing one nothing; including a script from inside itself is an error.
    fn include(&mut self, scope: &mut Scope, node: &Node) -> Result<Option<Cmd>, CompileError> {
        scope.need("include", node)?;
        let (location, once, optional, name) = commands::include_args(scope, node)?;
        let key = (location, name.clone());
        if self.stack.contains(&key) {
            return Err(CompileError::at(node.pos, format!("script {name:?} includes itself")));
        }
        if let Some(&script) = self.done.get(&key) {
            return Ok(Some(Cmd::Include { script, once }));
        }
        if self.stack.len() > self.limits.include_depth {
            return Err(CompileError::at(
                node.pos,
                format!("includes nested deeper than {}", self.limits.include_depth),
            ));
        }
        if self.scripts.len() >= self.limits.included_scripts {
            return Err(CompileError::at(
                node.pos,
                format!("more than {} scripts included", self.limits.included_scripts),
            ));
        }
        let Some(text) = self.includes.script(location, &name) else {
            return match optional {
                true => Ok(None),
                false => Err(CompileError::at(node.pos, format!("included script {name:?} does not exist"))),
            };
        };
        let script = self.scripts.len();
        self.scripts.push(Script { name: name.clone(), location, body: Vec::new() });
        self.stack.push(key.clone());
        let body = self.script_body(&text).map_err(|mut err| {
            if err.script.is_empty() {
                err.script = name.clone();
            }
            err
        })?;
        self.stack.pop();
        self.scripts[script].body = body;
        self.done.insert(key, script);
        Ok(Some(Cmd::Include { script, once }))
    }
}

/// What compiling one script knows: its required extensions and the variables it names.
pub struct Scope {
    required: HashSet<String>,
    variables: HashSet<String>,
    limits: Limits,
}

impl Scope {
    pub fn requires(&self, extension: &str) -> bool {
        self.required.contains(extension)
    }

    pub fn need(&self, extension: &str, node: &Node) -> Result<(), CompileError> {
        match self.requires(extension) {
            true => Ok(()),
            false => Err(CompileError::at(node.pos, format!("{} needs require \"{extension}\"", node.name))),
        }
    }

    /// The leading `require` commands (RFC 5228 §3.2); returns the commands after them.
    fn require_prefix<'n>(&mut self, nodes: &'n [Node]) -> Result<&'n [Node], CompileError> {
        let count = nodes.iter().take_while(|n| n.name == "require").count();
        for node in &nodes[..count] {
            let [(crate::syntax::Arg::Strings(names), pos)] = node.args.as_slice() else {
                return Err(CompileError::at(node.pos, "require takes one string list"));
            };
            if !node.tests.is_empty() || node.block.is_some() {
                return Err(CompileError::at(node.pos, "require takes no test and no block"));
            }
            for name in names {
                let name = name.to_ascii_lowercase();
                if !EXTENSIONS.contains(&name.as_str()) {
                    return Err(CompileError::at(*pos, format!("unsupported extension {name:?}")));
                }
                self.required.insert(name);
            }
        }
        let implied = [("vacation-seconds", "vacation"), ("spamtestplus", "spamtest"), ("ereject", "reject")];
        for (ext, implies) in implied {
            if self.requires(ext) {
                self.required.insert(implies.to_string());
            }
        }
        Ok(&nodes[count..])
    }

    pub fn string(&mut self, text: &str, pos: Pos) -> Result<Str, CompileError> {
        strings::template(self, text, pos)
    }

    pub fn strings(&mut self, list: &[String], pos: Pos) -> Result<Vec<Str>, CompileError> {
        list.iter().map(|s| self.string(s, pos)).collect()
    }

    /// Records a variable name the script uses; too many distinct names is an error.
    pub fn variable(&mut self, name: &str, pos: Pos) -> Result<(), CompileError> {
        if self.variables.len() >= self.limits.variables && !self.variables.contains(name) {
            return Err(CompileError::at(pos, format!("script uses more than {} variables", self.limits.variables)));
        }
        self.variables.insert(name.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn check(text: &str) -> Result<Program, CompileError> {
        compile(text, "main", &Limits::default(), &NoIncludes)
    }

    #[test]
    fn rfc5228_3_2_require_names_known_extensions_first() {
        assert!(check("require [\"fileinto\"]; fileinto \"a\";").is_ok());
        assert!(check("fileinto \"a\";").unwrap_err().message.contains("require \"fileinto\""));
        assert!(check("require \"x-unknown\";").unwrap_err().message.contains("unsupported extension"));
        assert!(check("keep; require \"fileinto\";").unwrap_err().message.contains("before every other"));
    }

    #[test]
    fn rfc5228_3_1_elsif_and_else_follow_if() {
        assert!(check("if true { keep; } elsif false { discard; } else { stop; }").is_ok());
        assert!(check("else { keep; }").is_err());
        assert!(check("if true { keep; } else { keep; } else { keep; }").is_err());
        assert!(check("if true keep;").is_err());
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = check("keep;\nif header :bogus \"a\" \"b\" { keep; }").unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, column: 11 });
        assert!(err.message.contains("unknown tag ':bogus'"), "{err}");
    }

    #[test]
    fn scripts_over_the_size_limit_are_refused() {
        let big = format!("# {}\nkeep;", "x".repeat(600 * 1024));
        assert!(check(&big).unwrap_err().message.contains("larger than"));
    }
}
