use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use super::{DecodeError, InputStream, OutputStream, ValueRef};

/// A value that can be read from an Ice stream. Generated code implements it for every
/// Slice struct, enum, sequence and dictionary.
pub trait Decode: Sized {
    /// The fewest bytes one value takes on the wire; sequence counts are checked against
    /// it before anything is allocated.
    const MIN_WIRE_SIZE: usize = 1;
    /// `Some(n)` when every value takes exactly `n` bytes (primitives, structs of them);
    /// decides how sequences of the type are framed as optionals.
    const FIXED_SIZE: Option<usize> = None;

    fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError>;
}

/// A value that can be written to an Ice stream.
pub trait Encode {
    fn encode(&self, w: &mut OutputStream);
}

macro_rules! primitive {
    ($t:ty, $size:expr, $read:ident, $write:ident) => {
        impl Decode for $t {
            const MIN_WIRE_SIZE: usize = $size;
            const FIXED_SIZE: Option<usize> = Some($size);
            fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
                r.$read()
            }
        }
        impl Encode for $t {
            fn encode(&self, w: &mut OutputStream) {
                w.$write(*self)
            }
        }
    };
}

primitive!(bool, 1, read_bool, write_bool);
primitive!(u8, 1, read_u8, write_u8);
primitive!(i16, 2, read_i16, write_i16);
primitive!(i32, 4, read_i32, write_i32);
primitive!(i64, 8, read_i64, write_i64);
primitive!(f32, 4, read_f32, write_f32);
primitive!(f64, 8, read_f64, write_f64);

impl Decode for String {
    fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        r.read_string()
    }
}

impl Encode for String {
    fn encode(&self, w: &mut OutputStream) {
        w.write_string(self)
    }
}

impl Encode for str {
    fn encode(&self, w: &mut OutputStream) {
        w.write_string(self)
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let count = r.read_count(T::MIN_WIRE_SIZE)?;
        r.charge(count.saturating_mul(std::mem::size_of::<T>()))?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(T::decode(r)?);
        }
        Ok(out)
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, w: &mut OutputStream) {
        self.as_slice().encode(w)
    }
}

impl<T: Encode> Encode for [T] {
    fn encode(&self, w: &mut OutputStream) {
        w.write_size(self.len());
        for v in self {
            v.encode(w);
        }
    }
}

impl<K: Decode + Eq + Hash, V: Decode> Decode for HashMap<K, V> {
    fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let count = r.read_count(K::MIN_WIRE_SIZE + V::MIN_WIRE_SIZE)?;
        r.charge(count.saturating_mul(std::mem::size_of::<(K, V)>() * 2))?;
        let mut out = HashMap::with_capacity(count);
        for _ in 0..count {
            let k = K::decode(r)?;
            let v = V::decode(r)?;
            out.insert(k, v);
        }
        Ok(out)
    }
}

/// Entries go out ordered by their keys' encoded bytes: a `HashMap`'s own order changes from
/// run to run, and the same value must always give the same bytes (reproducible test
/// vectors, stable class back-reference numbers). Slice keys never hold classes or proxies,
/// so encoding a key on its own gives exactly its bytes in the stream.
impl<K: Encode, V: Encode> Encode for HashMap<K, V> {
    fn encode(&self, w: &mut OutputStream) {
        let mut entries: Vec<(Vec<u8>, &V)> = self
            .iter()
            .map(|(k, v)| {
                let mut kw = OutputStream::new(w.encoding());
                k.encode(&mut kw);
                (kw.into_bytes(), v)
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        w.write_size(entries.len());
        for (key, v) in entries {
            w.write_bytes(&key);
            v.encode(w);
        }
    }
}

impl<K: Decode + Ord, V: Decode> Decode for BTreeMap<K, V> {
    fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let count = r.read_count(K::MIN_WIRE_SIZE + V::MIN_WIRE_SIZE)?;
        r.charge(count.saturating_mul(std::mem::size_of::<(K, V)>() * 2))?;
        let mut out = BTreeMap::new();
        for _ in 0..count {
            let k = K::decode(r)?;
            let v = V::decode(r)?;
            out.insert(k, v);
        }
        Ok(out)
    }
}

impl<K: Encode, V: Encode> Encode for BTreeMap<K, V> {
    fn encode(&self, w: &mut OutputStream) {
        w.write_size(self.len());
        for (k, v) in self {
            k.encode(w);
            v.encode(w);
        }
    }
}

impl Decode for Option<ValueRef> {
    fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        r.read_value()
    }
}

impl Encode for Option<ValueRef> {
    fn encode(&self, w: &mut OutputStream) {
        w.write_value(self.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Encoding;
    use proptest::prelude::*;

    fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: T) {
        let mut w = OutputStream::new(Encoding::V1_1);
        v.encode(&mut w);
        let bytes = w.into_bytes();
        let mut r = InputStream::new(&bytes, Encoding::V1_1);
        assert_eq!(T::decode(&mut r).unwrap(), v);
        assert!(r.is_at_end());
    }

    #[test]
    fn dictionaries_encode_the_same_bytes_every_time() {
        let map: HashMap<String, i32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        // a second map has its own hash seed, so its own iteration order
        let copy: HashMap<String, i32> = (0..50).rev().map(|i| (format!("k{i}"), i)).collect();
        let mut a = OutputStream::new(Encoding::V1_1);
        map.encode(&mut a);
        let mut b = OutputStream::new(Encoding::V1_1);
        copy.encode(&mut b);
        assert_eq!(a.as_slice(), b.as_slice());
        let mut r = InputStream::new(a.as_slice(), Encoding::V1_1);
        assert_eq!(HashMap::<String, i32>::decode(&mut r).unwrap(), map);
    }

    #[test]
    fn string_wire_form() {
        let mut w = OutputStream::new(Encoding::V1_1);
        "router".encode(&mut w);
        assert_eq!(w.as_slice(), b"\x06router");
    }

    proptest! {
        #[test]
        fn primitives_round_trip(a: bool, b: u8, c: i16, d: i32, e: i64, s: String) {
            round_trip(a); round_trip(b); round_trip(c); round_trip(d); round_trip(e); round_trip(s);
        }

        #[test]
        fn collections_round_trip(v: Vec<i32>, m: HashMap<String, i64>, n: Vec<String>) {
            round_trip(v); round_trip(m); round_trip(n);
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes: Vec<u8>) {
            let mut r = InputStream::new(&bytes, Encoding::V1_1);
            let _ = HashMap::<String, Vec<String>>::decode(&mut r);
        }
    }
}
