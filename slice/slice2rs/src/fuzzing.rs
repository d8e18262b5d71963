//! The compiler's fuzz target (driven by `fuzz/` and omero-sessiond's `tests/fuzz_short.rs`):
//! any text gets code or diagnostics, never a panic or a hang.

/// A file the fuzzed text may include, so that includes and cross-file names get exercised.
const DEP: &str = "#pragma once\nmodule Dep { struct Point { int x; int y; }; interface Base { idempotent int get(); }; };\n";

/// Checks `data` (as UTF-8, invalid sequences replaced) as a Slice file next to an
/// includable `dep.ice`, and generates code for every interface when it checks.
pub fn compile_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(checked) = crate::check_sources(&[("dep.ice", DEP), ("fuzz.ice", &text)]) else {
        return;
    };
    let all = ["*".to_string()];
    let settings = crate::gen::Settings {
        proxies: &all,
        check_modes: true,
    };
    let _ = crate::gen::generate_with(&checked, &settings);
}
