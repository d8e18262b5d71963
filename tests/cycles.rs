//! Cyclic class graphs in request parameters: the generated dispatcher refuses them with an
//! UnknownLocalException (an `Arc` cycle would never be freed), and still takes shared,
//! acyclic graphs.

use omero_sessiond::encoding::{Encode, Encoding, Format, OutputStream, ValueRef};
use omero_sessiond::generated::omero::api::ISession;
use omero_sessiond::generated::omero::{RCollection, RList, RType};
use omero_sessiond::runtime::{Dispatch, DispatchError};
use omero_sessiond::services::model::rlong;

mod isession_fixture;
use isession_fixture::{current, session};

const FORMATS: [(Encoding, Format); 3] = [
    (Encoding::V1_0, Format::Compact),
    (Encoding::V1_1, Format::Compact),
    (Encoding::V1_1, Format::Sliced),
];

fn rlist(items: Vec<Option<ValueRef>>) -> RList {
    RList {
        base: RCollection {
            base: RType::default(),
            val: items,
        },
    }
}

/// `setInput(sess, key, value)` parameters.
fn set_input(encoding: Encoding, format: Format, sess: &str, value: &ValueRef) -> Vec<u8> {
    let mut w = OutputStream::new(encoding);
    w.set_format(format);
    sess.encode(&mut w);
    "k".encode(&mut w);
    w.write_value(Some(value));
    w.write_pending_values();
    w.into_bytes()
}

#[tokio::test]
async fn a_list_holding_itself_is_unknown_local_and_shared_graphs_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (d, uuid) = session(&dir).await;
    // a list that holds itself (never freed: this test leaks it on purpose)
    let looped = ValueRef::empty();
    looped.fill_with(rlist(vec![Some(looped.clone()), rlong(1)]));
    // the same rlong twice, and a list shared by two lists: acyclic
    let one = rlong(1);
    let inner = ValueRef::new(rlist(vec![one.clone(), one]));
    let shared = ValueRef::new(rlist(vec![
        Some(inner.clone()),
        Some(ValueRef::new(rlist(vec![Some(inner)]))),
    ]));
    for (encoding, format) in FORMATS {
        let cur = current("setInput", encoding);
        let params = set_input(encoding, format, &uuid, &looped);
        match d.dispatch(&cur, &params).await {
            Err(DispatchError::UnknownLocal(text)) => assert_eq!(
                text,
                "MarshalException: cyclic class graphs are not accepted by this server"
            ),
            other => panic!("{encoding:?} {format:?}: {other:?}"),
        }
        let params = set_input(encoding, format, &uuid, &shared);
        d.dispatch(&cur, &params).await.unwrap();
        let stored = d.0.get_input(uuid.clone(), "k".into(), &cur).await.unwrap();
        assert_eq!(stored, Some(shared.clone()));
    }
}
