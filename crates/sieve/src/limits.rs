//! Every bound the engine keeps, in one place: what a script may be at compile time and
//! what one execution may do. A limit is a number with its unit in its name; exceeding one
//! is a compile error or a runtime error, never a hang or an unbounded allocation.

/// The bounds of compiling and running scripts. `Limits::default()` is what a site gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The longest script text accepted (Pigeonhole's default `sieve_max_script_size` is 1 MiB;
    /// hand-written filters are a few KiB).
    pub script_bytes: usize,
    /// The most syntax nodes (commands, tests, arguments, strings) in one script.
    pub nodes: usize,
    /// How deep blocks and tests may nest.
    pub nesting_depth: usize,
    /// How deep `include` may go, and how many scripts one program may hold.
    pub include_depth: usize,
    pub included_scripts: usize,
    /// Work units one message may cost: one per command or test, one per character compared.
    pub steps: u64,
    /// Redirects per message (Pigeonhole's `sieve_max_redirects` default is 4).
    pub redirects: usize,
    /// Actions per message (Pigeonhole's `sieve_max_actions` default is 32).
    pub actions: usize,
    /// The longest value a variable or match variable may hold (RFC 5229 §6: at least 4000).
    pub variable_bytes: usize,
    /// Distinct variables one script may name (RFC 5229 §6: at least 128).
    pub variables: usize,
    /// The longest string one header edit may add.
    pub header_bytes: usize,
    /// The shortest and longest vacation period a script may ask for (RFC 5230 §4.1: the
    /// minimum is normally one day; shorter :days/:seconds are raised to it, as Pigeonhole's
    /// `sieve_vacation_min_period` does).
    pub vacation_min_period_s: u64,
    pub vacation_max_period_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            script_bytes: 512 * 1024,
            nodes: 100_000,
            nesting_depth: 32,
            include_depth: 8,
            included_scripts: 16,
            steps: 20_000_000,
            redirects: 4,
            actions: 32,
            variable_bytes: 4096,
            variables: 255,
            header_bytes: 8192,
            vacation_min_period_s: 86_400,
            vacation_max_period_s: 365 * 86_400,
        }
    }
}
