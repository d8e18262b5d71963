//! Encoding class instances and user exceptions (encodings 1.0 and 1.1).
//!
//! Generated `encode_slices` writes members between `start_slice` and `end_slice`; the
//! stream writes headers, instance ids, type-id indexes, slice sizes, indirection tables,
//! the 1.0 pending batches and `::Ice::Object` slice, and re-emits preserved slices.
//! Byte layout follows ZeroC's encoders so output compares equal to theirs (except the order
//! inside one 1.0 batch, which ZeroC takes from a hash map).
//!
//! # No recursion in 1.1
//!
//! Encoding 1.1 writes an instance inline where it is first referenced, so a chain of
//! instances is nested as deep as it is long, and a graph accepted in 1.0 (where instances
//! are a flat list) may be a chain of any length. Generated `encode_slices` of an instance
//! therefore never writes another instance: it writes into a fragment of its own, and every
//! reference, type id and FSize count in it (whose bytes depend on what was written before
//! it on the wire) becomes a [`Mark`]. [`write_graph_11`](OutputStream::write_graph_11)
//! then copies fragments to the output with an explicit stack, in wire order, resolving each
//! mark as it reaches it: an instance reference opens the referenced instance's fragment.

use std::collections::HashMap;

use super::classes_in::{
    FLAG_HAS_OPTIONALS, FLAG_HAS_SIZE, FLAG_HAS_TABLE, FLAG_IS_LAST, FLAG_TYPE_ID_COMPACT,
    FLAG_TYPE_ID_INDEX, FLAG_TYPE_ID_STRING, OBJECT_ID,
};
use super::value::{SliceInfo, UNKNOWN_VALUE_ID};
use super::{Encoding, Format, OutputStream, UserException, ValueRef};

#[derive(Debug, Clone, Default)]
pub(crate) struct WriteClasses {
    type_ids: HashMap<String, usize>,
    /// Instance ids by handle address; `keep` holds the handles so addresses stay unique.
    ids: HashMap<usize, i32>,
    keep: Vec<ValueRef>,
    last_id: i32,
    /// 1.0: referenced instances not yet written.
    pending: Vec<ValueRef>,
    frames: Vec<WriteFrame>,
    /// 1.1: an instance's slices are being written into a fragment; what its bytes still
    /// need is collected in `marks`.
    building: bool,
    marks: Vec<(usize, Mark)>,
}

/// What an instance fragment (1.1) leaves to be written when the fragment reaches the
/// output, at a position in the fragment.
#[derive(Debug, Clone)]
enum Mark {
    /// A class reference: the instance's id if it is on the wire already, otherwise 1 and
    /// the instance itself.
    Instance(ValueRef),
    /// A type id: its index if written already, otherwise the string. The slice's flags
    /// byte is the byte just before the mark and learns which.
    TypeId(String),
    /// Where an FSize count starts and where what it counts ends; instances written inline
    /// in between count too.
    SizeStart,
    SizeEnd,
}

/// An instance's bytes with their marks, being copied to the output.
struct Fragment {
    bytes: Vec<u8>,
    marks: std::vec::IntoIter<(usize, Mark)>,
    /// Bytes before this have been copied.
    copied: usize,
}

#[derive(Debug, Clone)]
struct WriteFrame {
    sliced: bool,
    first: bool,
    slice: Option<WriteSlice>,
}

#[derive(Debug, Clone, Default)]
struct WriteSlice {
    flags_pos: usize,
    flags: u8,
    size_pos: Option<usize>,
    optionals: bool,
    table: Vec<Option<ValueRef>>,
    table_index: HashMap<usize, usize>,
}

impl OutputStream {
    /// A class reference. In 1.0 the instance itself goes into the pending list written by
    /// [`write_pending_values`](Self::write_pending_values); in 1.1 it is written inline the
    /// first time (or, inside a sliced-format slice, through the slice's indirection table).
    pub fn write_value(&mut self, v: Option<&ValueRef>) {
        if self.encoding() == Encoding::V1_0 {
            let id = v.map_or(0, |v| -self.id_10(v));
            self.write_i32(id);
            return;
        }
        let Some(v) = v else {
            self.write_size(0);
            return;
        };
        let frame = self.classes.frames.last_mut();
        if let Some(slice) = frame.filter(|f| f.sliced).and_then(|f| f.slice.as_mut()) {
            let next = slice.table.len() + 1;
            let index = *slice.table_index.entry(v.addr()).or_insert(next);
            if index == next {
                slice.table.push(Some(v.clone()));
            }
            self.write_size(index);
            return;
        }
        self.write_instance_11(v);
    }

