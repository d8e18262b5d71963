//! Optional values (encoding 1.1): tagged, skippable by receivers that do not know them.

use std::any::TypeId;
use std::collections::HashMap;
use std::hash::Hash;

use super::{Decode, DecodeError, Encode, Encoding, InputStream, OutputStream, Proxy, ValueRef};

/// How an optional value is framed, which is what lets a receiver skip it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionalFormat {
    F1,
    F2,
    F4,
    F8,
    Size,
    VSize,
    FSize,
    Class,
}

impl OptionalFormat {
    fn bits(self) -> u8 {
        match self {
            OptionalFormat::F1 => 0,
            OptionalFormat::F2 => 1,
            OptionalFormat::F4 => 2,
            OptionalFormat::F8 => 3,
            OptionalFormat::Size => 4,
            OptionalFormat::VSize => 5,
            OptionalFormat::FSize => 6,
            OptionalFormat::Class => 7,
        }
    }

    fn from_bits(bits: u8) -> OptionalFormat {
        match bits & 7 {
            0 => OptionalFormat::F1,
            1 => OptionalFormat::F2,
            2 => OptionalFormat::F4,
            3 => OptionalFormat::F8,
            4 => OptionalFormat::Size,
            5 => OptionalFormat::VSize,
            6 => OptionalFormat::FSize,
            _ => OptionalFormat::Class,
        }
    }
}

/// A type that can be an optional parameter or member.
pub trait OptionalValue: Sized {
    const FORMAT: OptionalFormat;
    /// The value with whatever VSize/FSize prefix its format needs.
    fn write_optional_payload(&self, w: &mut OutputStream);
    fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError>;
}

const END_MARKER: u8 = 0xFF;

impl OutputStream {
    /// Writes `v` under `tag` if present and the encoding is 1.1; nothing otherwise.
    pub fn write_optional<T: OptionalValue>(&mut self, tag: i32, v: Option<&T>) {
        let Some(v) = v else {
            return;
        };
        if self.encoding() != Encoding::V1_1 {
            return;
        }
        let format = T::FORMAT.bits();
        let tag = usize::try_from(tag).unwrap_or(0);
        if tag < 30 {
            self.write_u8(((tag as u8) << 3) | format);
        } else {
            self.write_u8(0xF0 | format);
            self.write_size(tag);
        }
        self.note_optional();
        v.write_optional_payload(self);
    }
}

impl InputStream<'_> {
    /// Reads the optional value with `tag`, skipping unknown smaller tags. `None` when it is
    /// absent (a larger tag, the end marker, the end of the encapsulation, or encoding 1.0).
    pub fn read_optional<T: OptionalValue>(&mut self, tag: i32) -> Result<Option<T>, DecodeError> {
        if self.encoding() != Encoding::V1_1 || self.slice_has_optionals() == Some(false) {
            return Ok(None);
        }
        let wanted = usize::try_from(tag).unwrap_or(0);
        loop {
            if self.is_at_end() {
                return Ok(None);
            }
            let before = self.pos();
            let (found, format) = self.read_tag()?;
            let Some(found) = found else {
                self.seek(before)?;
                return Ok(None);
            };
            if found > wanted {
                self.seek(before)?;
                return Ok(None);
            }
            if found == wanted {
                if format != T::FORMAT {
                    return Err(DecodeError::Marshal(format!(
                        "optional tag {tag} has format {format:?}, expected {:?}",
                        T::FORMAT
                    )));
                }
                return T::read_optional_payload(self).map(Some);
            }
            self.skip_optional(format)?;
        }
    }

    /// The next tag and format, or no tag at the end marker.
    fn read_tag(&mut self) -> Result<(Option<usize>, OptionalFormat), DecodeError> {
        let byte = self.read_u8()?;
        let format = OptionalFormat::from_bits(byte);
        if byte == END_MARKER {
            return Ok((None, format));
        }
        let mut tag = usize::from(byte >> 3);
        if tag == 30 {
            tag = self.read_size()?;
        }
        Ok((Some(tag), format))
    }

    fn skip_optional(&mut self, format: OptionalFormat) -> Result<(), DecodeError> {
        match format {
            OptionalFormat::F1 => self.skip(1),
            OptionalFormat::F2 => self.skip(2),
            OptionalFormat::F4 => self.skip(4),
            OptionalFormat::F8 => self.skip(8),
            OptionalFormat::Size => self.read_size().map(|_| ()),
            OptionalFormat::VSize => {
                let n = self.read_size()?;
                self.skip(n)
            }
            OptionalFormat::FSize => {
                let n = self.read_i32()?;
                let n = usize::try_from(n).map_err(|_| DecodeError::NegativeSize(n))?;
                self.skip(n)
            }
            OptionalFormat::Class => self.read_value().map(|_| ()),
        }
    }

    /// Skips the optional members left in a slice, up to and including its end marker.
    pub(super) fn skip_remaining_optionals(&mut self) -> Result<(), DecodeError> {
        loop {
            let (tag, format) = self.read_tag()?;
            if tag.is_none() {
                return Ok(());
            }
            self.skip_optional(format)?;
        }
    }
}

