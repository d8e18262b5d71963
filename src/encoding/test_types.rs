//! Hand-written equivalents of what slice2rs generates for `interop/vectors/Test.ice`, used by
//! the unit tests and (through `#[path]`) by `tests/encoding_vectors.rs`. Written exactly as
//! the contract in `docs/slice-mapping.md` tells the generator to write them.

use std::any::Any;

use crate::facade::{
    ClassType, Decode, DecodeError, Encode, ExceptionFactory, ExceptionType, Factories,
    InputStream, OutputStream, UserException, Value, ValueFactory, ValueRef,
};

macro_rules! value_common {
    ($t:ty) => {
        fn ice_id(&self) -> &'static str {
            <$t as ClassType>::ICE_ID
        }
        fn eq_value(&self, other: &dyn Value) -> bool {
            other.ice_id() == self.ice_id()
                && other
                    .find(<$t as ClassType>::ICE_ID)
                    .and_then(|a| a.downcast_ref::<$t>())
                    .is_some_and(|o| o == self)
        }
        fn clone_value(&self) -> Box<dyn Value> {
            Box::new(self.clone())
        }
    };
}

/// `class Base { int i; Base next; }`
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Base {
    pub i: i32,
    pub next: Option<ValueRef>,
}

impl Value for Base {
    value_common!(Base);
    fn find(&self, type_id: &str) -> Option<&dyn Any> {
        (type_id == Self::ICE_ID).then_some(self as &dyn Any)
    }
    fn encode_slices(&self, w: &mut OutputStream) {
        w.start_slice(Self::ICE_ID, Self::COMPACT_ID, true);
        self.i.encode(w);
        self.next.encode(w);
        w.end_slice();
    }
}

impl ClassType for Base {
    const ICE_ID: &'static str = "::Test::Base";
    const COMPACT_ID: Option<i32> = None;
    fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let i = i32::decode(r)?;
        let next = Option::<ValueRef>::decode(r)?;
        r.end_slice()?;
        Ok(Base { i, next })
    }
}

/// `class Derived extends Base { string s; optional(1) int o; }`
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Derived {
    pub base: Base,
    pub s: String,
    pub o: Option<i32>,
}

impl Value for Derived {
    value_common!(Derived);
    fn find(&self, type_id: &str) -> Option<&dyn Any> {
        if type_id == Self::ICE_ID {
            return Some(self);
        }
        self.base.find(type_id)
    }
    fn encode_slices(&self, w: &mut OutputStream) {
        w.start_slice(Self::ICE_ID, Self::COMPACT_ID, false);
        self.s.encode(w);
        w.write_optional(1, self.o.as_ref());
        w.end_slice();
        self.base.encode_slices(w);
    }
}

impl ClassType for Derived {
    const ICE_ID: &'static str = "::Test::Derived";
    const COMPACT_ID: Option<i32> = None;
    fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let s = String::decode(r)?;
        let o = r.read_optional(1)?;
        r.end_slice()?;
        r.start_slice()?;
        let base = Base::decode_slices(r)?;
        Ok(Derived { base, s, o })
    }
}

/// `class Compact(7) { int v; }`
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Compact {
    pub v: i32,
}

impl Value for Compact {
    value_common!(Compact);
    fn find(&self, type_id: &str) -> Option<&dyn Any> {
        (type_id == Self::ICE_ID).then_some(self as &dyn Any)
    }
    fn encode_slices(&self, w: &mut OutputStream) {
        w.start_slice(Self::ICE_ID, Self::COMPACT_ID, true);
        self.v.encode(w);
        w.end_slice();
    }
}

impl ClassType for Compact {
    const ICE_ID: &'static str = "::Test::Compact";
    const COMPACT_ID: Option<i32> = Some(7);
    fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let v = i32::decode(r)?;
        r.end_slice()?;
        Ok(Compact { v })
    }
}

/// `struct Point { int x; int y; }`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

impl Decode for Point {
    const MIN_WIRE_SIZE: usize = 8;
    const FIXED_SIZE: Option<usize> = Some(8);
    fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        Ok(Point {
            x: i32::decode(r)?,
            y: i32::decode(r)?,
        })
    }
}

impl Encode for Point {
    fn encode(&self, w: &mut OutputStream) {
        self.x.encode(w);
        self.y.encode(w);
    }
}

macro_rules! exception_common {
    ($t:ty) => {
        fn ice_id(&self) -> &'static str {
            <$t as ExceptionType>::ICE_ID
        }
        fn clone_exception(&self) -> Box<dyn UserException> {
            Box::new(self.clone())
        }
    };
}

/// `exception Ex { string reason; }`
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Ex {
    pub reason: String,
}

impl UserException for Ex {
    exception_common!(Ex);
    fn find(&self, type_id: &str) -> Option<&dyn Any> {
        (type_id == Self::ICE_ID).then_some(self as &dyn Any)
    }
    fn encode_slices(&self, w: &mut OutputStream) {
        w.start_exception_slice(Self::ICE_ID, true);
        self.reason.encode(w);
        w.end_exception_slice();
    }
    fn uses_classes(&self) -> bool {
        false
    }
}