    fn id_10(&mut self, v: &ValueRef) -> i32 {
        if let Some(id) = self.classes.ids.get(&v.addr()) {
            return *id;
        }
        let id = self.new_id(v);
        self.classes.pending.push(v.clone());
        id
    }

    fn new_id(&mut self, v: &ValueRef) -> i32 {
        let classes = &mut self.classes;
        classes.last_id += 1;
        classes.ids.insert(v.addr(), classes.last_id);
        classes.keep.push(v.clone());
        classes.last_id
    }

    fn write_instance_11(&mut self, v: &ValueRef) {
        if self.classes.building {
            self.mark(Mark::Instance(v.clone()));
            return;
        }
        self.write_graph_11(v);
    }

    fn mark(&mut self, mark: Mark) {
        let at = self.len();
        self.classes.marks.push((at, mark));
    }

    /// Writes a reference to `root` and, depth first in wire order, every instance first
    /// reached through it (see the module docs). The stack holds one fragment per instance
    /// still open on the wire, on the heap, however deep the graph.
    fn write_graph_11(&mut self, root: &ValueRef) {
        let mut open: Vec<Fragment> = self.write_reference_11(root).into_iter().collect();
        let mut sizes: Vec<usize> = Vec::new();
        while let Some(top) = open.last_mut() {
            let Some((at, mark)) = top.marks.next() else {
                self.write_bytes(top.bytes.get(top.copied..).unwrap_or_default());
                open.pop();
                continue;
            };
            self.write_bytes(top.bytes.get(top.copied..at).unwrap_or_default());
            top.copied = at;
            match mark {
                Mark::Instance(v) => open.extend(self.write_reference_11(&v)),
                Mark::TypeId(type_id) => self.write_marked_type_id(&type_id),
                Mark::SizeStart => sizes.push(self.len()),
                Mark::SizeEnd => {
                    if let Some(start) = sizes.pop() {
                        let size = self.len().saturating_sub(start + 4);
                        self.patch_i32(start, i32::try_from(size).unwrap_or(i32::MAX));
                    }
                }
            }
        }
    }

    /// Writes the id of an instance already on the wire, or 1 and returns the new
    /// instance's fragment, to be copied next.
    fn write_reference_11(&mut self, v: &ValueRef) -> Option<Fragment> {
        if let Some(id) = self.classes.ids.get(&v.addr()) {
            self.write_size(usize::try_from(*id).unwrap_or(0));
            return None;
        }
        // An unfilled handle only exists while a decoder runs; there is nothing to send.
        if !v.is_filled() {
            self.write_size(0);
            return None;
        }
        if self.classes.last_id == 0 {
            self.classes.last_id = 1;
        }
        self.new_id(v);
        self.write_size(1);
        Some(self.build_fragment(v))
    }

    /// Writes the slices of `v` into a fragment of their own; nested instances, type ids
    /// and FSize counts become marks.
    fn build_fragment(&mut self, v: &ValueRef) -> Fragment {
        let outer_buf = std::mem::take(&mut self.buf);
        let outer_marks = std::mem::take(&mut self.classes.marks);
        self.classes.building = true;
        self.write_instance_slices(v);
        self.classes.building = false;
        let bytes = std::mem::replace(&mut self.buf, outer_buf);
        let marks = std::mem::replace(&mut self.classes.marks, outer_marks);
        Fragment {
            bytes,
            marks: marks.into_iter(),
            copied: 0,
        }
    }

    /// Resolves a [`Mark::TypeId`]: the flags byte of its slice was the last byte written.
    fn write_marked_type_id(&mut self, type_id: &str) {
        let flags_pos = self.len().saturating_sub(1);
        let kind = self.write_registered_type_id(type_id);
        if let Some(flags) = self.buf.get_mut(flags_pos) {
            *flags |= kind;
        }
    }

    /// Notes where an FSize count starts, inside an instance fragment.
    pub(super) fn mark_size_start(&mut self) {
        if self.classes.building {
            self.mark(Mark::SizeStart);
        }
    }

    /// Notes where what an FSize count counts ends, inside an instance fragment.
    pub(super) fn mark_size_end(&mut self) {
        if self.classes.building {
            self.mark(Mark::SizeEnd);
        }
    }

