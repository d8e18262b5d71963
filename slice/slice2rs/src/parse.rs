//! The parser: nom combinators over the preprocessed text of one file. A definition that
//! fails to parse is reported and skipped (up to its closing `;` at the same brace depth),
//! so one mistake yields one diagnostic and the rest of the file is still checked.
//!
//! Positions in the tree ([`At`]) are the number of bytes from the position to the end of
//! the text, which is what nom hands us; [`offset`] turns them into offsets.

use std::cell::RefCell;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, digit1, hex_digit1, oct_digit0};
use nom::combinator::{map, opt, recognize};
use nom::error::{ErrorKind, ParseError};
use nom::multi::separated_list1;
use nom::sequence::{pair, preceded, tuple};
use nom::IResult;

use crate::ast::*;

/// A syntax error: where (bytes left to the end) and what was expected there.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub at: At,
    pub message: String,
}

/// Turns a parse position into a byte offset into `text`.
pub fn offset(text: &str, at: At) -> usize {
    text.len().saturating_sub(at)
}

/// Parses one preprocessed file; never fails, the errors come back beside the tree.
pub fn parse_file(text: &str) -> (File, Vec<SyntaxError>) {
    let parser = Parser::default();
    let mut file = File::default();
    let mut i = text;
    while let Ok((rest, meta)) = global_meta(i) {
        file.global_meta.extend(meta);
        i = rest;
    }
    let (_, defs) = parser.definitions(i, false);
    file.definitions = defs;
    (file, parser.errors.into_inner())
}

#[derive(Debug, Clone)]
struct PErr<'a> {
    at: &'a str,
    expected: String,
}

impl<'a> ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, _kind: ErrorKind) -> Self {
        PErr {
            at: input,
            expected: String::new(),
        }
    }

    fn append(_input: &'a str, _kind: ErrorKind, other: Self) -> Self {
        other
    }

    fn or(self, other: Self) -> Self {
        // The alternative that got further explains the problem best.
        if other.at.len() < self.at.len() || self.expected.is_empty() {
            other
        } else {
            self
        }
    }
}

type PResult<'a, T> = IResult<&'a str, T, PErr<'a>>;

fn fail<T>(at: &str, expected: impl Into<String>) -> PResult<'_, T> {
    Err(nom::Err::Error(PErr {
        at,
        expected: expected.into(),
    }))
}

/// Names what `p` expected when it failed before consuming anything but blanks.
fn expect<'a, O>(
    what: &'static str,
    mut p: impl FnMut(&'a str) -> PResult<'a, O>,
) -> impl FnMut(&'a str) -> PResult<'a, O> {
    move |i: &'a str| {
        let start = skip_blank(i).len();
        p(i).map_err(|e| {
            e.map(|mut err| {
                if err.at.len() >= start {
                    err.at = skip_blank(i);
                    err.expected = what.to_string();
                }
                err
            })
        })
    }
}

fn skip_blank(i: &str) -> &str {
    match ws(i) {
        Ok((rest, ())) => rest,
        Err(_) => i,
    }
}

/// Whitespace and comments (doc comments included: they carry no meaning for the wire).
fn ws(mut i: &str) -> PResult<'_, ()> {
    loop {
        i = i.trim_start();
        if let Some(rest) = i.strip_prefix("//") {
            i = rest.find('\n').map_or("", |n| &rest[n..]);
        } else if let Some(rest) = i.strip_prefix("/*") {
            match rest.find("*/") {
                Some(end) => i = &rest[end + 2..],
                None => return fail(i, "end of comment `*/`"),
            }
        } else {
            return Ok((i, ()));
        }
    }
}

fn sym<'a>(s: &'static str) -> impl FnMut(&'a str) -> PResult<'a, &'a str> {
    move |i: &'a str| {
        let (i, ()) = ws(i)?;
        match i.strip_prefix(s) {
            Some(rest) => Ok((rest, &i[..s.len()])),
            None => fail(i, format!("`{s}`")),
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn raw_word(i: &str) -> PResult<'_, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(is_ident_char),
    ))(i)
}

