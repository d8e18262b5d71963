//! Benchmarks of the hot path: framing a request, encoding a reply, and a dispatch through the
//! object adapter. Run with `cargo bench`; numbers are compared between commits, never asserted.

use std::sync::Arc;

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use omero_sessiond::encoding::{Decode, Encode, Encoding, Identity, InputStream, OutputStream};
use omero_sessiond::protocol::{EncodingVersion, IceCodec, Reply, ReplyBody};
use omero_sessiond::runtime::{
    ConnectionInfo, Current, Dispatch, DispatchError, ObjectAdapter, OperationMode,
};
use tokio_util::codec::Decoder;

/// omero-py's createSession request to the router, as captured from a real session
/// (shared/reference/traces, encoding 1.1).
const CREATE_SESSION: &str = "49636550010001000000990000000100000006726f757465720e4f4d45524f2e476c616369657232000d63726561746553657373696f6e00020b6f6d65726f2e6167656e74084f4d45524f2e7079116f6d65726f2e636c69656e742e757569642462636262616139372d336336322d346430362d383433322d64396664613132326533373314000000010105616c69636507616c6963657077";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect()
}

fn framing(c: &mut Criterion) {
    let frame = hex(CREATE_SESSION);
    c.bench_function("decode createSession request", |b| {
        let mut codec = IceCodec::new(1 << 20);
        b.iter(|| {
            let mut buf = BytesMut::from(&frame[..]);
            black_box(codec.decode(&mut buf).ok().flatten())
        })
    });
    let reply = Reply {
        request_id: 7,
        body: ReplyBody::Ok {
            encoding: EncodingVersion { major: 1, minor: 1 },
            payload: vec![0x2a; 120].into(),
        },
    };
    c.bench_function("encode 120-byte reply", |b| {
        b.iter(|| black_box(reply.encode()))
    });
}

fn encoding(c: &mut Criterion) {
    let keys: Vec<String> = (0..64).map(|i| format!("key-{i}")).collect();
    c.bench_function("string sequence of 64 round trip", |b| {
        b.iter(|| {
            let mut w = OutputStream::new(Encoding::V1_1);
            keys.encode(&mut w);
            let bytes = w.into_bytes();
            let mut r = InputStream::new(&bytes, Encoding::V1_1);
            black_box(Vec::<String>::decode(&mut r).ok())
        })
    });
}

struct Pong;

#[async_trait::async_trait]
impl Dispatch for Pong {
    fn type_ids(&self) -> &'static [&'static str] {
        &["::Ice::Object", "::Test::Pong"]
    }
    fn most_derived_type_id(&self) -> &'static str {
        "::Test::Pong"
    }
    async fn dispatch(&self, _: &Current, _: &[u8]) -> Result<Vec<u8>, DispatchError> {
        Ok(Vec::new())
    }
}

fn dispatch(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let adapter = ObjectAdapter::new();
    let id = Identity::new("bench", "pong");
    adapter.add(id.clone(), Arc::new(Pong));
    let current = Current {
        id,
        facet: String::new(),
        operation: "ice_ping".into(),
        mode: OperationMode::Nonmutating,
        ctx: Default::default(),
        request_id: 1,
        encoding: Encoding::V1_1,
        connection: Arc::new(ConnectionInfo::detached(1, "tcp")),
        received: std::time::Instant::now(),
    };
    c.bench_function("dispatch ice_ping through the adapter", |b| {
        b.iter(|| black_box(rt.block_on(adapter.dispatch(&current, &[]))))
    });
}

criterion_group!(benches, framing, encoding, dispatch);
criterion_main!(benches);
