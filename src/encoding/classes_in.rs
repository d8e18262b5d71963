//! Decoding class instances and user exceptions (encodings 1.0 and 1.1).
//!
//! The stream keeps, per encapsulation, the type-id table, the instance table and a stack
//! of frames (one per instance or exception being decoded) holding the slice currently
//! open. Generated `decode_slices` only reads members and calls `end_slice`/`start_slice`;
//! everything about headers, ids, indirection and skipping happens here.
//!
//! In the sliced format a slice's indirection table follows its members, but the members
//! refer to it. The decoder reads the table when it opens the slice (it jumps over the
//! members using the slice size and comes back), so a member reference resolves at once to
//! the shared handle. Ids stay in wire order: the members of a sliced slice never hold
//! inline instances, so reading the table first decodes instances in the order written.
//!
//! # Refusing cycles
//!
//! When the stream was told to [refuse cycles](InputStream::refuse_cycles), every format
//! checks its graph before handing it out:
//!
//! - 1.1 (compact and sliced): a handle is created empty when its instance starts and filled
//!   when the instance is complete, so an empty handle is always an instance still being
//!   decoded, i.e. the one that holds the reference or one of its ancestors: a reference to
//!   it closes a cycle. A reference to a filled handle cannot: every edge then goes from an
//!   instance to one filled before it (an inline child completes before its parent, and a
//!   back reference to a filled handle points at an earlier fill), so fill order is a
//!   topological order of the graph. In the sliced format the indirection table is where
//!   references resolve to handles, so the same check there covers members and preserved
//!   unknown slices alike.
//! - 1.0: references are only ids until the pending instances have been read, so the
//!   decoder records an edge from the instance being read to every id it references, and
//!   [`read_pending_values`](InputStream::read_pending_values) runs an iterative
//!   depth-first search over those edges before it returns.
//!
//! Exceptions are not instances (nothing can refer to one), so a class member of an
//! exception is a root, not an edge.

use std::collections::HashMap;
use std::sync::Arc;

use super::value::{SliceInfo, UnknownValue};
use super::{DecodeError, Encoding, Factories, InputStream, UserException, Value, ValueRef};

pub(super) const FLAG_TYPE_ID_STRING: u8 = 0x01;
pub(super) const FLAG_TYPE_ID_INDEX: u8 = 0x02;
pub(super) const FLAG_TYPE_ID_COMPACT: u8 = 0x03;
pub(super) const FLAG_HAS_OPTIONALS: u8 = 0x04;
pub(super) const FLAG_HAS_TABLE: u8 = 0x08;
pub(super) const FLAG_HAS_SIZE: u8 = 0x10;
pub(super) const FLAG_IS_LAST: u8 = 0x20;

/// The 1.0 slice every instance ends with.
pub(super) const OBJECT_ID: &str = "::Ice::Object";

/// What one new handle costs against the allocation budget.
const HANDLE_COST: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SliceKind {
    Value,
    Exception,
}

#[derive(Debug, Default)]
pub(crate) struct ReadClasses {
    /// Shared, so that a type id named by index costs a reference count, not a copy.
    type_ids: Vec<Arc<str>>,
    /// Instances started so far (both encodings), against `DecodeLimits::max_instances`.
    instance_count: usize,
    /// 1.1 instances by id; id 2 is at index 0.
    instances: Vec<ValueRef>,
    /// 1.0 instances by id, created empty at the first reference.
    ids_10: HashMap<i32, ValueRef>,
    /// The 1.0 instance being read, while cycles are refused.
    current_10: Option<i32>,
    /// 1.0 references (from instance, to instance), while cycles are refused.
    edges_10: Vec<(i32, i32)>,
    frames: Vec<ReadFrame>,
}

#[derive(Debug)]
struct ReadFrame {
    kind: SliceKind,
    slice: Option<ReadSlice>,
    seen_last: bool,
    /// Slices opened so far, against `DecodeLimits::max_slices`.
    slices: usize,
}

#[derive(Debug)]
struct ReadSlice {
    flags: u8,
    type_id: Option<Arc<str>>,
    compact_id: Option<i32>,
    /// First member byte.
    start: usize,
    /// End of the sized part (members, optionals and end marker), when the size is known.
    end: Option<usize>,
    table: Option<Vec<Option<ValueRef>>>,
    table_end: usize,
}

fn marshal(text: &str) -> DecodeError {
    DecodeError::Marshal(text.to_owned())
}