fn kw<'a>(word: &'static str) -> impl FnMut(&'a str) -> PResult<'a, &'a str> {
    move |i: &'a str| {
        let (i, ()) = ws(i)?;
        match raw_word(i) {
            Ok((rest, w)) if w == word => Ok((rest, w)),
            _ => fail(i, format!("`{word}`")),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "bool",
    "byte",
    "class",
    "const",
    "dictionary",
    "double",
    "enum",
    "exception",
    "extends",
    "false",
    "float",
    "idempotent",
    "implements",
    "int",
    "interface",
    "local",
    "LocalObject",
    "long",
    "module",
    "Object",
    "optional",
    "out",
    "sequence",
    "short",
    "string",
    "struct",
    "throws",
    "true",
    "Value",
    "void",
];

/// An identifier; `\name` escapes a keyword.
fn ident(i: &str) -> PResult<'_, (String, At)> {
    let (i, ()) = ws(i)?;
    let at = i.len();
    let (rest, escaped) = opt(char('\\'))(i)?;
    let Ok((rest, word)) = raw_word(rest) else {
        return fail(i, "an identifier");
    };
    if escaped.is_none() && KEYWORDS.contains(&word) {
        return fail(
            i,
            format!("an identifier (`{word}` is a keyword; write `\\{word}`)"),
        );
    }
    Ok((rest, (word.to_string(), at)))
}

fn scoped_name(i: &str) -> PResult<'_, (String, At)> {
    let (i, ()) = ws(i)?;
    let at = i.len();
    let (mut rest, lead) = opt(tag("::"))(i)?;
    let mut name = lead.unwrap_or("").to_string();
    let (r, (first, _)) = ident(rest)?;
    name.push_str(&first);
    rest = r;
    while let Some(after) = rest.strip_prefix("::") {
        let (r, (part, _)) = ident(after)?;
        name.push_str("::");
        name.push_str(&part);
        rest = r;
    }
    Ok((rest, (name, at)))
}

fn string_literal(i: &str) -> PResult<'_, String> {
    let (i, ()) = ws(i)?;
    let Some(body) = i.strip_prefix('"') else {
        return fail(i, "a string literal");
    };
    let mut bytes = Vec::new();
    let mut rest = body;
    loop {
        let mut chars = rest.chars();
        match chars.next() {
            None | Some('\n') => return fail(rest, "a closing `\"` on the same line"),
            Some('"') => break,
            Some('\\') => {
                let (r, b) = escape(chars.as_str()).or_else(|_| fail(rest, "a valid escape"))?;
                bytes.extend(b);
                rest = r;
            }
            Some(c) => {
                let mut buf = [0; 4];
                bytes.extend(c.encode_utf8(&mut buf).as_bytes());
                rest = chars.as_str();
            }
        }
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok((&rest[1..], s)),
        Err(_) => fail(i, "a string that is valid UTF-8 after escapes"),
    }
}

/// One escape after the backslash, as the bytes it stands for.
fn escape(i: &str) -> PResult<'_, Vec<u8>> {
    let mut chars = i.chars();
    let simple = match chars.next() {
        Some('\\') => Some(b'\\'),
        Some('"') => Some(b'"'),
        Some('\'') => Some(b'\''),
        Some('?') => Some(b'?'),
        Some('a') => Some(7),
        Some('b') => Some(8),
        Some('f') => Some(12),
        Some('n') => Some(b'\n'),
        Some('r') => Some(b'\r'),
        Some('t') => Some(b'\t'),
        Some('v') => Some(11),
        _ => None,
    };
    if let Some(b) = simple {
        return Ok((chars.as_str(), vec![b]));
    }
    let digits = |rest: &str, n: usize, radix: u32| -> Option<(usize, u32)> {
        let len = rest
            .chars()
            .take(n)
            .take_while(|c| c.is_digit(radix))
            .count();
        let v = u32::from_str_radix(rest.get(..len)?, radix).ok()?;
        Some((len, v))
    };
    let (len, value, skip, unicode) = match i.chars().next() {
        Some('x') => match digits(&i[1..], 2, 16) {
            Some((l, v)) => (l, v, 1, false),
            None => return fail(i, "hex digits"),
        },
        Some('u') | Some('U') => {
            let n = if i.starts_with('u') { 4 } else { 8 };
            match digits(&i[1..], n, 16) {
                Some((l, v)) if l == n => (l, v, 1, true),
                _ => return fail(i, "a universal character name"),
            }
        }
        Some('0'..='7') => match digits(i, 3, 8) {
            Some((l, v)) if v <= 255 => (l, v, 0, false),
            _ => return fail(i, "an octal escape up to \\377"),
        },
        _ => return fail(i, "a valid escape"),
    };
    let rest = &i[skip + len..];
    if unicode {
        match char::from_u32(value) {
            Some(c) => Ok((rest, c.to_string().into_bytes())),
            None => fail(i, "a valid Unicode scalar value"),
        }
    } else {
        Ok((rest, vec![value as u8]))
    }
}

