//! Compiles the golden output of slice2rs (`slice/slice2rs/tests/golden/*.expected.rs`)
//! into this test crate and runs it: every construct of the fixture must build and
//! round-trip, so the golden file is known to be valid Rust against the real facade.

use std::sync::Arc;

use omero_sessiond::facade::{
    ClassType, ConnectionInfo, Context, Current, Decode, Dispatch, DispatchError, Encode, Encoding,
    Identity, InputStream, OperationMode, OutputStream, Proxy, UserException, ValueRef,
};

/// What the generated code reaches as `crate::facade`: the only name it uses outside itself.
mod facade {
    pub use omero_sessiond::facade::*;
}

/// Not at the crate root, as generated code names its own types by relative paths.
mod fixture {
    #[allow(dead_code, clippy::all)]
    pub mod generated {
        include!("../slice/slice2rs/tests/golden/features.expected.rs");
    }
}

use fixture::generated;

use generated::{dep, feat};

#[test]
fn constants_defaults_and_enums() {
    assert_eq!(feat::OCTAL, 15);
    assert_eq!(feat::COPY, 15);
    assert_eq!(feat::WIDE, 15i64);
    assert_eq!(feat::BIG, i64::MAX);
    assert_eq!(feat::GREETING, "h\u{e9}llo\t\"you\"");
    assert_eq!(feat::FAVOURITE, feat::inner::Color::Blue);
    assert_eq!(feat::inner::Color::Blue as i32, 6);
    assert_eq!(feat::inner::Color::MAX_VALUE, 6);
    assert_eq!(
        feat::inner::Color::from_i32(5),
        Some(feat::inner::Color::Green)
    );
    assert_eq!(feat::inner::Color::default(), feat::inner::Color::Red);
    assert_eq!(feat::Point::default().y, -1);
    let l = feat::Labeled::default();
    assert_eq!(
        (l.label.as_str(), l.color, l.weight),
        ("none", feat::inner::Color::Green, 2.0)
    );
    assert_eq!(dep::Failure::default().reason, "unknown");
    assert_eq!(feat::Problem::default().code, 7);
    assert_eq!(<feat::Point as Decode>::FIXED_SIZE, Some(8));
}

fn sample() -> feat::Base {
    feat::Base {
        base: feat::Shape {
            module: "m".into(),
            corners: vec![feat::Point { x: 1, y: 2 }],
            depth: Some(4),
            label: Some(feat::Labeled::default()),
            next: None,
            anything: Some(ValueRef::new(dep::Named { name: "n".into() })),
        },
        base_: 9,
        other: None,
    }
}

fn round_trip(v: &ValueRef, enc: Encoding) -> ValueRef {
    let mut w = OutputStream::new(enc);
    w.write_value(Some(v));
    w.write_pending_values();
    let bytes = w.into_bytes();
    let mut r = InputStream::new(&bytes, enc);
    r.set_factories(generated::FACTORIES);
    let back = r.read_value().unwrap().unwrap();
    r.read_pending_values().unwrap();
    assert!(r.is_at_end());
    back
}

#[test]
fn classes_with_bases_optionals_and_class_members() {
    let v = ValueRef::new(sample());
    let back = round_trip(&v, Encoding::V1_1);
    assert_eq!(back.get::<feat::Base>(), Some(&sample()));
    assert_eq!(back.get::<feat::Shape>().unwrap().depth, Some(4));
    // Encoding 1.0 has no optionals.
    let back = round_trip(&v, Encoding::V1_0);
    let b = back.get::<feat::Base>().unwrap();
    assert_eq!((b.base.depth, b.base.label.is_none()), (None, true));
    assert_eq!(b.base_, 9);
    let named = b
        .base
        .anything
        .as_ref()
        .unwrap()
        .get::<dep::Named>()
        .unwrap();
    assert_eq!(named.name, "n");
    assert_eq!(<feat::Shape as ClassType>::COMPACT_ID, Some(3));
    assert_eq!(
        generated::feat::compact_id_to_type_id(3),
        Some("::Feat::Shape")
    );
}

