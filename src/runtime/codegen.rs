//! What every piece of generated code shares: the `slice_*!` macros that write a type's
//! boilerplate once, and the checks and conversions its dispatchers and proxies call.
//! Generated code reaches these only through [`crate::facade`], which re-exports them.

use crate::encoding::{
    ClassType, DecodeError, Encoding, ExceptionType, Factories, InputStream, OptionalFormat, Proxy,
    ProxyMode, UserException, Value,
};
use crate::runtime::dispatch::{DispatchError, OperationMode};
use crate::runtime::{InvokeError, InvokeReply};

/// A struct's `Decode`, `Encode` and `OptionalValue`: members in order; as an optional, a
/// fixed-size struct is `VSize`-framed and any other `FSize`-framed.
#[macro_export]
macro_rules! slice_struct {
    ($name:ident, $min:expr, $fixed:expr, [$($m:ident),*]) => {
        impl $crate::facade::Decode for $name {
            const MIN_WIRE_SIZE: usize = $min;
            const FIXED_SIZE: Option<usize> = $fixed;
            fn decode(
                r: &mut $crate::facade::InputStream<'_>,
            ) -> Result<Self, $crate::facade::DecodeError> {
                Ok(Self { $($m: $crate::facade::Decode::decode(r)?,)* })
            }
        }
        impl $crate::facade::Encode for $name {
            fn encode(&self, w: &mut $crate::facade::OutputStream) {
                $($crate::facade::Encode::encode(&self.$m, w);)*
            }
        }
        impl $crate::facade::OptionalValue for $name {
            const FORMAT: $crate::facade::OptionalFormat =
                $crate::facade::struct_format(<Self as $crate::facade::Decode>::FIXED_SIZE);
            fn write_optional_payload(&self, w: &mut $crate::facade::OutputStream) {
                match <Self as $crate::facade::Decode>::FIXED_SIZE {
                    Some(n) => {
                        w.write_size(n);
                        $crate::facade::Encode::encode(self, w);
                    }
                    None => {
                        let p = w.start_fsize();
                        $crate::facade::Encode::encode(self, w);
                        w.end_fsize(p);
                    }
                }
            }
            fn read_optional_payload(
                r: &mut $crate::facade::InputStream<'_>,
            ) -> Result<Self, $crate::facade::DecodeError> {
                match <Self as $crate::facade::Decode>::FIXED_SIZE {
                    Some(_) => {
                        r.read_size()?;
                    }
                    None => r.skip(4)?,
                }
                $crate::facade::Decode::decode(r)
            }
        }
    };
}

/// An enum with explicit discriminants; the first enumerator is the default.
#[macro_export]
macro_rules! slice_enum {
    ($name:ident, $max:expr, [$first:ident = $fv:literal $(, $var:ident = $v:literal)*]) => {
        #[repr(i32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub enum $name {
            #[default]
            $first = $fv,
            $($var = $v,)*
        }
        impl $name {
            pub const MAX_VALUE: i32 = $max;
            pub fn from_i32(v: i32) -> Option<Self> {
                match v {
                    $fv => Some(Self::$first),
                    $($v => Some(Self::$var),)*
                    _ => None,
                }
            }
        }
        impl $crate::facade::Decode for $name {
            fn decode(
                r: &mut $crate::facade::InputStream<'_>,
            ) -> Result<Self, $crate::facade::DecodeError> {
                let v = r.read_enum(Self::MAX_VALUE)?;
                Self::from_i32(v).ok_or($crate::facade::DecodeError::InvalidEnumerator(v))
            }
        }
        impl $crate::facade::Encode for $name {
            fn encode(&self, w: &mut $crate::facade::OutputStream) {
                w.write_enum(*self as i32, Self::MAX_VALUE)
            }
        }
        impl $crate::facade::OptionalValue for $name {
            const FORMAT: $crate::facade::OptionalFormat = $crate::facade::OptionalFormat::Size;
            fn write_optional_payload(&self, w: &mut $crate::facade::OutputStream) {
                w.write_size(*self as i32 as usize)
            }
            fn read_optional_payload(
                r: &mut $crate::facade::InputStream<'_>,
            ) -> Result<Self, $crate::facade::DecodeError> {
                let v = i32::try_from(r.read_size()?).unwrap_or(-1);
                Self::from_i32(v).ok_or($crate::facade::DecodeError::InvalidEnumerator(v))
            }
        }
    };
}

