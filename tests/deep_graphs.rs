//! Class graphs whose shape is chosen by the peer: deep chains in both encodings, the sliced
//! type-id amplification request, and the per-graph bounds. Everything that walks a graph
//! runs on a thread with a small stack, so a walk that recursed once per level would crash
//! the test instead of passing by luck.

use std::sync::Arc;

use omero_sessiond::encoding::{
    Decode, DecodeError, DecodeLimits, Encode, Encoding, Format, InputStream, OutputStream,
    ValueRef,
};
use omero_sessiond::generated::omero::api::ISession;
use omero_sessiond::generated::omero::{RCollection, RList, RType};
use omero_sessiond::runtime::{Dispatch, DispatchError};
use omero_sessiond::services::model::rlong;

mod isession_fixture;
use isession_fixture::{current, session};

/// Far below what a recursion of 20 000 levels needs, enough for everything else.
const SMALL_STACK: usize = 512 * 1024;
const DEPTH: usize = 20_000;
/// What the 1.1 decoder needs for `DecodeLimits::max_depth` nested instances in a debug
/// build: tokio's worker threads have 2 MiB.
const DECODER_STACK: usize = 2 * 1024 * 1024;

/// Runs `f` on a thread with [`SMALL_STACK`]; a stack overflow there aborts the test binary.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn rlist(items: Vec<Option<ValueRef>>) -> ValueRef {
    ValueRef::new(RList {
        base: RCollection {
            base: RType::default(),
            val: items,
        },
    })
}

/// `depth` RLists, each holding the next, the last holding an RLong.
fn chain(depth: usize) -> ValueRef {
    let mut head = rlist(vec![rlong(7)]);
    for _ in 1..depth {
        head = rlist(vec![Some(head)]);
    }
    head
}

/// How many RLists lead from `v` to the RLong at the end, walking with a loop.
fn chain_len(v: &ValueRef) -> usize {
    let mut n = 0;
    let mut at = v.clone();
    while let Some(list) = at.get::<RList>() {
        n += 1;
        let Some(Some(next)) = list.base.val.first() else {
            break;
        };
        let next = next.clone();
        at = next;
    }
    n
}

fn encode(encoding: Encoding, format: Format, v: &ValueRef) -> Vec<u8> {
    let mut w = OutputStream::new(encoding);
    w.set_format(format);
    w.write_value(Some(v));
    w.write_pending_values();
    w.into_bytes()
}

fn decode(wire: &[u8], encoding: Encoding) -> Result<Option<ValueRef>, DecodeError> {
    let mut r = InputStream::new(wire, encoding);
    r.set_factories(omero_sessiond::generated::FACTORIES);
    r.refuse_cycles();
    let v = Option::<ValueRef>::decode(&mut r)?;
    r.read_pending_values()?;
    assert!(r.is_at_end());
    Ok(v)
}

#[test]
fn a_deep_chain_goes_through_1_0_and_back_out_in_1_1_on_a_small_stack() {
    for depth in [DEPTH, 60_000] {
        on_small_stack(move || {
            let wire_10 = encode(Encoding::V1_0, Format::Compact, &chain(depth));
            let back = decode(&wire_10, Encoding::V1_0).unwrap().unwrap();
            assert_eq!(chain_len(&back), depth);
            for format in [Format::Compact, Format::Sliced] {
                let wire_11 = encode(Encoding::V1_1, format, &back);
                // nested as deep as the chain is long: the 1.1 decoder refuses it by depth,
                // as Ice's does, with a marshal error and not a crash. Decoding 1.1 does
                // recurse, up to that limit: a constant that needs more than the small stack
                // in a debug build, but far less than a worker thread's.
                let refused = std::thread::Builder::new()
                    .stack_size(DECODER_STACK)
                    .spawn(move || decode(&wire_11, Encoding::V1_1).unwrap_err())
                    .unwrap()
                    .join()
                    .unwrap();
                assert_eq!(
                    refused,
                    DecodeError::TooDeep(DecodeLimits::default().max_depth)
                );
            }
            // and the 1.0 form written back is the one received
            assert_eq!(encode(Encoding::V1_0, Format::Compact, &back), wire_10);
        });
    }
}

#[test]
fn the_iterative_1_1_writer_matches_nested_bytes_that_decode() {
    // shallow enough for the 1.1 decoder: every format round-trips and the chain survives
    let v = chain(90);
    for format in [Format::Compact, Format::Sliced] {
        let wire = encode(Encoding::V1_1, format, &v);
        let back = decode(&wire, Encoding::V1_1).unwrap().unwrap();
        assert_eq!(chain_len(&back), 90);
        assert_eq!(back, v);
        assert_eq!(encode(Encoding::V1_1, format, &back), wire);
    }
}

#[test]
fn deep_chains_compare_format_and_drop_on_a_small_stack() {
    on_small_stack(|| {
        let (a, b) = (chain(DEPTH), chain(DEPTH));
        assert_eq!(a, b);
        let c = rlist(vec![Some(chain(DEPTH - 1))]);
        assert_eq!(a, c);
        let different = {
            let mut head = rlist(vec![rlong(8)]);
            for _ in 1..DEPTH {
                head = rlist(vec![Some(head)]);
            }
            head
        };
        assert_ne!(a, different);
        assert!(!format!("{a:?}").is_empty());
        drop((a, b, c, different));
    });
}