impl InputStream<'_> {
    fn lookups(&self) -> Factories {
        self.factories
    }

    /// A class reference (`Option<ValueRef>`); in 1.0 the instance arrives later, with
    /// [`read_pending_values`](Self::read_pending_values).
    pub fn read_value(&mut self) -> Result<Option<ValueRef>, DecodeError> {
        if self.encoding() == Encoding::V1_0 {
            return self.read_reference_10();
        }
        let index = self.read_size()?;
        if index == 0 {
            return Ok(None);
        }
        let table = self
            .classes
            .frames
            .last()
            .and_then(|f| f.slice.as_ref())
            .and_then(|s| s.table.as_ref());
        if let Some(table) = table {
            return match table.get(index - 1) {
                Some(entry) => Ok(entry.clone()),
                None => Err(marshal("indirection index out of range")),
            };
        }
        self.read_instance_11(index)
    }

    fn read_reference_10(&mut self) -> Result<Option<ValueRef>, DecodeError> {
        let n = self.read_i32()?;
        if n == 0 {
            return Ok(None);
        }
        if n > 0 || n == i32::MIN {
            return Err(marshal("invalid class reference"));
        }
        if let (true, Some(from)) = (self.refuse_cycles, self.classes.current_10) {
            self.charge(std::mem::size_of::<(i32, i32)>())?;
            self.classes.edges_10.push((from, -n));
        }
        self.handle_10(-n).map(Some)
    }

    fn handle_10(&mut self, id: i32) -> Result<ValueRef, DecodeError> {
        if let Some(handle) = self.classes.ids_10.get(&id) {
            return Ok(handle.clone());
        }
        self.count_instance()?;
        self.charge(HANDLE_COST)?;
        let handle = ValueRef::empty();
        self.classes.ids_10.insert(id, handle.clone());
        Ok(handle)
    }

    /// A 1.1 reference outside indirection: 1 = new instance inline, n ≥ 2 = instance n.
    fn read_instance_11(&mut self, index: usize) -> Result<Option<ValueRef>, DecodeError> {
        match index {
            0 => Ok(None),
            1 => self.read_new_instance_11().map(Some),
            n => match self.classes.instances.get(n - 2) {
                Some(handle) if self.refuse_cycles && !handle.is_filled() => {
                    Err(DecodeError::CyclicGraph)
                }
                Some(handle) => Ok(Some(handle.clone())),
                None => Err(marshal("reference to an instance id not yet seen")),
            },
        }
    }

    fn read_new_instance_11(&mut self) -> Result<ValueRef, DecodeError> {
        self.count_instance()?;
        self.charge(HANDLE_COST)?;
        let handle = ValueRef::empty();
        self.classes.instances.push(handle.clone());
        let (value, slices) = self.in_frame(SliceKind::Value, Self::read_instance_body)?;
        handle.fill(value, slices);
        Ok(handle)
    }

    /// Counts one more instance in this encapsulation's graph, refusing more than
    /// `DecodeLimits::max_instances`.
    fn count_instance(&mut self) -> Result<(), DecodeError> {
        let max = self.limits().max_instances;
        if self.classes.instance_count >= max {
            return Err(DecodeError::TooManyInstances(max));
        }
        self.classes.instance_count += 1;
        Ok(())
    }

    /// Runs `f` inside a new frame one nesting level deeper, and always leaves it.
    fn in_frame<T>(
        &mut self,
        kind: SliceKind,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        self.enter()?;
        self.classes.frames.push(ReadFrame {
            kind,
            slice: None,
            seen_last: false,
            slices: 0,
        });
        let out = f(self);
        self.classes.frames.pop();
        self.leave();
        out
    }

    /// Reads an instance's slices: unknown ones are skipped (and kept, in 1.1) until a type
    /// with a factory is found.
    fn read_instance_body(&mut self) -> Result<(Box<dyn Value>, Vec<SliceInfo>), DecodeError> {
        let lookups = self.lookups();
        let v10 = self.encoding() == Encoding::V1_0;
        let mut preserved = Vec::new();
        let mut most_derived: Option<Arc<str>> = None;
        self.start_slice()?;
        loop {
            let (type_id, has_size, is_last) = self.current_slice_facts()?;
            let Some(type_id) = type_id else {
                return Err(marshal("instance slice without a type id"));
            };
            let most_derived = most_derived.get_or_insert_with(|| type_id.clone());
            if v10 && &*type_id == OBJECT_ID {
                return Err(DecodeError::NoValueFactory(most_derived.to_string()));
            }
            if let Some(factory) = (lookups.value)(&type_id) {
                let value = factory(self)?;
                // a wide class with absent members is a large value from a few bytes
                self.charge(std::mem::size_of_val(value.as_ref()))?;
                self.finish_instance()?;
                return Ok((value, preserved));
            }
            if !has_size {
                return Err(DecodeError::NoValueFactory(most_derived.to_string()));
            }
            let info = self.skip_slice(!v10)?;
            if let Some(info) = info {
                preserved.push(info);
                if is_last {
                    return Ok((Box::new(UnknownValue), preserved));
                }
            }
            self.start_slice()?;
        }
    }

    /// After the known slices: 1.0 reads up to and including the `::Ice::Object` slice,
    /// 1.1 skips base slices the local type does not have.
    fn finish_instance(&mut self) -> Result<(), DecodeError> {
        if self.encoding() == Encoding::V1_0 {
            loop {
                self.start_slice()?;
                let (type_id, _, _) = self.current_slice_facts()?;
                if type_id.as_deref() == Some(OBJECT_ID) {
                    if self.read_size()? != 0 {
                        return Err(marshal("non-empty facet map"));
                    }
                    return self.end_slice();
                }
                self.skip_slice(false)?;
            }
        }
        self.skip_remaining_slices()
    }

    fn skip_remaining_slices(&mut self) -> Result<(), DecodeError> {
        while !self.top_frame()?.seen_last {
            self.open_slice(self.top_frame()?.kind)?;
            self.skip_slice(false)?;
        }
        Ok(())
    }

    fn top_frame(&self) -> Result<&ReadFrame, DecodeError> {
        self.classes
            .frames
            .last()
            .ok_or_else(|| marshal("slice outside an instance or exception"))
    }

    fn top_frame_mut(&mut self) -> Result<&mut ReadFrame, DecodeError> {
        self.classes
            .frames
            .last_mut()
            .ok_or_else(|| marshal("slice outside an instance or exception"))
    }

    fn current_slice_facts(&self) -> Result<(Option<Arc<str>>, bool, bool), DecodeError> {
        let slice = self
            .top_frame()?
            .slice
            .as_ref()
            .ok_or_else(|| marshal("no open slice"))?;
        Ok((
            slice.type_id.clone(),
            slice.end.is_some(),
            slice.flags & FLAG_IS_LAST != 0,
        ))
    }

    /// Whether optional members may follow in the open slice, or `None` at top level.
    pub(super) fn slice_has_optionals(&self) -> Option<bool> {
        let slice = self.classes.frames.last()?.slice.as_ref()?;
        Some(self.encoding() == Encoding::V1_1 && slice.flags & FLAG_HAS_OPTIONALS != 0)
    }

    /// Opens the next slice of the class instance being decoded (generated code calls it
    /// between a class's members and its base's).
    pub fn start_slice(&mut self) -> Result<(), DecodeError> {
        self.open_slice(SliceKind::Value)
    }

    /// Closes the open slice of the class instance being decoded: skips optional members
    /// the local type does not know, checks the slice size and steps over the indirection
    /// table.
    pub fn end_slice(&mut self) -> Result<(), DecodeError> {
        self.close_slice()
    }

    /// Opens the next slice of the exception being decoded.
    pub fn start_exception_slice(&mut self) -> Result<(), DecodeError> {
        self.open_slice(SliceKind::Exception)
    }

    pub fn end_exception_slice(&mut self) -> Result<(), DecodeError> {
        self.close_slice()
    }

    fn open_slice(&mut self, kind: SliceKind) -> Result<(), DecodeError> {
        let max = self.limits().max_slices;
        let frame = self.top_frame_mut()?;
        if frame.slices >= max {
            return Err(DecodeError::TooManySlices(max));
        }
        frame.slices += 1;
        let slice = if self.encoding() == Encoding::V1_0 {
            self.read_header_10(kind)?
        } else {
            self.read_header_11(kind)?
        };
        self.top_frame_mut()?.slice = Some(slice);
        Ok(())
    }

    fn read_header_10(&mut self, kind: SliceKind) -> Result<ReadSlice, DecodeError> {
        let type_id = if kind == SliceKind::Exception || !self.read_bool()? {
            self.read_type_id_string(kind == SliceKind::Value)?
        } else {
            let index = self.read_size()?;
            self.type_id_at(index)?
        };
        let end = self.read_slice_size()?;
        Ok(ReadSlice {
            flags: FLAG_HAS_SIZE,
            type_id: Some(type_id),
            compact_id: None,
            start: self.pos,
            end: Some(end),
            table: None,
            table_end: end,
        })
    }

    fn read_header_11(&mut self, kind: SliceKind) -> Result<ReadSlice, DecodeError> {
        let flags = self.read_u8()?;
        let mut compact_id = None;
        let type_id = if kind == SliceKind::Exception {
            Some(self.read_type_id_string(false)?)
        } else {
            match flags & 0x03 {
                FLAG_TYPE_ID_STRING => Some(self.read_type_id_string(true)?),
                FLAG_TYPE_ID_INDEX => {
                    let index = self.read_size()?;
                    Some(self.type_id_at(index)?)
                }
                FLAG_TYPE_ID_COMPACT => {
                    let id = i32::try_from(self.read_size()?)
                        .map_err(|_| marshal("compact type id out of range"))?;
                    compact_id = Some(id);
                    Some(match (self.lookups().compact)(id) {
                        Some(type_id) => Arc::from(type_id),
                        None => Arc::from(id.to_string()),
                    })
                }
                _ => None,
            }
        };
        let end = if flags & FLAG_HAS_SIZE != 0 {
            Some(self.read_slice_size()?)
        } else {
            None
        };
        let start = self.pos;
        let mut slice = ReadSlice {
            flags,
            type_id,
            compact_id,
            start,
            end,
            table: None,
            table_end: end.unwrap_or(start),
        };
        if flags & FLAG_HAS_TABLE != 0 {
            let Some(end) = end else {
                return Err(marshal("indirection table in a slice without a size"));
            };
            self.seek(end)?;
            slice.table = Some(self.read_indirection_table()?);
            slice.table_end = self.pos;
            self.seek(start)?;
        }
        Ok(slice)
    }

    fn read_indirection_table(&mut self) -> Result<Vec<Option<ValueRef>>, DecodeError> {
        let count = self.read_count(1)?;
        if count == 0 {
            return Err(marshal("empty indirection table"));
        }
        self.charge(count.saturating_mul(std::mem::size_of::<Option<ValueRef>>()))?;
        let mut table = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.read_size()?;
            table.push(self.read_instance_11(index)?);
        }
        Ok(table)
    }

    /// Reads a slice size (which counts its own four bytes) and returns where the slice ends.
    fn read_slice_size(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let size = self.read_i32()?;
        let size = usize::try_from(size).map_err(|_| DecodeError::NegativeSize(size))?;
        if size < 4 {
            return Err(marshal("slice size smaller than 4"));
        }
        let end = at.saturating_add(size);
        if end > self.encaps_end() {
            return Err(DecodeError::OutOfBounds {
                offset: at,
                needed: size,
                remaining: self.encaps_end().saturating_sub(at),
            });
        }
        Ok(end)
    }

    /// A type id written as a string, at most `DecodeLimits::max_type_id_len` bytes long
    /// (real ids are a few dozen), registered for later references by index when
    /// `register`.
    fn read_type_id_string(&mut self, register: bool) -> Result<Arc<str>, DecodeError> {
        let max = self.limits().max_type_id_len;
        let at = self.pos;
        let len = self.read_size()?;
        if len > max {
            return Err(DecodeError::TypeIdTooLong { len, max });
        }
        self.seek(at)?;
        let type_id: Arc<str> = Arc::from(self.read_string()?);
        if register {
            self.charge(std::mem::size_of::<Arc<str>>())?;
            self.classes.type_ids.push(type_id.clone());
        }
        Ok(type_id)
    }

    fn type_id_at(&self, index: usize) -> Result<Arc<str>, DecodeError> {
        index
            .checked_sub(1)
            .and_then(|i| self.classes.type_ids.get(i))
            .cloned()
            .ok_or_else(|| marshal("unknown type id index"))
    }

    fn close_slice(&mut self) -> Result<(), DecodeError> {
        if self.slice_has_optionals() == Some(true) {
            self.skip_remaining_optionals()?;
        }
        let frame = self.top_frame_mut()?;
        let slice = frame.slice.take().ok_or_else(|| marshal("no open slice"))?;
        if slice.flags & FLAG_IS_LAST != 0 {
            frame.seen_last = true;
        }
        if let Some(end) = slice.end {
            if self.pos > end {
                return Err(marshal("slice members overran the slice size"));
            }
            if self.pos < end {
                tracing::debug!(unread = end - self.pos, "skipping unread slice bytes");
            }
            self.seek(end)?;
        }
        if slice.table.is_some() {
            self.seek(slice.table_end)?;
        }
        Ok(())
    }

    /// Steps over the open slice (its size must be known) and, when `keep`, returns what it
    /// held. The copy is charged with the bookkeeping around it, so a slice of a few bytes
    /// cannot cost much more than it weighs.
    fn skip_slice(&mut self, keep: bool) -> Result<Option<SliceInfo>, DecodeError> {
        let frame = self.top_frame_mut()?;
        let slice = frame.slice.take().ok_or_else(|| marshal("no open slice"))?;
        let has_optionals = slice.flags & FLAG_HAS_OPTIONALS != 0;
        let is_last = slice.flags & FLAG_IS_LAST != 0;
        if is_last {
            frame.seen_last = true;
        }
        let Some(end) = slice.end else {
            return Err(marshal("cannot skip a slice without a size"));
        };
        let mut bytes = self.data.get(slice.start..end).unwrap_or_default();
        if has_optionals {
            match bytes.split_last() {
                Some((0xFF, rest)) => bytes = rest,
                _ => return Err(marshal("optional members without an end marker")),
            }
        }
        self.seek(slice.table_end.max(end))?;
        if !keep {
            return Ok(None);
        }
        self.charge(bytes.len().saturating_add(std::mem::size_of::<SliceInfo>()))?;
        Ok(Some(SliceInfo {
            type_id: slice.type_id.unwrap_or_else(|| Arc::from("")),
            compact_id: slice.compact_id,
            bytes: bytes.to_vec(),
            instances: slice.table.unwrap_or_default(),
            has_optional_members: has_optionals,
            is_last,
        }))
    }

    /// Reads the 1.0 pending-instance batches that follow the parameters and fills every
    /// handle handed out so far. A no-op in 1.1, where instances are inline.
    pub fn read_pending_values(&mut self) -> Result<(), DecodeError> {
        if self.encoding() != Encoding::V1_0 {
            return Ok(());
        }
        loop {
            let count = self.read_count(5)?;
            if count == 0 {
                break;
            }
            for _ in 0..count {
                self.read_pending_instance()?;
            }
        }
        if self.classes.ids_10.values().any(|h| !h.is_filled()) {
            return Err(marshal("reference to an instance that was never sent"));
        }
        if has_cycle(&self.classes.edges_10) {
            return Err(DecodeError::CyclicGraph);
        }
        Ok(())
    }

    fn read_pending_instance(&mut self) -> Result<(), DecodeError> {
        let id = self.read_i32()?;
        if id <= 0 {
            return Err(marshal("invalid instance id"));
        }
        let handle = self.handle_10(id)?;
        if handle.is_filled() {
            return Err(marshal("instance sent twice"));
        }
        let outer = self.classes.current_10.replace(id);
        let body = self.in_frame(SliceKind::Value, Self::read_instance_body);
        self.classes.current_10 = outer;
        let (value, slices) = body?;
        handle.fill(value, slices);
        Ok(())
    }

    /// Reads a user exception (reply status 1): the most-derived type that has a factory,
    /// after skipping the slices of unknown ones. None known gives
    /// [`DecodeError::UnknownUserException`] with the most-derived type id.
    pub fn read_exception(&mut self) -> Result<Box<dyn UserException>, DecodeError> {
        let uses_classes = self.encoding() == Encoding::V1_0 && self.read_bool()?;
        let exception = self.in_frame(SliceKind::Exception, Self::read_exception_body)?;
        if uses_classes {
            self.read_pending_values()?;
        }
        Ok(exception)
    }

    fn read_exception_body(&mut self) -> Result<Box<dyn UserException>, DecodeError> {
        let lookups = self.lookups();
        let v10 = self.encoding() == Encoding::V1_0;
        self.start_exception_slice()?;
        let (most_derived, _, _) = self.current_slice_facts()?;
        let most_derived = most_derived.map(|id| id.to_string()).unwrap_or_default();
        let unknown = || DecodeError::UnknownUserException(most_derived.clone());
        loop {
            let (type_id, has_size, is_last) = self.current_slice_facts()?;
            let type_id = type_id.unwrap_or_else(|| Arc::from(""));
            if let Some(factory) = (lookups.exception)(&type_id) {
                let exception = factory(self)?;
                if !v10 {
                    self.skip_remaining_slices()?;
                }
                return Ok(exception);
            }
            if !has_size {
                return Err(unknown());
            }
            self.skip_slice(false)?;
            if is_last || (v10 && self.is_at_end()) {
                return Err(unknown());
            }
            self.start_exception_slice().map_err(|_| unknown())?;
        }
    }
}

