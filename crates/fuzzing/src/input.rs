//! Cutting a fuzz input into protocol lines, with a bound on how many: the sessions see
//! what a server's line reader would hand them.

/// Most lines one input is cut into (a longer input is ignored past that).
pub const LINES_MAX: usize = 512;

/// Lines of `data` without their `\n` (and without a `\r` before it), at most
/// [`LINES_MAX`]; a last line without `\n` is included.
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n').take(LINES_MAX).map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// A cursor for inputs that mix lines and counted byte runs (IMAP literals, BDAT chunks).
pub struct Cursor<'a> {
    rest: &'a [u8],
    steps_left: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data, steps_left: LINES_MAX }
    }

    /// The next line including its `\r\n` (or what is left), `None` at the end.
    pub fn line_crlf(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() || self.steps_left == 0 {
            return None;
        }
        self.steps_left -= 1;
        let end = self.rest.iter().position(|b| *b == b'\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(line)
    }

    /// The next line without its line ending.
    pub fn line(&mut self) -> Option<&'a [u8]> {
        self.line_crlf().map(|l| {
            let l = l.strip_suffix(b"\n").unwrap_or(l);
            l.strip_suffix(b"\r").unwrap_or(l)
        })
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        taken
    }
}
