//! Class instances ("values"): Slice classes, shared and possibly cyclic graphs.
//!
//! # Why `ValueRef` is an `Arc` to a once-filled cell
//!
//! Both encodings let a reference exist before the instance it points to has been decoded:
//! in 1.0 every instance arrives in the pending-instance batches after the parameters that
//! reference it, and in 1.1 an instance that is still being decoded can be referenced from
//! inside itself (cycles). A handle that is created empty and filled exactly once when the
//! instance is complete gives generated code a plain owned member type (`Option<ValueRef>`)
//! with no patch callbacks, and keeps sharing visible (`ptr_eq`), which the encoder needs to
//! write a shared instance once. `OnceLock` makes the fill thread-safe and lets readers
//! borrow the value without locking.
//!
//! The price: a cyclic graph is an `Arc` cycle and is never freed. The decoder accepts cycles
//! by default (Ice allows them), but a stream told to
//! [`refuse_cycles`](InputStream::refuse_cycles) fails with [`DecodeError::CyclicGraph`]
//! instead of returning one, in every encoding (see `classes_in.rs` for how each format is
//! checked). Generated dispatchers refuse cycles in request parameters, so a peer cannot make
//! the server leak by sending them; shared acyclic graphs are still accepted.
//!
//! Dropping is iterative (see `impl Drop for ValueRef`): a peer can send a chain of any
//! length without nesting (a sequence whose elements each point at the previous one), and a
//! recursive drop of such a chain would overflow the stack.
//!
//! Unknown slices that the decoder skipped (sliced format) stay with the instance in the
//! cell, not in the generated struct, so generated code needs no field for them; the encoder
//! re-emits them before the known slices when it writes the instance in the sliced format.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::{Arc, OnceLock};

use super::{DecodeError, InputStream, OutputStream, UserException};

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

/// Whether class instances are written in the compact or the sliced format (encoding 1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Compact,
    Sliced,
}

/// Creates a value from the stream; the header of its most-derived known slice has been read.
pub type ValueFactory = fn(&mut InputStream<'_>) -> Result<Box<dyn Value>, DecodeError>;
/// Creates an exception from the stream; the header of its most-derived known slice has been read.
pub type ExceptionFactory = fn(&mut InputStream<'_>) -> Result<Box<dyn UserException>, DecodeError>;
pub type ValueLookup = fn(&str) -> Option<ValueFactory>;
pub type CompactLookup = fn(i32) -> Option<&'static str>;
pub type ExceptionLookup = fn(&str) -> Option<ExceptionFactory>;

/// The three lookups the decoder uses to turn type ids into Rust types. A stream carries
/// its own (generated code passes the generated root's `FACTORIES`), so that nothing
/// process-wide decides which types a decoder knows and tests with other types can coexist.
#[derive(Clone, Copy, Debug)]
pub struct Factories {
    pub value: ValueLookup,
    pub compact: CompactLookup,
    pub exception: ExceptionLookup,
}

impl Factories {
    /// Knows no type at all: every instance is sliced down to what Ice's runtime knows.
    pub const NONE: Factories = Factories {
        value: |_| None,
        compact: |_| None,
        exception: |_| None,
    };

    /// Knows no type at all.
    pub fn none() -> Self {
        Self::NONE
    }
}

/// A slice the decoder did not know, kept so it can be sent on unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceInfo {
    /// Shared with the decoder's type-id table: many slices may name one id.
    pub type_id: Arc<str>,
    pub compact_id: Option<i32>,
    /// The members as received, without the optional-members end marker.
    pub bytes: Vec<u8>,
    /// The slice's indirection table.
    pub instances: Vec<Option<ValueRef>>,
    pub has_optional_members: bool,
    pub is_last: bool,
}

/// An instance whose types were all unknown (sliced format only): nothing but preserved
/// slices, which [`ValueRef::preserved_slices`] exposes and the encoder re-emits.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UnknownValue;

/// What [`Value::ice_id`] answers for an [`UnknownValue`]; [`ValueRef::ice_id`] gives the
/// real most-derived id instead.
pub const UNKNOWN_VALUE_ID: &str = "::Ice::UnknownSlicedValue";

impl Value for UnknownValue {
    fn ice_id(&self) -> &'static str {
        UNKNOWN_VALUE_ID
    }
    fn find(&self, type_id: &str) -> Option<&dyn Any> {
        (type_id == UNKNOWN_VALUE_ID).then_some(self as &dyn Any)
    }
    fn encode_slices(&self, _w: &mut OutputStream) {}
    fn eq_value(&self, other: &dyn Value) -> bool {
        other.ice_id() == UNKNOWN_VALUE_ID
    }
    fn clone_value(&self) -> Box<dyn Value> {
        Box::new(UnknownValue)
    }
}

