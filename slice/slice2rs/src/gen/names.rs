//! How Slice names become Rust names and paths.

use crate::ast::*;

/// `getSessionService` -> `get_session_service`, `userID` -> `user_id`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `SessionManager` -> `SESSION_MANAGER`.
pub(super) fn upper_snake(name: &str) -> String {
    snake_case(name).to_ascii_uppercase()
}

/// `first_value` -> `FirstValue`.
pub(super) fn camel_case(name: &str) -> String {
    let mut out = String::new();
    let mut up = true;
    for c in name.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'E');
    }
    out
}

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self",
    "Self", "static", "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe",
    "unsized", "use", "virtual", "where", "while", "yield", "abstract", "become",
];

pub(super) fn escape_keyword(name: String) -> String {
    match name.as_str() {
        "self" | "Self" | "super" | "crate" => format!("{name}_"),
        n if RUST_KEYWORDS.contains(&n) => format!("r#{name}"),
        _ => name,
    }
}

pub(super) fn module_name(slice: &str) -> String {
    escape_keyword(snake_case(slice))
}

pub(super) fn field_name(slice: &str) -> String {
    escape_keyword(snake_case(slice))
}

pub(super) fn type_name(slice: &str) -> String {
    escape_keyword(slice.to_string())
}

/// The Rust path of an absolute Slice name, seen from the generated module of the Slice
/// module `from` (its names, outermost first): up with `super::` to the first module the
/// two share, then down.
pub(super) fn rust_path(abs: &str, from: &[String]) -> String {
    let parts: Vec<&str> = abs.trim_start_matches("::").split("::").collect();
    let (modules, name) = parts.split_at(parts.len().saturating_sub(1));
    let shared = modules
        .iter()
        .zip(from)
        .take_while(|(a, b)| **a == b.as_str())
        .count();
    let mut segments: Vec<String> = vec!["super".to_string(); from.len() - shared];
    segments.extend(modules[shared..].iter().map(|m| module_name(m)));
    segments.extend(name.iter().map(|n| type_name(n)));
    segments.join("::")
}

/// The path of the generated root (where `FACTORIES` lives) from `from`.
pub(super) fn root_path(from: &[String]) -> String {
    "super::".repeat(from.len())
}

pub(super) fn param_name(slice: &str) -> String {
    let n = field_name(slice);
    if n == "current" {
        "current_".to_string()
    } else {
        n
    }
}

pub(super) fn proxy_param_name(slice: &str) -> String {
    let n = field_name(slice);
    if n == "ctx" {
        "ctx_".to_string()
    } else {
        n
    }
}

pub(super) fn const_name(slice: &str) -> String {
    upper_snake(slice)
}

pub(super) fn const_path(abs: &str, from: &[String]) -> String {
    let (scope, name) = abs.rsplit_once("::").unwrap_or(("", abs));
    let p = rust_path(&format!("{scope}::X"), from);
    format!("{}{}", p.trim_end_matches('X'), const_name(name))
}

/// `::M::red` (or `::M::Color::red`) of enum type `ty`, seen from `::M`: `Color::Red`.
pub(super) fn enumerator_path(abs: &str, ty: &TypeRef, from: &[String]) -> String {
    let enumerator = abs.rsplit("::").next().unwrap_or(abs);
    match ty {
        TypeRef::Named { name, .. } => {
            format!("{}::{}", rust_path(name, from), camel_case(enumerator))
        }
        TypeRef::Builtin(_) => camel_case(enumerator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(snake_case("getSessionService"), "get_session_service");
        assert_eq!(snake_case("timeToIdle"), "time_to_idle");
        assert_eq!(snake_case("userID"), "user_id");
        assert_eq!(snake_case("IceGrid"), "ice_grid");
        assert_eq!(snake_case("Glacier2"), "glacier2");
        assert_eq!(snake_case("RString"), "r_string");
        assert_eq!(upper_snake("SessionManager"), "SESSION_MANAGER");
        assert_eq!(camel_case("red"), "Red");
        assert_eq!(camel_case("ALL_CAPS"), "ALLCAPS");
        assert_eq!(field_name("type"), "r#type");
        let at = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(rust_path("::omero::api::RType", &[]), "omero::api::RType");
        assert_eq!(rust_path("::omero::RType", &at(&["omero"])), "RType");
        assert_eq!(
            rust_path("::omero::model::Image", &at(&["omero", "api"])),
            "super::model::Image"
        );
        assert_eq!(
            rust_path("::Ice::Identity", &at(&["omero", "api"])),
            "super::super::ice::Identity"
        );
        assert_eq!(root_path(&at(&["omero", "api"])), "super::super::");
    }
}
