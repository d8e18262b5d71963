use super::classes_in::ReadClasses;
use super::{DecodeError, Encoding, Factories};

/// Bounds that keep hostile input from exhausting the server.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Deepest nesting of classes, exceptions and encapsulations (Ice's ClassGraphDepthMax).
    pub max_depth: usize,
    /// Bytes that decoding may allocate per input byte, plus `budget_base`.
    pub budget_per_byte: usize,
    pub budget_base: usize,
    /// Class instances one encapsulation may hold (both encodings).
    pub max_instances: usize,
    /// Slices one instance or exception may have; a Slice hierarchy is a handful deep.
    pub max_slices: usize,
    /// Bytes in one type id; real ids are a few dozen.
    pub max_type_id_len: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_depth: 100,
            budget_per_byte: 64,
            budget_base: 64 * 1024,
            max_instances: 100_000,
            max_slices: 100,
            max_type_id_len: 1024,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Encaps {
    end: usize,
    encoding: Encoding,
}

/// Reads Ice-encoded values from a byte slice. It never panics on any input: every read
/// checks the bytes that remain in the current encapsulation.
#[derive(Debug)]
pub struct InputStream<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    /// The innermost open encapsulation; the whole input behaves as one at the bottom.
    current: Encaps,
    outer: Vec<Encaps>,
    limits: DecodeLimits,
    budget: usize,
    depth: usize,
    /// Class and type-id state of the current encapsulation; each nested encapsulation
    /// starts afresh and the outer state is saved here.
    pub(super) classes: ReadClasses,
    pub(super) saved_classes: Vec<ReadClasses>,
    /// Lookups for this stream only; the process-wide registry when `None`.
    pub(super) factories: Factories,
    /// Whether a cyclic class graph is an error (see [`refuse_cycles`](Self::refuse_cycles)).
    pub(super) refuse_cycles: bool,
}

impl<'a> InputStream<'a> {
    pub fn new(data: &'a [u8], encoding: Encoding) -> Self {
        Self::with_limits(data, encoding, DecodeLimits::default())
    }

    pub fn with_limits(data: &'a [u8], encoding: Encoding, limits: DecodeLimits) -> Self {
        let budget = limits
            .budget_base
            .saturating_add(data.len().saturating_mul(limits.budget_per_byte));
        InputStream {
            data,
            pos: 0,
            current: Encaps {
                end: data.len(),
                encoding,
            },
            outer: Vec::new(),
            limits,
            budget,
            depth: 0,
            classes: ReadClasses::default(),
            saved_classes: Vec::new(),
            factories: Factories::NONE,
            refuse_cycles: false,
        }
    }

    /// Makes a cyclic class graph a [`DecodeError::CyclicGraph`] instead of a value.
    ///
    /// Decoded instances are `Arc`s, so a cycle is never freed; a server that has no use
    /// for cycles calls this on request parameters so that a peer cannot leak memory by
    /// sending them again and again. Shared acyclic graphs are still accepted.
    pub fn refuse_cycles(&mut self) {
        self.refuse_cycles = true;
    }

    /// The classes and exceptions this stream can build (none until set: unknown types are
    /// sliced or refused as Ice does).
    pub fn set_factories(&mut self, factories: Factories) {
        self.factories = factories;
    }