fn integer(i: &str) -> PResult<'_, i128> {
    let (i, ()) = ws(i)?;
    let (rest, neg) = opt(char('-'))(i)?;
    let (rest, neg) = match neg {
        Some(_) => (rest, true),
        None => (opt(char('+'))(rest)?.0, false),
    };
    let parsed: PResult<'_, (&str, u32)> = alt((
        map(preceded(alt((tag("0x"), tag("0X"))), hex_digit1), |d| {
            (d, 16)
        }),
        map(recognize(pair(char('0'), oct_digit0)), |d| (d, 8)),
        map(digit1, |d| (d, 10)),
    ))(rest);
    let Ok((rest2, (digits, radix))) = parsed else {
        return fail(i, "an integer");
    };
    if rest2.starts_with(|c: char| c == '.' || c == 'e' || c == 'E' || is_ident_char(c)) {
        return fail(i, "an integer");
    }
    match i128::from_str_radix(digits, radix) {
        Ok(v) => Ok((rest2, if neg { -v } else { v })),
        Err(_) => fail(i, "an integer of at most 64 bits"),
    }
}

fn float(i: &str) -> PResult<'_, f64> {
    let (i, ()) = ws(i)?;
    let exponent = tuple((
        alt((char('e'), char('E'))),
        opt(alt((char('+'), char('-')))),
        digit1,
    ));
    let mantissa = alt((
        recognize(tuple((digit1, char('.'), opt(digit1)))),
        recognize(pair(char('.'), digit1)),
    ));
    let number = alt((
        recognize(pair(mantissa, opt(exponent))),
        recognize(pair(
            digit1,
            tuple((
                alt((char('e'), char('E'))),
                opt(alt((char('+'), char('-')))),
                digit1,
            )),
        )),
    ));
    let (rest, text) = recognize(pair(opt(alt((char('-'), char('+')))), number))(i)?;
    let (rest, _) = opt(alt((char('f'), char('F'), char('d'), char('D'))))(rest)?;
    match text.parse::<f64>() {
        Ok(v) => Ok((rest, v)),
        Err(_) => fail(i, "a floating-point number"),
    }
}

fn const_value(i: &str) -> PResult<'_, ConstValue> {
    expect(
        "a constant value",
        alt((
            map(string_literal, ConstValue::String),
            map(float, ConstValue::Float),
            map(integer, ConstValue::Int),
            map(kw("true"), |_| ConstValue::Bool(true)),
            map(kw("false"), |_| ConstValue::Bool(false)),
            map(scoped_name, |(n, _)| ConstValue::Name(n)),
        )),
    )(i)
}

fn metadata(i: &str) -> PResult<'_, Vec<String>> {
    let (i, ()) = ws(i)?;
    if i.starts_with("[[") {
        return fail(i, "local metadata");
    }
    let (i, _) = sym("[")(i)?;
    let (i, items) = separated_list1(sym(","), string_literal)(i)?;
    let (i, _) = expect("`]`", sym("]"))(i)?;
    Ok((i, items))
}

fn metadata_list(mut i: &str) -> PResult<'_, Vec<String>> {
    let mut all = Vec::new();
    while let Ok((rest, items)) = metadata(i) {
        all.extend(items);
        i = rest;
    }
    Ok((i, all))
}

fn global_meta(i: &str) -> PResult<'_, Vec<String>> {
    let (i, _) = sym("[[")(i)?;
    let (i, items) = separated_list1(sym(","), string_literal)(i)?;
    let (i, _) = expect("`]]`", sym("]]"))(i)?;
    Ok((i, items))
}

fn builtin(i: &str) -> PResult<'_, Builtin> {
    let (i, ()) = ws(i)?;
    let (rest, word) = raw_word(i)?;
    let b = match word {
        "bool" => Builtin::Bool,
        "byte" => Builtin::Byte,
        "short" => Builtin::Short,
        "int" => Builtin::Int,
        "long" => Builtin::Long,
        "float" => Builtin::Float,
        "double" => Builtin::Double,
        "string" => Builtin::String,
        "Object" | "Value" => Builtin::Object,
        "LocalObject" => Builtin::LocalObject,
        _ => return fail(i, "a type"),
    };
    if b == Builtin::Object && word == "Object" {
        if let Ok((rest, _)) = sym("*")(rest) {
            return Ok((rest, Builtin::ObjectProxy));
        }
    }
    Ok((rest, b))
}

