//! Fuzz targets: each takes arbitrary bytes and must return without panicking, hanging or
//! allocating beyond what the input justifies. Two drivers share them: `fuzz/` (libFuzzer,
//! coverage-guided, for long runs) and `tests/fuzz_short.rs` (the deterministic [`Mutator`]
//! loop that is part of the test command). The slice compiler's target lives in
//! `slice2rs::fuzzing` because this crate does not link the compiler.
//!
//! Where a target can check more than "no panic" it does: values and proxies that decode
//! must re-encode to bytes that decode to the same thing.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::encoding::{
    Context, Decode, Encoding, Format, InputStream, OutputStream, Proxy, ValueRef,
};
use crate::protocol::{
    ConnectionState, DispatchDone, EncodingVersion, FrameDecoder, Limits, Message, MessageType,
    ReplyBody,
};

/// A named target, for drivers that run them all.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target of this crate, in a stable order.
pub const TARGETS: &[Target] = &[
    Target {
        name: "framing",
        run: framing,
    },
    Target {
        name: "connection",
        run: connection,
    },
    Target {
        name: "request_1_0",
        run: request_1_0,
    },
    Target {
        name: "request_1_1",
        run: request_1_1,
    },
    Target {
        name: "reply_1_0",
        run: reply_1_0,
    },
    Target {
        name: "reply_1_1",
        run: reply_1_1,
    },
    Target {
        name: "class_graph",
        run: class_graph,
    },
    Target {
        name: "proxy",
        run: proxy,
    },
    Target {
        name: "http_create",
        run: http_create,
    },
];

/// Small enough that a fuzzer's inputs can cross it, so the size checks get exercised.
const FUZZ_MAX_MESSAGE: usize = 64 * 1024;

/// The protocol's framing over a byte stream, as a connection reads it.
pub fn framing(data: &[u8]) {
    let mut codec = FrameDecoder::new(FUZZ_MAX_MESSAGE);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
}

/// The connection state machine: the input is cut into reads (the first byte picks the read
/// size), every dispatch it asks for finishes at once, and time moves on between reads.
pub fn connection(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_message_size: FUZZ_MAX_MESSAGE,
        max_dispatches: 4,
        ..Limits::default()
    };
    let mut now = Instant::now();
    let mut state = ConnectionState::new(limits, now);
    let chunk = usize::from(step % 64) + 1;
    for part in data.chunks(chunk) {
        let actions = state.on_data(part, now);
        finish_dispatches(&mut state, actions, now);
        let written = state.output().len() / 2;
        state.on_written(written, now);
        now += Duration::from_millis(u64::from(step));
        let actions = state.on_tick(now);
        finish_dispatches(&mut state, actions, now);
    }
    state.on_flushed(now);
    let actions = state.begin_close(step % 2 == 0, now);
    finish_dispatches(&mut state, actions, now);
    let _ = state.on_eof();
}

fn finish_dispatches(
    state: &mut ConnectionState,
    mut actions: Vec<crate::protocol::Action>,
    now: Instant,
) {
    // Each finished dispatch may start one waiting request: bounded by the input.
    while let Some(action) = actions.pop() {
        if let crate::protocol::Action::Dispatch {
            request,
            compression,
        } = action
        {
            let done = DispatchDone {
                request_id: request.request_id,
                compression,
                body: ReplyBody::Ok {
                    encoding: request.encoding,
                    payload: request.params,
                },
            };
            actions.extend(state.on_dispatch_finished(Some(done), now));
        }
    }
}

pub fn request_1_0(data: &[u8]) {
    request(data, Encoding::V1_0);
}

pub fn request_1_1(data: &[u8]) {
    request(data, Encoding::V1_1);
}

/// A request message body, or (by the first byte) the parameters of one of the operations
/// the server serves, decoded the way the generated dispatchers do.
fn request(data: &[u8], encoding: Encoding) {
    let Some((&shape, params)) = data.split_first() else {
        return;
    };
    let mut r = InputStream::new(params, encoding);
    r.refuse_cycles();
    match shape % 7 {
        // Glacier2::Router::createSession(user, password)
        0 => drop(r.read_string().and_then(|_| r.read_string())),
        // ISession::createSession(Principal, credentials)
        1 => drop(values_then(&mut r, String::decode)),
        // ISession::createUserSession(timeToLive, timeToIdle, group)
        2 => drop(
            r.read_i64()
                .and_then(|_| r.read_i64())
                .and_then(|_| r.read_string()),
        ),
        3 => drop(Context::decode(&mut r)),
        // Glacier2::Router::addProxies
        4 => drop(proxies(&mut r)),
        5 => drop(Vec::<String>::decode(&mut r)),
        _ => {
            if let Ok(Message::Request(q)) =
                Message::decode(MessageType::Request, Bytes::copy_from_slice(params))
            {
                if let Some(enc) = q.encoding.supported() {
                    let mut r = InputStream::new(&q.params, enc);
                    r.refuse_cycles();
                    let _ = values_then(&mut r, |_| Ok(()));
                }
            }
        }
    }
}