    pub fn encoding(&self) -> Encoding {
        self.current.encoding
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left before the end of the current encapsulation.
    pub fn remaining(&self) -> usize {
        self.current.end.saturating_sub(self.pos)
    }

    pub fn is_at_end(&self) -> bool {
        self.remaining() == 0
    }

    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Charges `bytes` of allocation against the budget.
    pub fn charge(&mut self, bytes: usize) -> Result<(), DecodeError> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(DecodeError::AllocationBudget(
                self.limits
                    .budget_base
                    .saturating_add(self.data.len().saturating_mul(self.limits.budget_per_byte)),
            )),
        }
    }

    /// Enters one level of nesting (a class instance, an exception, a struct inside a class).
    pub fn enter(&mut self) -> Result<(), DecodeError> {
        if self.depth >= self.limits.max_depth {
            return Err(DecodeError::TooDeep(self.limits.max_depth));
        }
        self.depth += 1;
        Ok(())
    }

    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub fn read_bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::OutOfBounds {
                offset: self.pos,
                needed: n,
                remaining: self.remaining(),
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.read_bytes(n).map(|_| ())
    }

    /// Moves the read position to `pos`, which must lie within the current encapsulation.
    pub fn seek(&mut self, pos: usize) -> Result<(), DecodeError> {
        if pos > self.current.end {
            return Err(DecodeError::OutOfBounds {
                offset: self.pos,
                needed: pos.saturating_sub(self.pos),
                remaining: self.remaining(),
            });
        }
        self.pos = pos;
        Ok(())
    }

    /// The end of the current encapsulation.
    pub(super) fn encaps_end(&self) -> usize {
        self.current.end
    }

    /// An enum: in 1.0 a byte, short or int depending on the enum's largest enumerator,
    /// in 1.1 a size. Generated code maps the number to an enumerator.
    pub fn read_enum(&mut self, max_value: i32) -> Result<i32, DecodeError> {
        if self.encoding() == Encoding::V1_1 {
            let v = self.read_size()?;
            return i32::try_from(v).map_err(|_| DecodeError::InvalidEnumerator(i32::MAX));
        }
        if max_value < 127 {
            Ok(i32::from(self.read_u8()?))
        } else if max_value < 32767 {
            Ok(i32::from(self.read_i16()?))
        } else {
            self.read_i32()
        }
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.read_bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.read_array::<1>()?[0])
    }

    /// Ice writes 0 or 1; like ZeroC's runtime, any non-zero byte reads as true.
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.read_u8()? != 0)
    }

    pub fn read_i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_le_bytes(self.read_array()?))
    }

    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.read_array()?))
    }

    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.read_array()?))
    }

    pub fn read_f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.read_array()?))
    }

    pub fn read_f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.read_array()?))
    }

    /// An Ice size: one byte below 255, else 255 followed by a non-negative int.
    pub fn read_size(&mut self) -> Result<usize, DecodeError> {
        let first = self.read_u8()?;
        if first < 255 {
            return Ok(first as usize);
        }
        let v = self.read_i32()?;
        usize::try_from(v).map_err(|_| DecodeError::NegativeSize(v))
    }

    /// A sequence or dictionary count, refused when the remaining bytes cannot hold that many
    /// elements of at least `min_element_size` bytes each (ZeroC's readAndCheckSeqSize).
    pub fn read_count(&mut self, min_element_size: usize) -> Result<usize, DecodeError> {
        let count = self.read_size()?;
        let needed = count.saturating_mul(min_element_size.max(1));
        if needed > self.remaining() && min_element_size > 0 {
            return Err(DecodeError::CountTooLarge {
                count,
                remaining: self.remaining(),
            });
        }
        Ok(count)
    }

    pub fn read_string(&mut self) -> Result<String, DecodeError> {
        let len = self.read_size()?;
        let bytes = self.read_bytes(len)?;
        self.charge(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Reads an encapsulation header and makes it the current one until
    /// [`end_encapsulation`](Self::end_encapsulation). Returns its encoding.
    pub fn start_encapsulation(&mut self) -> Result<Encoding, DecodeError> {
        let (encoding, size) = self.read_encapsulation_header()?;
        self.enter()?;
        self.outer.push(self.current);
        self.current = Encaps {
            end: self.pos + size - 6,
            encoding,
        };
        self.saved_classes.push(std::mem::take(&mut self.classes));
        Ok(encoding)
    }

    /// Closes the current encapsulation after checking that it was read to its end. Encoding
    /// 1.0 tolerates exactly one trailing byte (a workaround ZeroC keeps for old peers).
    pub fn end_encapsulation(&mut self) -> Result<(), DecodeError> {
        let left = self.remaining();
        let tolerated = if self.current.encoding == Encoding::V1_0 {
            1
        } else {
            0
        };
        if left > tolerated {
            return Err(DecodeError::Encapsulation(format!(
                "{left} bytes left unread at the end of an encapsulation"
            )));
        }
        self.pos = self.current.end;
        let Some(outer) = self.outer.pop() else {
            return Err(DecodeError::Encapsulation(
                "end of an encapsulation that was never started".into(),
            ));
        };
        self.current = outer;
        self.classes = self.saved_classes.pop().unwrap_or_default();
        self.leave();
        Ok(())
    }

    /// Skips the rest of the current encapsulation and closes it; for a receiver that expects
    /// no (more) parameters in encoding 1.1, where later versions may append optionals.
    pub fn skip_rest_of_encapsulation(&mut self) -> Result<(), DecodeError> {
        self.pos = self.current.end;
        self.end_encapsulation()
    }

    /// Reads a whole encapsulation without decoding it: its encoding and its payload bytes
    /// (after the 6-byte header).
    pub fn read_encapsulation(&mut self) -> Result<(Encoding, &'a [u8]), DecodeError> {
        let (encoding, size) = self.read_encapsulation_header()?;
        let payload = self.read_bytes(size - 6)?;
        Ok((encoding, payload))
    }

    fn read_encapsulation_header(&mut self) -> Result<(Encoding, usize), DecodeError> {
        let size = self.read_i32()?;
        let size = usize::try_from(size).map_err(|_| DecodeError::NegativeSize(size))?;
        if size < 6 {
            return Err(DecodeError::Encapsulation(format!(
                "size {size} is smaller than its header"
            )));
        }
        if size - 4 > self.remaining() {
            return Err(DecodeError::OutOfBounds {
                offset: self.pos,
                needed: size - 4,
                remaining: self.remaining(),
            });
        }
        let major = self.read_u8()?;
        let minor = self.read_u8()?;
        Ok((Encoding::from_bytes(major, minor)?, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_one_and_five_bytes() {
        let mut r = InputStream::new(&[0x07, 0xff, 0x00, 0x01, 0x00, 0x00], Encoding::V1_1);
        assert_eq!(r.read_size().unwrap(), 7);
        assert_eq!(r.read_size().unwrap(), 256);
        assert!(r.is_at_end());
    }

    #[test]
    fn negative_size_is_refused() {
        let mut r = InputStream::new(&[0xff, 0xff, 0xff, 0xff, 0xff], Encoding::V1_1);
        assert_eq!(r.read_size(), Err(DecodeError::NegativeSize(-1)));
    }

    #[test]
    fn count_checked_against_remaining_bytes() {
        let mut r = InputStream::new(&[0xff, 0x00, 0x00, 0x00, 0x10, 1, 2], Encoding::V1_1);
        assert!(matches!(
            r.read_count(1),
            Err(DecodeError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_string_is_out_of_bounds() {
        let mut r = InputStream::new(&[0x05, b'a', b'b'], Encoding::V1_1);
        assert!(matches!(
            r.read_string(),
            Err(DecodeError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn encapsulation_bounds_reads() {
        // encaps of 7 bytes (1 payload byte) followed by one more byte outside it
        let bytes = [7, 0, 0, 0, 1, 1, 0x2a, 0x99];
        let mut r = InputStream::new(&bytes, Encoding::V1_0);
        assert_eq!(r.start_encapsulation().unwrap(), Encoding::V1_1);
        assert_eq!(r.read_u8().unwrap(), 0x2a);
        assert!(r.read_u8().is_err());
        r.end_encapsulation().unwrap();
        assert_eq!(r.encoding(), Encoding::V1_0);
        assert_eq!(r.read_u8().unwrap(), 0x99);
    }

    #[test]
    fn encapsulation_with_unread_bytes_is_an_error_in_1_1() {
        let bytes = [8, 0, 0, 0, 1, 1, 1, 2];
        let mut r = InputStream::new(&bytes, Encoding::V1_1);
        r.start_encapsulation().unwrap();
        assert!(r.end_encapsulation().is_err());
    }

    #[test]
    fn encapsulation_1_0_tolerates_one_trailing_byte() {
        let bytes = [7, 0, 0, 0, 1, 0, 1];
        let mut r = InputStream::new(&bytes, Encoding::V1_1);
        r.start_encapsulation().unwrap();
        r.end_encapsulation().unwrap();
    }

    #[test]
    fn budget_stops_allocation() {
        let limits = DecodeLimits {
            max_depth: 4,
            budget_per_byte: 0,
            budget_base: 3,
            ..DecodeLimits::default()
        };
        let mut r = InputStream::with_limits(&[4, b'a', b'b', b'c', b'd'], Encoding::V1_1, limits);
        assert!(matches!(
            r.read_string(),
            Err(DecodeError::AllocationBudget(_))
        ));
    }

    #[test]
    fn depth_is_bounded() {
        let limits = DecodeLimits {
            max_depth: 2,
            ..DecodeLimits::default()
        };
        let mut r = InputStream::with_limits(&[], Encoding::V1_1, limits);
        r.enter().unwrap();
        r.enter().unwrap();
        assert_eq!(r.enter(), Err(DecodeError::TooDeep(2)));
    }
}