fn type_ref(i: &str) -> PResult<'_, TypeRef> {
    if let Ok((rest, b)) = builtin(i) {
        return Ok((rest, TypeRef::Builtin(b)));
    }
    let (i, (name, at)) = expect("a type", scoped_name)(i)?;
    let (i, star) = opt(sym("*"))(i)?;
    Ok((
        i,
        TypeRef::Named {
            name,
            proxy: star.is_some(),
            at,
        },
    ))
}

/// `optional(7)` or `optional(SomeIntConstant)`.
#[derive(Clone, Debug, Default)]
struct Tag {
    value: Option<i64>,
    constant: Option<String>,
}

fn optional_tag(i: &str) -> PResult<'_, Tag> {
    let (i, _) = kw("optional")(i)?;
    let (i, _) = expect("`(`", sym("("))(i)?;
    if let Ok((rest, (name, _))) = scoped_name(i) {
        let (rest, _) = expect("`)`", sym(")"))(rest)?;
        let tag = Tag {
            value: None,
            constant: Some(name),
        };
        return Ok((rest, tag));
    }
    let (rest, v) = expect("a tag", integer)(i)?;
    let Ok(tag) = i64::try_from(v) else {
        return fail(i, "a tag that fits in an int");
    };
    let (rest, _) = expect("`)`", sym(")"))(rest)?;
    Ok((
        rest,
        Tag {
            value: Some(tag),
            constant: None,
        },
    ))
}

fn default_value(i: &str) -> PResult<'_, Option<ConstValue>> {
    opt(preceded(sym("="), const_value))(i)
}

fn data_member(i: &str) -> PResult<'_, Member> {
    let (i, meta) = metadata_list(i)?;
    let (i, tag) = opt(optional_tag)(i)?;
    let tag = tag.unwrap_or_default();
    let (i, ty) = type_ref(i)?;
    let (i, (name, at)) = ident(i)?;
    let (i, default) = default_value(i)?;
    Ok((
        i,
        Member {
            name,
            ty,
            tag: tag.value,
            tag_const: tag.constant,
            default,
            meta,
            at,
        },
    ))
}

fn param(i: &str) -> PResult<'_, Param> {
    let (i, meta) = metadata_list(i)?;
    let (i, out) = opt(kw("out"))(i)?;
    let (i, tag) = opt(optional_tag)(i)?;
    let tag = tag.unwrap_or_default();
    let (i, ty) = type_ref(i)?;
    let (i, (name, at)) = ident(i)?;
    Ok((
        i,
        Param {
            name,
            ty,
            out: out.is_some(),
            tag: tag.value,
            tag_const: tag.constant,
            meta,
            at,
        },
    ))
}

fn throws_clause(i: &str) -> PResult<'_, Vec<(String, At)>> {
    let (i, t) = opt(kw("throws"))(i)?;
    if t.is_none() {
        return Ok((i, Vec::new()));
    }
    separated_list1(sym(","), expect("an exception name", scoped_name))(i)
}

/// The return part of an operation or the type of a member; `None` type means `void`.
struct Head {
    meta: Vec<String>,
    idempotent: bool,
    tag: Tag,
    ty: Option<TypeRef>,
    name: String,
    at: At,
}

fn head(i: &str) -> PResult<'_, Head> {
    let (i, meta) = metadata_list(i)?;
    let (i, idem) = opt(kw("idempotent"))(i)?;
    let (i, tag) = opt(optional_tag)(i)?;
    let tag = tag.unwrap_or_default();
    let (i, ty) = alt((map(kw("void"), |_| None), map(type_ref, Some)))(i)?;
    let (i, (name, at)) = ident(i)?;
    Ok((
        i,
        Head {
            meta,
            idempotent: idem.is_some(),
            tag,
            ty,
            name,
            at,
        },
    ))
}

enum Item {
    Op(Operation),
    Member(Member),
}

/// A class body item: an operation when `(` follows the name, a data member otherwise.
fn class_item(i: &str) -> PResult<'_, Item> {
    let (i, h) = head(i)?;
    if let Ok((i, _)) = sym("(")(i) {
        let (i, op) = operation_rest(i, h)?;
        return Ok((i, Item::Op(op)));
    }
    let Some(ty) = h.ty else {
        return fail(i, "`(` after an operation name");
    };
    if h.idempotent {
        return fail(i, "`(`: only operations can be idempotent");
    }
    let (i, default) = default_value(i)?;
    let member = Member {
        name: h.name,
        ty,
        tag: h.tag.value,
        tag_const: h.tag.constant,
        default,
        meta: h.meta,
        at: h.at,
    };
    Ok((i, Item::Member(member)))
}