impl ExceptionType for Ex {
    const ICE_ID: &'static str = "::Test::Ex";
    fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let reason = String::decode(r)?;
        r.end_exception_slice()?;
        Ok(Ex { reason })
    }
}

/// `exception DerivedEx extends Ex { int code; }`
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DerivedEx {
    pub base: Ex,
    pub code: i32,
}

impl UserException for DerivedEx {
    exception_common!(DerivedEx);
    fn find(&self, type_id: &str) -> Option<&dyn Any> {
        if type_id == Self::ICE_ID {
            return Some(self);
        }
        self.base.find(type_id)
    }
    fn encode_slices(&self, w: &mut OutputStream) {
        w.start_exception_slice(Self::ICE_ID, false);
        self.code.encode(w);
        w.end_exception_slice();
        self.base.encode_slices(w);
    }
    fn uses_classes(&self) -> bool {
        false
    }
}

impl ExceptionType for DerivedEx {
    const ICE_ID: &'static str = "::Test::DerivedEx";
    fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let code = i32::decode(r)?;
        r.end_exception_slice()?;
        r.start_exception_slice()?;
        let base = Ex::decode_slices(r)?;
        Ok(DerivedEx { base, code })
    }
}

/// `exception ClassEx extends Ex { Base b; optional(2) string note; }`
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ClassEx {
    pub base: Ex,
    pub b: Option<ValueRef>,
    pub note: Option<String>,
}

impl UserException for ClassEx {
    exception_common!(ClassEx);
    fn find(&self, type_id: &str) -> Option<&dyn Any> {
        if type_id == Self::ICE_ID {
            return Some(self);
        }
        self.base.find(type_id)
    }
    fn encode_slices(&self, w: &mut OutputStream) {
        w.start_exception_slice(Self::ICE_ID, false);
        self.b.encode(w);
        w.write_optional(2, self.note.as_ref());
        w.end_exception_slice();
        self.base.encode_slices(w);
    }
    fn uses_classes(&self) -> bool {
        true
    }
}

impl ExceptionType for ClassEx {
    const ICE_ID: &'static str = "::Test::ClassEx";
    fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let b = Option::<ValueRef>::decode(r)?;
        let note = r.read_optional(2)?;
        r.end_exception_slice()?;
        r.start_exception_slice()?;
        let base = Ex::decode_slices(r)?;
        Ok(ClassEx { base, b, note })
    }
}

fn value_factory<T: ClassType>(r: &mut InputStream<'_>) -> Result<Box<dyn Value>, DecodeError> {
    Ok(Box::new(T::decode_slices(r)?))
}

fn exception_factory<T: ExceptionType>(
    r: &mut InputStream<'_>,
) -> Result<Box<dyn UserException>, DecodeError> {
    Ok(Box::new(T::decode_slices(r)?))
}

pub fn value_lookup(type_id: &str) -> Option<ValueFactory> {
    match type_id {
        "::Test::Base" => Some(value_factory::<Base>),
        "::Test::Derived" => Some(value_factory::<Derived>),
        "::Test::Compact" => Some(value_factory::<Compact>),
        _ => None,
    }
}

pub fn compact_lookup(id: i32) -> Option<&'static str> {
    (id == 7).then_some("::Test::Compact")
}

pub fn exception_lookup(type_id: &str) -> Option<ExceptionFactory> {
    match type_id {
        "::Test::Ex" => Some(exception_factory::<Ex>),
        "::Test::DerivedEx" => Some(exception_factory::<DerivedEx>),
        "::Test::ClassEx" => Some(exception_factory::<ClassEx>),
        _ => None,
    }
}

/// Knows every type above.
pub fn factories() -> Factories {
    Factories {
        value: value_lookup,
        compact: compact_lookup,
        exception: exception_lookup,
    }
}

/// Knows `Base` only, to exercise slicing down to a known base.
pub fn base_only() -> Factories {
    Factories {
        value: |id| (id == "::Test::Base").then_some(value_factory::<Base> as ValueFactory),
        compact: |_| None,
        exception: |id| (id == "::Test::Ex").then_some(exception_factory::<Ex> as ExceptionFactory),
    }
}

/// Bytes from the notation of the spec's examples: two-digit hex bytes, `::Type::Ids` and
/// `"quoted text"` as ASCII, `|` ignored.
pub fn bytes(notation: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = notation;
    while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
        rest = &rest[start..];
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap();
            out.extend_from_slice(&quoted.as_bytes()[..end]);
            rest = &quoted[end + 1..];
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        rest = &rest[end..];
        if token == "|" {
            continue;
        }
        if token.len() == 2 && token.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push(u8::from_str_radix(token, 16).unwrap());
        } else {
            out.extend_from_slice(token.as_bytes());
        }
    }
    out
}

/// `Derived{i=7, s="hi", o, next→Base{i=8, next→first}}`, the spec's example graph.
pub fn spec_graph(o: Option<i32>) -> ValueRef {
    let first = ValueRef::empty();
    let second = ValueRef::new(Base {
        i: 8,
        next: Some(first.clone()),
    });
    first.fill_with(Derived {
        base: Base {
            i: 7,
            next: Some(second),
        },
        s: "hi".into(),
        o,
    });
    first
}
