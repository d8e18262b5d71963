//! Ice protocol 1.0 messages: headers, request/reply/batch bodies and compression. Pure: no
//! sockets and no clock; [`codec`] is the only adapter to tokio (`tests/layering.rs` checks).

pub mod codec;
mod compress;
pub mod connection;
mod frame;
mod header;
mod message;

use thiserror::Error;

use crate::encoding::DecodeError;

pub use codec::IceCodec;
pub use compress::{compress_frame, decompress_body, prepare_reply, MIN_COMPRESS_SIZE};
pub use connection::{
    encode_reply, Action, CloseReason, ConnectionState, DispatchDone, Limits, Phase,
    IDLE_INPUT_CAPACITY, OUTPUT_HIGH_WATER,
};
pub use frame::{FrameDecoder, Inbound};
pub use header::{
    parse_header, Header, MessageType, CLOSE_CONNECTION, DEFAULT_MAX_MESSAGE_SIZE, HEADER_SIZE,
    MAGIC, VALIDATE_CONNECTION,
};
pub use message::{
    encode_batch, Batch, EncodingVersion, Message, NotExist, Reply, ReplyBody, Request,
};

/// A violation that ends the connection (forcefully, as Ice does: no message is sent back).
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("BadMagicException: {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("UnsupportedProtocolException: protocol {0}.{1}")]
    UnsupportedProtocol(u8, u8),
    #[error("UnsupportedEncodingException: protocol encoding {0}.{1}")]
    UnsupportedProtocolEncoding(u8, u8),
    #[error("UnknownMessageException: message type {0}")]
    UnknownMessageType(u8),
    #[error("ProtocolException: compression status {0}")]
    BadCompressionStatus(u8),
    #[error("IllegalMessageSizeException: {0}")]
    IllegalMessageSize(i32),
    #[error("MemoryLimitException: message of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("ProtocolException: cannot uncompress message: {0}")]
    Decompress(String),
    #[error("MarshalException: batch request count {0}")]
    BadBatchCount(i32),
    #[error("MarshalException: facet sequence with {0} elements")]
    BadFacet(usize),
    #[error("MarshalException: operation mode {0}")]
    BadOperationMode(u8),
    #[error("EncapsulationException: size {0}")]
    BadEncapsulation(i32),
    #[error("UnknownReplyStatusException: {0}")]
    BadReplyStatus(u8),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("connection I/O: {0}")]
    Io(#[from] std::io::Error),
}