    fn write_instance_slices(&mut self, v: &ValueRef) {
        let Some(value) = v.value() else {
            return;
        };
        // An instance of unknown type has only its preserved slices, so it keeps them even
        // in the compact format; otherwise they are dropped there, as ZeroC does.
        let unknown = value.ice_id() == UNKNOWN_VALUE_ID;
        let sliced = self.format == Format::Sliced || unknown;
        self.classes.frames.push(WriteFrame {
            sliced,
            first: true,
            slice: None,
        });
        if sliced && self.encoding() == Encoding::V1_1 {
            for info in v.preserved_slices() {
                self.write_preserved(info);
            }
        }
        value.encode_slices(self);
        if self.encoding() == Encoding::V1_0 {
            self.start_slice(OBJECT_ID, None, true);
            self.write_size(0);
            self.end_slice();
        }
        self.classes.frames.pop();
    }

    fn write_preserved(&mut self, info: &SliceInfo) {
        self.start_slice(&info.type_id, info.compact_id, info.is_last);
        self.write_bytes(&info.bytes);
        if let Some(slice) = self.open_slice() {
            slice.optionals |= info.has_optional_members;
            slice.table.extend(info.instances.iter().cloned());
        }
        self.end_slice();
    }

    fn open_slice(&mut self) -> Option<&mut WriteSlice> {
        self.classes.frames.last_mut()?.slice.as_mut()
    }

    /// Notes that an optional member was written into the open slice, if any, so that
    /// `end_slice` sets the flag and writes the end marker.
    pub(super) fn note_optional(&mut self) {
        if let Some(slice) = self.open_slice() {
            slice.optionals = true;
        }
    }

    /// Writes the 1.0 pending-instance batches (and the terminating empty batch). A no-op
    /// in 1.1.
    pub fn write_pending_values(&mut self) {
        if self.encoding() != Encoding::V1_0 {
            return;
        }
        while !self.classes.pending.is_empty() {
            let batch = std::mem::take(&mut self.classes.pending);
            self.write_size(batch.len());
            for v in &batch {
                let id = self.classes.ids.get(&v.addr()).copied().unwrap_or(0);
                self.write_i32(id);
                self.write_instance_slices(v);
            }
        }
        self.write_size(0);
    }

    fn frame(&mut self) -> &mut WriteFrame {
        let sliced = self.format == Format::Sliced;
        if self.classes.frames.is_empty() {
            self.classes.frames.push(WriteFrame {
                sliced,
                first: true,
                slice: None,
            });
        }
        let last = self.classes.frames.len() - 1;
        &mut self.classes.frames[last]
    }

    /// Opens a class slice. `compact_id` is the Slice `class C(n)` id, written instead of
    /// the type id where one is due.
    pub fn start_slice(&mut self, type_id: &str, compact_id: Option<i32>, is_last: bool) {
        if self.encoding() == Encoding::V1_0 {
            match self.register_type_id(type_id) {
                Some(index) => {
                    self.write_bool(true);
                    self.write_size(index);
                }
                None => {
                    self.write_bool(false);
                    self.write_string(type_id);
                }
            }
            self.open_10_slice();
            return;
        }
        let flags_pos = self.len();
        self.write_u8(0);
        let frame = self.frame();
        let (sliced, first) = (frame.sliced, frame.first);
        let mut flags = if is_last { FLAG_IS_LAST } else { 0 };
        if sliced || first {
            flags |= self.write_type_id_11(type_id, compact_id);
        }
        self.open_11_slice(flags_pos, flags, sliced);
    }

    fn write_type_id_11(&mut self, type_id: &str, compact_id: Option<i32>) -> u8 {
        if let Some(id) = compact_id {
            self.write_size(usize::try_from(id).unwrap_or(0));
            return FLAG_TYPE_ID_COMPACT;
        }
        if self.classes.building {
            self.mark(Mark::TypeId(type_id.to_owned()));
            return 0;
        }
        self.write_registered_type_id(type_id)
    }

    /// Writes a type id's index, or the id itself the first time; returns the flag saying
    /// which.
    fn write_registered_type_id(&mut self, type_id: &str) -> u8 {
        match self.register_type_id(type_id) {
            Some(index) => {
                self.write_size(index);
                FLAG_TYPE_ID_INDEX
            }
            None => {
                self.write_string(type_id);
                FLAG_TYPE_ID_STRING
            }
        }
    }

    fn open_10_slice(&mut self) {
        let size_pos = self.len();
        self.write_i32(0);
        let frame = self.frame();
        frame.first = false;
        frame.slice = Some(WriteSlice {
            size_pos: Some(size_pos),
            ..WriteSlice::default()
        });
    }

    fn open_11_slice(&mut self, flags_pos: usize, mut flags: u8, sliced: bool) {
        let mut size_pos = None;
        if sliced {
            flags |= FLAG_HAS_SIZE;
            size_pos = Some(self.len());
            self.write_i32(0);
        }
        let frame = self.frame();
        frame.first = false;
        frame.slice = Some(WriteSlice {
            flags_pos,
            flags,
            size_pos,
            ..WriteSlice::default()
        });
    }

