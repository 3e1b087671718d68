//! A Sieve mail-filtering engine (RFC 5228 and the extensions `compile::EXTENSIONS` lists).
//!
//! Two pure steps: [`compile`] turns script text into a checked [`Program`] (or an error at a
//! line and column), and [`run`] turns a program plus a message, its envelope and a
//! [`Context`] into an [`Outcome`]: the actions to take. Every step is bounded by [`Limits`].
//! This crate must never do I/O, read a clock or keep state between runs: the deliverer
//! owns mailboxes, the outbound queue, vacation and duplicate memory.

mod compare;
mod compile;
mod date;
pub mod error;
mod lexer;
pub mod limits;
pub mod message;
pub mod program;
mod run;
mod syntax;

pub use compile::{compile, Includes, NoIncludes, EXTENSIONS};
pub use error::{CompileError, Pos, RuntimeError};
pub use limits::Limits;
pub use message::Envelope;
pub use program::{IncludeLocation, Program};
pub use run::outcome::{Action, DuplicateMark, Outcome, Reply};
pub use run::{run, spamtest_from_score, Context, State};