/// `Value` and `ClassType` of a class: required members in order, then optional ones by
/// tag, then the base's slices.
#[macro_export]
macro_rules! slice_class {
    ($name:ident, $id:literal, $compact:expr, [$($m:ident),*], [$($tag:literal $o:ident),*] $(, base $base:ty)?) => {
        impl $crate::facade::ClassType for $name {
            const ICE_ID: &'static str = $id;
            const COMPACT_ID: Option<i32> = $compact;
            // `base: base` when there is a base.
            #[allow(clippy::redundant_field_names)]
            fn decode_slices(
                r: &mut $crate::facade::InputStream<'_>,
            ) -> Result<Self, $crate::facade::DecodeError> {
                $(let $m = $crate::facade::Decode::decode(r)?;)*
                $(let $o = r.read_optional($tag)?;)*
                r.end_slice()?;
                $(
                    r.start_slice()?;
                    let base = <$base as $crate::facade::ClassType>::decode_slices(r)?;
                )?
                Ok(Self { $(base: $crate::slice_class!(@id base $base),)? $($m,)* $($o,)* })
            }
        }
        impl $crate::facade::Value for $name {
            fn ice_id(&self) -> &'static str {
                $id
            }
            fn find(&self, type_id: &str) -> Option<&dyn std::any::Any> {
                if type_id == $id {
                    return Some(self);
                }
                $(return <$base as $crate::facade::Value>::find(&self.base, type_id);)?
                #[allow(unreachable_code)]
                None
            }
            fn encode_slices(&self, w: &mut $crate::facade::OutputStream) {
                let is_last = true $(&& $crate::slice_class!(@false $base))?;
                w.start_slice($id, $compact, is_last);
                $($crate::facade::Encode::encode(&self.$m, w);)*
                $(w.write_optional($tag, self.$o.as_ref());)*
                w.end_slice();
                $(<$base as $crate::facade::Value>::encode_slices(&self.base, w);)?
            }
            fn eq_value(&self, other: &dyn $crate::facade::Value) -> bool {
                other.ice_id() == $id
                    && other.find($id).and_then(|a| a.downcast_ref::<Self>()) == Some(self)
            }
            fn clone_value(&self) -> Box<dyn $crate::facade::Value> {
                Box::new(self.clone())
            }
        }
    };
    (@id $v:ident $t:ty) => { $v };
    (@false $t:ty) => { false };
}

/// `UserException` and `ExceptionType` of an exception, laid out like a class.
#[macro_export]
macro_rules! slice_exception {
    ($name:ident, $id:literal, $uses_classes:literal, [$($m:ident),*], [$($tag:literal $o:ident),*] $(, base $base:ty)?) => {
        impl $crate::facade::ExceptionType for $name {
            const ICE_ID: &'static str = $id;
            // `base: base` when there is a base.
            #[allow(clippy::redundant_field_names)]
            fn decode_slices(
                r: &mut $crate::facade::InputStream<'_>,
            ) -> Result<Self, $crate::facade::DecodeError> {
                $(let $m = $crate::facade::Decode::decode(r)?;)*
                $(let $o = r.read_optional($tag)?;)*
                r.end_exception_slice()?;
                $(
                    r.start_exception_slice()?;
                    let base = <$base as $crate::facade::ExceptionType>::decode_slices(r)?;
                )?
                Ok(Self { $(base: $crate::slice_class!(@id base $base),)? $($m,)* $($o,)* })
            }
        }
        impl $crate::facade::UserException for $name {
            fn ice_id(&self) -> &'static str {
                $id
            }
            fn find(&self, type_id: &str) -> Option<&dyn std::any::Any> {
                if type_id == $id {
                    return Some(self);
                }
                $(return <$base as $crate::facade::UserException>::find(&self.base, type_id);)?
                #[allow(unreachable_code)]
                None
            }
            fn encode_slices(&self, w: &mut $crate::facade::OutputStream) {
                let is_last = true $(&& $crate::slice_class!(@false $base))?;
                w.start_exception_slice($id, is_last);
                $($crate::facade::Encode::encode(&self.$m, w);)*
                $(w.write_optional($tag, self.$o.as_ref());)*
                w.end_exception_slice();
                $(<$base as $crate::facade::UserException>::encode_slices(&self.base, w);)?
            }
            fn uses_classes(&self) -> bool {
                $uses_classes
            }
            fn clone_exception(&self) -> Box<dyn $crate::facade::UserException> {
                Box::new(self.clone())
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($id)
            }
        }
        impl std::error::Error for $name {}
    };
}

