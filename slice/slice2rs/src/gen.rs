//! Rust generation (see `docs/slice-mapping.md`).

use crate::Checked;

pub fn generate(_c: &Checked) -> String {
    String::new()
}