pub(super) struct Instance {
    pub(super) value: Box<dyn Value>,
    pub(super) slices: Vec<SliceInfo>,
}

/// A shared handle to a class instance; cloning shares, it does not copy.
#[derive(Clone)]
pub struct ValueRef(Arc<OnceLock<Instance>>);

impl ValueRef {
    pub fn new(v: impl Value) -> ValueRef {
        Self::from_box(Box::new(v))
    }

    pub fn from_box(value: Box<dyn Value>) -> ValueRef {
        let cell = OnceLock::new();
        let _ = cell.set(Instance {
            value,
            slices: Vec::new(),
        });
        ValueRef(Arc::new(cell))
    }

    /// A handle without an instance yet; fill it with [`fill_with`](Self::fill_with).
    /// This is how a cyclic graph is built (and how the decoder hands out references to
    /// instances it has not read yet).
    pub fn empty() -> ValueRef {
        ValueRef(Arc::new(OnceLock::new()))
    }

    /// Fills an empty handle; false (and `v` dropped) if it was filled already.
    pub fn fill_with(&self, v: impl Value) -> bool {
        self.fill(Box::new(v), Vec::new())
    }

    /// Fills an empty handle; false if it was filled already.
    pub(super) fn fill(&self, value: Box<dyn Value>, slices: Vec<SliceInfo>) -> bool {
        self.0.set(Instance { value, slices }).is_ok()
    }

    pub fn is_filled(&self) -> bool {
        self.0.get().is_some()
    }

    /// Identity of the shared instance, for the encoder's instance tables.
    pub(super) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// The instance, or its part of type `T` (a base class of the instance's type).
    pub fn get<T: ClassType>(&self) -> Option<&T> {
        self.value()?.find(T::ICE_ID)?.downcast_ref::<T>()
    }

    /// The instance, unless the decoder has not read it yet.
    pub fn value(&self) -> Option<&dyn Value> {
        self.0.get().map(|i| i.value.as_ref())
    }

    /// The most-derived type id: the first preserved slice's id for an instance of unknown
    /// type, `::Ice::Object` for a handle not yet filled.
    pub fn ice_id(&self) -> &str {
        match self.0.get() {
            None => "::Ice::Object",
            Some(i) if i.value.ice_id() == UNKNOWN_VALUE_ID => {
                i.slices.first().map_or(UNKNOWN_VALUE_ID, |s| &*s.type_id)
            }
            Some(i) => i.value.ice_id(),
        }
    }

    /// Slices of unknown types the decoder skipped, most-derived first.
    pub fn preserved_slices(&self) -> &[SliceInfo] {
        self.0.get().map_or(&[], |i| i.slices.as_slice())
    }

    pub fn ptr_eq(a: &ValueRef, b: &ValueRef) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

thread_local! {
    static DROP_QUEUE: RefCell<Vec<Instance>> = const { RefCell::new(Vec::new()) };
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

/// A shared cell that is never filled and never freed (the static holds it): what a
/// dropped handle leaves behind, so its own `Arc` can be moved out and released.
fn placeholder() -> Arc<OnceLock<Instance>> {
    static EMPTY: OnceLock<Arc<OnceLock<Instance>>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(OnceLock::new())).clone()
}

/// The last handle to an instance frees it through a queue rather than recursively: a long
/// chain of instances (cheap to send: a sequence whose elements each point at the previous
/// one) would otherwise overflow the stack when dropped. `Arc::into_inner` decides "last"
/// atomically, so two threads dropping the last two handles at once cannot both leave the
/// instance to `Arc`'s own (recursive) drop.
impl Drop for ValueRef {
    fn drop(&mut self) {
        let arc = std::mem::replace(&mut self.0, placeholder());
        let Some(instance) = Arc::into_inner(arc).and_then(OnceLock::into_inner) else {
            return;
        };
        let queued = DROP_QUEUE.try_with(|q| q.borrow_mut().push(instance));
        if queued.is_err() || DRAINING.try_with(|d| d.replace(true)).unwrap_or(true) {
            return;
        }
        while let Some(next) = DROP_QUEUE.try_with(|q| q.borrow_mut().pop()).ok().flatten() {
            drop(next);
        }
        let _ = DRAINING.try_with(|d| d.set(false));
    }
}

thread_local! {
    static DEBUG_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Pairs of handles still to compare while a comparison runs on this thread.
    static EQ_PENDING: RefCell<Option<Vec<(ValueRef, ValueRef)>>> = const { RefCell::new(None) };
}

/// Runs `f` one level deeper on `counter`, or returns `fallback` past `max` levels: the
/// guard that keeps `Debug` and `PartialEq` finite on cyclic graphs.
fn guarded<R>(
    counter: &'static std::thread::LocalKey<Cell<usize>>,
    max: usize,
    fallback: R,
    f: impl FnOnce() -> R,
) -> R {
    let depth = counter.with(Cell::get);
    if depth >= max {
        return fallback;
    }
    counter.with(|c| c.set(depth + 1));
    let out = f();
    counter.with(|c| c.set(depth));
    out
}

impl fmt::Debug for ValueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(instance) = self.0.get() else {
            return f.write_str("ValueRef(<unread>)");
        };
        guarded(&DEBUG_DEPTH, 8, f.write_str("ValueRef(..)"), || {
            if instance.slices.is_empty() {
                write!(f, "ValueRef({:?})", instance.value)
            } else {
                write!(
                    f,
                    "ValueRef({:?}, preserved: {:?})",
                    instance.value, instance.slices
                )
            }
        })
    }
}