/// A sequence of proxies (`Ice::ObjectProxySeq`).
fn proxies(r: &mut InputStream<'_>) -> Result<Vec<Option<Proxy>>, crate::encoding::DecodeError> {
    let n = r.read_count(2)?;
    (0..n).map(|_| r.read_proxy()).collect()
}

/// An optional class parameter, the rest, then the pending instances (1.0).
fn values_then<T>(
    r: &mut InputStream<'_>,
    rest: impl FnOnce(&mut InputStream<'_>) -> Result<T, crate::encoding::DecodeError>,
) -> Result<(Option<ValueRef>, T), crate::encoding::DecodeError> {
    let v = Option::<ValueRef>::decode(r)?;
    let t = rest(r)?;
    r.read_pending_values()?;
    Ok((v, t))
}

pub fn reply_1_0(data: &[u8]) {
    reply(data, Encoding::V1_0);
}

pub fn reply_1_1(data: &[u8]) {
    reply(data, Encoding::V1_1);
}

/// A reply message body; then, by the first byte, the payload of a reply the server decodes
/// from its peers (a permissions verifier, a session manager, a client callback).
fn reply(data: &[u8], encoding: Encoding) {
    let _ = Message::decode(MessageType::Reply, Bytes::copy_from_slice(data));
    let Some((&shape, payload)) = data.split_first() else {
        return;
    };
    let mut r = InputStream::new(payload, encoding);
    r.set_factories(crate::generated::FACTORIES);
    r.refuse_cycles();
    match shape % 4 {
        0 => drop(values_then(&mut r, |_| Ok(()))),
        1 => drop(r.read_exception()),
        // PermissionsVerifier::checkPermissions: bool and an out string
        2 => drop(r.read_bool().and_then(|_| r.read_string())),
        _ => drop(r.read_proxy()),
    }
}

/// Class graphs: whatever decodes must encode, and the encoding must decode to a graph that
/// encodes to the same bytes again. The first byte picks the encoding and the format.
pub fn class_graph(data: &[u8]) {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let encoding = if mode & 1 == 0 {
        Encoding::V1_0
    } else {
        Encoding::V1_1
    };
    let format = if mode & 2 == 0 {
        Format::Compact
    } else {
        Format::Sliced
    };
    let Ok(values) = decode_values(payload, encoding) else {
        return;
    };
    let first = encode_values(&values, encoding, format);
    let again = match decode_values(&first, encoding) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded graph does not decode: {e}; bytes {first:02x?}"),
    };
    let second = encode_values(&again, encoding, format);
    assert_eq!(first, second, "a graph's encoding is not stable");
}

/// Up to four values in a row, then the pending ones.
fn decode_values(
    payload: &[u8],
    encoding: Encoding,
) -> Result<Vec<Option<ValueRef>>, crate::encoding::DecodeError> {
    let mut r = InputStream::new(payload, encoding);
    r.set_factories(crate::generated::FACTORIES);
    r.refuse_cycles();
    let mut values = Vec::new();
    for _ in 0..4 {
        if r.is_at_end() {
            break;
        }
        values.push(r.read_value()?);
    }
    r.read_pending_values()?;
    Ok(values)
}

fn encode_values(values: &[Option<ValueRef>], encoding: Encoding, format: Format) -> Vec<u8> {
    let mut w = OutputStream::new(encoding);
    w.set_format(format);
    for v in values {
        w.write_value(v.as_ref());
    }
    w.write_pending_values();
    w.into_bytes()
}

