//! User exceptions: Slice exceptions that cross the wire in reply status 1.

use std::any::Any;
use std::fmt;

use super::{DecodeError, InputStream, OutputStream};

/// A Slice exception, whatever its type. Generated code implements it for every exception.
pub trait UserException: Any + Send + Sync + fmt::Debug {
    /// The most-derived type id, e.g. `::omero::ApiUsageException`.
    fn ice_id(&self) -> &'static str;
    /// This exception or the part of it that is `type_id` (a base), if any.
    fn find(&self, type_id: &str) -> Option<&dyn Any>;
    /// Writes every slice, most-derived first.
    fn encode_slices(&self, w: &mut OutputStream);
    /// Whether any slice has class members (the encoding 1.0 header flag).
    fn uses_classes(&self) -> bool;
    fn clone_exception(&self) -> Box<dyn UserException>;
}

/// The static side of a generated exception type.
pub trait ExceptionType: UserException + Sized + Clone {
    const ICE_ID: &'static str;
    /// Reads this exception's members and then its bases' slices; the header of this
    /// exception's slice has been read already.
    fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError>;
}
