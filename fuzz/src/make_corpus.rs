//! Writes the seed corpora of every target into `fuzz/corpus/<target>/`
//! (`cargo run --example fuzz_corpus`): real traffic from `tests/data/traces`, ZeroC's vectors from `interop/vectors`,
//! and the Slice files under `slice/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make_corpus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fuzz = root.join("fuzz");
    let mut traces = Vec::new();
    for name in [
        "seed-scenario-encoding-1.0.jsonl",
        "seed-scenario-encoding-1.1.jsonl",
    ] {
        traces.push(std::fs::read_to_string(
            root.join("tests/data/traces").join(name),
        )?);
    }
    let traces: Vec<&str> = traces.iter().map(String::as_str).collect();
    let vectors = std::fs::read_to_string(root.join("interop/vectors/vectors.json"))?;
    for t in omero_sessiond::fuzzing::TARGETS {
        let seeds = omero_sessiond::fuzzing::seeds(t.name, &traces, &vectors);
        write_all(&fuzz.join("corpus").join(t.name), &seeds)?;
    }
    let mut slices = Vec::new();
    collect_ice(&root.join("slice"), &mut slices)?;
    let texts = slices
        .iter()
        .map(std::fs::read)
        .collect::<std::io::Result<Vec<_>>>()?;
    write_all(&fuzz.join("corpus/slice_parser"), &texts)
}

fn write_all(dir: &Path, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:04}")), s)?;
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    Ok(())
}

fn collect_ice(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect_ice(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "ice") {
            out.push(p);
        }
    }
    out.sort();
    Ok(())
}