/// Whether the directed graph given by `edges` has a cycle. Iterative, because the graph
/// comes from the peer and may be a chain of any length.
fn has_cycle(edges: &[(i32, i32)]) -> bool {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Colour {
        OnPath,
        Done,
    }
    let mut next: HashMap<i32, Vec<i32>> = HashMap::new();
    for &(from, to) in edges {
        next.entry(from).or_default().push(to);
    }
    let mut colour: HashMap<i32, Colour> = HashMap::new();
    for &start in next.keys() {
        if colour.contains_key(&start) {
            continue;
        }
        colour.insert(start, Colour::OnPath);
        // (node, how many of its edges have been followed)
        let mut path = vec![(start, 0usize)];
        while let Some((node, followed)) = path.last_mut() {
            let Some(&to) = next.get(node).and_then(|out| out.get(*followed)) else {
                colour.insert(*node, Colour::Done);
                path.pop();
                continue;
            };
            *followed += 1;
            match colour.get(&to) {
                Some(Colour::OnPath) => return true,
                Some(Colour::Done) => {}
                None => {
                    colour.insert(to, Colour::OnPath);
                    path.push((to, 0));
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::test_types::*;
    use crate::encoding::{Decode, Encode, Format, OutputStream};

    const SPEC_1_0: &str = "70 00 00 00 01 00 | ff ff ff ff | 01 | 01 00 00 00
        00 0f ::Test::Derived 07 00 00 00 02 68 69
        00 0c ::Test::Base 0c 00 00 00 07 00 00 00 fe ff ff ff
        00 0d ::Ice::Object 05 00 00 00 00
        01 02 00 00 00 | 01 02 0c 00 00 00 08 00 00 00 ff ff ff ff | 01 03 05 00 00 00 00 | 00";
    const SPEC_COMPACT: &str = "3a 00 00 00 01 01 | 01 | 05 0f ::Test::Derived 02 68 69
        0a 2a 00 00 00 ff | 20 07 00 00 00 | 01 21 0c ::Test::Base 08 00 00 00 02";
    const SPEC_SLICED: &str = "4b 00 00 00 01 01 | 01 | 15 0f ::Test::Derived 0d 00 00 00
        02 68 69 0a 2a 00 00 00 ff | 39 0c ::Test::Base 09 00 00 00 07 00 00 00 01
        01 | 01 3a 02 09 00 00 00 08 00 00 00 01 | 01 02";

    fn encode_in_encaps(encoding: Encoding, format: Format, v: &ValueRef) -> Vec<u8> {
        let mut w = OutputStream::new(encoding);
        w.set_format(format);
        w.start_encapsulation(encoding);
        Some(v.clone()).encode(&mut w);
        w.write_pending_values();
        w.end_encapsulation();
        w.into_bytes()
    }

    fn decode_in_encaps(bytes: &[u8], f: Factories) -> Result<Option<ValueRef>, DecodeError> {
        let mut r = InputStream::new(bytes, Encoding::V1_1);
        r.set_factories(f);
        r.start_encapsulation()?;
        let v = Option::<ValueRef>::decode(&mut r)?;
        r.read_pending_values()?;
        r.end_encapsulation()?;
        Ok(v)
    }

    fn check_spec_graph(v: &ValueRef, o: Option<i32>) {
        let d = v.get::<Derived>().unwrap();
        assert_eq!((d.s.as_str(), d.o, d.base.i), ("hi", o, 7));
        let second = d.base.next.as_ref().unwrap();
        assert_eq!(second.ice_id(), "::Test::Base");
        let b = second.get::<Base>().unwrap();
        assert_eq!(b.i, 8);
        assert!(ValueRef::ptr_eq(b.next.as_ref().unwrap(), v));
        assert_eq!(v.get::<Base>().unwrap().i, 7);
    }

    #[test]
    fn spec_1_0_graph_decodes_and_encodes() {
        let wire = bytes(SPEC_1_0);
        let v = decode_in_encaps(&wire, factories()).unwrap().unwrap();
        check_spec_graph(&v, None);
        let out = encode_in_encaps(Encoding::V1_0, Format::Compact, &spec_graph(Some(42)));
        assert_eq!(out, wire);
    }

    #[test]
    fn spec_1_1_compact_graph_decodes_and_encodes() {
        let wire = bytes(SPEC_COMPACT);
        let v = decode_in_encaps(&wire, factories()).unwrap().unwrap();
        check_spec_graph(&v, Some(42));
        let out = encode_in_encaps(Encoding::V1_1, Format::Compact, &spec_graph(Some(42)));
        assert_eq!(out, wire);
    }

    #[test]
    fn spec_1_1_sliced_graph_decodes_and_encodes() {
        let wire = bytes(SPEC_SLICED);
        let v = decode_in_encaps(&wire, factories()).unwrap().unwrap();
        check_spec_graph(&v, Some(42));
        let out = encode_in_encaps(Encoding::V1_1, Format::Sliced, &spec_graph(Some(42)));
        assert_eq!(out, wire);
    }

    #[test]
    fn sliced_unknown_derived_falls_back_to_base_and_is_preserved() {
        let wire = bytes(SPEC_SLICED);
        let v = decode_in_encaps(&wire, base_only()).unwrap().unwrap();
        assert_eq!(v.ice_id(), "::Test::Base");
        assert_eq!(v.get::<Base>().unwrap().i, 7);
        let kept = v.preserved_slices();
        assert_eq!(kept.len(), 1);
        assert_eq!(&*kept[0].type_id, "::Test::Derived");
        assert!(kept[0].has_optional_members);
        assert_eq!(kept[0].bytes, bytes("02 68 69 0a 2a 00 00 00"));
        // sent again in the sliced format, the unknown slice comes back unchanged
        assert_eq!(encode_in_encaps(Encoding::V1_1, Format::Sliced, &v), wire);
        // and a receiver that knows Derived sees the whole value
        let again = encode_in_encaps(Encoding::V1_1, Format::Sliced, &v);
        let full = decode_in_encaps(&again, factories()).unwrap().unwrap();
        check_spec_graph(&full, Some(42));
    }

    #[test]
    fn sliced_value_of_no_known_type_is_kept_whole() {
        let wire = bytes(SPEC_SLICED);
        let v = decode_in_encaps(&wire, Factories::none()).unwrap().unwrap();
        assert_eq!(v.ice_id(), "::Test::Derived");
        assert_eq!(v.preserved_slices().len(), 2);
        assert_eq!(encode_in_encaps(Encoding::V1_1, Format::Sliced, &v), wire);
        // compact output keeps the slices too, because there is nothing else to send
        let compact = encode_in_encaps(Encoding::V1_1, Format::Compact, &v);
        let full = decode_in_encaps(&compact, factories()).unwrap().unwrap();
        check_spec_graph(&full, Some(42));
    }

    #[test]
    fn compact_unknown_most_derived_is_no_value_factory() {
        let wire = bytes(SPEC_COMPACT);
        assert_eq!(
            decode_in_encaps(&wire, base_only()),
            Err(DecodeError::NoValueFactory("::Test::Derived".into()))
        );
    }

    #[test]
    fn v1_0_unknown_types_slice_to_base_or_fail() {
        let wire = bytes(SPEC_1_0);
        let v = decode_in_encaps(&wire, base_only()).unwrap().unwrap();
        assert_eq!(v.get::<Base>().unwrap().i, 7);
        assert!(v.preserved_slices().is_empty());
        assert_eq!(
            decode_in_encaps(&wire, Factories::none()),
            Err(DecodeError::NoValueFactory("::Test::Derived".into()))
        );
    }

    #[test]
    fn compact_id_is_written_and_read() {
        let v = ValueRef::new(Compact { v: 5 });
        for (format, wire) in [
            (Format::Compact, "0d 00 00 00 01 01 | 01 23 07 05 00 00 00"),
            (
                Format::Sliced,
                "11 00 00 00 01 01 | 01 33 07 08 00 00 00 05 00 00 00",
            ),
        ] {
            let out = encode_in_encaps(Encoding::V1_1, format, &v);
            assert_eq!(out, bytes(wire));
            let back = decode_in_encaps(&out, factories()).unwrap().unwrap();
            assert_eq!(back.get::<Compact>().unwrap().v, 5);
            // an unknown compact id in the sliced format is skipped and kept
            if format == Format::Sliced {
                let kept = decode_in_encaps(&out, Factories::none()).unwrap().unwrap();
                assert_eq!(kept.ice_id(), "7");
                assert_eq!(kept.preserved_slices()[0].compact_id, Some(7));
                assert_eq!(encode_in_encaps(Encoding::V1_1, format, &kept), out);
            }
        }
    }

    #[test]
    fn null_references() {
        for (encoding, wire) in [(Encoding::V1_0, "00 00 00 00"), (Encoding::V1_1, "00")] {
            let mut w = OutputStream::new(encoding);
            None::<ValueRef>.encode(&mut w);
            assert_eq!(w.as_slice(), bytes(wire));
            let mut r = InputStream::new(w.as_slice(), encoding);
            assert_eq!(Option::<ValueRef>::decode(&mut r).unwrap(), None);
        }
    }

    #[test]
    fn v1_0_reference_never_sent_is_an_error() {
        // reference to instance 1, then an empty pending list
        let mut r = InputStream::new(&[0xff, 0xff, 0xff, 0xff, 0x00], Encoding::V1_0);
        r.read_value().unwrap();
        assert!(r.read_pending_values().is_err());
    }

    #[test]
    fn v1_0_later_batches_patch_earlier_references() {
        // two separate references, to 1 and 2; the batch holds 2 first then 1
        let wire = bytes(
            "ff ff ff ff fe ff ff ff 02
             02 00 00 00 00 0c ::Test::Base 0c 00 00 00 02 00 00 00 00 00 00 00
               00 0d ::Ice::Object 05 00 00 00 00
             01 00 00 00 01 01 0c 00 00 00 01 00 00 00 fe ff ff ff 01 02 05 00 00 00 00
             00",
        );
        let mut r = InputStream::new(&wire, Encoding::V1_0);
        r.set_factories(factories());
        let a = r.read_value().unwrap().unwrap();
        let b = r.read_value().unwrap().unwrap();
        assert!(a.value().is_none());
        r.read_pending_values().unwrap();
        assert!(r.is_at_end());
        assert_eq!(a.get::<Base>().unwrap().i, 1);
        assert_eq!(b.get::<Base>().unwrap().i, 2);
        assert!(ValueRef::ptr_eq(
            a.get::<Base>().unwrap().next.as_ref().unwrap(),
            &b
        ));
    }

    #[test]
    fn self_cycle_round_trips_in_every_format() {
        let v = ValueRef::empty();
        v.fill_with(Base {
            i: 3,
            next: Some(v.clone()),
        });
        for (encoding, format) in [
            (Encoding::V1_0, Format::Compact),
            (Encoding::V1_1, Format::Compact),
            (Encoding::V1_1, Format::Sliced),
        ] {
            let out = encode_in_encaps(encoding, format, &v);
            let back = decode_in_encaps(&out, factories()).unwrap().unwrap();
            let b = back.get::<Base>().unwrap();
            assert!(ValueRef::ptr_eq(b.next.as_ref().unwrap(), &back));
            assert_eq!(back, v);
            let _ = format!("{back:?}");
        }
    }

    #[test]
    fn shared_instance_is_written_once() {
        let shared = ValueRef::new(Base { i: 1, next: None });
        let mut w = OutputStream::new(Encoding::V1_1);
        Some(shared.clone()).encode(&mut w);
        Some(shared.clone()).encode(&mut w);
        assert_eq!(
            w.as_slice(),
            bytes("01 21 0c ::Test::Base 01 00 00 00 00 | 02")
        );
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        r.set_factories(factories());
        let a = r.read_value().unwrap().unwrap();
        let b = r.read_value().unwrap().unwrap();
        assert!(ValueRef::ptr_eq(&a, &b));
    }

    #[test]
    fn deep_nesting_hits_the_depth_limit_not_the_stack() {
        // Base{next: Base{next: ...}} 10,000 levels deep, compact
        let mut wire = Vec::new();
        wire.extend(bytes("01 21 0c ::Test::Base 00 00 00 00"));
        for _ in 0..10_000 {
            wire.extend(bytes("01 22 01 00 00 00 00"));
        }
        let mut r = InputStream::new(&wire, Encoding::V1_1);
        r.set_factories(factories());
        assert_eq!(r.read_value().unwrap_err(), DecodeError::TooDeep(100));
    }

    #[test]
    fn references_to_unseen_ids_and_bad_indexes_are_errors() {
        for wire in [
            "05",
            "01 22 09",
            "01 38 0c ::Test::Base 08 00 00 00 00 00 00 00 00",
        ] {
            let data = bytes(wire);
            let mut r = InputStream::new(&data, Encoding::V1_1);
            r.set_factories(factories());
            assert!(r.read_value().is_err(), "{wire}");
        }
    }

    fn exception_bytes(encoding: Encoding, e: &dyn UserException) -> Vec<u8> {
        let mut w = OutputStream::new(encoding);
        w.start_encapsulation(encoding);
        w.write_exception(e);
        w.end_encapsulation();
        w.into_bytes()
    }

    fn read_exception_with(
        bytes: &[u8],
        f: Factories,
    ) -> Result<Box<dyn UserException>, DecodeError> {
        let mut r = InputStream::new(bytes, Encoding::V1_1);
        r.set_factories(f);
        r.start_encapsulation()?;
        let e = r.read_exception()?;
        r.end_encapsulation()?;
        Ok(e)
    }

    const EX_COMPACT: &str =
        "2d 00 00 00 01 01 | 00 11 ::Test::DerivedEx 05 00 00 00 | 20 0a ::Test::Ex 03 62 61 64";
    const EX_SLICED: &str = "35 00 00 00 01 01 | 10 11 ::Test::DerivedEx 08 00 00 00 05 00 00 00
        | 30 0a ::Test::Ex 08 00 00 00 03 62 61 64";
    const EX_1_0: &str = "34 00 00 00 01 00 | 00 | 11 ::Test::DerivedEx 08 00 00 00 05 00 00 00
        | 0a ::Test::Ex 08 00 00 00 03 62 61 64";

    fn spec_exception() -> DerivedEx {
        DerivedEx {
            base: Ex {
                reason: "bad".into(),
            },
            code: 5,
        }
    }

    #[test]
    fn spec_exceptions_decode_in_all_three_forms() {
        for wire in [EX_COMPACT, EX_SLICED, EX_1_0] {
            let e = read_exception_with(&bytes(wire), factories()).unwrap();
            assert_eq!(e.ice_id(), "::Test::DerivedEx");
            let d = e.find("::Test::DerivedEx").unwrap();
            assert_eq!(d.downcast_ref::<DerivedEx>(), Some(&spec_exception()));
        }
    }

    #[test]
    fn spec_exceptions_encode_sliced_and_1_0() {
        let e = spec_exception();
        assert_eq!(exception_bytes(Encoding::V1_1, &e), bytes(EX_SLICED));
        assert_eq!(exception_bytes(Encoding::V1_0, &e), bytes(EX_1_0));
    }

    #[test]
    fn unknown_exception_falls_back_to_known_base() {
        for wire in [EX_SLICED, EX_1_0] {
            let e = read_exception_with(&bytes(wire), base_only()).unwrap();
            assert_eq!(e.ice_id(), "::Test::Ex");
        }
        // compact cannot be sliced
        assert_eq!(
            read_exception_with(&bytes(EX_COMPACT), base_only()).unwrap_err(),
            DecodeError::UnknownUserException("::Test::DerivedEx".into())
        );
        for wire in [EX_SLICED, EX_1_0, EX_COMPACT] {
            assert_eq!(
                read_exception_with(&bytes(wire), Factories::none()).unwrap_err(),
                DecodeError::UnknownUserException("::Test::DerivedEx".into())
            );
        }
    }

    #[test]
    fn glacier2_permission_denied_reply_is_unknown_without_its_type() {
        let wire = bytes(
            "40 00 00 00 01 01 | 30 | 25 ::Glacier2::PermissionDeniedException | 13 00 00 00
             | 0e \"wrong password\"",
        );
        assert_eq!(
            read_exception_with(&wire, factories()).unwrap_err(),
            DecodeError::UnknownUserException("::Glacier2::PermissionDeniedException".into())
        );
    }

    #[test]
    fn exception_with_class_member_round_trips() {
        let e = ClassEx {
            base: Ex { reason: "r".into() },
            b: Some(spec_graph(Some(1))),
            note: Some("n".into()),
        };
        for encoding in [Encoding::V1_0, Encoding::V1_1] {
            let wire = exception_bytes(encoding, &e);
            let back = read_exception_with(&wire, factories()).unwrap();
            let back = back.find("::Test::ClassEx").unwrap();
            let back = back.downcast_ref::<ClassEx>().unwrap();
            check_spec_graph(
                back.b.as_ref().unwrap(),
                (encoding == Encoding::V1_1).then_some(1),
            );
            let note = (encoding == Encoding::V1_1).then(|| "n".to_string());
            assert_eq!(back.note, note);
            // and the base alone, slicing off the class member slice
            let base = read_exception_with(&wire, base_only()).unwrap();
            assert_eq!(base.ice_id(), "::Test::Ex");
        }
    }

    #[test]
    fn exception_written_in_1_1_is_sliced_even_in_compact_streams() {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.set_format(Format::Compact);
        w.write_exception(&Ex { reason: "x".into() });
        assert_eq!(w.as_slice(), bytes("30 0a ::Test::Ex 06 00 00 00 01 78"));
        assert_eq!(w.format(), Format::Compact);
    }

    #[test]
    fn unknown_optional_members_in_a_slice_are_skipped_to_the_end_marker() {
        // Derived slice with o (tag 1) and a newer peer's tag 5 (F4) and tag 40 (VSize)
        let wire = bytes(
            "01 05 0f ::Test::Derived 02 68 69 0a 2a 00 00 00 2a 05 00 00 00 f5 28 02 61 62 ff
             20 07 00 00 00 00",
        );
        let mut r = InputStream::new(&wire, Encoding::V1_1);
        r.set_factories(factories());
        let v = r.read_value().unwrap().unwrap();
        assert!(r.is_at_end());
        let d = v.get::<Derived>().unwrap();
        assert_eq!((d.o, d.base.i, d.base.next.is_none()), (Some(42), 7, true));
    }

    #[test]
    fn optionals_absent_when_the_slice_flag_is_clear() {
        // no optional-members flag: the next bytes are the base slice, not a tag
        let wire = bytes("01 01 0f ::Test::Derived 02 68 69 20 07 00 00 00 00");
        let mut r = InputStream::new(&wire, Encoding::V1_1);
        r.set_factories(factories());
        let v = r.read_value().unwrap().unwrap();
        assert_eq!(v.get::<Derived>().unwrap().o, None);
        // and the writer sets no flag and no marker when no optional is present
        let mut w = OutputStream::new(Encoding::V1_1);
        Some(v).encode(&mut w);
        assert_eq!(w.as_slice(), wire.as_slice());
    }

    #[test]
    fn preserved_slices_are_dropped_in_the_compact_format() {
        let v = decode_in_encaps(&bytes(SPEC_SLICED), base_only())
            .unwrap()
            .unwrap();
        let compact = encode_in_encaps(Encoding::V1_1, Format::Compact, &v);
        let back = decode_in_encaps(&compact, factories()).unwrap().unwrap();
        assert_eq!(back.ice_id(), "::Test::Base");
        assert!(back.preserved_slices().is_empty());
    }

    #[test]
    fn long_chain_sent_as_a_sequence_decodes_and_drops_on_a_small_stack() {
        let mut values = Vec::new();
        let mut prev = None;
        for i in 0..100_000 {
            let v = ValueRef::new(Base { i, next: prev });
            values.push(Some(v.clone()));
            prev = Some(v);
        }
        drop(prev);
        let mut w = OutputStream::new(Encoding::V1_1);
        values.encode(&mut w);
        drop(values);
        let wire = w.into_bytes();
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut r = InputStream::new(&wire, Encoding::V1_1);
                r.set_factories(factories());
                let back = Vec::<Option<ValueRef>>::decode(&mut r).unwrap();
                assert_eq!(back.len(), 100_000);
                let last = back.last().unwrap().as_ref().unwrap().clone();
                drop(back);
                drop(r);
                assert_eq!(last.get::<Base>().unwrap().i, 99_999);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// Nodes: (is_derived, i, next index). Builds the graph, all nodes in one sequence.
    fn build_graph(nodes: &[(bool, i32, Option<usize>)]) -> Vec<Option<ValueRef>> {
        let handles: Vec<ValueRef> = nodes.iter().map(|_| ValueRef::empty()).collect();
        for (h, (derived, i, next)) in handles.iter().zip(nodes) {
            let base = Base {
                i: *i,
                next: next.map(|n| handles[n % handles.len()].clone()),
            };
            if *derived {
                h.fill_with(Derived {
                    base,
                    s: i.to_string(),
                    o: Some(*i),
                });
            } else {
                h.fill_with(base);
            }
        }
        handles.into_iter().map(Some).collect()
    }

    /// The graph's shape: per node its type, i, and the index of `next`.
    fn shape(values: &[Option<ValueRef>]) -> Vec<(String, i32, Option<usize>)> {
        let index_of = |v: &ValueRef| {
            values
                .iter()
                .position(|w| w.as_ref().is_some_and(|w| ValueRef::ptr_eq(v, w)))
        };
        values
            .iter()
            .map(|v| {
                let v = v.as_ref().unwrap();
                let b = v.get::<Base>().unwrap();
                (
                    v.ice_id().to_owned(),
                    b.i,
                    b.next.as_ref().and_then(&index_of),
                )
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn random_graphs_round_trip_in_every_format(
            nodes in proptest::collection::vec(
                (proptest::bool::ANY, proptest::num::i32::ANY, proptest::option::of(0usize..64)),
                1..12,
            )
        ) {
            let values = build_graph(&nodes);
            for (encoding, format) in [
                (Encoding::V1_0, Format::Compact),
                (Encoding::V1_1, Format::Compact),
                (Encoding::V1_1, Format::Sliced),
            ] {
                let mut w = OutputStream::new(encoding);
                w.set_format(format);
                values.encode(&mut w);
                w.write_pending_values();
                let mut r = InputStream::new(w.as_slice(), encoding);
                r.set_factories(factories());
                let back = Vec::<Option<ValueRef>>::decode(&mut r).unwrap();
                r.read_pending_values().unwrap();
                proptest::prop_assert!(r.is_at_end());
                proptest::prop_assert_eq!(shape(&back), shape(&values));
            }
        }

        #[test]
        fn random_bytes_never_panic_as_classes_or_exceptions(data: Vec<u8>, v11: bool) {
            let encoding = if v11 { Encoding::V1_1 } else { Encoding::V1_0 };
            let mut r = InputStream::new(&data, encoding);
            r.set_factories(factories());
            if r.read_value().is_ok() {
                let _ = r.read_pending_values();
            }
            let mut r = InputStream::new(&data, encoding);
            r.set_factories(factories());
            let _ = r.read_exception();
        }

        #[test]
        fn mutated_spec_vectors_never_panic(
            which in 0usize..6,
            flips in proptest::collection::vec((0usize..200, proptest::num::u8::ANY), 1..4),
        ) {
            let sources = [SPEC_1_0, SPEC_COMPACT, SPEC_SLICED, EX_1_0, EX_COMPACT, EX_SLICED];
            let mut wire = bytes(sources[which]);
            for (at, v) in flips {
                let n = wire.len();
                wire[at % n] = v;
            }
            let mut r = InputStream::new(&wire, Encoding::V1_1);
            r.set_factories(factories());
            if r.start_encapsulation().is_ok() {
                if which < 3 {
                    if r.read_value().is_ok() {
                        let _ = r.read_pending_values();
                    }
                } else {
                    let _ = r.read_exception();
                }
            }
        }
    }

    mod cycles {
        use super::*;
        use crate::encoding::ClassType;
        use std::any::Any;

        const FORMATS: [(Encoding, Format); 3] = [
            (Encoding::V1_0, Format::Compact),
            (Encoding::V1_1, Format::Compact),
            (Encoding::V1_1, Format::Sliced),
        ];

        /// `class Pair { Pair a; Pair b; }`, for graphs with two edges per node.
        #[derive(Clone, Debug, PartialEq, Default)]
        struct Pair {
            a: Option<ValueRef>,
            b: Option<ValueRef>,
        }

        impl Value for Pair {
            fn ice_id(&self) -> &'static str {
                Self::ICE_ID
            }
            fn find(&self, type_id: &str) -> Option<&dyn Any> {
                (type_id == Self::ICE_ID).then_some(self as &dyn Any)
            }
            fn encode_slices(&self, w: &mut OutputStream) {
                w.start_slice(Self::ICE_ID, None, true);
                self.a.encode(w);
                self.b.encode(w);
                w.end_slice();
            }
            fn eq_value(&self, other: &dyn Value) -> bool {
                other.find(Self::ICE_ID).and_then(|o| o.downcast_ref()) == Some(self)
            }
            fn clone_value(&self) -> Box<dyn Value> {
                Box::new(self.clone())
            }
        }

        impl crate::encoding::ClassType for Pair {
            const ICE_ID: &'static str = "::Test::Pair";
            const COMPACT_ID: Option<i32> = None;
            fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
                let a = Option::<ValueRef>::decode(r)?;
                let b = Option::<ValueRef>::decode(r)?;
                r.end_slice()?;
                Ok(Pair { a, b })
            }
        }

        fn with_pair() -> Factories {
            Factories {
                value: |id| {
                    if id == "::Test::Pair" {
                        Some(|r| Ok(Box::new(Pair::decode_slices(r)?)))
                    } else {
                        value_lookup(id)
                    }
                },
                ..factories()
            }
        }

        fn encode_all(encoding: Encoding, format: Format, values: &[Option<ValueRef>]) -> Vec<u8> {
            let mut w = OutputStream::new(encoding);
            w.set_format(format);
            values.to_vec().encode(&mut w);
            w.write_pending_values();
            w.into_bytes()
        }

        fn decode_all(
            wire: &[u8],
            encoding: Encoding,
            refuse: bool,
        ) -> Result<Vec<Option<ValueRef>>, DecodeError> {
            let mut r = InputStream::new(wire, encoding);
            r.set_factories(with_pair());
            if refuse {
                r.refuse_cycles();
            }
            let back = Vec::<Option<ValueRef>>::decode(&mut r)?;
            r.read_pending_values()?;
            assert!(r.is_at_end());
            Ok(back)
        }

        fn decode_refusing(bytes: &[u8], f: Factories) -> Result<Option<ValueRef>, DecodeError> {
            let mut r = InputStream::new(bytes, Encoding::V1_1);
            r.set_factories(f);
            r.refuse_cycles();
            r.start_encapsulation()?;
            let v = Option::<ValueRef>::decode(&mut r)?;
            r.read_pending_values()?;
            r.end_encapsulation()?;
            Ok(v)
        }

        fn pair(a: Option<&ValueRef>, b: Option<&ValueRef>) -> ValueRef {
            ValueRef::new(Pair {
                a: a.cloned(),
                b: b.cloned(),
            })
        }

        #[test]
        fn spec_cyclic_graphs_are_refused_in_all_three_forms() {
            for wire in [SPEC_1_0, SPEC_COMPACT, SPEC_SLICED] {
                let wire = bytes(wire);
                assert_eq!(
                    decode_refusing(&wire, factories()),
                    Err(DecodeError::CyclicGraph)
                );
                // accepted by default
                assert!(decode_in_encaps(&wire, factories()).unwrap().is_some());
            }
            // the cycle runs through preserved unknown slices' indirection tables
            for f in [base_only(), Factories::none()] {
                assert_eq!(
                    decode_refusing(&bytes(SPEC_SLICED), f),
                    Err(DecodeError::CyclicGraph)
                );
            }
        }

        #[test]
        fn error_text_names_the_refusal() {
            assert_eq!(
                DecodeError::CyclicGraph.to_string(),
                "MarshalException: cyclic class graphs are not accepted by this server"
            );
        }

        #[test]
        fn self_reference_is_refused() {
            let v = ValueRef::empty();
            v.fill_with(Base {
                i: 1,
                next: Some(v.clone()),
            });
            for (encoding, format) in FORMATS {
                let wire = encode_in_encaps(encoding, format, &v);
                assert_eq!(
                    decode_refusing(&wire, factories()),
                    Err(DecodeError::CyclicGraph)
                );
                assert!(decode_in_encaps(&wire, factories()).is_ok());
            }
        }

        #[test]
        fn cycle_reached_through_a_pair_is_refused() {
            // root → (null, x), x → (y, null), y → (null, x)
            let x = ValueRef::empty();
            let y = pair(None, Some(&x));
            x.fill_with(Pair {
                a: Some(y),
                b: None,
            });
            let root = pair(None, Some(&x));
            for (encoding, format) in FORMATS {
                let wire = encode_all(encoding, format, &[Some(root.clone())]);
                assert_eq!(
                    decode_all(&wire, encoding, true).unwrap_err(),
                    DecodeError::CyclicGraph
                );
                assert!(decode_all(&wire, encoding, false).is_ok());
            }
        }

        #[test]
        fn diamond_and_repeated_references_are_accepted() {
            let d = pair(None, None);
            let b = pair(Some(&d), None);
            let c = pair(None, Some(&d));
            let a = pair(Some(&b), Some(&c));
            let e = pair(Some(&d), Some(&d));
            let values = [Some(a.clone()), Some(a), Some(d), Some(e), Some(c)];
            for (encoding, format) in FORMATS {
                let wire = encode_all(encoding, format, &values);
                let back = decode_all(&wire, encoding, true).unwrap();
                let get = |v: &ValueRef| v.get::<Pair>().unwrap().clone();
                let a = back[0].as_ref().unwrap();
                assert!(ValueRef::ptr_eq(a, back[1].as_ref().unwrap()));
                let (b, c) = (get(a).a.unwrap(), get(a).b.unwrap());
                let d = back[2].as_ref().unwrap();
                assert!(ValueRef::ptr_eq(get(&b).a.as_ref().unwrap(), d));
                assert!(ValueRef::ptr_eq(get(&c).b.as_ref().unwrap(), d));
                let e = get(back[3].as_ref().unwrap());
                assert!(ValueRef::ptr_eq(e.a.as_ref().unwrap(), d));
                assert!(ValueRef::ptr_eq(e.b.as_ref().unwrap(), d));
                assert!(ValueRef::ptr_eq(back[4].as_ref().unwrap(), &c));
            }
        }

        #[test]
        fn long_acyclic_chain_is_accepted_on_a_small_stack() {
            // each element points at the previous one; in 1.0 the cycle search walks the
            // whole chain of 100,000 references
            let mut values = Vec::new();
            let mut prev = None;
            for i in 0..100_000 {
                let v = ValueRef::new(Base { i, next: prev });
                values.push(Some(v.clone()));
                prev = Some(v);
            }
            drop(prev);
            let wires: Vec<_> = FORMATS
                .iter()
                .map(|&(e, f)| (e, encode_all(e, f, &values)))
                .collect();
            drop(values);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    for (encoding, wire) in wires {
                        let back = decode_all(&wire, encoding, true).unwrap();
                        assert_eq!(back.len(), 100_000);
                    }
                })
                .unwrap()
                .join()
                .unwrap();
        }

        #[test]
        fn long_cycle_is_refused_in_1_0_on_a_small_stack() {
            let n = 50_000;
            let handles: Vec<ValueRef> = (0..n).map(|_| ValueRef::empty()).collect();
            for (i, h) in handles.iter().enumerate() {
                h.fill_with(Base {
                    i: i as i32,
                    next: Some(handles[(i + 1) % n].clone()),
                });
            }
            let values: Vec<_> = handles.iter().cloned().map(Some).collect();
            let wire = encode_all(Encoding::V1_0, Format::Compact, &values);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    assert_eq!(
                        decode_all(&wire, Encoding::V1_0, true).unwrap_err(),
                        DecodeError::CyclicGraph
                    );
                })
                .unwrap()
                .join()
                .unwrap();
        }

        #[test]
        fn exception_with_a_cyclic_class_member_is_refused() {
            let e = ClassEx {
                base: Ex { reason: "r".into() },
                b: Some(spec_graph(Some(1))),
                note: None,
            };
            for encoding in [Encoding::V1_0, Encoding::V1_1] {
                let wire = exception_bytes(encoding, &e);
                let mut r = InputStream::new(&wire, Encoding::V1_1);
                r.set_factories(factories());
                r.refuse_cycles();
                r.start_encapsulation().unwrap();
                assert_eq!(r.read_exception().unwrap_err(), DecodeError::CyclicGraph);
            }
        }

        #[test]
        fn a_decoded_value_is_charged_its_size() {
            let wire = encode_all(Encoding::V1_1, Format::Compact, &[Some(pair(None, None))]);
            // the sequence slot, the handle, the type id string and its table entry, and
            // the value itself
            let needed = std::mem::size_of::<Option<ValueRef>>()
                + HANDLE_COST
                + "::Test::Pair".len()
                + std::mem::size_of::<Arc<str>>()
                + std::mem::size_of::<Pair>();
            for (budget, fits) in [(needed, true), (needed - 1, false)] {
                let limits = crate::encoding::DecodeLimits {
                    budget_per_byte: 0,
                    budget_base: budget,
                    ..Default::default()
                };
                let mut r = InputStream::with_limits(&wire, Encoding::V1_1, limits);
                r.set_factories(with_pair());
                let result = Vec::<Option<ValueRef>>::decode(&mut r);
                assert_eq!(result.is_ok(), fits, "{budget}: {result:?}");
            }
        }

        #[test]
        fn has_cycle_finds_cycles_only() {
            assert!(!has_cycle(&[]));
            assert!(has_cycle(&[(1, 1)]));
            assert!(has_cycle(&[(1, 2), (2, 3), (3, 1)]));
            assert!(!has_cycle(&[(1, 2), (1, 3), (2, 4), (3, 4)]));
            assert!(!has_cycle(&[(1, 2), (1, 2), (3, 2)]));
            assert!(has_cycle(&[(5, 6), (1, 2), (2, 5), (6, 2)]));
        }
    }
}
