//! bzip2 compression of whole messages (spec §1.7).

use std::io::{Read, Write};

use bzip2::read::BzDecoder;
use bzip2::write::BzEncoder;
use bzip2::Compression;

use super::header::{checked_size, HEADER_SIZE};
use super::ProtocolError;

/// Ice compresses only messages of at least this many bytes.
pub const MIN_COMPRESS_SIZE: usize = 100;

/// Inflates the body of a status-2 message (everything after its header). The announced
/// uncompressed size is checked against `max_size` before anything is inflated, and the
/// output is never allowed to grow past it.
pub fn decompress_body(body: &[u8], max_size: usize) -> Result<Vec<u8>, ProtocolError> {
    let Some((size, stream)) = body.split_first_chunk::<4>() else {
        return Err(ProtocolError::Decompress(
            "missing uncompressed size".into(),
        ));
    };
    let total = checked_size(i32::from_le_bytes(*size), max_size)?;
    if total == HEADER_SIZE {
        return Err(ProtocolError::IllegalMessageSize(HEADER_SIZE as i32));
    }
    let expected = total - HEADER_SIZE;
    // The announced size is only a claim: start small and let the inflater grow the buffer.
    let mut out = Vec::with_capacity(expected.min(64 * 1024));
    BzDecoder::new(stream)
        .take(expected as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ProtocolError::Decompress(e.to_string()))?;
    if out.len() != expected {
        return Err(ProtocolError::Decompress(format!(
            "announced {expected} bytes, inflated to {}",
            if out.len() > expected {
                "more".to_string()
            } else {
                out.len().to_string()
            }
        )));
    }
    Ok(out)
}

/// Sets the compression byte of an outgoing reply the way Ice does: a peer whose request
/// said 0 gets 0; otherwise a reply of at least 100 bytes is compressed when that makes it
/// smaller, and anything else goes out plain with 1.
pub fn prepare_reply(mut frame: Vec<u8>, request_compression: u8, level: u32) -> Vec<u8> {
    if request_compression == 0 || frame.len() < HEADER_SIZE {
        return frame;
    }
    if frame.len() >= MIN_COMPRESS_SIZE {
        if let Some(compressed) = compress_frame(&frame, level) {
            return compressed;
        }
    }
    frame[9] = 1;
    frame
}

/// The compressed form of a complete message, if it is smaller.
pub fn compress_frame(frame: &[u8], level: u32) -> Option<Vec<u8>> {
    let (header, body) = frame.split_at_checked(HEADER_SIZE)?;
    let mut out = Vec::with_capacity(frame.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&i32::try_from(frame.len()).ok()?.to_le_bytes());
    let mut encoder = BzEncoder::new(out, Compression::new(level.clamp(1, 9)));
    encoder.write_all(body).ok()?;
    let mut out = encoder.finish().ok()?;
    if out.len() >= frame.len() {
        return None;
    }
    out[9] = 2;
    super::header::patch_size(&mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::header::parse_header;

    fn big_frame() -> Vec<u8> {
        let mut frame = Vec::new();
        super::super::header::write_header(&mut frame, super::super::MessageType::Reply, 0, 0);
        frame.extend_from_slice(&7i32.to_le_bytes());
        frame.push(0);
        frame.extend_from_slice(&[b'a'; 500]);
        super::super::header::patch_size(&mut frame);
        frame
    }

    #[test]
    fn compress_then_decompress() {
        let frame = big_frame();
        let c = compress_frame(&frame, 1).unwrap();
        let h = parse_header(c[..14].try_into().unwrap(), 1 << 20).unwrap();
        assert_eq!(h.compression, 2);
        assert_eq!(h.size, c.len());
        assert_eq!(&c[18..21], b"BZh");
        let body = decompress_body(&c[14..], 1 << 20).unwrap();
        assert_eq!(body, &frame[14..]);
    }

    #[test]
    fn reply_flags_mirror_the_request() {
        let frame = big_frame();
        assert_eq!(prepare_reply(frame.clone(), 0, 1), frame);
        assert_eq!(prepare_reply(frame.clone(), 1, 1)[9], 2);
        assert_eq!(prepare_reply(frame.clone(), 2, 1)[9], 2);
        let small = frame[..30].to_vec();
        let out = prepare_reply(small.clone(), 2, 1);
        assert_eq!(out[9], 1);
        assert_eq!(out[10..], small[10..]);
    }

    #[test]
    fn incompressible_reply_goes_out_plain() {
        let mut frame = big_frame();
        let mut x: u32 = 12345;
        for b in frame[19..].iter_mut() {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        assert_eq!(prepare_reply(frame, 1, 1)[9], 1);
    }

    #[test]
    fn oversized_or_lying_streams_are_refused() {
        let frame = big_frame();
        let c = compress_frame(&frame, 1).unwrap();
        assert!(matches!(
            decompress_body(&c[14..], 100),
            Err(ProtocolError::TooLarge { .. })
        ));
        let mut lie = c.clone();
        lie[14..18].copy_from_slice(&100i32.to_le_bytes());
        assert!(decompress_body(&lie[14..], 1 << 20).is_err());
        let mut lie = c.clone();
        lie[14..18].copy_from_slice(&10_000i32.to_le_bytes());
        assert!(decompress_body(&lie[14..], 1 << 20).is_err());
        assert!(decompress_body(&[1, 2], 1 << 20).is_err());
        assert!(decompress_body(&[100, 0, 0, 0, 1, 2, 3], 1 << 20).is_err());
    }
}
