//! Compiles every Slice file under `slice/` (except the compiler's own test fixtures) into
//! `OUT_DIR/slice.rs`, which `src/generated.rs` includes.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "slice2rs") {
                continue;
            }
            println!("cargo:rerun-if-changed={}", p.display());
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "ice") {
            println!("cargo:rerun-if-changed={}", p.display());
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from("slice");
    println!("cargo:rerun-if-changed=slice");
    let mut files = Vec::new();
    collect(&root, &mut files);
    let opts = slice2rs::Options {
        include_dirs: vec![root],
        files,
        // Interfaces the server may call rather than serve: OMERO's client callback, and
        // what a Glacier2 router calls on external verifiers and session managers.
        proxies: [
            "::omero::api::ClientCallback",
            "::omero::cmd::CmdCallback",
            "::Glacier2::PermissionsVerifier",
            "::Glacier2::SessionManager",
            "::Glacier2::Session",
        ]
        .map(String::from)
        .to_vec(),
        // Ice refuses a request whose mode contradicts the declaration, and so do we.
        check_modes: true,
    };
    let code = match slice2rs::compile(&opts) {
        Ok(code) => code,
        Err(diags) => {
            for d in &diags {
                println!("cargo:warning={d}");
            }
            eprintln!("slice2rs: {} error(s) in slice/", diags.len());
            std::process::exit(1);
        }
    };
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        eprintln!("OUT_DIR is not set");
        std::process::exit(1);
    };
    let out = PathBuf::from(out_dir).join("slice.rs");
    if let Err(e) = std::fs::write(&out, code) {
        eprintln!("cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
