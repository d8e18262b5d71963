use super::classes_out::WriteClasses;
use super::{Encoding, Format};

/// Writes Ice-encoded values into a growing buffer.
#[derive(Debug, Clone)]
pub struct OutputStream {
    pub(super) buf: Vec<u8>,
    encoding: Encoding,
    /// Open encapsulations: where each one's size field starts, and the encoding outside it.
    open: Vec<(usize, Encoding)>,
    pub(super) format: Format,
    /// Class and type-id state of the current encapsulation; each nested encapsulation
    /// starts afresh and the outer state is saved here.
    pub(super) classes: WriteClasses,
    saved_classes: Vec<WriteClasses>,
}

impl OutputStream {
    pub fn new(encoding: Encoding) -> Self {
        OutputStream {
            buf: Vec::with_capacity(64),
            encoding,
            open: Vec::new(),
            format: Format::Compact,
            classes: WriteClasses::default(),
            saved_classes: Vec::new(),
        }
    }

    /// How class instances are written in encoding 1.1 (compact unless told otherwise).
    pub fn set_format(&mut self, format: Format) {
        self.format = format;
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// An enum: in 1.0 a byte, short or int depending on the enum's largest enumerator
    /// (`max_value`), in 1.1 a size.
    pub fn write_enum(&mut self, value: i32, max_value: i32) {
        if self.encoding == Encoding::V1_1 {
            self.write_size(usize::try_from(value).unwrap_or(0));
        } else if max_value < 127 {
            self.write_u8(value as u8);
        } else if max_value < 32767 {
            self.write_i16(value as i16);
        } else {
            self.write_i32(value);
        }
    }

    /// Starts a value whose byte count (an int) precedes it: optional FSize values.
    pub fn start_fsize(&mut self) -> usize {
        self.mark_size_start();
        let pos = self.buf.len();
        self.write_i32(0);
        pos
    }

    /// Patches the count started by [`start_fsize`](Self::start_fsize).
    pub fn end_fsize(&mut self, pos: usize) {
        self.mark_size_end();
        let size = self.buf.len().saturating_sub(pos + 4);
        self.patch_i32(pos, i32::try_from(size).unwrap_or(i32::MAX));
    }

    pub(super) fn patch_u8(&mut self, pos: usize, v: u8) {
        if let Some(slot) = self.buf.get_mut(pos) {
            *slot = v;
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn write_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn write_bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub fn write_i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn write_i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn write_i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn write_f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn write_f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Overwrites the four bytes at `pos` (a placeholder written earlier) with `v`.
    pub fn patch_i32(&mut self, pos: usize, v: i32) {
        if let Some(slot) = self.buf.get_mut(pos..pos + 4) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Sizes above `i32::MAX` cannot be expressed on the wire; callers never produce them
    /// because the message size limit is far lower, so they are clamped rather than wrapped.
    pub fn write_size(&mut self, n: usize) {
        if n < 255 {
            self.buf.push(n as u8);
        } else {
            self.buf.push(255);
            self.write_i32(i32::try_from(n).unwrap_or(i32::MAX));
        }
    }

    pub fn write_string(&mut self, s: &str) {
        self.write_size(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Opens an encapsulation in `encoding`; values written until
    /// [`end_encapsulation`](Self::end_encapsulation) use its rules.
    pub fn start_encapsulation(&mut self, encoding: Encoding) {
        self.open.push((self.buf.len(), self.encoding));
        self.saved_classes.push(std::mem::take(&mut self.classes));
        self.encoding = encoding;
        self.write_i32(0);
        let (major, minor) = encoding.to_bytes();
        self.buf.push(major);
        self.buf.push(minor);
    }

    pub fn end_encapsulation(&mut self) {
        if let Some((start, outer)) = self.open.pop() {
            let size = self.buf.len() - start;
            self.patch_i32(start, i32::try_from(size).unwrap_or(i32::MAX));
            self.encoding = outer;
            self.classes = self.saved_classes.pop().unwrap_or_default();
        }
    }

    /// Writes an already-encoded encapsulation payload with its header.
    pub fn write_encapsulation(&mut self, encoding: Encoding, payload: &[u8]) {
        self.write_i32(i32::try_from(payload.len() + 6).unwrap_or(i32::MAX));
        let (major, minor) = encoding.to_bytes();
        self.buf.push(major);
        self.buf.push(minor);
        self.buf.extend_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_size(254);
        w.write_size(255);
        assert_eq!(w.as_slice(), &[254, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn nested_encapsulations_patch_their_sizes() {
        let mut w = OutputStream::new(Encoding::V1_0);
        w.start_encapsulation(Encoding::V1_1);
        w.write_u8(1);
        w.start_encapsulation(Encoding::V1_0);
        w.end_encapsulation();
        assert_eq!(w.encoding(), Encoding::V1_1);
        w.end_encapsulation();
        assert_eq!(w.encoding(), Encoding::V1_0);
        assert_eq!(w.as_slice(), &[13, 0, 0, 0, 1, 1, 1, 6, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn spec_enum_with_max_200() {
        let mut w = OutputStream::new(Encoding::V1_0);
        w.write_enum(200, 200);
        assert_eq!(w.as_slice(), &[0xc8, 0x00]);
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_enum(200, 200);
        assert_eq!(w.as_slice(), &[0xc8]);
    }

    #[test]
    fn enum_widths_follow_the_largest_enumerator() {
        use crate::encoding::InputStream;
        let cases: [(i32, i32, Encoding, &[u8]); 7] = [
            (2, 126, Encoding::V1_0, &[2]),
            (2, 127, Encoding::V1_0, &[2, 0]),
            (2, 32766, Encoding::V1_0, &[2, 0]),
            (2, 32767, Encoding::V1_0, &[2, 0, 0, 0]),
            (70000, 70000, Encoding::V1_0, &[0x70, 0x11, 0x01, 0x00]),
            (
                70000,
                70000,
                Encoding::V1_1,
                &[0xff, 0x70, 0x11, 0x01, 0x00],
            ),
            (254, 300, Encoding::V1_1, &[0xfe]),
        ];
        for (value, max, encoding, wire) in cases {
            let mut w = OutputStream::new(encoding);
            w.write_enum(value, max);
            assert_eq!(w.as_slice(), wire, "{value} {max} {encoding}");
            let mut r = InputStream::new(wire, encoding);
            assert_eq!(r.read_enum(max).unwrap(), value);
            assert!(r.is_at_end());
        }
    }

    #[test]
    fn fsize_counts_the_bytes_after_it() {
        let mut w = OutputStream::new(Encoding::V1_1);
        let pos = w.start_fsize();
        w.write_string("ab");
        w.end_fsize(pos);
        assert_eq!(w.as_slice(), &[3, 0, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn empty_encapsulation() {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_encapsulation(Encoding::V1_1, &[]);
        assert_eq!(w.as_slice(), &[6, 0, 0, 0, 1, 1]);
    }
}