macro_rules! fixed_optional {
    ($t:ty, $format:ident) => {
        impl OptionalValue for $t {
            const FORMAT: OptionalFormat = OptionalFormat::$format;
            fn write_optional_payload(&self, w: &mut OutputStream) {
                self.encode(w)
            }
            fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
                <$t>::decode(r)
            }
        }
    };
}

fixed_optional!(bool, F1);
fixed_optional!(u8, F1);
fixed_optional!(i16, F2);
fixed_optional!(i32, F4);
fixed_optional!(f32, F4);
fixed_optional!(i64, F8);
fixed_optional!(f64, F8);

impl OptionalValue for String {
    const FORMAT: OptionalFormat = OptionalFormat::VSize;
    fn write_optional_payload(&self, w: &mut OutputStream) {
        w.write_string(self)
    }
    fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        r.read_string()
    }
}

/// How a sequence or dictionary of elements of `fixed` bytes each is framed as an optional.
const fn collection_format(fixed: Option<usize>) -> OptionalFormat {
    match fixed {
        Some(_) => OptionalFormat::VSize,
        None => OptionalFormat::FSize,
    }
}

/// Writes a collection payload: byte and bool sequences bare (their count is the VSize),
/// other fixed-size elements behind a size of the whole, variable ones behind an int count.
fn write_collection(
    w: &mut OutputStream,
    count: usize,
    element: Option<usize>,
    bare: bool,
    encode: impl FnOnce(&mut OutputStream),
) {
    match element {
        Some(_) if bare => encode(w),
        Some(width) => {
            let prefix = if count < 255 { 1 } else { 5 };
            w.write_size(count.saturating_mul(width).saturating_add(prefix));
            encode(w);
        }
        None => {
            let pos = w.start_fsize();
            encode(w);
            w.end_fsize(pos);
        }
    }
}

fn read_collection_prefix(
    r: &mut InputStream<'_>,
    element: Option<usize>,
    bare: bool,
) -> Result<(), DecodeError> {
    match element {
        Some(_) if bare => Ok(()),
        Some(_) => r.read_size().map(|_| ()),
        None => r.skip(4),
    }
}

fn is_byte_like<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<u8>() || TypeId::of::<T>() == TypeId::of::<bool>()
}

impl<T: Decode + Encode + 'static> OptionalValue for Vec<T> {
    const FORMAT: OptionalFormat = collection_format(T::FIXED_SIZE);
    fn write_optional_payload(&self, w: &mut OutputStream) {
        let bare = is_byte_like::<T>();
        write_collection(w, self.len(), T::FIXED_SIZE, bare, |w| self.encode(w));
    }
    fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        read_collection_prefix(r, T::FIXED_SIZE, is_byte_like::<T>())?;
        Vec::<T>::decode(r)
    }
}

/// Both key and value fixed-size make the entry fixed-size.
const fn entry_size(k: Option<usize>, v: Option<usize>) -> Option<usize> {
    match (k, v) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    }
}

