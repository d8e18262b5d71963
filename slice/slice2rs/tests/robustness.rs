//! Whatever the input, the compiler answers with code or diagnostics and never panics.

use proptest::prelude::*;

const VALID: &str = include_str!("golden/features.ice");
const DEP: &str = include_str!("golden/dep.ice");

fn run(text: &str) {
    let _ = slice2rs::compile_sources(&[("dep.ice", DEP), ("t.ice", text)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_text(text in "\\PC*") {
        run(&text);
    }

    #[test]
    fn slice_like_tokens(parts in prop::collection::vec(
        prop::sample::select(vec![
            "module", "M", "{", "}", ";", "class", "interface", "struct", "exception",
            "extends", "implements", "(", ")", "optional(1)", "int", "string", "X*", "::",
            "\"s\\x4\"", "[\"m\"]", "[[", "]]", "<", ">", ",", "sequence", "dictionary",
            "enum", "=", "0x", "-", "1.5e", "const", "throws", "out", "\\", "#if", "\n",
            "/*", "*/", "//", "é", "local", "Object", "Value", "idempotent", "void",
        ]),
        0..60,
    )) {
        run(&parts.join(" "));
    }

    #[test]
    fn a_valid_file_with_bytes_cut_out(start in 0usize..4000, len in 0usize..40) {
        let mut text = VALID.to_string();
        let mut s = start.min(text.len());
        while !text.is_char_boundary(s) {
            s -= 1;
        }
        let mut e = (s + len).min(text.len());
        while !text.is_char_boundary(e) {
            e -= 1;
        }
        text.replace_range(s..e, "");
        run(&text);
    }
}
