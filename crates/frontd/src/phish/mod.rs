//! Compromised-account defence at the front: every successful login is recorded in the
//! user's group (`common::logins`), the rules (`rules`) look at the history and at what
//! users submit, and an alarm snags the account (`snag`). Geo lookups are `geo`'s.
//! Recording never delays a login: it runs after the client is answered, so an unreachable
//! group costs the history one entry, never a login. What this must never do: block or
//! lock on a guess the rules did not make.

pub mod geo;
pub mod rules;
