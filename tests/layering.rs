//! The layering rules of `shared/design.md`, checked by reading the source tree, so that an
//! import across a boundary fails a test instead of waiting for a review.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir` (relative to the repository), sorted; fails when the folder
/// is missing, so a rule never passes over nothing.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root().join(dir)];
    assert!(todo[0].is_dir(), "{dir} is not a folder of this repository");
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                .path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The code of a Rust file without comments and without the contents of string and char
/// literals (raw strings too), so prose and messages never count as imports.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let at = |k: usize| chars.get(k).copied();
        match chars[i] {
            '/' if at(i + 1) == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if at(i + 1) == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && at(i + 1) == Some('/')) {
                    i += 1;
                }
                i += 2;
                continue;
            }
            'r' if (i == 0 || !is_ident(chars[i - 1])) && matches!(at(i + 1), Some('"' | '#')) => {
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                if at(i + 1 + hashes) != Some('"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                i += hashes + 2;
                while i < chars.len() && !chars[i..].starts_with(&close) {
                    i += 1;
                }
                i += close.len();
                out.push_str("\"\"");
                continue;
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
                continue;
            }
            // A char literal ('x', '\n', '"'), not a lifetime ('a).
            '\'' if at(i + 1) == Some('\\') || at(i + 2) == Some('\'') => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("' '");
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The crates and modules a file names as paths: the first segment of every `a::b` path
/// (`crate::x` and `super::x` give `crate::x`, `super::x`), and each name of a grouped
/// `use crate::{x, y}`.
fn path_roots(code: &str) -> Vec<String> {
    let bytes: Vec<char> = code.chars().collect();
    let mut roots = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let first: String = bytes[start..i].iter().collect();
        let rest: String = bytes[i..bytes.len().min(i + 2)].iter().collect();
        if rest != "::" {
            continue;
        }
        let after = i + 2;
        if first == "crate" || first == "super" || first == "self" {
            let names = following_names(&bytes, after);
            roots.extend(names.into_iter().map(|n| format!("{first}::{n}")));
        } else {
            roots.push(first);
        }
    }
    roots
}