    /// The index of an already written type id, or `None` after registering a new one.
    fn register_type_id(&mut self, type_id: &str) -> Option<usize> {
        if let Some(index) = self.classes.type_ids.get(type_id) {
            return Some(*index);
        }
        let next = self.classes.type_ids.len() + 1;
        self.classes.type_ids.insert(type_id.to_owned(), next);
        None
    }

    /// Closes the open slice: end marker, size, indirection table, flags.
    pub fn end_slice(&mut self) {
        let Some(slice) = self.classes.frames.last_mut().and_then(|f| f.slice.take()) else {
            return;
        };
        let mut flags = slice.flags;
        let v11 = self.encoding() == Encoding::V1_1;
        if v11 && slice.optionals {
            flags |= FLAG_HAS_OPTIONALS;
            self.write_u8(0xFF);
        }
        if let Some(size_pos) = slice.size_pos {
            let size = self.len() - size_pos;
            self.patch_i32(size_pos, i32::try_from(size).unwrap_or(i32::MAX));
        }
        if v11 && !slice.table.is_empty() {
            flags |= FLAG_HAS_TABLE;
            self.write_size(slice.table.len());
            for entry in &slice.table {
                match entry {
                    Some(v) => self.write_instance_11(v),
                    None => self.write_size(0),
                }
            }
        }
        if v11 {
            self.patch_u8(slice.flags_pos, flags);
        }
    }

    /// Opens an exception slice; exceptions always carry their type id as a string.
    pub fn start_exception_slice(&mut self, type_id: &str, is_last: bool) {
        if self.encoding() == Encoding::V1_0 {
            self.write_string(type_id);
            self.open_10_slice();
            return;
        }
        let flags_pos = self.len();
        self.write_u8(0);
        self.write_string(type_id);
        let sliced = self.frame().sliced;
        let flags = if is_last { FLAG_IS_LAST } else { 0 };
        self.open_11_slice(flags_pos, flags, sliced);
    }

    pub fn end_exception_slice(&mut self) {
        self.end_slice();
    }

    /// Writes a user exception (the reply-status-1 payload), always in the sliced format,
    /// as ZeroC's runtimes do, so that receivers can fall back to a base type.
    pub fn write_exception(&mut self, e: &dyn UserException) {
        if self.encoding() == Encoding::V1_0 {
            let uses_classes = e.uses_classes();
            self.write_bool(uses_classes);
            self.in_write_frame(false, |w| e.encode_slices(w));
            if uses_classes {
                self.write_pending_values();
            }
            return;
        }
        let saved = self.format;
        self.format = Format::Sliced;
        self.in_write_frame(true, |w| e.encode_slices(w));
        self.format = saved;
    }

    fn in_write_frame(&mut self, sliced: bool, f: impl FnOnce(&mut Self)) {
        self.classes.frames.push(WriteFrame {
            sliced,
            first: true,
            slice: None,
        });
        f(self);
        self.classes.frames.pop();
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use super::*;
    use crate::encoding::test_types::*;
    use crate::encoding::{ClassType, Decode, DecodeError, Encode, Factories, InputStream, Value};

    /// `class Outer extends Base { Base x; }`: a class member in each of two slices, so the
    /// base slice's type id comes after an instance nested in the first slice.
    #[derive(Clone, Debug, PartialEq, Default)]
    struct Outer {
        base: Base,
        x: Option<ValueRef>,
    }

    impl Value for Outer {
        fn ice_id(&self) -> &'static str {
            Self::ICE_ID
        }
        fn find(&self, type_id: &str) -> Option<&dyn Any> {
            match type_id {
                Self::ICE_ID => Some(self),
                Base::ICE_ID => Some(&self.base),
                _ => None,
            }
        }
        fn encode_slices(&self, w: &mut OutputStream) {
            w.start_slice(Self::ICE_ID, None, false);
            self.x.encode(w);
            w.end_slice();
            self.base.encode_slices(w);
        }
        fn eq_value(&self, other: &dyn Value) -> bool {
            other.find(Self::ICE_ID).and_then(|o| o.downcast_ref()) == Some(self)
        }
        fn clone_value(&self) -> Box<dyn Value> {
            Box::new(self.clone())
        }
    }

