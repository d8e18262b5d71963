//! The short, deterministic fuzz run of the test command: every target of
//! `omero_sessiond::fuzzing` and the slice compiler's, on seeds from real traffic
//! (`tests/data/traces`), ZeroC's vectors (`interop/vectors`) and the Slice files, then on a
//! fixed number of mutations from a fixed seed. Long coverage-guided runs: `fuzz/README.md`.
//! Inputs that once crashed a target live in `fuzz/regressions/<target>/` and run first.

use std::path::{Path, PathBuf};

use omero_sessiond::fuzzing::{run_mutations, seeds, TARGETS};

/// Mutations per target: bounded so the whole file runs in seconds in a debug build.
const ITERATIONS: usize = 10_000;
const MAX_LEN: usize = 4096;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fuzz seeds missing: {}: {e}", path.display()))
}

fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = root().join("fuzz/regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

fn seeds_of(target: &str) -> Vec<Vec<u8>> {
    let t10 = read("tests/data/traces/seed-scenario-encoding-1.0.jsonl");
    let t11 = read("tests/data/traces/seed-scenario-encoding-1.1.jsonl");
    let vectors = read("interop/vectors/vectors.json");
    let mut s = regressions(target);
    s.extend(seeds(target, &[&t10, &t11], &vectors));
    s
}

fn run(name: &str) {
    let target = TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let seeds = seeds_of(name);
    assert!(!seeds.is_empty(), "{name} has no seeds");
    let ran = run_mutations(target.run, &seeds, ITERATIONS, 0x5eed, MAX_LEN);
    assert_eq!(ran, seeds.len() + ITERATIONS);
}

#[test]
fn framing() {
    run("framing");
}

#[test]
fn connection() {
    run("connection");
}

#[test]
fn request_1_0() {
    run("request_1_0");
}

#[test]
fn request_1_1() {
    run("request_1_1");
}

#[test]
fn reply_1_0() {
    run("reply_1_0");
}

#[test]
fn reply_1_1() {
    run("reply_1_1");
}

#[test]
fn class_graph() {
    run("class_graph");
}

#[test]
fn proxy() {
    run("proxy");
}

#[test]
fn http_create() {
    run("http_create");
}

#[test]
fn every_target_has_a_test() {
    let here = include_str!("fuzz_short.rs");
    for t in TARGETS {
        assert!(
            here.contains(&format!("fn {}()", t.name)),
            "{} is not run here",
            t.name
        );
    }
}

#[test]
fn slice_parser() {
    let mut files = Vec::new();
    collect_ice(&root().join("slice"), &mut files);
    let mut seeds: Vec<Vec<u8>> = regressions("slice_parser");
    for f in &files {
        seeds.push(std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    assert!(seeds.len() > 10, "only {} Slice seeds", seeds.len());
    // The compiler is slower per input than the decoders: fewer mutations.
    run_mutations(
        slice2rs::fuzzing::compile_text,
        &seeds,
        ITERATIONS / 10,
        0x5eed,
        MAX_LEN * 4,
    );
}

fn collect_ice(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let p = e
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        if p.is_dir() {
            collect_ice(&p, out);
        } else if p.extension().is_some_and(|x| x == "ice") {
            out.push(p);
        }
    }
    out.sort();
}
