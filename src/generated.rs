//! Rust for every Slice definition under `slice/`, written by `slice2rs` at build time
//! (see `docs/slice-mapping.md`). The output reaches the rest of the crate only through
//! [`crate::facade`]; what it shares lives in `runtime::codegen`.

// Slice operations may take many parameters; servant traits mirror them one to one.
#![allow(clippy::too_many_arguments)]

include!(concat!(env!("OUT_DIR"), "/slice.rs"));
