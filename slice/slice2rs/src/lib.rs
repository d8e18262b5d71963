//! slice2rs: the Slice compiler of omero-sessiond.
//!
//! Phases, one module each: [`preprocess`], [`parse`], [`resolve`] (which also validates)
//! and [`gen`]. Every phase appends to one list of [`Diagnostic`]s; generation runs only when
//! that list is empty.

pub mod ast;
pub mod diag;
pub mod parse;
pub mod preprocess;

pub use diag::{Code, Diagnostic, Pos};