/// Proxies: whatever decodes re-encodes to a proxy equal to it.
pub fn proxy(data: &[u8]) {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let encoding = if mode & 1 == 0 {
        Encoding::V1_0
    } else {
        Encoding::V1_1
    };
    let mut r = InputStream::new(payload, encoding);
    let Ok(Some(p)) = r.read_proxy() else {
        return;
    };
    let mut w = OutputStream::new(encoding);
    w.write_proxy(Some(&p));
    let bytes = w.into_bytes();
    let mut r = InputStream::new(&bytes, encoding);
    match r.read_proxy() {
        Ok(Some(q)) => assert_eq!(p, q, "a proxy changed on its way through the encoder"),
        other => panic!("re-encoded proxy does not decode: {other:?}; bytes {bytes:02x?}"),
    }
}

/// The JSON body of `POST /omero/session/create`.
pub fn http_create(data: &[u8]) {
    let _ = crate::http::request::parse_request(data);
}

/// Seeds for every target from real traffic (the reference traces, JSON lines of socket
/// reads) and ZeroC's encoding vectors (`interop/vectors/vectors.json`).
pub fn seeds(target: &str, traces: &[&str], vectors: &str) -> Vec<Vec<u8>> {
    let streams = trace_streams(traces);
    let mut frames = Vec::new();
    for s in &streams {
        frames.extend(split_frames(s));
    }
    let encaps = vector_payloads(vectors);
    let mut out: Vec<Vec<u8>> = Vec::new();
    match target {
        "framing" => out.extend(streams.iter().cloned()),
        "connection" => {
            for (i, s) in streams.iter().enumerate() {
                out.push(prefixed(i as u8, s));
            }
        }
        "request_1_0" | "request_1_1" | "reply_1_0" | "reply_1_1" | "class_graph" | "proxy" => {
            let want = if target.ends_with("1_0") {
                Some(Encoding::V1_0)
            } else if target.ends_with("1_1") {
                Some(Encoding::V1_1)
            } else {
                None
            };
            for (i, (enc, payload)) in frame_payloads(&frames).chain(encaps).enumerate() {
                if want.is_some_and(|w| w != enc) {
                    continue;
                }
                let tag = match (target, enc) {
                    ("class_graph" | "proxy", Encoding::V1_0) => (i as u8) & !1,
                    ("class_graph" | "proxy", Encoding::V1_1) => (i as u8) | 1,
                    _ => i as u8,
                };
                out.push(prefixed(tag, &payload));
            }
            if target.starts_with("request") {
                // The whole request bodies, for the header decoding (shape 6).
                for (t, body) in &frames {
                    if *t == 0 {
                        out.push(prefixed(6, body));
                    }
                }
            }
            if target.starts_with("reply") {
                for (t, body) in &frames {
                    if *t == 2 {
                        out.push(body.clone());
                    }
                }
            }
        }
        "http_create" => {
            for s in [
                r#"{"username":"alice","password":"alicepw","server":"localhost"}"#,
                r#"{"username":"alice","password":"p","server":"h","port":4064,"keepAlive":600000,"group":"lab"}"#,
                r#"{"session":"0b0e8c3a-63f1-4e0f-a0ad-0b5f9a4ae7c0","server":"localhost","port":"4064"}"#,
                r#"{"username":"é","password":"\u0000","server":"[::1]","secure":true}"#,
            ] {
                out.push(s.as_bytes().to_vec());
            }
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

fn prefixed(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.push(tag);
    v.extend_from_slice(bytes);
    v
}

/// `None` for an odd length too: the last pair is then out of range.
fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// Each (connection, direction) of every trace as one byte stream.
fn trace_streams(traces: &[&str]) -> Vec<Vec<u8>> {
    let mut streams: std::collections::BTreeMap<(usize, u64, String), Vec<u8>> = Default::default();
    for (t, text) in traces.iter().enumerate() {
        for line in text.lines() {
            let Ok(j) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let conn = j["conn"].as_u64().unwrap_or(0);
            let dir = j["dir"].as_str().unwrap_or("").to_string();
            if let Some(bytes) = j["hex"].as_str().and_then(unhex) {
                streams.entry((t, conn, dir)).or_default().extend(bytes);
            }
        }
    }
    streams.into_values().collect()
}

/// (message type, body) of every whole message in a stream.
fn split_frames(stream: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 14 {
        let size = i32::from_le_bytes([rest[10], rest[11], rest[12], rest[13]]);
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        if size < 14 || size > rest.len() {
            break;
        }
        out.push((rest[8], rest[14..size].to_vec()));
        rest = &rest[size..];
    }
    out
}

/// The parameter and result encapsulations inside uncompressed requests and replies.
fn frame_payloads(frames: &[(u8, Vec<u8>)]) -> impl Iterator<Item = (Encoding, Vec<u8>)> + '_ {
    frames.iter().filter_map(|(t, body)| {
        let msg = Message::decode(MessageType::from_byte(*t)?, Bytes::copy_from_slice(body));
        let (enc, payload) = match msg.ok()? {
            Message::Request(q) => (q.encoding, q.params),
            Message::Reply(p) => match p.body {
                ReplyBody::Ok { encoding, payload }
                | ReplyBody::UserException { encoding, payload } => (encoding, payload),
                _ => return None,
            },
            _ => return None,
        };
        Some((supported(enc)?, payload.to_vec()))
    })
}

fn supported(v: EncodingVersion) -> Option<Encoding> {
    v.supported()
}

/// The payloads of ZeroC's vectors (each is a whole encapsulation, header included).
fn vector_payloads(vectors: &str) -> Vec<(Encoding, Vec<u8>)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(vectors) else {
        return Vec::new();
    };
    map.values()
        .filter_map(|v| v.as_str().and_then(unhex))
        .filter_map(|bytes| {
            let header = bytes.get(..6)?;
            let enc = Encoding::from_bytes(header[4], header[5]).ok()?;
            Some((enc, bytes[6..].to_vec()))
        })
        .collect()
}

/// A deterministic byte mutator (xorshift), for bounded runs in ordinary tests: same seed,
/// same inputs, on every machine.
pub struct Mutator {
    state: u64,
}

/// Sizes and bytes that sit on the encoders' boundaries.
const INTERESTING: &[i32] = &[
    0,
    1,
    -1,
    2,
    13,
    14,
    15,
    127,
    128,
    254,
    255,
    256,
    0x7fff,
    0xffff,
    0x10000,
    0x7fff_ffff,
    -0x8000_0000,
];

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Mutator {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One to four random edits of `input`, sometimes spliced with `other`.
    pub fn mutate(&mut self, input: &mut Vec<u8>, other: &[u8], max_len: usize) {
        for _ in 0..=self.below(4) {
            self.edit(input, other);
        }
        input.truncate(max_len);
    }

    fn edit(&mut self, v: &mut Vec<u8>, other: &[u8]) {
        let len = v.len();
        match self.below(8) {
            0 if len > 0 => {
                let i = self.below(len);
                v[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.below(len);
                v[i] = self.next_u64() as u8;
            }
            2 => {
                let i = self.below(len + 1);
                let n = self.below(8) + 1;
                let bytes: Vec<u8> = (0..n).map(|_| self.next_u64() as u8).collect();
                v.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = self.below(len);
                let n = self.below(len - i) + 1;
                v.drain(i..i + n.min(16));
            }
            4 if len >= 4 => {
                let i = self.below(len - 3);
                let x = INTERESTING[self.below(INTERESTING.len())];
                v[i..i + 4].copy_from_slice(&x.to_le_bytes());
            }
            5 if len > 0 => {
                let i = self.below(len);
                v[i] = INTERESTING[self.below(INTERESTING.len())] as u8;
            }
            6 if len > 0 => {
                // repeat a chunk: nesting and long sequences
                let i = self.below(len);
                let n = (self.below(len - i) + 1).min(32);
                let chunk = v[i..i + n].to_vec();
                v.splice(i..i, chunk);
            }
            7 if !other.is_empty() => {
                let cut = self.below(len + 1);
                let from = self.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => v.truncate(self.below(len + 1)),
        }
    }
}

/// Runs `target` on `seeds` and then on `iterations` mutations of them; returns how many
/// inputs ran. Deterministic for a given `seed`.
pub fn run_mutations(
    target: fn(&[u8]),
    seeds: &[Vec<u8>],
    iterations: usize,
    seed: u64,
    max_len: usize,
) -> usize {
    let mut m = Mutator::new(seed);
    let empty = [Vec::new()];
    let pool: &[Vec<u8>] = if seeds.is_empty() { &empty } else { seeds };
    for s in pool {
        target(s);
    }
    for _ in 0..iterations {
        let mut input = pool[m.below(pool.len())].clone();
        let other = &pool[m.below(pool.len())];
        m.mutate(&mut input, other, max_len);
        target(&input);
    }
    pool.len() + iterations
}
