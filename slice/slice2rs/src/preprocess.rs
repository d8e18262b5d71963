//! The preprocessor: the subset of cpp that Slice files use. Directive lines and lines that
//! a conditional turns off become empty lines, so line numbers of the output match the
//! source and the parser's positions need no mapping.

use std::collections::HashSet;

use crate::diag::{Code, Diagnostic, LineIndex};

/// An `#include` found in an active part of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    pub name: String,
    /// `<x>` rather than `"x"`: not looked up beside the including file first.
    pub angled: bool,
    pub line: usize,
}

/// A file after preprocessing.
#[derive(Clone, Debug, Default)]
pub struct Preprocessed {
    pub text: String,
    pub includes: Vec<Include>,
}

struct Cond {
    /// Whether lines are kept in the current branch.
    active: bool,
    /// Whether some branch of this `#if` chain was taken already.
    taken: bool,
    /// Whether the enclosing region is active.
    parent: bool,
    line: usize,
}

/// Runs the directives of `source`. `defines` starts with the symbols the caller defines
/// (none by default: we are no particular language mapping).
pub fn preprocess(source: &str, lines: &LineIndex, diags: &mut Vec<Diagnostic>) -> Preprocessed {
    let mut out = Preprocessed::default();
    let mut defines: HashSet<String> = HashSet::new();
    let mut stack: Vec<Cond> = Vec::new();
    for (i, line) in source.split('\n').enumerate() {
        let lineno = i + 1;
        let active = !matches!(stack.last(), Some(c) if !c.active);
        let trimmed = line.trim_start();
        if let Some(directive) = trimmed.strip_prefix('#') {
            let err = directive_line(
                directive,
                lineno,
                active,
                &mut defines,
                &mut stack,
                &mut out,
            );
            if let Err(msg) = err {
                diags.push(Diagnostic::new(lines.line_pos(lineno), Code::E002, msg));
            }
        } else if active {
            out.text.push_str(line);
        }
        out.text.push('\n');
    }
    out.text.pop();
    for cond in stack {
        diags.push(Diagnostic::new(
            lines.line_pos(cond.line),
            Code::E002,
            "conditional directive without #endif",
        ));
    }
    out
}

fn directive_line(
    directive: &str,
    lineno: usize,
    active: bool,
    defines: &mut HashSet<String>,
    stack: &mut Vec<Cond>,
    out: &mut Preprocessed,
) -> Result<(), String> {
    let directive = strip_line_comment(directive).trim();
    let (name, rest) = match directive.find(|c: char| !c.is_ascii_alphanumeric()) {
        Some(i) => (&directive[..i], directive[i..].trim()),
        None => (directive, ""),
    };
    match name {
        "if" | "ifdef" | "ifndef" => {
            let value = if !active {
                false
            } else if name == "if" {
                eval_condition(rest, defines)?
            } else {
                let symbol = single_identifier(rest, name)?;
                defines.contains(symbol) == (name == "ifdef")
            };
            stack.push(Cond {
                active: active && value,
                taken: value,
                parent: active,
                line: lineno,
            });
        }
        "elif" | "else" => {
            let Some(cond) = stack.last_mut() else {
                return Err(format!("#{name} without #if"));
            };
            let value = if cond.taken || !cond.parent {
                false
            } else if name == "elif" {
                eval_condition(rest, defines)?
            } else {
                true
            };
            cond.active = cond.parent && value;
            cond.taken |= value;
        }
        "endif" => {
            if stack.pop().is_none() {
                return Err("#endif without #if".into());
            }
        }
        _ if !active => {}
        "define" => {
            let symbol = rest.split_whitespace().next().unwrap_or("");
            if symbol.is_empty() {
                return Err("#define needs a name".into());
            }
            defines.insert(symbol.to_string());
        }
        "undef" => {
            defines.remove(single_identifier(rest, name)?);
        }
        "pragma" => {
            if rest != "once" {
                return Err(format!("unknown pragma `{rest}`"));
            }
        }
        "include" => out.includes.push(parse_include(rest, lineno)?),
        "error" => return Err(format!("#error {rest}")),
        "warning" | "line" => {}
        "" => {}
        other => return Err(format!("unknown directive `#{other}`")),
    }
    Ok(())
}

fn strip_line_comment(s: &str) -> &str {
    let s = match s.find("//") {
        Some(i) => &s[..i],
        None => s,
    };
    match s.find("/*") {
        Some(i) => &s[..i],
        None => s,
    }
}

