//! A checked program: the typed commands and tests `compile` makes and `run` executes.
//! Everything here is already valid: names resolved, extensions required, arguments typed.
//! This module must never hold message data.

/// A string argument, split into literal text and variable references when the script
/// requires "variables" (RFC 5229); a single literal otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    /// `${name}`: a variable of this script, or `global.name` (RFC 6609 §3.5).
    Var(String),
    /// `${N}`: a match variable (RFC 5229 §3.2).
    Match(usize),
}

impl Str {
    pub fn lit(text: impl Into<String>) -> Str {
        Str { parts: vec![Part::Lit(text.into())] }
    }

    /// The text when it holds no variable reference.
    pub fn constant(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Lit(text)] => Some(text),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Octet,
    AsciiCasemap,
    AsciiNumeric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Is,
    Contains,
    Matches,
    /// RFC 5231 `:value`.
    Value(RelOp),
    /// RFC 5231 `:count`.
    Count(RelOp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchSpec {
    pub kind: MatchKind,
    pub comparator: Comparator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    All,
    LocalPart,
    Domain,
    /// RFC 5233.
    User,
    Detail,
}

/// RFC 5260 §6: `:index N [:last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub nth: usize,
    pub last: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTransform {
    Raw,
    /// Parts whose content type matches one of these ("" = every part; "text" = a main type).
    Content(Vec<Str>),
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// The receiving site's zone (the default).
    Local,
    /// `:zone "+hhmm"`.
    Fixed(Str),
    /// `:originalzone`: the zone written in the header.
    Original,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetModifier {
    Lower,
    Upper,
    LowerFirst,
    UpperFirst,
    QuoteWildcard,
    Length,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Set,
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncludeLocation {
    Personal,
    Global,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacation {
    pub period_s: Option<u64>,
    pub subject: Option<Str>,
    pub from: Option<Str>,
    pub addresses: Vec<Str>,
    pub mime: bool,
    pub handle: Option<Str>,
    pub reason: Str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    If {
        branches: Vec<(Test, Vec<Cmd>)>,
        otherwise: Option<Vec<Cmd>>,
    },
    Stop,
    Keep {
        flags: Option<Vec<Str>>,
    },
    Discard,
    FileInto {
        mailbox: Str,
        copy: bool,
        create: bool,
        flags: Option<Vec<Str>>,
    },
    Redirect {
        address: Str,
        copy: bool,
    },
    Reject {
        reason: Str,
        extended: bool,
    },
    Vacation(Box<Vacation>),
    Flags {
        op: FlagOp,
        variable: Option<Str>,
        flags: Vec<Str>,
    },
    Set {
        name: String,
        value: Str,
        modifiers: Vec<SetModifier>,
    },
    /// Index into the program's scripts.
    Include {
        script: usize,
        once: bool,
    },
    Return,
    Global(Vec<String>),
    AddHeader {
        last: bool,
        name: Str,
        value: Str,
    },
    DeleteHeader {
        index: Option<Index>,
        name: Str,
        spec: MatchSpec,
        values: Option<Vec<Str>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    True,
    False,
    Not(Box<Test>),
    AllOf(Vec<Test>),
    AnyOf(Vec<Test>),
    Address { spec: MatchSpec, part: AddressPart, index: Option<Index>, headers: Vec<Str>, keys: Vec<Str> },
    Envelope { spec: MatchSpec, part: AddressPart, fields: Vec<Str>, keys: Vec<Str> },
    Header { spec: MatchSpec, index: Option<Index>, headers: Vec<Str>, keys: Vec<Str> },
    Exists(Vec<Str>),
    Size { over: bool, limit_bytes: u64 },
    Body { spec: MatchSpec, transform: BodyTransform, keys: Vec<Str> },
    String { spec: MatchSpec, sources: Vec<Str>, keys: Vec<Str> },
    HasFlag { spec: MatchSpec, variables: Vec<Str>, keys: Vec<Str> },
    Date { spec: MatchSpec, index: Option<Index>, zone: Zone, header: Str, part: Str, keys: Vec<Str> },
    CurrentDate { spec: MatchSpec, zone: Zone, part: Str, keys: Vec<Str> },
    Duplicate { handle: Option<Str>, id: DuplicateId, period_s: Option<u64>, last: bool },
    SpamTest { spec: MatchSpec, percent: bool, keys: Vec<Str> },
    VirusTest { spec: MatchSpec, keys: Vec<Str> },
    Environment { spec: MatchSpec, name: Str, keys: Vec<Str> },
    MailboxExists(Vec<Str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuplicateId {
    /// The Message-ID header (the default).
    MessageId,
    Header(Str),
    Unique(Str),
}

/// One script of a program: the main one or one it includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub name: String,
    pub location: IncludeLocation,
    pub body: Vec<Cmd>,
}

/// A compiled program: the main script (index 0) and every script it includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub scripts: Vec<Script>,
}
