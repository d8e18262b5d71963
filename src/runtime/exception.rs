//! Reply status 1: the user exception inside the reply encapsulation.

use crate::encoding::{Encoding, OutputStream, UserException};

/// The payload of a status-1 reply encapsulation (without its 6-byte header).
///
/// TEMPORARY SHIM until `OutputStream::write_exception` lands from branch wip/encoding: it
/// writes the 1.0 `usesClasses` flag and then whatever `encode_slices` writes, so the slice
/// framing (flags, type ids, sizes) is entirely up to the encoding layer's
/// `start_exception_slice`/`end_exception_slice`. Replace the body with
/// `w.write_exception(e)` once merged.
pub(crate) fn encode_user_exception(encoding: Encoding, e: &dyn UserException) -> Vec<u8> {
    let mut w = OutputStream::new(encoding);
    if encoding == Encoding::V1_0 {
        w.write_bool(e.uses_classes());
    }
    e.encode_slices(&mut w);
    w.into_bytes()
}
