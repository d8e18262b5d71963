//! Golden fixtures: `golden/<name>.ice` compiles to exactly `golden/<name>.expected.rs`.
//! `UPDATE_GOLDEN=1 cargo test -p slice2rs --test golden` rewrites the expectations.

use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The fixtures that are roots (the others are only included).
const ROOTS: &[&str] = &["features"];

#[test]
fn generated_code_matches_the_golden_files() {
    let dir = golden_dir();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for name in ROOTS {
        let opts = slice2rs::Options {
            include_dirs: vec![dir.clone()],
            files: vec![dir.join(format!("{name}.ice"))],
            proxies: vec!["*".to_string()],
            check_modes: true,
        };
        let code = match slice2rs::compile(&opts) {
            Ok(c) => c,
            Err(d) => panic!("{name}.ice does not compile: {d:#?}"),
        };
        let expected_path = dir.join(format!("{name}.expected.rs"));
        if update {
            std::fs::write(&expected_path, &code).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != code {
            stale.push(name.to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated code differs from the golden files for {stale:?}; \
         review and rerun with UPDATE_GOLDEN=1"
    );
}