/// Parameters up to `)`; after a `,` a parameter must follow, so its error is the one
/// reported.
fn params(mut i: &str) -> PResult<'_, Vec<Param>> {
    let mut out = Vec::new();
    if let Ok((rest, _)) = sym(")")(i) {
        return Ok((rest, out));
    }
    loop {
        let (rest, p) = param(i)?;
        out.push(p);
        if let Ok((rest, _)) = sym(",")(rest) {
            i = rest;
            continue;
        }
        let (rest, _) = expect("`,` or `)`", sym(")"))(rest)?;
        return Ok((rest, out));
    }
}

fn operation_rest(i: &str, h: Head) -> PResult<'_, Operation> {
    let (i, params) = params(i)?;
    let (i, throws) = throws_clause(i)?;
    Ok((
        i,
        Operation {
            name: h.name,
            ret: h.ty,
            ret_tag: h.tag.value,
            ret_tag_const: h.tag.constant,
            params,
            throws,
            idempotent: h.idempotent,
            meta: h.meta,
            at: h.at,
        },
    ))
}

fn operation(i: &str) -> PResult<'_, Operation> {
    let (i, h) = head(i)?;
    let (i, _) = expect("`(`", sym("("))(i)?;
    operation_rest(i, h)
}

/// `item ;` repeated until `}`.
fn body<'a, T>(i: &'a str, mut item: impl FnMut(&'a str) -> PResult<'a, T>) -> PResult<'a, Vec<T>> {
    let (mut i, _) = expect("`{`", sym("{"))(i)?;
    let mut items = Vec::new();
    loop {
        if let Ok((rest, _)) = sym("}")(i) {
            return Ok((rest, items));
        }
        let (rest, it) = item(i)?;
        let (rest, _) = expect("`;`", sym(";"))(rest)?;
        items.push(it);
        i = rest;
    }
}

fn comma_list<'a, T>(
    i: &'a str,
    mut item: impl FnMut(&'a str) -> PResult<'a, T>,
) -> PResult<'a, Vec<T>> {
    let (mut i, _) = expect("`{`", sym("{"))(i)?;
    let mut items = Vec::new();
    loop {
        if let Ok((rest, _)) = sym("}")(i) {
            if items.is_empty() {
                return fail(i, "an enumerator");
            }
            return Ok((rest, items));
        }
        let (rest, it) = item(i)?;
        items.push(it);
        i = match sym(",")(rest) {
            Ok((rest, _)) => rest,
            Err(_) => {
                let (rest, _) = expect("`,` or `}`", sym("}"))(rest)?;
                return Ok((rest, items));
            }
        };
    }
}

fn enumerator(i: &str) -> PResult<'_, Enumerator> {
    let (i, (name, at)) = ident(i)?;
    let (i, value) = default_value(i)?;
    Ok((i, Enumerator { name, value, at }))
}

fn supers<'a>(i: &'a str, word: &'static str) -> PResult<'a, Vec<(String, At)>> {
    match kw(word)(i) {
        Ok((i, _)) => separated_list1(sym(","), expect("a type name", scoped_name))(i),
        Err(_) => Ok((i, Vec::new())),
    }
}

#[derive(Default)]
struct Parser {
    errors: RefCell<Vec<SyntaxError>>,
}

