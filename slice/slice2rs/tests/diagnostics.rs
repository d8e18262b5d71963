//! Diagnostics: stable codes at the right file, line and column, and several per run.

use slice2rs::{check_sources, Code, Diagnostic};

fn errors(src: &str) -> Vec<Diagnostic> {
    match check_sources(&[("t.ice", src)]) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    }
}

/// (code, line, column) of each diagnostic.
fn summary(src: &str) -> Vec<(Code, usize, usize)> {
    errors(src)
        .iter()
        .map(|d| (d.code, d.pos.line, d.pos.col))
        .collect()
}

#[test]
fn a_valid_file_has_no_diagnostics() {
    assert!(errors("module M { struct S { int x; }; };").is_empty());
}

#[test]
fn syntax_errors_are_located_and_do_not_stop_the_check() {
    let src = "module M\n{\n    struct S { int x y; };\n    struct T { Nope n; };\n};\n";
    assert_eq!(summary(src), [(Code::E004, 3, 22), (Code::E005, 4, 16)]);
    let d = errors(src);
    assert_eq!(d[0].message, "expected `;`");
    assert_eq!(d[0].to_string(), "t.ice:3:22: error[E004]: expected `;`");
}

#[test]
fn preprocessor_problems() {
    assert_eq!(summary("#ifdef X\nmodule M {};\n"), [(Code::E002, 1, 1)]);
    assert_eq!(
        summary("#include <Missing.ice>\nmodule M {};"),
        [(Code::E003, 1, 1)]
    );
}

#[test]
fn redefinitions_and_wrong_kinds() {
    let src =
        "module M {\nstruct S { int x; };\nenum S { a };\nconst int C = 1;\nstruct U { C c; };\n};";
    assert_eq!(summary(src), [(Code::E006, 3, 6), (Code::E007, 5, 12)]);
}

#[test]
fn inheritance_rules() {
    let src = "module M {\nstruct S { int x; };\nclass A extends S {};\ninterface I extends A {};\nexception E extends I {};\nclass B extends B {};\n};";
    let codes: Vec<Code> = summary(src).iter().map(|s| s.0).collect();
    assert!(codes.iter().all(|c| *c == Code::E008), "{codes:?}");
    assert_eq!(codes.len(), 5, "{:?}", errors(src));
    let cycle = "module M { class A extends B {}; class B extends A {}; };";
    assert!(summary(cycle).iter().any(|s| s.0 == Code::E008));
}

#[test]
fn members_tags_and_parameters() {
    let src = "module M {\nclass C { int a; string a; optional(1) int b; optional(1) int c; };\ninterface I { void f(out int x, int y); void f(); };\n};";
    assert_eq!(
        summary(src),
        [
            (Code::E009, 2, 25),
            (Code::E010, 2, 63),
            (Code::E014, 3, 37),
            (Code::E009, 3, 46),
        ]
    );
}

#[test]
fn constants_must_fit_their_types() {
    let src = "module M {\nenum E { a, b };\nenum F { c };\nconst byte B = 256;\nconst string S = 1;\nconst E X = c;\nconst E Y = b;\nconst int I = 2147483648;\nconst float G = 1e40;\n};";
    let codes: Vec<(Code, usize)> = summary(src).iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(
        codes,
        [
            (Code::E011, 4),
            (Code::E011, 5),
            (Code::E011, 6),
            (Code::E011, 8),
            (Code::E011, 9),
        ]
    );
}

#[test]
fn enums_dictionaries_throws_and_locals() {
    let src = "module M {\nenum E { a = 1, b = 1 };\ndictionary<double, int> D;\nstruct S { int x; };\ninterface I { void f() throws S; };\nlocal interface L { void g(); };\nstruct T { L* l; };\nsequence<LocalObject> Ls;\n};";
    let codes: Vec<Code> = summary(src).iter().map(|s| s.0).collect();
    assert_eq!(
        codes,
        [Code::E015, Code::E012, Code::E013, Code::E017, Code::E017]
    );
}

