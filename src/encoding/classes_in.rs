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

use std::collections::HashMap;

use super::value::{registered_factories, SliceInfo, UnknownValue};
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
    type_ids: Vec<String>,
    /// 1.1 instances by id; id 2 is at index 0.
    instances: Vec<ValueRef>,
    /// 1.0 instances by id, created empty at the first reference.
    ids_10: HashMap<i32, ValueRef>,
    frames: Vec<ReadFrame>,
}

#[derive(Debug)]
struct ReadFrame {
    kind: SliceKind,
    slice: Option<ReadSlice>,
    seen_last: bool,
}

#[derive(Debug)]
struct ReadSlice {
    flags: u8,
    type_id: Option<String>,
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
        self.factories.unwrap_or_else(registered_factories)
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
        self.handle_10(-n).map(Some)
    }

    fn handle_10(&mut self, id: i32) -> Result<ValueRef, DecodeError> {
        if let Some(handle) = self.classes.ids_10.get(&id) {
            return Ok(handle.clone());
        }
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
                Some(handle) => Ok(Some(handle.clone())),
                None => Err(marshal("reference to an instance id not yet seen")),
            },
        }
    }

    fn read_new_instance_11(&mut self) -> Result<ValueRef, DecodeError> {
        self.charge(HANDLE_COST)?;
        let handle = ValueRef::empty();
        self.classes.instances.push(handle.clone());
        let (value, slices) = self.in_frame(SliceKind::Value, Self::read_instance_body)?;
        handle.fill(value, slices);
        Ok(handle)
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
        let mut most_derived: Option<String> = None;
        self.start_slice()?;
        loop {
            let (type_id, has_size, is_last) = self.current_slice_facts()?;
            let Some(type_id) = type_id else {
                return Err(marshal("instance slice without a type id"));
            };
            let most_derived = most_derived.get_or_insert_with(|| type_id.clone());
            if v10 && type_id == OBJECT_ID {
                return Err(DecodeError::NoValueFactory(most_derived.clone()));
            }
            if let Some(factory) = (lookups.value)(&type_id) {
                let value = factory(self)?;
                self.finish_instance()?;
                return Ok((value, preserved));
            }
            if !has_size {
                return Err(DecodeError::NoValueFactory(most_derived.clone()));
            }
            let info = self.skip_slice()?;
            if !v10 {
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
                self.skip_slice()?;
            }
        }
        self.skip_remaining_slices()
    }

    fn skip_remaining_slices(&mut self) -> Result<(), DecodeError> {
        while !self.top_frame()?.seen_last {
            self.open_slice(self.top_frame()?.kind)?;
            self.skip_slice()?;
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

    fn current_slice_facts(&self) -> Result<(Option<String>, bool, bool), DecodeError> {
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
        self.top_frame()?;
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
            Some(self.read_string()?)
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
                        Some(type_id) => type_id.to_owned(),
                        None => id.to_string(),
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

    fn read_type_id_string(&mut self, register: bool) -> Result<String, DecodeError> {
        let type_id = self.read_string()?;
        if register {
            self.charge(type_id.len())?;
            self.classes.type_ids.push(type_id.clone());
        }
        Ok(type_id)
    }

    fn type_id_at(&self, index: usize) -> Result<String, DecodeError> {
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

    /// Steps over the open slice (its size must be known) and returns what it held.
    fn skip_slice(&mut self) -> Result<SliceInfo, DecodeError> {
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
        self.charge(bytes.len())?;
        let bytes = bytes.to_vec();
        self.seek(slice.table_end.max(end))?;
        Ok(SliceInfo {
            type_id: slice.type_id.unwrap_or_default(),
            compact_id: slice.compact_id,
            bytes,
            instances: slice.table.unwrap_or_default(),
            has_optional_members: has_optionals,
            is_last,
        })
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
        let (value, slices) = self.in_frame(SliceKind::Value, Self::read_instance_body)?;
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
        let most_derived = most_derived.unwrap_or_default();
        let unknown = || DecodeError::UnknownUserException(most_derived.clone());
        loop {
            let (type_id, has_size, is_last) = self.current_slice_facts()?;
            let type_id = type_id.unwrap_or_default();
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
            self.skip_slice()?;
            if is_last || (v10 && self.is_at_end()) {
                return Err(unknown());
            }
            self.start_exception_slice().map_err(|_| unknown())?;
        }
    }
}