impl Parser {
    /// Definitions up to `}` (inside a module) or the end of the text.
    fn definitions<'a>(&self, mut i: &'a str, in_module: bool) -> (&'a str, Vec<Definition>) {
        let mut defs = Vec::new();
        loop {
            let rest = skip_blank(i);
            if rest.is_empty() || (in_module && rest.starts_with('}')) {
                return (rest, defs);
            }
            match self.definition(rest) {
                Ok((after, def)) => {
                    defs.push(def);
                    i = after;
                }
                Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                    let message = if e.expected.is_empty() {
                        "syntax error".to_string()
                    } else {
                        format!("expected {}", e.expected)
                    };
                    self.errors.borrow_mut().push(SyntaxError {
                        at: e.at.len(),
                        message,
                    });
                    i = recover(rest);
                    if i.len() == rest.len() {
                        // A `}` with no scope to close: skip it so the loop advances.
                        let skip = rest.chars().next().map_or(0, char::len_utf8);
                        i = &rest[skip..];
                    }
                }
                Err(nom::Err::Incomplete(_)) => return ("", defs),
            }
        }
    }

    fn definition<'a>(&self, i: &'a str) -> PResult<'a, Definition> {
        let (i, meta) = metadata_list(i)?;
        let (i, local) = opt(kw("local"))(i)?;
        let (i, ()) = ws(i)?;
        let (_, word) = raw_word(i).or_else(|_| fail(i, "a definition"))?;
        let (i, _) = raw_word(i)?;
        let (i, ((name, at), kind)) = match word {
            "module" => self.module(i)?,
            "class" => class(i)?,
            "interface" => interface(i)?,
            "exception" => exception(i)?,
            "struct" => {
                let (i, n) = ident(i)?;
                let (i, members) = body(i, data_member)?;
                (i, (n, Kind::Struct(members)))
            }
            "sequence" => sequence(i)?,
            "dictionary" => dictionary(i)?,
            "enum" => {
                let (i, n) = ident(i)?;
                let (i, items) = comma_list(i, enumerator)?;
                (i, (n, Kind::Enum(items)))
            }
            "const" => constant(i)?,
            _ => return fail(i, "a definition"),
        };
        // Ice 3.7 makes the `;` after a closing brace optional.
        let braced = matches!(
            kind,
            Kind::Module(_)
                | Kind::Class { .. }
                | Kind::Interface { .. }
                | Kind::Exception { .. }
                | Kind::Struct(_)
                | Kind::Enum(_)
        );
        let (i, _) = if braced {
            opt(sym(";"))(i)?
        } else {
            map(expect("`;`", sym(";")), Some)(i)?
        };
        let def = Definition {
            name,
            kind,
            local: local.is_some(),
            meta,
            at,
        };
        Ok((i, def))
    }

    fn module<'a>(&self, i: &'a str) -> PResult<'a, ((String, At), Kind)> {
        let (i, n) = ident(i)?;
        let (i, _) = expect("`{`", sym("{"))(i)?;
        let (i, defs) = self.definitions(i, true);
        if i.is_empty() {
            // Unclosed until the end of the file: reported here rather than failed, since a
            // failure makes the caller recover and parse the body again, once per enclosing
            // module, which took exponential time in the nesting depth.
            self.errors.borrow_mut().push(SyntaxError {
                at: 0,
                message: "expected `}`".to_string(),
            });
            return Ok((i, (n, Kind::Module(defs))));
        }
        let (i, _) = expect("`}`", sym("}"))(i)?;
        Ok((i, (n, Kind::Module(defs))))
    }
}

type DefResult<'a> = PResult<'a, ((String, At), Kind)>;

fn class(i: &str) -> DefResult<'_> {
    let (i, n) = ident(i)?;
    if let Ok((_, _)) = sym(";")(i) {
        return Ok((i, (n, Kind::ClassForward)));
    }
    let (i, compact_id) = opt(|i| {
        let (i, _) = sym("(")(i)?;
        let (i, v) = expect("a compact id", integer)(i)?;
        let (i, _) = expect("`)`", sym(")"))(i)?;
        Ok((i, v))
    })(i)?;
    let (i, mut bases) = supers(i, "extends")?;
    let (i, implements) = supers(i, "implements")?;
    if bases.len() > 1 {
        return fail(i, "`{`: a class extends at most one class");
    }
    let (i, items) = body(i, class_item)?;
    let mut members = Vec::new();
    let mut ops = Vec::new();
    for item in items {
        match item {
            Item::Op(o) => ops.push(o),
            Item::Member(m) => members.push(m),
        }
    }
    let kind = Kind::Class {
        compact_id,
        base: bases.pop(),
        implements,
        members,
        ops,
    };
    Ok((i, (n, kind)))
}

fn interface(i: &str) -> DefResult<'_> {
    let (i, n) = ident(i)?;
    if let Ok((_, _)) = sym(";")(i) {
        return Ok((i, (n, Kind::InterfaceForward)));
    }
    let (i, bases) = supers(i, "extends")?;
    let (i, ops) = body(i, operation)?;
    Ok((i, (n, Kind::Interface { bases, ops })))
}

fn exception(i: &str) -> DefResult<'_> {
    let (i, n) = ident(i)?;
    let (i, mut bases) = supers(i, "extends")?;
    if bases.len() > 1 {
        return fail(i, "`{`: an exception extends at most one exception");
    }
    let (i, members) = body(i, data_member)?;
    let kind = Kind::Exception {
        base: bases.pop(),
        members,
    };
    Ok((i, (n, kind)))
}

