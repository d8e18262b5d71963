//! Ice encodings 1.0 and 1.1: pure functions over byte slices, no IO.
//!
//! [`InputStream`] decodes and [`OutputStream`] encodes. Both carry the encoding of the
//! encapsulation they are in, because several rules (enums, proxies, classes, exceptions,
//! optionals) differ between 1.0 and 1.1. Decoding is defensive: every count is checked
//! against the bytes that remain before anything is allocated, nesting is bounded, and the
//! total allocation is bounded by a budget proportional to the input length.
//!
//! Class instances are [`ValueRef`] handles: an `Arc` to a cell filled once, so a reference
//! can be handed out before its instance is decoded (1.0 pending instances, 1.1 cycles); see
//! `value.rs` for why. Decoding of classes and exceptions lives in `classes_in.rs`, encoding
//! in `classes_out.rs`; generated code only reads and writes members between
//! `start_slice`/`end_slice` and the streams do every header, id, table and skip. Byte
//! layouts are checked against ZeroC's Java runtime (`interop/vectors/`,
//! `tests/encoding_vectors.rs`) and the spec's examples (unit tests).
//!
//! Limits: nesting of instances, exceptions and encapsulations counts against
//! [`DecodeLimits::max_depth`] (so a deep or hostile graph is an error, not a stack
//! overflow); cycles are followed by id, never by recursion. One encapsulation holds at most
//! [`DecodeLimits::max_instances`] instances, an instance or exception at most
//! [`DecodeLimits::max_slices`] slices, a type id at most [`DecodeLimits::max_type_id_len`]
//! bytes; type ids named by index are shared, decoded values are charged their size.
//!
//! Nothing else recurses with the graph: encoding 1.0 writes a flat list, 1.1 is written
//! from fragments with an explicit stack (`classes_out.rs`), and dropping, comparing and
//! cycle checks use work lists (`value.rs`, `classes_in.rs`), so a graph accepted in 1.0,
//! where a chain of any length is flat, can be written back in either encoding.

mod classes_in;
mod classes_out;
mod error;
mod exception;
mod identity;
mod input;
mod optional;
mod output;
mod proxy;
#[cfg(test)]
pub(crate) mod test_types;
mod traits;
mod value;

pub use error::DecodeError;
pub use exception::{ExceptionType, UserException};
pub use identity::{Context, Identity};
pub use input::{DecodeLimits, InputStream};
pub use optional::{OptionalFormat, OptionalValue};
pub use output::OutputStream;
pub use proxy::{Endpoint, Proxy, ProxyMode};
pub use traits::{Decode, Encode};
pub use value::{
    ClassType, CompactLookup, ExceptionFactory, ExceptionLookup, Factories, Format, SliceInfo,
    UnknownValue, Value, ValueFactory, ValueLookup, ValueRef, UNKNOWN_VALUE_ID,
};

/// The payload encoding of an encapsulation. The protocol header always says 1.0; this is the
/// version written in each encapsulation header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    V1_0,
    V1_1,
}

impl Encoding {
    pub fn from_bytes(major: u8, minor: u8) -> Result<Self, DecodeError> {
        match (major, minor) {
            (1, 0) => Ok(Encoding::V1_0),
            (1, 1) => Ok(Encoding::V1_1),
            _ => Err(DecodeError::UnsupportedEncoding { major, minor }),
        }
    }

    pub fn to_bytes(self) -> (u8, u8) {
        match self {
            Encoding::V1_0 => (1, 0),
            Encoding::V1_1 => (1, 1),
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (major, minor) = self.to_bytes();
        write!(f, "{major}.{minor}")
    }
}