impl<K, V> OptionalValue for HashMap<K, V>
where
    K: Decode + Encode + Eq + Hash,
    V: Decode + Encode,
{
    const FORMAT: OptionalFormat = collection_format(entry_size(K::FIXED_SIZE, V::FIXED_SIZE));
    fn write_optional_payload(&self, w: &mut OutputStream) {
        let element = entry_size(K::FIXED_SIZE, V::FIXED_SIZE);
        write_collection(w, self.len(), element, false, |w| self.encode(w));
    }
    fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        read_collection_prefix(r, entry_size(K::FIXED_SIZE, V::FIXED_SIZE), false)?;
        HashMap::<K, V>::decode(r)
    }
}

impl OptionalValue for Option<Proxy> {
    const FORMAT: OptionalFormat = OptionalFormat::FSize;
    fn write_optional_payload(&self, w: &mut OutputStream) {
        let pos = w.start_fsize();
        w.write_proxy(self.as_ref());
        w.end_fsize(pos);
    }
    fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        r.skip(4)?;
        r.read_proxy()
    }
}

impl OptionalValue for Option<ValueRef> {
    const FORMAT: OptionalFormat = OptionalFormat::Class;
    fn write_optional_payload(&self, w: &mut OutputStream) {
        w.write_value(self.as_ref())
    }
    fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        r.read_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::test_types::{bytes, Point};
    use crate::encoding::Identity;
    use proptest::prelude::*;

    #[test]
    fn spec_top_level_optional_after_required() {
        // opt(optional(3) string s, int req) with req = 21, s = "x"
        let mut w = OutputStream::new(Encoding::V1_1);
        21i32.encode(&mut w);
        w.write_optional(3, Some(&"x".to_string()));
        assert_eq!(w.as_slice(), bytes("15 00 00 00 | 1d 01 78"));
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        assert_eq!(i32::decode(&mut r).unwrap(), 21);
        assert_eq!(r.read_optional::<String>(3).unwrap(), Some("x".into()));
        assert!(r.is_at_end());
    }

    #[test]
    fn spec_get_client_proxy_reply_with_has_routing_table() {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_proxy(None);
        w.write_optional(1, Some(&true));
        assert_eq!(w.as_slice(), bytes("00 00 08 01"));
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        assert_eq!(r.read_proxy().unwrap(), None);
        assert_eq!(r.read_optional::<bool>(1).unwrap(), Some(true));
    }

    #[test]
    fn encoding_1_0_writes_and_reads_nothing() {
        let mut w = OutputStream::new(Encoding::V1_0);
        w.write_optional(1, Some(&5i32));
        assert!(w.is_empty());
        let mut r = InputStream::new(&[0x0a, 5, 0, 0, 0], Encoding::V1_0);
        assert_eq!(r.read_optional::<i32>(1).unwrap(), None);
        assert_eq!(r.pos(), 0);
    }

    #[test]
    fn large_tags_use_the_extended_form() {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_optional(29, Some(&1u8));
        w.write_optional(30, Some(&2i16));
        w.write_optional(300, Some(&3i64));
        assert_eq!(
            w.as_slice(),
            bytes("e8 01 | f1 1e 02 00 | f3 ff 2c 01 00 00 03 00 00 00 00 00 00 00")
        );
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        assert_eq!(r.read_optional::<u8>(29).unwrap(), Some(1));
        assert_eq!(r.read_optional::<i16>(30).unwrap(), Some(2));
        assert_eq!(r.read_optional::<i64>(300).unwrap(), Some(3));
    }

    #[test]
    fn unknown_tags_of_every_format_are_skipped() {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_optional(1, Some(&true));
        w.write_optional(2, Some(&7i16));
        w.write_optional(3, Some(&1.5f32));
        w.write_optional(4, Some(&2.5f64));
        w.write_u8((5 << 3) | 4); // an enum as a size
        w.write_size(300);
        w.write_optional(6, Some(&"skip me".to_string()));
        w.write_optional(7, Some(&vec![Identity::new("a", "b")]));
        w.write_optional(8, Some(&None::<ValueRef>));
        w.write_optional(9, Some(&vec![Point { x: 1, y: 2 }]));
        w.write_optional(40, Some(&99i32));
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        assert_eq!(r.read_optional::<i32>(40).unwrap(), Some(99));
        assert!(r.is_at_end());
        // a smaller tag than the next one present reads as absent, leaving the stream alone
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        assert_eq!(r.read_optional::<i16>(2).unwrap(), Some(7));
        assert_eq!(r.read_optional::<u8>(1).unwrap(), None);
        assert_eq!(r.read_optional::<f32>(3).unwrap(), Some(1.5));
    }