fn sequence(i: &str) -> DefResult<'_> {
    let (i, _) = expect("`<`", sym("<"))(i)?;
    let (i, _) = metadata_list(i)?;
    let (i, ty) = type_ref(i)?;
    let (i, _) = expect("`>`", sym(">"))(i)?;
    let (i, n) = ident(i)?;
    Ok((i, (n, Kind::Sequence(ty))))
}

fn dictionary(i: &str) -> DefResult<'_> {
    let (i, _) = expect("`<`", sym("<"))(i)?;
    let (i, _) = metadata_list(i)?;
    let (i, key) = type_ref(i)?;
    let (i, _) = expect("`,`", sym(","))(i)?;
    let (i, _) = metadata_list(i)?;
    let (i, value) = type_ref(i)?;
    let (i, _) = expect("`>`", sym(">"))(i)?;
    let (i, n) = ident(i)?;
    Ok((i, (n, Kind::Dictionary(key, value))))
}

fn constant(i: &str) -> DefResult<'_> {
    let (i, _) = metadata_list(i)?;
    let (i, ty) = type_ref(i)?;
    let (i, n) = ident(i)?;
    let (i, _) = expect("`=`", sym("="))(i)?;
    let (i, v) = const_value(i)?;
    Ok((i, (n, Kind::Const(ty, v))))
}