#[test]
fn exceptions_with_bases() {
    let e = feat::Problem {
        base: dep::Failure { reason: "r".into() },
        code: 3,
        detail: Some("d".into()),
    };
    assert!(e.find("::Dep::Failure").is_some());
    for enc in [Encoding::V1_0, Encoding::V1_1] {
        let mut w = OutputStream::new(enc);
        w.write_exception(&e);
        let bytes = w.into_bytes();
        let mut r = InputStream::new(&bytes, enc);
        r.set_factories(generated::FACTORIES);
        let back = r.read_exception().unwrap();
        let p = back
            .find("::Feat::Problem")
            .and_then(|a| a.downcast_ref::<feat::Problem>())
            .unwrap();
        assert_eq!(p.base.reason, "r");
        assert_eq!(p.code, 3);
        let detail = if enc == Encoding::V1_1 {
            Some("d".to_string())
        } else {
            None
        };
        assert_eq!(p.detail, detail);
    }
}

struct Leaf;

impl feat::Tree for Leaf {
    async fn name(&self, _: &Current) -> Result<String, DispatchError> {
        Ok("leaf".into())
    }
    async fn lookup(
        &self,
        key: String,
        limit: Option<i32>,
        _: &Current,
    ) -> Result<(Option<ValueRef>, i64, Option<feat::Points>), DispatchError> {
        if key == "bad" {
            return Err(feat::Problem::default().into());
        }
        let n = ValueRef::new(dep::Named { name: key });
        Ok((
            Some(n),
            i64::from(limit.unwrap_or(-1)),
            Some(vec![feat::Point { x: 5, y: 6 }]),
        ))
    }
    async fn shape(&self, _: &Current) -> Result<Option<ValueRef>, DispatchError> {
        Ok(None)
    }
    async fn ping(
        &self,
        _: Option<omero_sessiond::facade::Proxy>,
        _: Option<omero_sessiond::facade::Proxy>,
        _: &Current,
    ) -> Result<(), DispatchError> {
        Ok(())
    }
    async fn paint(
        &self,
        c: feat::inner::Color,
        _: &Current,
    ) -> Result<Option<feat::inner::Color>, DispatchError> {
        Ok(Some(c))
    }
    async fn current(&self, current_: i32, _: &Current) -> Result<(), DispatchError> {
        assert_eq!(current_, 1);
        Ok(())
    }
}

fn current(operation: &str) -> Current {
    Current {
        id: Identity::new("", "leaf"),
        facet: String::new(),
        operation: operation.to_string(),
        mode: OperationMode::Normal,
        ctx: Default::default(),
        request_id: 1,
        encoding: Encoding::V1_1,
        connection: Arc::new(ConnectionInfo::detached(1, "tcp")),
        received: std::time::Instant::now(),
    }
}