#[test]
fn cyclic_graphs_compare_without_end() {
    on_small_stack(|| {
        let a = ValueRef::empty();
        a.fill_with(RList {
            base: RCollection {
                base: RType::default(),
                val: vec![Some(a.clone()), rlong(1)],
            },
        });
        let b = ValueRef::empty();
        b.fill_with(RList {
            base: RCollection {
                base: RType::default(),
                val: vec![Some(b.clone()), rlong(1)],
            },
        });
        assert_eq!(a, b);
        let c = ValueRef::empty();
        c.fill_with(RList {
            base: RCollection {
                base: RType::default(),
                val: vec![Some(c.clone()), rlong(2)],
            },
        });
        assert_ne!(a, c);
    });
}

#[test]
fn a_graph_may_hold_only_so_many_instances() {
    let limits = DecodeLimits {
        max_instances: 1000,
        ..DecodeLimits::default()
    };
    for (encoding, format, depth) in [
        (Encoding::V1_0, Format::Compact, 5000),
        (Encoding::V1_1, Format::Compact, 50),
    ] {
        // in 1.1 a wide list: a long chain would hit the depth limit first
        let v = if encoding == Encoding::V1_0 {
            chain(depth)
        } else {
            rlist((0..2000).map(rlong).collect())
        };
        let wire = encode(encoding, format, &v);
        let mut r = InputStream::with_limits(&wire, encoding, limits);
        r.set_factories(omero_sessiond::generated::FACTORIES);
        let result =
            Option::<ValueRef>::decode(&mut r).and_then(|_| r.read_pending_values().map(|_| ()));
        assert_eq!(result, Err(DecodeError::TooManyInstances(1000)));
        assert_eq!(
            DecodeError::TooManyInstances(1000).to_string(),
            "MarshalException: class graph holds more than 1000 instances"
        );
    }
}

// ---- through the ISession dispatcher, as the server runs it ----

fn strings(encoding: Encoding, items: &[&str]) -> OutputStream {
    let mut w = OutputStream::new(encoding);
    for s in items {
        s.encode(&mut w);
    }
    w
}

fn block_on_small_stack<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    on_small_stack(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    })
}

#[test]
fn set_input_of_a_deep_chain_in_1_0_reads_back_in_1_1() {
    block_on_small_stack(async {
        let dir = tempfile::tempdir().unwrap();
        let (d, uuid) = session(&dir).await;
        let mut w = strings(Encoding::V1_0, &[&uuid, "k"]);
        w.write_value(Some(&chain(DEPTH)));
        w.write_pending_values();
        d.dispatch(&current("setInput", Encoding::V1_0), w.as_slice())
            .await
            .unwrap();
        for (encoding, depth_check) in [(Encoding::V1_1, false), (Encoding::V1_0, true)] {
            let params = strings(encoding, &[&uuid, "k"]).into_bytes();
            let reply = d
                .dispatch(&current("getInput", encoding), &params)
                .await
                .unwrap();
            if depth_check {
                let back = decode(&reply, encoding).unwrap().unwrap();
                assert_eq!(chain_len(&back), DEPTH);
            } else {
                // the reply starts with the outermost list, inline
                assert_eq!(reply.first(), Some(&1));
                assert!(reply.len() > DEPTH);
            }
        }
    });
}

/// `setInput(uuid, "k", v)` in 1.1 where `v` is one instance of unknown type in the sliced
/// format: a `type_id_len`-byte type id written once, then `slices - 1` slices naming it by
/// index (6 bytes each).
fn amplifying_set_input(uuid: &str, type_id_len: usize, slices: usize) -> Vec<u8> {
    const STRING: u8 = 0x01;
    const INDEX: u8 = 0x02;
    const HAS_SIZE: u8 = 0x10;
    const IS_LAST: u8 = 0x20;
    let mut w = strings(Encoding::V1_1, &[uuid, "k"]);
    w.write_size(1);
    let last = |i: usize| if i + 1 == slices { IS_LAST } else { 0 };
    w.write_u8(STRING | HAS_SIZE | last(0));
    w.write_string(&format!("::X{}", "x".repeat(type_id_len - 3)));
    w.write_i32(4);
    for i in 1..slices {
        w.write_u8(INDEX | HAS_SIZE | last(i));
        w.write_size(1);
        w.write_i32(4);
    }
    w.into_bytes()
}

#[tokio::test]
async fn the_sliced_type_id_amplification_request_is_refused_or_shares_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let (d, uuid) = session(&dir).await;
    let cur = current("setInput", Encoding::V1_1);
    // the request of the finding: a 200 kB type id named by 2 000 slices
    let params = amplifying_set_input(&uuid, 200_000, 2000);
    match d.dispatch(&cur, &params).await {
        Err(DispatchError::UnknownLocal(text)) => assert_eq!(
            text,
            "MarshalException: type id of 200000 bytes (at most 1024 accepted)"
        ),
        other => panic!("{other:?}"),
    }
    // a short id, too many slices
    let params = amplifying_set_input(&uuid, 1000, 2000);
    match d.dispatch(&cur, &params).await {
        Err(DispatchError::UnknownLocal(text)) => assert_eq!(
            text,
            "MarshalException: instance or exception with more than 100 slices"
        ),
        other => panic!("{other:?}"),
    }
    // within both limits the value is accepted, and every slice shares the one id
    let params = amplifying_set_input(&uuid, 1000, 100);
    d.dispatch(&cur, &params).await.unwrap();
    let stored =
        d.0.get_input(uuid.clone(), "k".into(), &cur)
            .await
            .unwrap()
            .unwrap();
    let slices = stored.preserved_slices();
    assert_eq!(slices.len(), 100);
    assert_eq!(slices[0].type_id.len(), 1000);
    assert!(slices
        .iter()
        .all(|s| Arc::ptr_eq(&s.type_id, &slices[0].type_id)));
}