fn single_identifier<'a>(rest: &'a str, directive: &str) -> Result<&'a str, String> {
    let mut words = rest.split_whitespace();
    match (words.next(), words.next()) {
        (Some(w), None) if is_identifier(w) => Ok(w),
        _ => Err(format!("#{directive} needs exactly one name")),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_include(rest: &str, line: usize) -> Result<Include, String> {
    let (close, angled) = match rest.chars().next() {
        Some('<') => ('>', true),
        Some('"') => ('"', false),
        _ => return Err("#include needs <file> or \"file\"".into()),
    };
    let inner = &rest[1..];
    match inner.find(close) {
        Some(end) if end > 0 => Ok(Include {
            name: inner[..end].to_string(),
            angled,
            line,
        }),
        _ => Err("unterminated #include file name".into()),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(i64),
    Not,
    And,
    Or,
    Open,
    Close,
}

fn tokenize(expr: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            toks.push(Tok::Ident(expr[start..i].to_string()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let n = expr[start..i]
                .parse()
                .map_err(|_| format!("bad number `{}`", &expr[start..i]))?;
            toks.push(Tok::Num(n));
        } else {
            let two = expr.get(i..i + 2);
            let (tok, len) = match (c, two) {
                (_, Some("&&")) => (Tok::And, 2),
                (_, Some("||")) => (Tok::Or, 2),
                ('!', _) => (Tok::Not, 1),
                ('(', _) => (Tok::Open, 1),
                (')', _) => (Tok::Close, 1),
                _ => return Err(format!("unexpected `{c}` in #if expression")),
            };
            toks.push(tok);
            i += len;
        }
    }
    Ok(toks)
}

/// Evaluates `#if` expressions made of `defined(X)`, `defined X`, numbers, `!`, `&&`,
/// `||` and parentheses; an unknown name is 0, as in cpp.
fn eval_condition(expr: &str, defines: &HashSet<String>) -> Result<bool, String> {
    let toks = tokenize(expr)?;
    let mut p = CondParser {
        toks: &toks,
        at: 0,
        defines,
    };
    let v = p.or()?;
    if p.at != toks.len() {
        return Err(format!("unexpected text in #if expression `{expr}`"));
    }
    Ok(v)
}

struct CondParser<'a> {
    toks: &'a [Tok],
    at: usize,
    defines: &'a HashSet<String>,
}

impl CondParser<'_> {
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn or(&mut self) -> Result<bool, String> {
        let mut v = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            v |= self.and()?;
        }
        Ok(v)
    }

    fn and(&mut self) -> Result<bool, String> {
        let mut v = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.at += 1;
            v &= self.unary()?;
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<bool, String> {
        match self.next() {
            Some(Tok::Not) => Ok(!self.unary()?),
            Some(Tok::Num(n)) => Ok(n != 0),
            Some(Tok::Open) => {
                let v = self.or()?;
                self.expect_close()?;
                Ok(v)
            }
            Some(Tok::Ident(name)) if name == "defined" => self.defined(),
            Some(Tok::Ident(_)) => Ok(false),
            _ => Err("incomplete #if expression".into()),
        }
    }

    fn defined(&mut self) -> Result<bool, String> {
        let parens = self.peek() == Some(&Tok::Open);
        if parens {
            self.at += 1;
        }
        let Some(Tok::Ident(name)) = self.next() else {
            return Err("defined needs a name".into());
        };
        if parens {
            self.expect_close()?;
        }
        Ok(self.defines.contains(&name))
    }

    fn expect_close(&mut self) -> Result<(), String> {
        match self.next() {
            Some(Tok::Close) => Ok(()),
            _ => Err("missing `)` in #if expression".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str) -> (Preprocessed, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let idx = LineIndex::new("t.ice", src);
        (preprocess(src, &idx, &mut diags), diags)
    }

    #[test]
    fn keeps_line_numbers_and_collects_includes() {
        let (p, d) =
            run("#pragma once\n#include <Ice/Identity.ice>\n#include \"x.ice\"\nmodule M {};");
        assert!(d.is_empty());
        assert_eq!(p.text, "\n\n\nmodule M {};");
        assert_eq!(p.includes.len(), 2);
        assert!(p.includes[0].angled);
        assert_eq!(p.includes[1].name, "x.ice");
        assert_eq!(p.includes[1].line, 3);
    }

    #[test]
    fn conditionals() {
        let src = "#ifndef G\n#define G\na\n#ifdef G\nb\n#else\nc\n#endif\n#if !defined(X) && (defined G || 0)\nd\n#elif 1\ne\n#endif\n#endif";
        let (p, d) = run(src);
        assert!(d.is_empty(), "{d:?}");
        let kept: Vec<&str> = p.text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(kept, ["a", "b", "d"]);
    }

    #[test]
    fn unbalanced_and_unknown_directives_are_reported() {
        let (_, d) = run("#ifdef A\n#frobnicate\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].pos.line, 1);
        let (_, d) = run("#endif\n#foo\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].pos.line, 2);
        assert_eq!(d[1].code, Code::E002);
    }
}
