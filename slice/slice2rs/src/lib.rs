//! slice2rs: the Slice compiler of omero-sessiond.
//!
//! Phases, one module each: [`preprocess`], [`parse`], [`load`] (files and includes),
//! [`resolve`] (names and validation) and [`gen`]. Every phase appends to one list of
//! [`Diagnostic`]s; code is generated only when that list is empty.

pub mod ast;
pub mod diag;
#[doc(hidden)]
pub mod fuzzing;
pub mod gen;
pub mod load;
pub mod parse;
pub mod preprocess;
pub mod resolve;

use std::collections::HashMap;
use std::path::PathBuf;

pub use diag::{Code, Diagnostic, Pos};

/// What to compile.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Directories searched for `#include <x>` (and `"x"` after the includer's directory).
    pub include_dirs: Vec<PathBuf>,
    /// The files to compile; the files they include are read too.
    pub files: Vec<PathBuf>,
    /// Interfaces that get a typed client proxy (`IPrx`): absolute Slice names such as
    /// `::omero::api::ClientCallback`, or `*` for every interface.
    pub proxies: Vec<String>,
    /// Whether dispatchers refuse requests whose operation mode contradicts the declaration
    /// (`idempotent` or not), as ZeroC's runtimes do.
    pub check_modes: bool,
}

/// A checked set of Slice files, ready for generation.
#[derive(Debug)]
pub struct Checked {
    pub files: Vec<load::SourceFile>,
    pub symbols: resolve::Symbols,
}

/// Reads, parses and validates the files of `opts`.
pub fn check(opts: &Options) -> Result<Checked, Vec<Diagnostic>> {
    let roots: Vec<String> = opts
        .files
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let sources = load::Sources::Fs {
        include_dirs: &opts.include_dirs,
    };
    check_from(&roots, &sources)
}

/// Like [`check`], for in-memory sources: `sources` maps names (also the names used in
/// `#include`) to text; all of them are compiled.
pub fn check_sources(sources: &[(&str, &str)]) -> Result<Checked, Vec<Diagnostic>> {
    let map: HashMap<String, String> = sources
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let roots: Vec<String> = sources.iter().map(|(n, _)| n.to_string()).collect();
    check_from(&roots, &load::Sources::Memory(&map))
}

fn check_from(roots: &[String], sources: &load::Sources<'_>) -> Result<Checked, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut files = load::load(roots, sources, &mut diags);
    let symbols = resolve::resolve(&mut files, &mut diags);
    if diags.is_empty() {
        Ok(Checked { files, symbols })
    } else {
        Err(diags)
    }
}

/// Compiles the files of `opts` into one Rust source text (see `docs/slice-mapping.md`).
pub fn compile(opts: &Options) -> Result<String, Vec<Diagnostic>> {
    check(opts).map(|c| {
        let settings = gen::Settings {
            proxies: &opts.proxies,
            check_modes: opts.check_modes,
        };
        gen::generate_with(&c, &settings)
    })
}

/// [`compile`] for in-memory sources (no client proxies).
pub fn compile_sources(sources: &[(&str, &str)]) -> Result<String, Vec<Diagnostic>> {
    check_sources(sources).map(|c| gen::generate(&c))
}
