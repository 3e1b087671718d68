//! Dovecot's `dovecot-keywords`: a folder's keyword names, one `INDEX NAME` line each; a
//! file name's letter `a` + INDEX stands for the keyword (so 26 at most). Pure.

use super::Problem;

/// Keyword letters a file name can carry.
pub const LETTERS_MAX: usize = 26;
/// Largest keywords file read.
pub const FILE_MAX_BYTES: u64 = 64 << 10;
/// Longest keyword accepted.
pub const KEYWORD_MAX_BYTES: usize = 128;

/// Keyword names by index, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keywords {
    pub names: [Option<String>; LETTERS_MAX],
    pub problems: Vec<Problem>,
}

impl Keywords {
    /// The name of keyword letter `index`.
    pub fn name(&self, index: u8) -> Option<&str> {
        self.names.get(usize::from(index))?.as_deref()
    }
}

/// Whether `name` is a keyword IMAP can carry: an atom without `\`.
pub fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= KEYWORD_MAX_BYTES
        && name.bytes().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
}

/// Parse a keywords file named `file`.
pub fn parse(text: &[u8], file: &str) -> Keywords {
    let mut out = Keywords::default();
    for (k, line) in text.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
        let parsed = std::str::from_utf8(line).ok().and_then(|l| {
            let (index, name) = l.split_once(' ')?;
            let index: usize = index.parse().ok().filter(|i| *i < LETTERS_MAX)?;
            valid(name).then_some((index, name))
        });
        match parsed {
            Some((index, name)) if out.names[index].is_none() => out.names[index] = Some(name.to_string()),
            Some((index, _)) => {
                out.problems.push(Problem::new(format!("{file}:{}", k + 1), format!("index {index} repeats")))
            }
            None => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
                out.problems
                    .push(Problem::new(format!("{file}:{}", k + 1), format!("unreadable keyword line {shown:?}")));
            }
        }
    }
    out
}

/// A keywords file naming `names` with indexes 0, 1, … (at most [`LETTERS_MAX`]).
pub fn write(names: &[String]) -> String {
    names.iter().take(LETTERS_MAX).enumerate().map(|(i, n)| format!("{i} {n}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_keywords_by_index() {
        let k = parse(b"0 $Label1\n1 Work\n2 Other\n", "dovecot-keywords");
        assert_eq!((k.name(0), k.name(1), k.name(2), k.name(3)), (Some("$Label1"), Some("Work"), Some("Other"), None));
        assert!(k.problems.is_empty());
        let back = parse(write(&["a".into(), "$b".into()]).as_bytes(), "k");
        assert_eq!((back.name(0), back.name(1)), (Some("a"), Some("$b")));
    }

    #[test]
    fn bad_lines_are_problems() {
        let k = parse(b"0 ok\n0 again\n30 far\nx y\n1 bad\\name\n\xff\xfe\n", "k");
        assert_eq!(k.name(0), Some("ok"));
        assert_eq!(k.problems.len(), 5, "{:?}", k.problems);
    }
}