    impl ClassType for Outer {
        const ICE_ID: &'static str = "::Test::Outer";
        const COMPACT_ID: Option<i32> = None;
        fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
            let x = Option::<ValueRef>::decode(r)?;
            r.end_slice()?;
            r.start_slice()?;
            let base = Base::decode_slices(r)?;
            Ok(Outer { base, x })
        }
    }

    /// `class Opt { optional(1) BaseSeq items; }`: instances inside an FSize value.
    #[derive(Clone, Debug, PartialEq, Default)]
    struct Opt {
        items: Vec<Option<ValueRef>>,
    }

    impl Value for Opt {
        fn ice_id(&self) -> &'static str {
            Self::ICE_ID
        }
        fn find(&self, type_id: &str) -> Option<&dyn Any> {
            (type_id == Self::ICE_ID).then_some(self as &dyn Any)
        }
        fn encode_slices(&self, w: &mut OutputStream) {
            w.start_slice(Self::ICE_ID, None, true);
            w.write_optional(1, Some(&self.items));
            w.end_slice();
        }
        fn eq_value(&self, other: &dyn Value) -> bool {
            other.find(Self::ICE_ID).and_then(|o| o.downcast_ref()) == Some(self)
        }
        fn clone_value(&self) -> Box<dyn Value> {
            Box::new(self.clone())
        }
    }

    impl ClassType for Opt {
        const ICE_ID: &'static str = "::Test::Opt";
        const COMPACT_ID: Option<i32> = None;
        fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
            let items = r.read_optional::<Vec<Option<ValueRef>>>(1)?;
            r.end_slice()?;
            Ok(Opt {
                items: items.unwrap_or_default(),
            })
        }
    }

    fn with_outer() -> Factories {
        Factories {
            value: |id| match id {
                "::Test::Outer" => Some(|r| Ok(Box::new(Outer::decode_slices(r)?))),
                "::Test::Opt" => Some(|r| Ok(Box::new(Opt::decode_slices(r)?))),
                _ => value_lookup(id),
            },
            ..factories()
        }
    }

    /// Opt as a receiver that does not know the optional member sees it: it must skip the
    /// FSize value by its count.
    fn without_optionals() -> Factories {
        Factories {
            value: |id| match id {
                "::Test::Opt" => Some(|r| {
                    r.end_slice()?;
                    Ok(Box::new(Opt::default()))
                }),
                _ => value_lookup(id),
            },
            ..factories()
        }
    }

    fn base(i: i32, next: Option<ValueRef>) -> ValueRef {
        ValueRef::new(Base { i, next })
    }

    fn round_trip(v: &ValueRef, format: Format, f: Factories) -> (Vec<u8>, ValueRef) {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.set_format(format);
        w.write_value(Some(v));
        let wire = w.into_bytes();
        let mut r = InputStream::new(&wire, Encoding::V1_1);
        r.set_factories(f);
        let back = r.read_value().unwrap().unwrap();
        assert!(r.is_at_end());
        (wire, back)
    }

    #[test]
    fn type_ids_are_numbered_in_wire_order_around_nested_instances() {
        // the nested Base's id is written before the outer instance's own Base slice
        let v = ValueRef::new(Outer {
            base: Base {
                i: 1,
                next: Some(base(3, None)),
            },
            x: Some(base(2, None)),
        });
        for format in [Format::Compact, Format::Sliced] {
            let (wire, back) = round_trip(&v, format, with_outer());
            assert_eq!(back, v, "{format:?}");
            if format == Format::Sliced {
                // Outer (string), nested Base (string), outer Base slice (index 2),
                // the second nested Base (index 2)
                let expected = bytes(
                    "01 19 0d ::Test::Outer 05 00 00 00 01 | 01 01
                     31 0c ::Test::Base 09 00 00 00 02 00 00 00 00
                     3a 02 09 00 00 00 01 00 00 00 01 | 01 01
                     32 02 09 00 00 00 03 00 00 00 00",
                );
                assert_eq!(wire, expected);
            }
        }
    }

    #[test]
    fn an_fsize_value_counts_the_instances_inlined_in_it() {
        let v = ValueRef::new(Opt {
            items: vec![Some(base(5, Some(base(6, None)))), None],
        });
        let (wire, back) = round_trip(&v, Format::Compact, with_outer());
        assert_eq!(back, v);
        let expected = bytes(
            "01 25 0b ::Test::Opt 0e 1d 00 00 00 02
             01 21 0c ::Test::Base 05 00 00 00
             01 22 02 06 00 00 00 00
             00 ff",
        );
        assert_eq!(wire, expected);
        // a receiver without the optional member skips it by that count
        let mut r = InputStream::new(&wire, Encoding::V1_1);
        r.set_factories(without_optionals());
        assert!(r.read_value().unwrap().is_some());
        assert!(r.is_at_end());
    }
}