/// Compares the values, not the handles, with a work list rather than recursion: inside a
/// comparison, a nested pair of handles is only noted (and counts as equal for now), and
/// the outermost call compares the noted pairs one by one. A pair met again counts as
/// equal, so two cyclic graphs compare equal when no walk through them tells them apart.
impl PartialEq for ValueRef {
    fn eq(&self, other: &ValueRef) -> bool {
        if ValueRef::ptr_eq(self, other) {
            return true;
        }
        let noted = EQ_PENDING.with(|p| match p.borrow_mut().as_mut() {
            Some(pending) => {
                pending.push((self.clone(), other.clone()));
                true
            }
            None => false,
        });
        if noted {
            return true;
        }
        let _session = EqSession::start();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some((self.clone(), other.clone()));
        while let Some((a, b)) = next.take().or_else(EqSession::pop) {
            if ValueRef::ptr_eq(&a, &b) || !seen.insert((a.addr(), b.addr())) {
                continue;
            }
            if !a.shallow_eq(&b) {
                return false;
            }
        }
        true
    }
}

impl ValueRef {
    /// Compares the instances' own data; nested handles are noted in `EQ_PENDING`.
    fn shallow_eq(&self, other: &ValueRef) -> bool {
        match (self.0.get(), other.0.get()) {
            (None, None) => true,
            (Some(a), Some(b)) => a.value.eq_value(b.value.as_ref()) && a.slices == b.slices,
            _ => false,
        }
    }
}

/// The outermost comparison on this thread; ends it (and forgets noted pairs) when
/// dropped, even by a panic.
struct EqSession;

impl EqSession {
    fn start() -> EqSession {
        EQ_PENDING.with(|p| *p.borrow_mut() = Some(Vec::new()));
        EqSession
    }

    fn pop() -> Option<(ValueRef, ValueRef)> {
        EQ_PENDING.with(|p| p.borrow_mut().as_mut().and_then(Vec::pop))
    }
}

impl Drop for EqSession {
    fn drop(&mut self) {
        let pending = EQ_PENDING
            .try_with(|p| p.borrow_mut().take())
            .ok()
            .flatten();
        drop(pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_handle_fills_once() {
        let r = ValueRef::empty();
        assert!(r.value().is_none());
        assert_eq!(r.ice_id(), "::Ice::Object");
        assert!(r.fill(Box::new(UnknownValue), Vec::new()));
        assert!(!r.fill(Box::new(UnknownValue), Vec::new()));
        assert!(r.is_filled());
        assert_eq!(r.ice_id(), UNKNOWN_VALUE_ID);
    }

    #[derive(Debug)]
    struct Link(Option<ValueRef>);

    impl Value for Link {
        fn ice_id(&self) -> &'static str {
            "::Test::Link"
        }
        fn find(&self, _: &str) -> Option<&dyn Any> {
            None
        }
        fn encode_slices(&self, _: &mut OutputStream) {}
        fn eq_value(&self, _: &dyn Value) -> bool {
            false
        }
        fn clone_value(&self) -> Box<dyn Value> {
            Box::new(Link(self.0.clone()))
        }
    }

    #[test]
    fn dropping_a_long_chain_does_not_recurse() {
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let mut head = None;
                for _ in 0..200_000 {
                    head = Some(ValueRef::new(Link(head)));
                }
                drop(head);
            })
            .unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn clones_share() {
        let a = ValueRef::new(UnknownValue);
        let b = a.clone();
        assert!(ValueRef::ptr_eq(&a, &b));
        assert!(!ValueRef::ptr_eq(&a, &ValueRef::new(UnknownValue)));
        assert_eq!(a, ValueRef::new(UnknownValue));
    }
}
