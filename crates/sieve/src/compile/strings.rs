//! String arguments to templates: `${name}` and `${N}` references when the script requires
//! "variables" (RFC 5229 §3), `${hex:..}` and `${unicode:..}` when it requires
//! "encoded-character" (RFC 5228 §2.4.2.4). A reference that is not well formed stays
//! literal text, as the RFCs say. This module must never expand a variable's value.

use super::Scope;
use crate::error::{CompileError, Pos};
use crate::program::{Part, Str};

pub fn template(scope: &mut Scope, text: &str, pos: Pos) -> Result<Str, CompileError> {
    let text = match scope.requires("encoded-character") {
        true => encoded_characters(text, pos)?,
        false => text.to_string(),
    };
    if !scope.requires("variables") {
        return Ok(Str::lit(text));
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        literal.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let reference = after.find('}').and_then(|end| reference(&after[..end]).map(|part| (part, end)));
        match reference {
            Some((part, end)) => {
                if let Part::Var(name) = &part {
                    scope.variable(name, pos)?;
                }
                if !literal.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut literal)));
                }
                parts.push(part);
                rest = &after[end + 1..];
            }
            None => {
                literal.push_str("${");
                rest = after;
            }
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() || parts.is_empty() {
        parts.push(Part::Lit(literal));
    }
    Ok(Str { parts })
}

/// `N` or `name` or `namespace.name` between `${` and `}`, or None when it is neither.
fn reference(inner: &str) -> Option<Part> {
    if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
        let n = inner.parse::<usize>().unwrap_or(usize::MAX);
        return Some(Part::Match(n));
    }
    let valid = !inner.is_empty() && inner.split('.').all(is_identifier);
    valid.then(|| Part::Var(inner.to_ascii_lowercase()))
}

pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

/// Replaces `${hex: 41 42}` and `${unicode: 263a}` sequences; malformed ones stay.
fn encoded_characters(text: &str, pos: Pos) -> Result<String, CompileError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let decoded = after.find('}').and_then(|end| decode(&after[..end]).map(|d| (d, end)));
        match decoded {
            Some((Ok(text), end)) => {
                out.push_str(&text);
                rest = &after[end + 1..];
            }
            Some((Err(()), _)) => {
                return Err(CompileError::at(pos, "encoded character is not a valid Unicode scalar or UTF-8"))
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn decode(inner: &str) -> Option<Result<String, ()>> {
    let (kind, digits) = inner.split_once(':')?;
    let words: Vec<&str> = digits.split_ascii_whitespace().collect();
    if words.iter().any(|w| !w.bytes().all(|b| b.is_ascii_hexdigit()) || w.len() > 8) {
        return None;
    }
    match kind.to_ascii_lowercase().as_str() {
        "hex" => {
            let bytes: Option<Vec<u8>> = words.iter().map(|w| u8::from_str_radix(w, 16).ok()).collect();
            Some(String::from_utf8(bytes?).map_err(|_| ()))
        }
        "unicode" => {
            let chars: Result<String, ()> =
                words.iter().map(|w| u32::from_str_radix(w, 16).ok().and_then(char::from_u32).ok_or(())).collect();
            Some(chars)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn scope(exts: &[&str]) -> Scope {
        Scope {
            required: exts.iter().map(|s| s.to_string()).collect(),
            variables: Default::default(),
            limits: Limits::default(),
        }
    }

    #[test]
    fn rfc5229_3_references_and_literals() {
        let s = template(&mut scope(&["variables"]), "a${b}c${1}${bad-name}${", Pos::default()).unwrap();
        assert_eq!(
            s.parts,
            vec![
                Part::Lit("a".into()),
                Part::Var("b".into()),
                Part::Lit("c".into()),
                Part::Match(1),
                Part::Lit("${bad-name}${".into())
            ]
        );
        let plain = template(&mut scope(&[]), "a${b}", Pos::default()).unwrap();
        assert_eq!(plain.constant(), Some("a${b}"));
    }

    #[test]
    fn rfc5228_2_4_2_4_encoded_characters() {
        let s = template(&mut scope(&["encoded-character"]), "${hex: 40 41}${unicode:263a}${hex:zz}", Pos::default())
            .unwrap();
        assert_eq!(s.constant(), Some("@A\u{263a}${hex:zz}"));
        assert!(template(&mut scope(&["encoded-character"]), "${unicode:d800}", Pos::default()).is_err());
    }

    #[test]
    fn rfc5229_6_variable_count_is_bounded() {
        let mut s = scope(&["variables"]);
        let many: String = (0..300).map(|i| format!("${{v{i}}}")).collect();
        assert!(template(&mut s, &many, Pos::default()).unwrap_err().message.contains("more than 255"));
    }
}