/// The value factory of class `T`, for the per-module lookup tables.
pub fn value_of<T: ClassType>(r: &mut InputStream<'_>) -> Result<Box<dyn Value>, DecodeError> {
    Ok(Box::new(T::decode_slices(r)?))
}

/// The exception factory of exception `T`.
pub fn exception_of<T: ExceptionType>(
    r: &mut InputStream<'_>,
) -> Result<Box<dyn UserException>, DecodeError> {
    Ok(Box::new(T::decode_slices(r)?))
}

/// How a struct travels as an optional: `VSize` when fixed-size, `FSize` otherwise.
pub const fn struct_format(fixed: Option<usize>) -> OptionalFormat {
    match fixed {
        Some(_) => OptionalFormat::VSize,
        None => OptionalFormat::FSize,
    }
}

/// The parameters of an operation that takes none: empty in encoding 1.0, while 1.1 lets
/// newer callers append optionals, which are ignored (as Ice's `skipEmptyEncapsulation`).
pub fn no_params(params: &[u8], encoding: Encoding) -> Result<(), DispatchError> {
    if encoding == Encoding::V1_0 && !params.is_empty() {
        return Err(DispatchError::UnknownLocal(format!(
            "EncapsulationException: {} unexpected parameter bytes",
            params.len()
        )));
    }
    Ok(())
}

/// Refuses a request whose mode contradicts the operation's declaration, as Ice's
/// generated dispatchers do; `Nonmutating` (Ice 1.x's `["nonmutating"]`) is accepted where
/// `Idempotent` is declared.
pub fn check_mode(expected: OperationMode, received: OperationMode) -> Result<(), DispatchError> {
    use OperationMode::{Idempotent, Nonmutating};
    if expected == received || (expected == Idempotent && received == Nonmutating) {
        return Ok(());
    }
    Err(DispatchError::UnknownLocal(format!(
        "MarshalException: unexpected operation mode. expected = {} received = {}",
        mode_name(expected),
        mode_name(received)
    )))
}

fn mode_name(mode: OperationMode) -> &'static str {
    match mode {
        OperationMode::Normal => "::Ice::Normal",
        OperationMode::Nonmutating => "::Ice::Nonmutating",
        OperationMode::Idempotent => "::Ice::Idempotent",
    }
}

/// After the last parameter: in 1.0 every byte must have been read; in 1.1 what is left
/// can only be optionals this side does not know.
pub fn end_params(r: &InputStream<'_>) -> Result<(), DispatchError> {
    if r.encoding() == Encoding::V1_0 && !r.is_at_end() {
        return Err(DispatchError::UnknownLocal(format!(
            "EncapsulationException: {} bytes left after the parameters",
            r.remaining()
        )));
    }
    Ok(())
}

/// Lets through user exceptions the operation declares (or subtypes of them); any other
/// becomes `UnknownUserException`, as ZeroC's runtimes do.
pub fn check_throws<T>(
    result: Result<T, DispatchError>,
    throws: &[&str],
) -> Result<T, DispatchError> {
    match result {
        Err(DispatchError::User(e)) if !throws.iter().any(|id| e.find(id).is_some()) => {
            Err(DispatchError::UnknownUser(e.ice_id().to_string()))
        }
        other => other,
    }
}

/// Why a call through a typed proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("user exception {}", .0.ice_id())]
    User(Box<dyn UserException>),
    #[error("the peer failed the request: {0}")]
    Failed(String),
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error("cannot decode the reply: {0}")]
    Decode(#[from] DecodeError),
}

/// The payload of a successful reply, or the error the reply stands for.
/// `factories` are those of the generated code that made the call.
pub fn reply_payload(
    reply: InvokeReply,
    encoding: Encoding,
    factories: Factories,
) -> Result<Vec<u8>, CallError> {
    match reply {
        InvokeReply::Ok(payload) => Ok(payload),
        InvokeReply::UserException(payload) => {
            let mut r = InputStream::new(&payload, encoding);
            r.set_factories(factories);
            // The peer is a client: its replies are as untrusted as its requests.
            r.refuse_cycles();
            Err(CallError::User(r.read_exception()?))
        }
        InvokeReply::Failed(text) => Err(CallError::Failed(text)),
    }
}

/// Whether calls through `proxy` expect no reply.
pub fn is_oneway(proxy: &Proxy) -> bool {
    !matches!(proxy.mode, ProxyMode::Twoway)
}

/// The reply payload of an operation that returns nothing.
pub fn empty_reply() -> Vec<u8> {
    Vec::new()
}
