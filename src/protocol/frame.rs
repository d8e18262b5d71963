//! Cutting a byte stream into whole Ice messages: the header is checked first, then the
//! body is awaited. Pure, so the state machine and the tokio codec adapter share it.

use bytes::{Bytes, BytesMut};

use super::header::{parse_header, Header, HEADER_SIZE};
use super::{decompress_body, Message, ProtocolError};

/// The most buffer space reserved ahead of the bytes that have arrived.
const RESERVE_STEP: usize = 64 * 1024;

/// A complete inbound message and the compression byte it arrived with (a reply to it
/// mirrors that byte).
#[derive(Debug)]
pub struct Inbound {
    pub compression: u8,
    pub message: Message,
}

/// Decodes whole messages, checking the header before waiting for the body.
#[derive(Debug)]
pub struct FrameDecoder {
    max_message_size: usize,
    pending: Option<Header>,
}

impl FrameDecoder {
    pub fn new(max_message_size: usize) -> Self {
        FrameDecoder {
            max_message_size: max_message_size.max(HEADER_SIZE),
            pending: None,
        }
    }

    /// Whether the header of a message has been read but not yet its whole body.
    pub fn in_message(&self) -> bool {
        self.pending.is_some()
    }

    /// The next whole message of `src`, or `None` until more bytes arrive.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                let Some(first) = src.first_chunk::<HEADER_SIZE>() else {
                    return Ok(None);
                };
                let h = parse_header(first, self.max_message_size)?;
                self.pending = Some(h);
                h
            }
        };
        if src.len() < header.size {
            // Grow with the data that actually arrives: a 14-byte header alone must not
            // make us allocate the megabyte it announces.
            src.reserve((header.size - src.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        self.pending = None;
        let frame = src.split_to(header.size).freeze();
        let body = if header.compression == 2 {
            Bytes::from(decompress_body(
                &frame[HEADER_SIZE..],
                self.max_message_size,
            )?)
        } else {
            frame.slice(HEADER_SIZE..)
        };
        let message = Message::decode(header.message_type, body)?;
        Ok(Some(Inbound {
            compression: header.compression,
            message,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{compress_frame, VALIDATE_CONNECTION};

    #[test]
    fn header_is_refused_before_the_body_arrives() {
        let mut codec = FrameDecoder::new(1000);
        let mut buf = BytesMut::from(&[0x49, 0x63, 0x65, 0x50, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::TooLarge { size: 65536, .. })
        ));
    }

    #[test]
    fn messages_arrive_byte_by_byte() {
        let mut codec = FrameDecoder::new(1000);
        let mut wire = VALIDATE_CONNECTION.to_vec();
        wire.extend_from_slice(&crate::protocol::CLOSE_CONNECTION);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(m) = codec.decode(&mut buf).unwrap() {
                got.push(m.message);
            }
        }
        assert_eq!(
            got,
            vec![Message::ValidateConnection, Message::CloseConnection]
        );
        assert!(!codec.in_message());
    }

    #[test]
    fn compressed_request_is_inflated() {
        let req = crate::protocol::Request {
            request_id: 4,
            id: crate::encoding::Identity::new("cat", "name"),
            facet: String::new(),
            operation: "ice_ping".repeat(20),
            mode: 1,
            context: Default::default(),
            encoding: crate::encoding::Encoding::V1_1.into(),
            params: Bytes::new(),
        };
        let plain = req.encode();
        let compressed = compress_frame(&plain, 1).unwrap();
        let mut codec = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&compressed[..]);
        let got = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(got.compression, 2);
        assert_eq!(got.message, Message::Request(req));
    }

    proptest::proptest! {
        /// Whatever follows a valid header, decoding returns a message or an error, never
        /// panics, and never holds more than the announced size.
        #[test]
        fn arbitrary_bodies_never_panic(
            message_type in 0u8..5,
            compression in 0u8..3,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut frame = vec![0x49, 0x63, 0x65, 0x50, 1, 0, 1, 0, message_type, compression];
            frame.extend_from_slice(&((body.len() + 14) as i32).to_le_bytes());
            frame.extend_from_slice(&body);
            let mut codec = FrameDecoder::new(1 << 16);
            let mut buf = BytesMut::from(&frame[..]);
            let _ = codec.decode(&mut buf);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut codec = FrameDecoder::new(1 << 16);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }
    }

    /// Every message of the reference traces (real Ice 3.6/3.7 wire bytes, both directions)
    /// decodes, and uncompressed requests re-encode byte for byte.
    #[test]
    fn reference_traces_decode() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/traces");
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("traces missing at {}: {e}", dir.display()));
        let mut requests = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let mut streams: std::collections::HashMap<(u64, String), (FrameDecoder, BytesMut)> =
                Default::default();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let key = (
                    v["conn"].as_u64().unwrap(),
                    v["dir"].as_str().unwrap().to_string(),
                );
                let (codec, buf) = streams
                    .entry(key)
                    .or_insert_with(|| (FrameDecoder::new(1 << 20), BytesMut::new()));
                let hex = v["hex"].as_str().unwrap();
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                buf.extend_from_slice(&bytes);
                loop {
                    let before = buf.clone();
                    let Some(m) = codec.decode(buf).unwrap() else {
                        break;
                    };
                    if let (Message::Request(r), 0) = (&m.message, m.compression) {
                        requests += 1;
                        // Contexts are hash maps: only single-entry ones keep their order.
                        if r.context.len() <= 1 {
                            let frame = r.encode();
                            assert_eq!(&before[..frame.len()], &frame[..]);
                        }
                    }
                }
            }
        }
        assert!(requests > 0);
    }
}