    #[test]
    fn absent_tag_between_present_ones() {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_optional(1, Some(&1i32));
        w.write_optional(5, Some(&5i32));
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        assert_eq!(r.read_optional::<i32>(3).unwrap(), None);
        assert_eq!(r.read_optional::<i32>(5).unwrap(), Some(5));
    }

    #[test]
    fn wrong_format_is_an_error() {
        let mut r = InputStream::new(&[0x0a, 1, 0, 0, 0], Encoding::V1_1);
        assert!(r.read_optional::<i64>(1).is_err());
    }

    #[test]
    fn collection_layouts() {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_optional(1, Some(&vec![1u8, 2]));
        w.write_optional(2, Some(&vec![7i32]));
        w.write_optional(3, Some(&vec!["a".to_string()]));
        let mut m = HashMap::new();
        m.insert(1i32, 2i16);
        w.write_optional(4, Some(&m));
        assert_eq!(
            w.as_slice(),
            bytes(
                "0d 02 01 02 | 15 05 01 07 00 00 00 | 1e 03 00 00 00 01 01 61 \
                 | 25 07 01 01 00 00 00 02 00"
            )
        );
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        assert_eq!(r.read_optional::<Vec<u8>>(1).unwrap(), Some(vec![1, 2]));
        assert_eq!(r.read_optional::<Vec<i32>>(2).unwrap(), Some(vec![7]));
        assert_eq!(
            r.read_optional::<Vec<String>>(3).unwrap(),
            Some(vec!["a".to_string()])
        );
        assert_eq!(r.read_optional::<HashMap<i32, i16>>(4).unwrap(), Some(m));
    }

    #[test]
    fn long_fixed_sequence_uses_a_five_byte_size() {
        let v = vec![0i16; 300];
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_optional(1, Some(&v));
        assert_eq!(&w.as_slice()[..6], &bytes("0d ff 5d 02 00 00")[..]);
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        assert_eq!(r.read_optional::<Vec<i16>>(1).unwrap(), Some(v));
    }

    proptest! {
        #[test]
        fn optionals_round_trip(
            a: Option<i32>, b: Option<String>, c: Option<Vec<i64>>, d: Option<f64>,
            e: Option<HashMap<String, i32>>, tag_gap in 1i32..40,
        ) {
            let mut w = OutputStream::new(Encoding::V1_1);
            w.write_optional(1, a.as_ref());
            w.write_optional(2, b.as_ref());
            w.write_optional(3, c.as_ref());
            w.write_optional(4, d.as_ref());
            w.write_optional(4 + tag_gap, e.as_ref());
            let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
            prop_assert_eq!(r.read_optional::<i32>(1).unwrap(), a);
            prop_assert_eq!(r.read_optional::<String>(2).unwrap(), b);
            prop_assert_eq!(r.read_optional::<Vec<i64>>(3).unwrap(), c);
            prop_assert_eq!(r.read_optional::<f64>(4).unwrap().map(f64::to_bits), d.map(f64::to_bits));
            prop_assert_eq!(r.read_optional::<HashMap<String, i32>>(4 + tag_gap).unwrap(), e);
            prop_assert!(r.is_at_end());
        }

        #[test]
        fn reading_random_optionals_never_panics(data: Vec<u8>, tag in 0i32..100) {
            let mut r = InputStream::new(&data, Encoding::V1_1);
            let _ = r.read_optional::<Vec<String>>(tag);
            let _ = r.read_optional::<Option<ValueRef>>(tag + 1);
        }
    }
}
