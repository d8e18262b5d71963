//! The one adapter between the protocol and `tokio_util::codec` (for `Framed` clients in
//! tests and tools); the framing itself is the pure [`FrameDecoder`].

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{FrameDecoder, Inbound};
use super::ProtocolError;

/// Decodes whole messages with [`FrameDecoder`]; encodes already-framed messages as they are.
#[derive(Debug)]
pub struct IceCodec(FrameDecoder);

impl IceCodec {
    pub fn new(max_message_size: usize) -> Self {
        IceCodec(FrameDecoder::new(max_message_size))
    }

    /// Whether the header of a message has been read but not yet its whole body.
    pub fn in_message(&self) -> bool {
        self.0.in_message()
    }
}

impl Decoder for IceCodec {
    type Item = Inbound;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        self.0.decode(src)
    }
}

impl Encoder<Bytes> for IceCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        dst.extend_from_slice(&frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Message, CLOSE_CONNECTION, VALIDATE_CONNECTION};
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::Framed;

    #[tokio::test]
    async fn framed_stream_round_trips() {
        let (a, b) = tokio::io::duplex(64);
        let mut sender = Framed::new(a, IceCodec::new(1000));
        let mut receiver = Framed::new(b, IceCodec::new(1000));
        sender
            .send(Bytes::from_static(&VALIDATE_CONNECTION))
            .await
            .unwrap();
        sender
            .send(Bytes::from_static(&CLOSE_CONNECTION))
            .await
            .unwrap();
        let first = receiver.next().await.unwrap().unwrap();
        let second = receiver.next().await.unwrap().unwrap();
        assert_eq!(first.message, Message::ValidateConnection);
        assert_eq!(second.message, Message::CloseConnection);
    }
}
