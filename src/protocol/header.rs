//! The 14-byte header every Ice protocol 1.0 message starts with.

use super::ProtocolError;

pub const HEADER_SIZE: usize = 14;
pub const MAGIC: [u8; 4] = *b"IceP";

/// Ice's default `Ice.MessageSizeMax` (1024 KiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// `ValidateConnection` as the server sends it at connect time and as a heartbeat.
pub const VALIDATE_CONNECTION: [u8; HEADER_SIZE] = [
    0x49, 0x63, 0x65, 0x50, 0x01, 0x00, 0x01, 0x00, 0x03, 0x00, 0x0e, 0x00, 0x00, 0x00,
];

/// `CloseConnection`; receivers ignore the compression byte, we send 0 like Java and JS.
pub const CLOSE_CONNECTION: [u8; HEADER_SIZE] = [
    0x49, 0x63, 0x65, 0x50, 0x01, 0x00, 0x01, 0x00, 0x04, 0x00, 0x0e, 0x00, 0x00, 0x00,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Request = 0,
    BatchRequest = 1,
    Reply = 2,
    ValidateConnection = 3,
    CloseConnection = 4,
}

impl MessageType {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(MessageType::Request),
            1 => Some(MessageType::BatchRequest),
            2 => Some(MessageType::Reply),
            3 => Some(MessageType::ValidateConnection),
            4 => Some(MessageType::CloseConnection),
            _ => None,
        }
    }
}

/// A checked header. `size` is the total message size on the wire, header included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub message_type: MessageType,
    /// 0 = plain, peer does not want compressed replies; 1 = plain, peer accepts them;
    /// 2 = this message is bzip2-compressed.
    pub compression: u8,
    pub size: usize,
}

/// Checks every field in wire order so that a hostile header is refused before any body
/// byte is buffered.
pub fn parse_header(b: &[u8; HEADER_SIZE], max_size: usize) -> Result<Header, ProtocolError> {
    let magic = [b[0], b[1], b[2], b[3]];
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic(magic));
    }
    if (b[4], b[5]) != (1, 0) {
        return Err(ProtocolError::UnsupportedProtocol(b[4], b[5]));
    }
    if (b[6], b[7]) != (1, 0) {
        return Err(ProtocolError::UnsupportedProtocolEncoding(b[6], b[7]));
    }
    let message_type =
        MessageType::from_byte(b[8]).ok_or(ProtocolError::UnknownMessageType(b[8]))?;
    let compression = b[9];
    if compression > 2 {
        return Err(ProtocolError::BadCompressionStatus(compression));
    }
    let size = i32::from_le_bytes([b[10], b[11], b[12], b[13]]);
    let size = checked_size(size, max_size)?;
    Ok(Header {
        message_type,
        compression,
        size,
    })
}

/// A message size must cover at least the header and stay within the local maximum.
pub fn checked_size(size: i32, max_size: usize) -> Result<usize, ProtocolError> {
    let Ok(size) = usize::try_from(size) else {
        return Err(ProtocolError::IllegalMessageSize(size));
    };
    if size < HEADER_SIZE {
        return Err(ProtocolError::IllegalMessageSize(size as i32));
    }
    if size > max_size {
        return Err(ProtocolError::TooLarge {
            size,
            max: max_size,
        });
    }
    Ok(size)
}

/// Appends a header; `size` is the total message size.
pub fn write_header(out: &mut Vec<u8>, message_type: MessageType, compression: u8, size: usize) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[1, 0, 1, 0, message_type as u8, compression]);
    out.extend_from_slice(&i32::try_from(size).unwrap_or(i32::MAX).to_le_bytes());
}

/// Rewrites the size field of a complete message in place.
pub fn patch_size(frame: &mut [u8]) {
    let size = i32::try_from(frame.len()).unwrap_or(i32::MAX).to_le_bytes();
    if let Some(slot) = frame.get_mut(10..14) {
        slot.copy_from_slice(&size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> [u8; HEADER_SIZE] {
        bytes.try_into().unwrap()
    }

    #[test]
    fn validate_connection_parses() {
        let h = parse_header(&VALIDATE_CONNECTION, 1024).unwrap();
        assert_eq!(h.message_type, MessageType::ValidateConnection);
        assert_eq!(h.size, 14);
        let h = parse_header(&CLOSE_CONNECTION, 1024).unwrap();
        assert_eq!(h.message_type, MessageType::CloseConnection);
    }

    #[test]
    fn each_field_is_checked() {
        let good = VALIDATE_CONNECTION;
        let mut b = good;
        b[0] = b'X';
        assert!(matches!(
            parse_header(&b, 100),
            Err(ProtocolError::BadMagic(_))
        ));
        let mut b = good;
        b[4] = 2;
        assert!(matches!(
            parse_header(&b, 100),
            Err(ProtocolError::UnsupportedProtocol(2, 0))
        ));
        let mut b = good;
        b[7] = 1;
        assert!(matches!(
            parse_header(&b, 100),
            Err(ProtocolError::UnsupportedProtocolEncoding(1, 1))
        ));
        let mut b = good;
        b[8] = 5;
        assert!(matches!(
            parse_header(&b, 100),
            Err(ProtocolError::UnknownMessageType(5))
        ));
        let mut b = good;
        b[9] = 3;
        assert!(matches!(
            parse_header(&b, 100),
            Err(ProtocolError::BadCompressionStatus(3))
        ));
        let mut b = good;
        b[10] = 13;
        assert!(matches!(
            parse_header(&b, 100),
            Err(ProtocolError::IllegalMessageSize(13))
        ));
        let b = header(&[
            0x49, 0x63, 0x65, 0x50, 1, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f,
        ]);
        assert!(matches!(
            parse_header(&b, 100),
            Err(ProtocolError::TooLarge { .. })
        ));
        let b = header(&[
            0x49, 0x63, 0x65, 0x50, 1, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
        ]);
        assert!(matches!(
            parse_header(&b, 100),
            Err(ProtocolError::IllegalMessageSize(-1))
        ));
    }

    #[test]
    fn written_header_round_trips() {
        let mut out = Vec::new();
        write_header(&mut out, MessageType::Reply, 1, 26);
        let h = parse_header(&header(&out), 1024).unwrap();
        assert_eq!(
            h,
            Header {
                message_type: MessageType::Reply,
                compression: 1,
                size: 26
            }
        );
    }
}
