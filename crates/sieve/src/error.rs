//! The engine's errors: a compile error names the line and column of the script where it
//! was found; a runtime error says which limit or conflict stopped execution. This module
//! must never hold message text beyond what the error names (a header name, a limit).

/// A place in a script: line and column, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a script does not compile, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{script}{sep}{pos}: {message}", sep = if script.is_empty() { "" } else { ": " })]
pub struct CompileError {
    /// The script the error is in (empty for the script being compiled; an included
    /// script's name otherwise).
    pub script: String,
    pub pos: Pos,
    pub message: String,
}

impl CompileError {
    pub fn at(pos: Pos, message: impl Into<String>) -> Self {
        CompileError { script: String::new(), pos, message: message.into() }
    }
}

/// Why execution stopped before it finished. The caller keeps the message in INBOX
/// (RFC 5228 §2.10.6: an error means implicit keep) and logs the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("the script used more than its {0} steps for one message")]
    StepsExhausted(u64),
    #[error("more than {0} redirects for one message")]
    TooManyRedirects(usize),
    #[error("more than {0} actions for one message")]
    TooManyActions(usize),
    #[error("{0}")]
    Conflict(String),
    #[error("mailbox name {0:?} is not valid")]
    BadMailbox(String),
    #[error("redirect address {0:?} is not valid")]
    BadAddress(String),
    #[error("included script {0:?} is missing")]
    MissingInclude(String),
    #[error("header field {0:?} may not be changed by a script")]
    ProtectedHeader(String),
}
