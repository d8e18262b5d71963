//! Request, batch request and reply bodies (spec §2), decoded from and encoded to bytes.

use std::fmt;

use bytes::Bytes;

use super::header::{patch_size, write_header, MessageType, HEADER_SIZE};
use super::ProtocolError;
use crate::encoding::{Context, Decode, Encode, Encoding, Identity, InputStream, OutputStream};

/// The smallest encoded batch sub-request (ZeroC bounds batch counts by remaining / 12).
const MIN_BATCH_REQUEST_SIZE: usize = 12;

/// The version written in an encapsulation header, kept raw because a request may name a
/// version we do not speak; the runtime answers that with an error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EncodingVersion {
    pub major: u8,
    pub minor: u8,
}

impl EncodingVersion {
    pub fn supported(self) -> Option<Encoding> {
        Encoding::from_bytes(self.major, self.minor).ok()
    }
}

impl From<Encoding> for EncodingVersion {
    fn from(e: Encoding) -> Self {
        let (major, minor) = e.to_bytes();
        EncodingVersion { major, minor }
    }
}

impl std::fmt::Display for EncodingVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One request, from a Request message or one entry of a Batch request. Its `Debug` shows
/// the parameters' size only: they hold passwords (`createSession`) and must not reach logs.
#[derive(Clone, PartialEq)]
pub struct Request {
    /// 0 for oneway and batch requests.
    pub request_id: i32,
    pub id: Identity,
    /// "" when the facet sequence was empty.
    pub facet: String,
    pub operation: String,
    /// 0 Normal, 1 Nonmutating, 2 Idempotent.
    pub mode: u8,
    pub context: Context,
    pub encoding: EncodingVersion,
    /// The encapsulation payload, without its 6-byte header.
    pub params: Bytes,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("request_id", &self.request_id)
            .field("id", &self.id)
            .field("facet", &self.facet)
            .field("operation", &self.operation)
            .field("mode", &self.mode)
            .field("context", &self.context)
            .field("encoding", &self.encoding)
            .field("params", &Redacted(self.params.len()))
            .finish()
    }
}

/// Stands for bytes left out of `Debug` output.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0)
    }
}

/// What follows the status byte of a reply; statuses 0 to 7 in order.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyBody {
    Ok {
        encoding: EncodingVersion,
        payload: Bytes,
    },
    UserException {
        encoding: EncodingVersion,
        payload: Bytes,
    },
    ObjectNotExist(NotExist),
    FacetNotExist(NotExist),
    OperationNotExist(NotExist),
    UnknownLocal(String),
    UnknownUser(String),
    Unknown(String),
}

/// The body of reply statuses 2 to 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotExist {
    pub id: Identity,
    pub facet: String,
    pub operation: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub request_id: i32,
    pub body: ReplyBody,
}

/// A decoded message of any type.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request(Request),
    BatchRequest(Batch),
    Reply(Reply),
    ValidateConnection,
    CloseConnection,
}

impl Message {
    /// Decodes a body (after the header, already decompressed). Validate and close messages
    /// ignore any body, as ZeroC's runtimes do.
    pub fn decode(message_type: MessageType, body: Bytes) -> Result<Message, ProtocolError> {
        match message_type {
            MessageType::Request => decode_request_message(&body).map(Message::Request),
            MessageType::BatchRequest => decode_batch(&body).map(Message::BatchRequest),
            MessageType::Reply => decode_reply(&body).map(Message::Reply),
            MessageType::ValidateConnection => Ok(Message::ValidateConnection),
            MessageType::CloseConnection => Ok(Message::CloseConnection),
        }
    }
}

fn decode_request_message(body: &Bytes) -> Result<Request, ProtocolError> {
    let mut r = InputStream::new(body, Encoding::V1_0);
    let request_id = r.read_i32()?;
    decode_request_header(&mut r, body, request_id)
}

fn decode_batch(body: &Bytes) -> Result<Batch, ProtocolError> {
    let mut r = InputStream::new(body, Encoding::V1_0);
    let count = r.read_i32()?;
    let count = usize::try_from(count).map_err(|_| ProtocolError::BadBatchCount(count))?;
    if count > r.remaining() / MIN_BATCH_REQUEST_SIZE {
        return Err(ProtocolError::BadBatchCount(count as i32));
    }
    Ok(Batch {
        body: body.clone(),
        pos: r.pos(),
        left: count,
    })
}

/// The requests of a Batch request message, decoded one at a time as they are taken (as
/// ZeroC does), so a large batch costs its bytes and one decoded request, not a decoded
/// request per 12 bytes all at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    body: Bytes,
    /// Where the next request starts in `body`.
    pos: usize,
    left: usize,
}