/// The name after `crate::`, or the top-level names of a `{...}` group there.
fn following_names(chars: &[char], at: usize) -> Vec<String> {
    let mut i = at;
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    if chars.get(i) != Some(&'{') {
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        return vec![chars[start..i].iter().collect()];
    }
    let mut names = Vec::new();
    let mut depth = 0;
    let mut expect_name = true;
    i += 1;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_name = true,
            c if depth == 0 && expect_name && is_ident(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                names.push(chars[start..i].iter().collect());
                expect_name = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// `file: root` for every path root of the files under `dir` that `forbidden` refuses.
fn violations(dir: &str, skip: &[&str], forbidden: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for path in rust_files(dir) {
        let rel = path.strip_prefix(root()).unwrap_or(&path).to_path_buf();
        if skip.iter().any(|s| rel == Path::new(s)) {
            continue;
        }
        let code = code_only(&read(&path));
        for r in path_roots(&code) {
            if forbidden(&r) {
                found.push(format!("{}: {r}", rel.display()));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn is_tokio(root: &str) -> bool {
    root == "tokio" || root.starts_with("tokio_")
}

#[test]
fn encoding_is_pure() {
    let found = violations("src/encoding", &[], is_tokio);
    assert!(found.is_empty(), "encoding imports tokio: {found:#?}");
}

#[test]
fn protocol_reaches_tokio_only_through_its_codec_adapter() {
    let found = violations("src/protocol", &["src/protocol/codec.rs"], is_tokio);
    assert!(found.is_empty(), "protocol imports tokio: {found:#?}");
    let adapter = code_only(&read(&root().join("src/protocol/codec.rs")));
    assert!(
        path_roots(&adapter).iter().any(|r| r == "tokio_util"),
        "the codec adapter no longer adapts to tokio_util; update this rule"
    );
}

#[test]
fn the_checker_sees_imports() {
    let code = code_only(
        "use tokio_util::codec::Decoder; // crate::config\nuse crate::{config::X, router};\n\
         let s = \"tokio::spawn\"; super::services::f(); x::y; a.b::<u8>();\n\
         let q = '\"'; let r = r#\"a \"tokio::x\" b\"#; /* tokio::y */ fn f<'a>(_: &'a str) {}",
    );
    let roots = path_roots(&code);
    for wanted in [
        "tokio_util",
        "crate::config",
        "crate::router",
        "super::services",
        "x",
    ] {
        assert!(
            roots.iter().any(|r| r == wanted),
            "{wanted} not in {roots:?}"
        );
    }
    assert!(!roots.iter().any(|r| r == "tokio"), "{roots:?}");
}

/// The Rust slice2rs writes for the server's own Slice files, as `build.rs` asks for it.
fn generated_code() -> String {
    let dir = root().join("slice");
    let mut files = Vec::new();
    let mut todo = vec![dir.clone()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                .path();
            if path.is_dir() && !path.ends_with("slice2rs") {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "ice") {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty(), "no Slice files under {}", dir.display());
    files.sort();
    let opts = slice2rs::Options {
        include_dirs: vec![dir],
        files,
        proxies: vec!["*".to_string()],
        check_modes: true,
    };
    slice2rs::compile(&opts).unwrap_or_else(|d| panic!("slice/ does not compile: {d:#?}"))
}

#[test]
fn generated_code_reaches_only_the_facade() {
    let code = code_only(&generated_code());
    let mut outside: Vec<String> = path_roots(&code)
        .into_iter()
        .filter(|r| r.starts_with("crate::") && r != "crate::facade")
        .collect();
    outside.sort();
    outside.dedup();
    assert!(outside.is_empty(), "generated code names {outside:?}");
    let wrapper = code_only(&read(&root().join("src/generated.rs")));
    let named: Vec<String> = path_roots(&wrapper)
        .into_iter()
        .filter(|r| r.starts_with("crate::"))
        .collect();
    assert!(named.is_empty(), "src/generated.rs names {named:?}");
}

#[test]
fn runtime_does_not_know_generated_code() {
    let found = violations("src/runtime", &[], |r| r == "crate::generated");
    assert!(found.is_empty(), "runtime names generated code: {found:#?}");
}

#[test]
fn no_process_wide_class_registry() {
    for dir in ["src/encoding", "src/runtime"] {
        for path in rust_files(dir) {
            let code = code_only(&read(&path)).replace("'static", "");
            for line in code.lines().filter(|l| l.contains("static ")) {
                assert!(
                    !line.contains("Factories") && !line.contains("Lookup"),
                    "{}: a process-wide factory table: {line}",
                    path.display()
                );
            }
        }
    }
    let code = code_only(&generated_code()).replace("'static", "");
    for banned in ["static ", "OnceLock", "register_factories"] {
        assert!(!code.contains(banned), "generated code has {banned:?}");
    }
    assert!(
        code.contains("pub const FACTORIES"),
        "no FACTORIES in generated code"
    );
}

/// Servant traits use native async functions; `async_trait` (a boxed future per call) is
/// left only where a trait object needs it: the generated `Dispatch` impls.
#[test]
fn servant_traits_are_native_async() {
    let code = code_only(&generated_code());
    let lines: Vec<&str> = code.lines().map(str::trim).collect();
    let mut dispatchers = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.contains("async_trait") {
            continue;
        }
        let next = lines.get(i + 1).copied().unwrap_or_default();
        assert!(
            next.starts_with("impl<") && next.contains("crate::facade::Dispatch for"),
            "async_trait on something other than a Dispatch impl: {next}"
        );
        dispatchers += 1;
    }
    assert!(dispatchers > 0, "no dispatchers in the generated code");
}

/// Configuration flows one way: `main.rs` reads the file and hands each layer its own
/// settings, so no layer below it names `crate::config`.
#[test]
fn lower_layers_take_their_own_settings() {
    for dir in ["src/encoding", "src/protocol", "src/runtime"] {
        let found = violations(dir, &[], |r| r == "crate::config");
        assert!(found.is_empty(), "{dir} imports config: {found:#?}");
    }
}

/// `config` holds the server's own settings and hands the other sections over as they are,
/// so it names no layer above the runtime.
#[test]
fn config_does_not_know_the_layers_above() {
    let code = code_only(&read(&root().join("src/config.rs")));
    let above: Vec<String> = path_roots(&code)
        .into_iter()
        .filter(|r| {
            ["router", "services", "auth", "sessions", "http", "store"]
                .iter()
                .any(|layer| *r == format!("crate::{layer}"))
        })
        .collect();
    assert!(above.is_empty(), "src/config.rs names {above:?}");
}