/// Skips the rest of a broken definition: up to and including the next `;` that is not
/// inside braces opened after `i`, or to a `}` that closes an enclosing scope.
fn recover(i: &str) -> &str {
    let mut depth = 0usize;
    let mut rest = i;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return rest,
            '}' => depth -= 1,
            ';' if depth == 0 => return after,
            '"' => {
                // An unterminated string ends at the end of its line.
                match after.find(['"', '\n']) {
                    Some(n) if after[n..].starts_with('"') => rest = &after[n + 1..],
                    // The broken definition cannot extend past an unterminated string.
                    Some(n) => return &after[n + 1..],
                    None => return "",
                }
                continue;
            }
            '/' if after.starts_with('/') || after.starts_with('*') => {
                let skipped = skip_blank(rest);
                // An unterminated comment skips nothing: step over the `/`.
                rest = if skipped.len() == rest.len() {
                    after
                } else {
                    skipped
                };
                continue;
            }
            _ => {}
        }
        rest = after;
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> File {
        let (f, errs) = parse_file(src);
        assert!(errs.is_empty(), "{errs:?}");
        f
    }

    fn module_body(src: &str) -> Vec<Definition> {
        let f = parse_ok(&format!("module M {{ {src} }};"));
        match f.definitions.into_iter().next().unwrap().kind {
            Kind::Module(d) => d,
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn modules_nest_and_global_metadata() {
        let f = parse_ok("[[\"java:package:x\"]] module A { module B { struct S { int x; }; }; };");
        assert_eq!(f.global_meta, ["java:package:x"]);
        let Kind::Module(inner) = &f.definitions[0].kind else {
            panic!()
        };
        assert_eq!(inner[0].name, "B");
    }

    #[test]
    fn class_with_everything() {
        let d = module_body(
            "[\"preserve-slice\"] class C(7) extends B implements I, J { \
             int a = 5; optional(2) string s; [\"protected\"] ::M::S t; \
             idempotent void op(int x, out string y) throws E; B* p; };",
        );
        assert_eq!(d[0].meta, ["preserve-slice"]);
        let Kind::Class {
            compact_id,
            base,
            implements,
            members,
            ops,
        } = &d[0].kind
        else {
            panic!()
        };
        assert_eq!(*compact_id, Some(7));
        assert_eq!(base.as_ref().unwrap().0, "B");
        assert_eq!(implements.len(), 2);
        assert_eq!(members.len(), 4);
        assert_eq!(members[0].default, Some(ConstValue::Int(5)));
        assert_eq!(members[1].tag, Some(2));
        assert_eq!(
            members[3].ty,
            TypeRef::Named {
                name: "B".into(),
                proxy: true,
                at: members[3].ty_at()
            }
        );
        assert!(ops[0].idempotent);
        assert!(ops[0].params[1].out);
        assert_eq!(ops[0].throws[0].0, "E");
    }

    impl Member {
        fn ty_at(&self) -> At {
            match &self.ty {
                TypeRef::Named { at, .. } => *at,
                _ => 0,
            }
        }
    }

    #[test]
    fn interfaces_and_forwards() {
        let d = module_body(
            "interface I; class C; interface J extends I, ::K { optional(1) int f(optional(3) string s, out optional(2) long l); Object* g(); Value h(); };",
        );
        assert_eq!(d[0].kind, Kind::InterfaceForward);
        assert_eq!(d[1].kind, Kind::ClassForward);
        let Kind::Interface { bases, ops } = &d[2].kind else {
            panic!()
        };
        assert_eq!(bases.len(), 2);
        assert_eq!(ops[0].ret_tag, Some(1));
        assert_eq!(ops[0].params[1].tag, Some(2));
        assert_eq!(ops[1].ret, Some(TypeRef::Builtin(Builtin::ObjectProxy)));
        assert_eq!(ops[2].ret, Some(TypeRef::Builtin(Builtin::Object)));
    }

    #[test]
    fn types_and_constants() {
        let d = module_body(
            "sequence<[\"java:type:x\"] byte> Bytes; dictionary<string, Object*> D; \
             enum E { a, b = 5, c }; enum F { x, }; \
             const string s = \"a\\x41\\101\\u00e9\\n\"; const long l = -0x10; const int o = 017; \
             const double f = 1.5e3f; const float g = .5; const bool t = true; const E e = ::M::b; \
             exception X extends Y { string reason = \"none\"; }; local interface L { void f(); };",
        );
        assert_eq!(d.len(), 13);
        let Kind::Enum(items) = &d[2].kind else {
            panic!()
        };
        assert_eq!(items[1].value, Some(ConstValue::Int(5)));
        let consts: Vec<&ConstValue> = d
            .iter()
            .filter_map(|x| match &x.kind {
                Kind::Const(_, v) => Some(v),
                _ => None,
            })
            .collect();
        assert_eq!(consts[0], &ConstValue::String("aAA\u{e9}\n".into()));
        assert_eq!(consts[1], &ConstValue::Int(-16));
        assert_eq!(consts[2], &ConstValue::Int(15));
        assert_eq!(consts[3], &ConstValue::Float(1500.0));
        assert_eq!(consts[4], &ConstValue::Float(0.5));
        assert_eq!(consts[5], &ConstValue::Bool(true));
        assert_eq!(consts[6], &ConstValue::Name("::M::b".into()));
        assert!(d[12].local);
    }

    #[test]
    fn escaped_identifiers_and_comments() {
        let d = module_body("/** doc */ struct \\module { /* c */ int \\out; // x\n string s; };");
        assert_eq!(d[0].name, "module");
        let Kind::Struct(m) = &d[0].kind else {
            panic!()
        };
        assert_eq!(m[0].name, "out");
    }

    #[test]
    fn errors_are_located_and_recovered_from() {
        let src =
            "module M {\n struct S { int a b; };\n struct T { int; };\n struct U { int ok; };\n};";
        let (f, errs) = parse_file(src);
        assert_eq!(errs.len(), 2, "{errs:?}");
        let off = offset(src, errs[0].at);
        assert_eq!(&src[off..off + 1], "b");
        assert_eq!(errs[0].message, "expected `;`");
        assert!(
            errs[1].message.contains("identifier"),
            "{}",
            errs[1].message
        );
        let Kind::Module(d) = &f.definitions[0].kind else {
            panic!()
        };
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "U");
    }

    #[test]
    fn recovery_always_advances() {
        for src in [
            "}",
            "} }",
            "x /* y",
            "module M { struct S { int x; /* }",
            "\"",
            "#",
            "[[\"a\"",
        ] {
            let (_, errs) = parse_file(src);
            assert!(!errs.is_empty(), "{src}");
        }
    }

    /// Found by fuzzing: each level re-parsed its body after the inner one failed, doubling
    /// the work per level (40 levels never finished).
    #[test]
    fn unclosed_nested_modules_are_parsed_once() {
        let src = "module M {\n\"\n".repeat(40);
        let (file, errs) = parse_file(&src);
        assert_eq!(
            errs.iter().filter(|e| e.message == "expected `}`").count(),
            40
        );
        let mut depth = 0;
        let mut defs = &file.definitions;
        while let Some(Kind::Module(inner)) = defs.first().map(|d| &d.kind) {
            depth += 1;
            defs = inner;
        }
        assert_eq!(depth, 40);
    }

    #[test]
    fn keyword_as_name_is_an_error() {
        let (_, errs) = parse_file("module M { struct module { int x; }; };");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("keyword"));
    }
}