#[tokio::test]
async fn dispatch_with_optionals_outs_and_inherited_operations() {
    let d = feat::TreeDispatcher(Arc::new(Leaf));
    assert_eq!(
        d.type_ids(),
        ["::Feat::Node", "::Feat::Tree", "::Ice::Object"]
    );

    let mut w = OutputStream::new(Encoding::V1_1);
    "key".encode(&mut w);
    w.write_optional(3, Some(&7i32));
    let reply = d
        .dispatch(&current("lookup"), &w.into_bytes())
        .await
        .unwrap();
    let mut r = InputStream::new(&reply, Encoding::V1_1);
    r.set_factories(generated::FACTORIES);
    assert_eq!(i64::decode(&mut r).unwrap(), 7);
    let named = r.read_value().unwrap();
    let found: Option<feat::Points> = r.read_optional(1).unwrap();
    r.read_pending_values().unwrap();
    assert_eq!(named.unwrap().get::<dep::Named>().unwrap().name, "key");
    assert_eq!(found, Some(vec![feat::Point { x: 5, y: 6 }]));

    let mut w = OutputStream::new(Encoding::V1_1);
    "bad".encode(&mut w);
    match d.dispatch(&current("lookup"), &w.into_bytes()).await {
        Err(DispatchError::User(e)) => assert_eq!(e.ice_id(), "::Feat::Problem"),
        other => panic!("{other:?}"),
    }

    let mut w = OutputStream::new(Encoding::V1_1);
    feat::inner::Color::Green.encode(&mut w);
    let reply = d
        .dispatch(&current("paint"), &w.into_bytes())
        .await
        .unwrap();
    let mut r = InputStream::new(&reply, Encoding::V1_1);
    let c: Option<feat::inner::Color> = r.read_optional(2).unwrap();
    assert_eq!(c, Some(feat::inner::Color::Green));

    let mut w = OutputStream::new(Encoding::V1_1);
    1i32.encode(&mut w);
    assert!(d
        .dispatch(&current("current"), &w.into_bytes())
        .await
        .unwrap()
        .is_empty());
    let mut name = current("name");
    match d.dispatch(&name, &[]).await {
        Err(DispatchError::UnknownLocal(text)) => assert!(text.contains("::Ice::Idempotent")),
        other => panic!("{other:?}"),
    }
    name.mode = OperationMode::Nonmutating;
    let reply = d.dispatch(&name, &[]).await.unwrap();
    assert_eq!(reply, b"\x04leaf");
}

/// Sends calls straight into a dispatcher, encoding user exceptions as a reply would.
struct Loopback(feat::TreeDispatcher<Leaf>);

#[omero_sessiond::facade::async_trait]
impl omero_sessiond::facade::Invoker for Loopback {
    async fn invoke(
        &self,
        proxy: &Proxy,
        operation: &str,
        mode: OperationMode,
        ctx: &Context,
        params: Vec<u8>,
        encoding: Encoding,
        _oneway: bool,
    ) -> Result<omero_sessiond::facade::InvokeReply, omero_sessiond::facade::InvokeError> {
        use omero_sessiond::facade::InvokeReply;
        let mut cur = current(operation);
        cur.id = proxy.identity.clone();
        cur.mode = mode;
        cur.ctx = ctx.clone();
        cur.encoding = encoding;
        Ok(match self.0.dispatch(&cur, &params).await {
            Ok(payload) => InvokeReply::Ok(payload),
            Err(DispatchError::User(e)) => {
                let mut w = OutputStream::new(encoding);
                w.write_exception(&*e);
                InvokeReply::UserException(w.into_bytes())
            }
            Err(other) => InvokeReply::Failed(format!("{other:?}")),
        })
    }
}

#[tokio::test]
async fn typed_proxies_talk_to_dispatchers() {
    for enc in [Encoding::V1_0, Encoding::V1_1] {
        let mut proxy = Proxy::new(Identity::new("", "leaf"));
        proxy.encoding = enc;
        let prx = feat::TreePrx {
            proxy,
            invoker: Arc::new(Loopback(feat::TreeDispatcher(Arc::new(Leaf)))),
        };
        let ctx = Context::new();
        assert_eq!(prx.name(&ctx).await.unwrap(), "leaf");
        let (named, count, found) = prx.lookup("k".into(), Some(3), &ctx).await.unwrap();
        assert_eq!(named.unwrap().get::<dep::Named>().unwrap().name, "k");
        if enc == Encoding::V1_1 {
            assert_eq!(count, 3);
            assert_eq!(found, Some(vec![feat::Point { x: 5, y: 6 }]));
        } else {
            assert_eq!((count, found), (-1, None));
        }
        match prx.lookup("bad".into(), None, &ctx).await {
            Err(omero_sessiond::facade::CallError::User(e)) => {
                assert_eq!(e.ice_id(), "::Feat::Problem")
            }
            other => panic!("{other:?}"),
        }
        prx.current(1, &ctx).await.unwrap();
        prx.ping(None, None, &ctx).await.unwrap();
    }
}