#[test]
fn names_resolve_through_enclosing_scopes_and_other_files() {
    let a = "module A { struct P { int x; }; module B { struct Q { P p; ::A::P q; }; }; };";
    let b = "#include \"a.ice\"\nmodule C { struct R { A::B::Q q; A::P p; }; };";
    assert!(check_sources(&[("a.ice", a), ("b.ice", b)]).is_ok());
    let bad = "module C { struct R { B::Q q; }; };";
    let d = check_sources(&[("a.ice", a), ("c.ice", bad)]).unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].pos.file, "c.ice");
}

#[test]
fn enumerator_constants_resolve() {
    let src = "module M { module N { enum E { x, y }; }; const N::E v = N::y; const N::E w = ::M::N::E::x; struct S { N::E e = N::x; }; };";
    assert!(errors(src).is_empty(), "{:?}", errors(src));
}

#[test]
fn redefining_inherited_names_and_empty_structs() {
    let src = "module M {\nclass A { int x; };\nclass B extends A { string X; };\ninterface I { void f(); };\ninterface J extends I { void F(); };\nexception E { int c; };\nexception F extends E { int c; };\nstruct S {};\n};";
    assert_eq!(
        summary(src),
        [
            (Code::E009, 8, 8),
            (Code::E009, 3, 28),
            (Code::E009, 7, 29),
            (Code::E009, 5, 30),
        ]
    );
    let diamond = "module M { interface A { void f(); }; interface B extends A {}; interface C extends A {}; interface D extends B, C { void g(); }; };";
    assert!(errors(diamond).is_empty(), "{:?}", errors(diamond));
}

#[test]
fn struct_keys_must_hold_only_key_types() {
    let ok = "module M { struct K { int a; string b; }; dictionary<K, int> D; };";
    assert!(errors(ok).is_empty(), "{:?}", errors(ok));
    let bad = "module M {\nstruct K { int a; double d; };\ndictionary<K, int> D;\n};";
    assert_eq!(summary(bad), [(Code::E012, 3, 20)]);
}

#[test]
fn syntax_messages_point_at_the_problem() {
    let src = "module M {\n  interface I { void f(int a, string) throws E; };\n  const string s = \"open;\n  enum E { };\n  sequence<int Seq;\n};\n";
    let d = errors(src);
    let got: Vec<(usize, usize, &str)> = d
        .iter()
        .map(|d| (d.pos.line, d.pos.col, d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, 37, "expected an identifier"),
            (3, 26, "expected a closing `\"` on the same line"),
            (4, 11, "expected an enumerator"),
            (5, 16, "expected `>`"),
        ]
    );
}

#[test]
fn tags_may_name_integer_constants() {
    let src = "module M { const int T = 3; const int U = T;\n \
               class C { optional(T) int a; optional(::M::U) string b; };\n \
               interface I { optional(T) int f(optional(U) string s); }; };";
    // "used twice" proves both names resolved to 3: member b, and parameter s against the
    // optional return value.
    assert_eq!(summary(src), [(Code::E010, 2, 55), (Code::E010, 3, 53)]);
    let ok = "module M { const int T = 3; class C { optional(T) int a; }; };";
    let code = slice2rs::compile_sources(&[("t.ice", ok)]).unwrap();
    assert!(
        code.contains(r#"slice_class!(C, "::M::C", None, [], [3 a]);"#),
        "{code}"
    );
}

#[test]
fn a_tag_must_name_an_integer_constant() {
    let src = "module M { const string S = \"x\"; struct T { int x; };\n \
               class C { optional(S) int a; optional(T) int b; optional(Nope) int c; }; };";
    assert_eq!(
        summary(src),
        [
            (Code::E010, 2, 28),
            (Code::E010, 2, 47),
            (Code::E010, 2, 69)
        ]
    );
}
