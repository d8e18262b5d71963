//! Class instances ("values"): Slice classes, shared and possibly cyclic graphs.

use std::any::Any;
use std::fmt;

use super::{DecodeError, InputStream, OutputStream};

/// A class instance, whatever its type. Generated code implements it for every class.
pub trait Value: Any + Send + Sync + fmt::Debug {
    /// The most-derived type id, e.g. `::omero::model::Session`.
    fn ice_id(&self) -> &'static str;
    /// This value or the part of it that is `type_id` (a base class), if any.
    fn find(&self, type_id: &str) -> Option<&dyn Any>;
    /// Writes every slice, most-derived first.
    fn encode_slices(&self, w: &mut OutputStream);
    fn eq_value(&self, other: &dyn Value) -> bool;
    fn clone_value(&self) -> Box<dyn Value>;
}

/// The static side of a generated class type.
pub trait ClassType: Value + Sized + Clone {
    const ICE_ID: &'static str;
    const COMPACT_ID: Option<i32>;
    /// Reads this class's members and then its bases' slices; the header of this class's
    /// slice has been read already.
    fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError>;
}