impl Batch {
    /// Requests not yet taken.
    pub fn remaining(&self) -> usize {
        self.left
    }
}

impl Iterator for Batch {
    type Item = Result<Request, ProtocolError>;

    /// The next request; after an error the batch is over, because the position of any
    /// later request is unknown.
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut r = InputStream::new(&self.body, Encoding::V1_0);
        let request = r
            .seek(self.pos)
            .map_err(ProtocolError::from)
            .and_then(|()| decode_request_header(&mut r, &self.body, 0));
        match request {
            Ok(request) => {
                self.pos = r.pos();
                Some(Ok(request))
            }
            Err(e) => {
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

/// Everything of a request after its id; `body` is the buffer `r` reads, so the params
/// can be shared instead of copied.
fn decode_request_header(
    r: &mut InputStream<'_>,
    body: &Bytes,
    request_id: i32,
) -> Result<Request, ProtocolError> {
    let id = Identity::decode(r)?;
    let facet = read_facet(r)?;
    let operation = r.read_string()?;
    let mode = r.read_u8()?;
    if mode > 2 {
        return Err(ProtocolError::BadOperationMode(mode));
    }
    let context = Context::decode(r)?;
    let (encoding, start, len) = read_raw_encapsulation(r)?;
    Ok(Request {
        request_id,
        id,
        facet,
        operation,
        mode,
        context,
        encoding,
        params: body.slice(start..start + len),
    })
}

/// A facet is a sequence of at most one string; more is a fatal marshal error.
fn read_facet(r: &mut InputStream<'_>) -> Result<String, ProtocolError> {
    match r.read_size()? {
        0 => Ok(String::new()),
        1 => Ok(r.read_string()?),
        n => Err(ProtocolError::BadFacet(n)),
    }
}

/// Returns the version, start and length of the payload, leaving `r` after it.
fn read_raw_encapsulation(
    r: &mut InputStream<'_>,
) -> Result<(EncodingVersion, usize, usize), ProtocolError> {
    let size = r.read_i32()?;
    let size = usize::try_from(size).map_err(|_| ProtocolError::BadEncapsulation(size))?;
    if size < 6 || size - 4 > r.remaining() {
        return Err(ProtocolError::BadEncapsulation(size as i32));
    }
    let major = r.read_u8()?;
    let minor = r.read_u8()?;
    let start = r.pos();
    r.skip(size - 6)?;
    Ok((EncodingVersion { major, minor }, start, size - 6))
}

fn decode_reply(body: &Bytes) -> Result<Reply, ProtocolError> {
    let mut r = InputStream::new(body, Encoding::V1_0);
    let request_id = r.read_i32()?;
    let status = r.read_u8()?;
    let body = match status {
        0 | 1 => {
            let (encoding, start, len) = read_raw_encapsulation(&mut r)?;
            let payload = body.slice(start..start + len);
            if status == 0 {
                ReplyBody::Ok { encoding, payload }
            } else {
                ReplyBody::UserException { encoding, payload }
            }
        }
        2..=4 => {
            let n = NotExist {
                id: Identity::decode(&mut r)?,
                facet: read_facet(&mut r)?,
                operation: r.read_string()?,
            };
            match status {
                2 => ReplyBody::ObjectNotExist(n),
                3 => ReplyBody::FacetNotExist(n),
                _ => ReplyBody::OperationNotExist(n),
            }
        }
        5 => ReplyBody::UnknownLocal(r.read_string()?),
        6 => ReplyBody::UnknownUser(r.read_string()?),
        7 => ReplyBody::Unknown(r.read_string()?),
        s => return Err(ProtocolError::BadReplyStatus(s)),
    };
    Ok(Reply { request_id, body })
}

fn write_facet(w: &mut OutputStream, facet: &str) {
    if facet.is_empty() {
        w.write_size(0);
    } else {
        w.write_size(1);
        w.write_string(facet);
    }
}

fn write_encapsulation(w: &mut OutputStream, encoding: EncodingVersion, payload: &[u8]) {
    w.write_i32(i32::try_from(payload.len() + 6).unwrap_or(i32::MAX));
    w.write_u8(encoding.major);
    w.write_u8(encoding.minor);
    w.write_bytes(payload);
}

/// A stream that already holds a header with a placeholder size.
fn start_frame(message_type: MessageType) -> OutputStream {
    let mut header = Vec::with_capacity(HEADER_SIZE);
    write_header(&mut header, message_type, 0, 0);
    let mut w = OutputStream::new(Encoding::V1_0);
    w.write_bytes(&header);
    w
}

fn finish_frame(w: OutputStream) -> Vec<u8> {
    let mut frame = w.into_bytes();
    patch_size(&mut frame);
    frame
}

impl Request {
    /// The whole Request message (compression byte 0); a request id of 0 makes it oneway.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = start_frame(MessageType::Request);
        w.write_i32(self.request_id);
        self.encode_header(&mut w);
        finish_frame(w)
    }

    fn encode_header(&self, w: &mut OutputStream) {
        self.id.encode(w);
        write_facet(w, &self.facet);
        w.write_string(&self.operation);
        w.write_u8(self.mode);
        self.context.encode(w);
        write_encapsulation(w, self.encoding, &self.params);
    }
}

/// A whole Batch request message holding `requests` (their ids are not written).
pub fn encode_batch(requests: &[Request]) -> Vec<u8> {
    let mut w = start_frame(MessageType::BatchRequest);
    w.write_i32(i32::try_from(requests.len()).unwrap_or(i32::MAX));
    for request in requests {
        request.encode_header(&mut w);
    }
    finish_frame(w)
}

impl Reply {
    /// The whole Reply message with compression byte 0; see
    /// [`super::prepare_reply`] for the byte the peer should see.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = start_frame(MessageType::Reply);
        w.write_i32(self.request_id);
        match &self.body {
            ReplyBody::Ok { encoding, payload } => {
                w.write_u8(0);
                write_encapsulation(&mut w, *encoding, payload);
            }
            ReplyBody::UserException { encoding, payload } => {
                w.write_u8(1);
                write_encapsulation(&mut w, *encoding, payload);
            }
            ReplyBody::ObjectNotExist(n) => write_not_exist(&mut w, 2, n),
            ReplyBody::FacetNotExist(n) => write_not_exist(&mut w, 3, n),
            ReplyBody::OperationNotExist(n) => write_not_exist(&mut w, 4, n),
            ReplyBody::UnknownLocal(s) => write_unknown(&mut w, 5, s),
            ReplyBody::UnknownUser(s) => write_unknown(&mut w, 6, s),
            ReplyBody::Unknown(s) => write_unknown(&mut w, 7, s),
        }
        finish_frame(w)
    }
}

fn write_not_exist(w: &mut OutputStream, status: u8, n: &NotExist) {
    w.write_u8(status);
    n.id.encode(w);
    write_facet(w, &n.facet);
    w.write_string(&n.operation);
}

fn write_unknown(w: &mut OutputStream, status: u8, text: &str) {
    w.write_u8(status);
    w.write_string(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '|')
            .collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn decode(frame: &[u8]) -> Result<Message, ProtocolError> {
        let header = super::super::parse_header(frame[..14].try_into().unwrap(), 1 << 20)?;
        assert_eq!(header.size, frame.len());
        Message::decode(header.message_type, Bytes::copy_from_slice(&frame[14..]))
    }

    const IS_A: &str = "49 63 65 50 01 00 01 00 00 00 4a 00 00 00 01 00 00 00
        06 72 6f 75 74 65 72 0c 44 65 6d 6f 47 6c 61 63 69 65 72 32 00
        07 69 63 65 5f 69 73 41 01 00 19 00 00 00 01 01
        12 3a 3a 47 6c 61 63 69 65 72 32 3a 3a 52 6f 75 74 65 72";

    #[test]
    fn verified_is_a_request() {
        let frame = hex(IS_A);
        let Message::Request(req) = decode(&frame).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(req.request_id, 1);
        assert_eq!(req.id, Identity::new("DemoGlacier2", "router"));
        assert_eq!(req.facet, "");
        assert_eq!(req.operation, "ice_isA");
        assert_eq!(req.mode, 1);
        assert!(req.context.is_empty());
        assert_eq!(req.encoding, EncodingVersion { major: 1, minor: 1 });
        assert_eq!(&req.params[..], &frame[55..]);
        assert_eq!(req.encode(), frame);
    }

    #[test]
    fn verified_replies() {
        let ok = hex(
            "49 63 65 50 01 00 01 00 02 00 1a 00 00 00 | 01 00 00 00 | 00 | 07 00 00 00 01 01 | 01",
        );
        let reply = Reply {
            request_id: 1,
            body: ReplyBody::Ok {
                encoding: Encoding::V1_1.into(),
                payload: Bytes::from_static(&[1]),
            },
        };
        assert_eq!(reply.encode(), ok);
        assert_eq!(decode(&ok).unwrap(), Message::Reply(reply));

        let one = hex("49 63 65 50 01 00 01 00 02 00 28 00 00 00 | 19 00 00 00 | 02 | 03 78 79 7a 06 6e 6f 62 6f 64 79 | 00 | 08 69 63 65 5f 70 69 6e 67");
        let reply = Reply {
            request_id: 25,
            body: ReplyBody::ObjectNotExist(NotExist {
                id: Identity::new("nobody", "xyz"),
                facet: String::new(),
                operation: "ice_ping".into(),
            }),
        };
        assert_eq!(reply.encode(), one);
        assert_eq!(decode(&one).unwrap(), Message::Reply(reply));

        let boom =
            hex("49 63 65 50 01 00 01 00 02 00 18 00 00 00 | 05 00 00 00 | 05 | 04 62 6f 6f 6d");
        let reply = Reply {
            request_id: 5,
            body: ReplyBody::UnknownLocal("boom".into()),
        };
        assert_eq!(reply.encode(), boom);
        assert_eq!(decode(&boom).unwrap(), Message::Reply(reply));
    }

    #[test]
    fn every_reply_status_round_trips() {
        let n = NotExist {
            id: Identity::new("c", "n"),
            facet: "f".into(),
            operation: "op".into(),
        };
        let bodies = [
            ReplyBody::UserException {
                encoding: Encoding::V1_0.into(),
                payload: Bytes::from_static(&[0, 1, 2]),
            },
            ReplyBody::FacetNotExist(n.clone()),
            ReplyBody::OperationNotExist(n),
            ReplyBody::UnknownUser("u".into()),
            ReplyBody::Unknown("x".into()),
        ];
        for body in bodies {
            let reply = Reply {
                request_id: 9,
                body,
            };
            assert_eq!(decode(&reply.encode()).unwrap(), Message::Reply(reply));
        }
    }

    fn ping(request_id: i32) -> Request {
        Request {
            request_id,
            id: Identity::new("", "x"),
            facet: String::new(),
            operation: "ice_ping".into(),
            mode: 1,
            context: Context::new(),
            encoding: Encoding::V1_1.into(),
            params: Bytes::new(),
        }
    }

    #[test]
    fn batch_round_trips() {
        let requests = vec![ping(0), ping(0)];
        let frame = encode_batch(&requests);
        let Message::BatchRequest(batch) = decode(&frame).unwrap() else {
            panic!("not a batch");
        };
        assert_eq!(batch.remaining(), 2);
        assert_eq!(batch.collect::<Result<Vec<_>, _>>().unwrap(), requests);
    }

    #[test]
    fn batch_is_decoded_one_request_at_a_time() {
        // the second request is cut short: the first still decodes, the error comes with
        // the second, and nothing follows it
        let mut frame = encode_batch(&[ping(0), ping(0)]);
        frame.truncate(frame.len() - 3);
        let size = frame.len() as i32;
        frame[10..14].copy_from_slice(&size.to_le_bytes());
        let Message::BatchRequest(mut batch) = decode(&frame).unwrap() else {
            panic!("not a batch");
        };
        assert_eq!(batch.next().unwrap().unwrap(), ping(0));
        assert!(batch.next().unwrap().is_err());
        assert!(batch.next().is_none());
    }

    #[test]
    fn batch_count_is_bounded_by_remaining_bytes() {
        let mut frame = encode_batch(&[ping(0)]);
        frame[14] = 2;
        assert!(matches!(
            decode(&frame),
            Err(ProtocolError::BadBatchCount(2))
        ));
        frame[14..18].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(matches!(
            decode(&frame),
            Err(ProtocolError::BadBatchCount(-1))
        ));
    }

    #[test]
    fn facet_with_two_elements_is_fatal() {
        let mut req = ping(1);
        req.facet = "f".into();
        let mut frame = req.encode();
        // Identity "x","" is 3 bytes after the request id; the facet count follows.
        assert_eq!(frame[21], 1);
        frame[21] = 2;
        assert!(matches!(decode(&frame), Err(ProtocolError::BadFacet(2))));
    }

    #[test]
    fn truncated_and_bad_mode_requests_fail() {
        let frame = ping(3).encode();
        for cut in 15..frame.len() {
            let mut short = frame[..cut].to_vec();
            patch_size(&mut short);
            assert!(decode(&short).is_err(), "cut at {cut}");
        }
        let mut bad = frame.clone();
        let mode_at = frame.len() - 8;
        assert_eq!(bad[mode_at], 1);
        bad[mode_at] = 3;
        assert!(matches!(
            decode(&bad),
            Err(ProtocolError::BadOperationMode(3))
        ));
    }

    #[test]
    fn unknown_reply_status_fails() {
        let frame = hex("49 63 65 50 01 00 01 00 02 00 13 00 00 00 01 00 00 00 08");
        assert!(matches!(
            decode(&frame),
            Err(ProtocolError::BadReplyStatus(8))
        ));
    }
}
