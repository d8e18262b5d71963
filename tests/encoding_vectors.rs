//! Byte vectors written by ZeroC's Ice 3.7 Java runtime (`interop/vectors/`, regenerate with
//! `interop/vectors/run.sh`): every one must decode to the values Gen.java wrote, and where our
//! encoder makes the same choices as ZeroC's (always, except that exceptions are always sliced
//! in 1.1 and preserved slices are dropped in 1.0) re-encode to the same bytes.

use std::collections::{BTreeMap, HashMap};

use omero_sessiond::facade::{
    Decode, DecodeError, Encode, Encoding, Endpoint, Factories, Format, Identity, InputStream,
    OutputStream, Proxy, ProxyMode, UserException, ValueRef,
};

mod facade {
    pub use omero_sessiond::facade::*;
}

#[allow(dead_code)]
#[path = "../src/encoding/test_types.rs"]
mod test_types;

use test_types::*;

fn vectors() -> HashMap<String, Vec<u8>> {
    let json: HashMap<String, String> =
        serde_json::from_str(include_str!("../interop/vectors/vectors.json")).unwrap();
    json.into_iter()
        .map(|(k, v)| {
            let bytes = (0..v.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap())
                .collect();
            (k, bytes)
        })
        .collect()
}

fn vector(name: &str) -> Vec<u8> {
    vectors()
        .remove(name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

fn encoding_of(name: &str) -> Encoding {
    if name.ends_with("_1_0") {
        Encoding::V1_0
    } else {
        Encoding::V1_1
    }
}

/// Decodes vector `name` with `read` inside its encapsulation, then re-encodes the result
/// with `write` and checks the bytes.
fn check<T>(
    name: &str,
    read: impl Fn(&mut InputStream<'_>) -> Result<T, DecodeError>,
    write: impl Fn(&mut OutputStream, &T),
) -> T {
    let wire = vector(name);
    let value = decode(name, &wire, factories(), &read).unwrap();
    let encoding = encoding_of(name);
    let mut w = OutputStream::new(encoding);
    if name.ends_with("_sliced") {
        w.set_format(Format::Sliced);
    }
    w.start_encapsulation(encoding);
    write(&mut w, &value);
    w.end_encapsulation();
    assert_eq!(hex(w.as_slice()), hex(&wire), "re-encoding {name}");
    value
}

fn decode<T>(
    name: &str,
    wire: &[u8],
    f: Factories,
    read: impl Fn(&mut InputStream<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut r = InputStream::new(wire, Encoding::V1_1);
    r.set_factories(f);
    let encoding = r.start_encapsulation()?;
    assert_eq!(encoding, encoding_of(name), "{name}");
    let value = read(&mut r)?;
    r.end_encapsulation()?;
    Ok(value)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn primitives() {
    type P = (bool, u8, i16, i32, i64, f32, f64, String, String, String);
    for name in ["primitives_1_0", "primitives_1_1"] {
        let p: P = check(
            name,
            |r| {
                Ok((
                    bool::decode(r)?,
                    u8::decode(r)?,
                    i16::decode(r)?,
                    i32::decode(r)?,
                    i64::decode(r)?,
                    f32::decode(r)?,
                    f64::decode(r)?,
                    String::decode(r)?,
                    String::decode(r)?,
                    String::decode(r)?,
                ))
            },
            |w, p| {
                p.0.encode(w);
                p.1.encode(w);
                p.2.encode(w);
                p.3.encode(w);
                p.4.encode(w);
                p.5.encode(w);
                p.6.encode(w);
                p.7.encode(w);
                p.8.encode(w);
                p.9.encode(w);
            },
        );
        assert_eq!(
            (p.0, p.1, p.2, p.3, p.4),
            (true, 0xfe, -2, 123456, -9876543210)
        );
        assert_eq!((p.5, p.6), (1.5, -2.25));
        assert_eq!((p.7.as_str(), p.8.as_str()), ("h\u{e9}llo", ""));
        assert_eq!(p.9, "a".repeat(300));
    }
}

type Collections = (
    Vec<i32>,
    Vec<String>,
    Vec<u8>,
    Vec<Point>,
    BTreeMap<String, i32>,
    Vec<i32>,
);

#[test]
fn collections() {
    for name in ["collections_1_0", "collections_1_1"] {
        let c: Collections = check(
            name,
            |r| {
                Ok((
                    Decode::decode(r)?,
                    Decode::decode(r)?,
                    Decode::decode(r)?,
                    Decode::decode(r)?,
                    Decode::decode(r)?,
                    Decode::decode(r)?,
                ))
            },
            |w, c: &Collections| {
                c.0.encode(w);
                c.1.encode(w);
                c.2.encode(w);
                c.3.encode(w);
                c.4.encode(w);
                c.5.encode(w);
            },
        );
        assert_eq!(c.0, vec![1, 2, 3]);
        assert_eq!(c.1, vec!["a".to_string(), "bc".to_string()]);
        assert_eq!(c.2, vec![1, 2, 255]);
        assert_eq!(c.3, vec![Point { x: 1, y: 2 }, Point { x: 3, y: 4 }]);
        assert_eq!(c.4, BTreeMap::from([("a".into(), 1), ("b".into(), 2)]));
        assert!(c.5.is_empty());
    }
}

#[test]
fn enums_in_both_encodings() {
    // Color (max 2), Mid (max 200), Huge (max 70000) twice
    let maxima = [2, 200, 70000, 70000];
    for name in ["enums_1_0", "enums_1_1"] {
        let values = check(
            name,
            |r| maxima.iter().map(|m| r.read_enum(*m)).collect(),
            |w, v: &Vec<i32>| {
                for (v, m) in v.iter().zip(maxima) {
                    w.write_enum(*v, m);
                }
            },
        );
        assert_eq!(values, vec![2, 200, 70000, 0]);
    }
}

/// `struct Named { string name; Point p; Color c; }`
#[derive(Debug, PartialEq)]
struct Named {
    name: String,
    p: Point,
    c: i32,
}

impl Named {
    fn decode(r: &mut InputStream<'_>) -> Result<Named, DecodeError> {
        Ok(Named {
            name: String::decode(r)?,
            p: Point::decode(r)?,
            c: r.read_enum(2)?,
        })
    }

    fn encode(&self, w: &mut OutputStream) {
        self.name.encode(w);
        self.p.encode(w);
        w.write_enum(self.c, 2);
    }
}

#[test]
fn structs() {
    for name in ["struct_1_0", "struct_1_1"] {
        let n = check(name, Named::decode, |w, n| n.encode(w));
        assert_eq!(
            n,
            Named {
                name: "n".into(),
                p: Point { x: 1, y: 2 },
                c: 1
            }
        );
    }
}

fn proxy(name: &str) -> Option<Proxy> {
    check(name, |r| r.read_proxy(), |w, p| w.write_proxy(p.as_ref()))
}

#[test]
fn proxies_with_every_endpoint_kind() {
    for enc in ["1_0", "1_1"] {
        let router = proxy(&format!("proxy0_{enc}")).unwrap();
        assert_eq!(router.identity, Identity::new("OMERO.Glacier2", "router"));
        assert_eq!(
            router.endpoints,
            vec![Endpoint::Ssl {
                host: "localhost".into(),
                port: 4064,
                timeout: 60000,
                compress: false
            }]
        );

        let p = proxy(&format!("proxy1_{enc}")).unwrap();
        assert_eq!(
            (p.facet.as_str(), p.mode, p.secure),
            ("fac", ProxyMode::Oneway, true)
        );
        let kinds: Vec<_> = p
            .endpoints
            .iter()
            .map(|e| match e {
                Endpoint::Tcp { compress, .. } => format!("tcp {compress}"),
                Endpoint::Udp { port, .. } => format!("udp {port}"),
                Endpoint::Ws { resource, .. } => format!("ws {resource}"),
                Endpoint::Wss { timeout, .. } => format!("wss {timeout}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["tcp true", "udp 10001", "ws /omero-ws", "wss -1"]);

        let opaque = proxy(&format!("proxy2_{enc}")).unwrap();
        assert_eq!(
            opaque.endpoints,
            vec![Endpoint::Opaque {
                kind: 99,
                encoding: (1, 1),
                bytes: vec![1, 2, 3]
            }]
        );

        let indirect = proxy(&format!("proxy3_{enc}")).unwrap();
        assert_eq!(indirect.adapter_id, "Adapter");
        assert_eq!(indirect.mode, ProxyMode::BatchDatagram);

        let well_known = proxy(&format!("proxy4_{enc}")).unwrap();
        assert!(well_known.endpoints.is_empty() && well_known.adapter_id.is_empty());

        assert_eq!(proxy(&format!("proxy_null_{enc}")), None);
    }
    // the proxy's own encoding, 1.0 from "-e 1.0", is only on the wire in 1.1
    assert_eq!(proxy("proxy2_1_1").unwrap().encoding, Encoding::V1_0);
    assert_eq!(proxy("proxy0_1_1").unwrap().encoding, Encoding::V1_1);
}

#[derive(Debug, PartialEq)]
struct Optionals {
    b: Option<bool>,
    s: Option<i16>,
    i: Option<i32>,
    l: Option<i64>,
    f: Option<f32>,
    d: Option<f64>,
    text: Option<String>,
    color: Option<usize>,
    point: Option<Point>,
    named: Option<Named>,
    ints: Option<Vec<i32>>,
    strings: Option<Vec<String>>,
    bytes: Option<Vec<u8>>,
    points: Option<Vec<Point>>,
    dict: Option<HashMap<String, i32>>,
    proxy: Option<Option<Proxy>>,
    value: Option<Option<ValueRef>>,
    tag30: Option<i32>,
    tag300: Option<String>,
}

fn read_optionals(r: &mut InputStream<'_>) -> Result<(i32, Optionals), DecodeError> {
    let req = i32::decode(r)?;
    // Size and struct formats, the way generated code reads them
    let read_color = |r: &mut InputStream<'_>| -> Result<Option<usize>, DecodeError> {
        if r.encoding() == Encoding::V1_0 || r.is_at_end() {
            return Ok(None);
        }
        Ok(r.read_optional::<SizeValue>(8)?.map(|v| v.0))
    };
    let b = r.read_optional(1)?;
    let s = r.read_optional(2)?;
    let i = r.read_optional(3)?;
    let l = r.read_optional(4)?;
    let f = r.read_optional(5)?;
    let d = r.read_optional(6)?;
    let text = r.read_optional(7)?;
    let color = read_color(r)?;
    let point = r.read_optional::<FixedPoint>(9)?.map(|p| p.0);
    let named = r.read_optional::<VarNamed>(10)?.map(|n| n.0);
    Ok((
        req,
        Optionals {
            b,
            s,
            i,
            l,
            f,
            d,
            text,
            color,
            point,
            named,
            ints: r.read_optional(11)?,
            strings: r.read_optional(12)?,
            bytes: r.read_optional(13)?,
            points: r.read_optional(14)?,
            dict: r.read_optional(15)?,
            proxy: r.read_optional(16)?,
            value: r.read_optional(17)?,
            tag30: r.read_optional(30)?,
            tag300: r.read_optional(300)?,
        },
    ))
}

/// An enum as generated code frames it: `Size`.
struct SizeValue(usize);

impl omero_sessiond::facade::OptionalValue for SizeValue {
    const FORMAT: omero_sessiond::facade::OptionalFormat =
        omero_sessiond::facade::OptionalFormat::Size;
    fn write_optional_payload(&self, w: &mut OutputStream) {
        w.write_size(self.0)
    }
    fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        r.read_size().map(SizeValue)
    }
}

/// A fixed-size struct as generated code frames it: `VSize` with the struct's size.
struct FixedPoint(Point);

impl omero_sessiond::facade::OptionalValue for FixedPoint {
    const FORMAT: omero_sessiond::facade::OptionalFormat =
        omero_sessiond::facade::OptionalFormat::VSize;
    fn write_optional_payload(&self, w: &mut OutputStream) {
        w.write_size(8);
        self.0.encode(w);
    }
    fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        r.read_size()?;
        Point::decode(r).map(FixedPoint)
    }
}

/// A variable-size struct as generated code frames it: `FSize`.
struct VarNamed(Named);

impl omero_sessiond::facade::OptionalValue for VarNamed {
    const FORMAT: omero_sessiond::facade::OptionalFormat =
        omero_sessiond::facade::OptionalFormat::FSize;
    fn write_optional_payload(&self, w: &mut OutputStream) {
        let pos = w.start_fsize();
        self.0.encode(w);
        w.end_fsize(pos);
    }
    fn read_optional_payload(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        r.skip(4)?;
        Named::decode(r).map(VarNamed)
    }
}

fn write_optionals(w: &mut OutputStream, (req, o): &(i32, Optionals)) {
    req.encode(w);
    w.write_optional(1, o.b.as_ref());
    w.write_optional(2, o.s.as_ref());
    w.write_optional(3, o.i.as_ref());
    w.write_optional(4, o.l.as_ref());
    w.write_optional(5, o.f.as_ref());
    w.write_optional(6, o.d.as_ref());
    w.write_optional(7, o.text.as_ref());
    w.write_optional(8, o.color.map(SizeValue).as_ref());
    w.write_optional(9, o.point.map(FixedPoint).as_ref());
    let named = o.named.as_ref().map(|n| {
        VarNamed(Named {
            name: n.name.clone(),
            p: n.p,
            c: n.c,
        })
    });
    w.write_optional(10, named.as_ref());
    w.write_optional(11, o.ints.as_ref());
    w.write_optional(12, o.strings.as_ref());
    w.write_optional(13, o.bytes.as_ref());
    w.write_optional(14, o.points.as_ref());
    w.write_optional(15, o.dict.as_ref());
    w.write_optional(16, o.proxy.as_ref());
    w.write_optional(17, o.value.as_ref());
    w.write_optional(30, o.tag30.as_ref());
    w.write_optional(300, o.tag300.as_ref());
}

#[test]
fn optionals_of_every_format() {
    let (req, o) = check("optionals_1_1", read_optionals, write_optionals);
    assert_eq!(req, 21);
    assert_eq!(
        (o.b, o.s, o.i, o.l),
        (Some(true), Some(7), Some(8), Some(9))
    );
    assert_eq!((o.f, o.d), (Some(1.5), Some(2.5)));
    assert_eq!(o.text.as_deref(), Some("x"));
    assert_eq!(o.color, Some(2));
    assert_eq!(o.point, Some(Point { x: 1, y: 2 }));
    assert_eq!(o.named.unwrap().p, Point { x: 3, y: 4 });
    assert_eq!(o.ints, Some(vec![5, 6]));
    assert_eq!(o.strings, Some(vec!["p".to_string(), "q".to_string()]));
    assert_eq!(o.bytes, Some(vec![9, 8]));
    assert_eq!(o.points, Some(vec![Point { x: 7, y: 8 }]));
    assert_eq!(o.dict, Some(HashMap::from([("k".to_string(), 3)])));
    let proxy = o.proxy.unwrap().unwrap();
    assert_eq!(proxy.identity.name, "router");
    let value = o.value.unwrap().unwrap();
    assert_eq!(value.get::<Base>().unwrap().i, 4);
    assert_eq!((o.tag30, o.tag300.as_deref()), (Some(30), Some("big")));

    // 1.0 carries none of them
    let (req, o) = check("optionals_1_0", read_optionals, write_optionals);
    assert_eq!((req, o.b, o.tag300), (21, None, None));
}

#[test]
fn optionals_skipped_when_unknown() {
    // a receiver that only knows tag 300 skips every other format on the way
    let wire = vector("optionals_1_1");
    let big = decode("optionals_1_1", &wire, factories(), |r| {
        i32::decode(r)?;
        r.read_optional::<String>(300)
    })
    .unwrap();
    assert_eq!(big.as_deref(), Some("big"));
}

fn read_value(r: &mut InputStream<'_>) -> Result<Option<ValueRef>, DecodeError> {
    let v = Option::<ValueRef>::decode(r)?;
    r.read_pending_values()?;
    Ok(v)
}

fn write_value(w: &mut OutputStream, v: &Option<ValueRef>) {
    v.encode(w);
    w.write_pending_values();
}

fn check_spec_graph(v: &ValueRef, o: Option<i32>) {
    let d = v.get::<Derived>().unwrap();
    assert_eq!((d.s.as_str(), d.o, d.base.i), ("hi", o, 7));
    let b = d.base.next.as_ref().unwrap().get::<Base>().unwrap();
    assert_eq!(b.i, 8);
    assert!(ValueRef::ptr_eq(b.next.as_ref().unwrap(), v));
}

#[test]
fn class_graphs_with_cycles() {
    for (name, o) in [
        ("spec_graph_1_0", None),
        ("spec_graph_compact", Some(42)),
        ("spec_graph_sliced", Some(42)),
    ] {
        let v = check(name, read_value, write_value).unwrap();
        check_spec_graph(&v, o);
    }
    for name in ["null_value_1_0", "null_value_compact", "null_value_sliced"] {
        assert_eq!(check(name, read_value, write_value), None);
    }
    for name in ["compact_id_1_0", "compact_id_compact", "compact_id_sliced"] {
        let v = check(name, read_value, write_value).unwrap();
        assert_eq!(v.get::<Compact>().unwrap().v, 5);
    }
}

#[test]
fn shared_instances() {
    let read3 = |r: &mut InputStream<'_>| {
        let a = Option::<ValueRef>::decode(r)?;
        let b = Option::<ValueRef>::decode(r)?;
        let c = Option::<ValueRef>::decode(r)?;
        r.read_pending_values()?;
        Ok((a.unwrap(), b.unwrap(), c.unwrap()))
    };
    for name in ["shared_1_0", "shared_compact", "shared_sliced"] {
        let (a, b, c) = check(name, read3, |w, (a, b, c)| {
            for v in [a, b, c] {
                Some(v.clone()).encode(w);
            }
            w.write_pending_values();
        });
        assert!(ValueRef::ptr_eq(&a, &c));
        let next = b.get::<Base>().unwrap().next.clone().unwrap();
        assert!(ValueRef::ptr_eq(&next, &a));
        assert_eq!(a.get::<Base>().unwrap().i, 1);
    }
}

#[test]
fn unknown_derived_class_is_sliced_and_preserved() {
    // MoreDerived{i=1, s="s", o=5, extra="e", other=Base{2, next→self}, tag="t",
    //             next=Base{3, next→self}}; the Rust side does not know MoreDerived
    let sliced = check("more_derived_sliced", read_value, write_value).unwrap();
    assert_eq!(sliced.ice_id(), "::Test::Derived");
    let d = sliced.get::<Derived>().unwrap();
    assert_eq!((d.s.as_str(), d.o, d.base.i), ("s", Some(5), 1));
    let kept = sliced.preserved_slices();
    assert_eq!(kept.len(), 1);
    assert_eq!(&*kept[0].type_id, "::Test::MoreDerived");
    let other = kept[0].instances[0].as_ref().unwrap();
    assert!(ValueRef::ptr_eq(
        other.get::<Base>().unwrap().next.as_ref().unwrap(),
        &sliced
    ));

    let wire = vector("more_derived_compact");
    assert_eq!(
        decode("more_derived_compact", &wire, factories(), read_value).unwrap_err(),
        DecodeError::NoValueFactory("::Test::MoreDerived".into())
    );

    let wire = vector("more_derived_1_0");
    let v = decode("more_derived_1_0", &wire, factories(), read_value)
        .unwrap()
        .unwrap();
    assert_eq!(v.get::<Derived>().unwrap().s, "s");
    let holder = v.get::<Base>().unwrap().next.as_ref().unwrap();
    assert_eq!(holder.get::<Base>().unwrap().i, 3);
}

fn read_exception(r: &mut InputStream<'_>) -> Result<Box<dyn UserException>, DecodeError> {
    r.read_exception()
}

fn exception_as<T: Clone + 'static>(e: &dyn UserException, id: &str) -> T {
    e.find(id).unwrap().downcast_ref::<T>().unwrap().clone()
}

#[test]
fn exceptions_in_all_formats() {
    for name in ["ex_derived_1_0", "ex_derived_compact", "ex_derived_sliced"] {
        let wire = vector(name);
        let e = decode(name, &wire, factories(), read_exception).unwrap();
        let d: DerivedEx = exception_as(e.as_ref(), "::Test::DerivedEx");
        assert_eq!((d.base.reason.as_str(), d.code), ("bad", 5));
    }
    for name in ["ex_derived_1_0", "ex_derived_sliced"] {
        check(name, read_exception, |w, e| w.write_exception(e.as_ref()));
    }
}

#[test]
fn unknown_exception_falls_back_to_base() {
    for name in ["ex_unknown_1_0", "ex_unknown_sliced"] {
        let wire = vector(name);
        let e = decode(name, &wire, factories(), read_exception).unwrap();
        assert_eq!(e.ice_id(), "::Test::DerivedEx");
        let d: DerivedEx = exception_as(e.as_ref(), "::Test::DerivedEx");
        assert_eq!((d.base.reason.as_str(), d.code), ("why", 6));
    }
    let wire = vector("ex_unknown_compact");
    assert_eq!(
        decode("ex_unknown_compact", &wire, factories(), read_exception).unwrap_err(),
        DecodeError::UnknownUserException("::Test::UnknownEx".into())
    );
}

#[test]
fn exceptions_with_class_members() {
    for name in ["ex_class_1_0", "ex_class_compact", "ex_class_sliced"] {
        let wire = vector(name);
        let e = decode(name, &wire, factories(), read_exception).unwrap();
        let c: ClassEx = exception_as(e.as_ref(), "::Test::ClassEx");
        let v11 = !name.ends_with("1_0");
        check_spec_graph(c.b.as_ref().unwrap(), v11.then_some(42));
        assert_eq!(c.note.as_deref(), v11.then_some("n"));
        assert_eq!(c.base.reason, "r");
    }
    for name in [
        "ex_class_1_0",
        "ex_class_sliced",
        "ex_class_null_1_0",
        "ex_class_null_sliced",
    ] {
        check(name, read_exception, |w, e| w.write_exception(e.as_ref()));
    }
    let wire = vector("ex_class_null_compact");
    let e = decode("ex_class_null_compact", &wire, factories(), read_exception).unwrap();
    assert_eq!(
        exception_as::<ClassEx>(e.as_ref(), "::Test::ClassEx").b,
        None
    );
}

#[test]
fn truncated_vectors_fail_cleanly() {
    for (name, wire) in vectors() {
        for cut in 0..wire.len() {
            let data = &wire[..cut];
            let mut r = InputStream::new(data, Encoding::V1_1);
            r.set_factories(factories());
            if r.start_encapsulation().is_ok() {
                panic!("{name} cut at {cut} opened an encapsulation");
            }
        }
        // and with a corrupted header size the payload is still never over-read
        let mut r = InputStream::new(&wire[6..], encoding_of(&name));
        r.set_factories(factories());
        let _ = read_value(&mut r);
        let mut r = InputStream::new(&wire[6..], encoding_of(&name));
        r.set_factories(factories());
        let _ = r.read_exception();
    }
}

// ---------------------------------------------------------------------------------------
// Real traffic: omero-py 3.6.5 <-> glacier2router 3.7.8 (tests/data/traces, a copy of
// shared/reference/traces).

const TRACE_1_0: &str = "seed-scenario-encoding-1.0.jsonl";
const TRACE_1_1: &str = "seed-scenario-encoding-1.1.jsonl";

#[derive(Debug)]
struct Request {
    conn: u64,
    id: i32,
    operation: String,
    context: HashMap<String, String>,
    params: Vec<u8>,
}

/// Requests and, per (connection, request id), the reply's status and payload.
type Traffic = (Vec<Request>, HashMap<(u64, i32), (u8, Vec<u8>)>);

/// The trace named `name`; a missing file fails the test (the traces are part of the repo).
fn traffic(name: &str) -> Traffic {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/traces")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("trace {} unreadable: {e}", path.display()));
    let mut streams: BTreeMap<(u64, String), Vec<u8>> = BTreeMap::new();
    for line in text.lines() {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            j["conn"].as_u64().unwrap(),
            j["dir"].as_str().unwrap().to_owned(),
        );
        let hex = j["hex"].as_str().unwrap();
        let stream = streams.entry(key).or_default();
        for i in (0..hex.len()).step_by(2) {
            stream.push(u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
        }
    }
    let mut requests = Vec::new();
    let mut replies = HashMap::new();
    for ((conn, _), data) in streams {
        let mut pos = 0;
        while pos + 14 <= data.len() {
            let size = u32::from_le_bytes(data[pos + 10..pos + 14].try_into().unwrap()) as usize;
            let (kind, body) = (data[pos + 8], &data[pos + 14..pos + size]);
            pos += size;
            let mut r = InputStream::new(body, Encoding::V1_0);
            match kind {
                0 => {
                    let id = i32::decode(&mut r).unwrap();
                    Identity::decode(&mut r).unwrap();
                    Vec::<String>::decode(&mut r).unwrap();
                    let operation = String::decode(&mut r).unwrap();
                    u8::decode(&mut r).unwrap();
                    let context = HashMap::decode(&mut r).unwrap();
                    let params = body[r.pos()..].to_vec();
                    requests.push(Request {
                        conn,
                        id,
                        operation,
                        context,
                        params,
                    });
                }
                2 => {
                    let id = i32::decode(&mut r).unwrap();
                    let status = u8::decode(&mut r).unwrap();
                    replies.insert((conn, id), (status, body[r.pos()..].to_vec()));
                }
                _ => {}
            }
        }
    }
    (requests, replies)
}

fn reply_to<'t>(t: &'t Traffic, operation: &str) -> Vec<&'t [u8]> {
    t.0.iter()
        .filter(|q| q.operation == operation)
        .map(|q| t.1[&(q.conn, q.id)].1.as_slice())
        .collect()
}

/// Decodes a payload encapsulation, re-encodes the result and checks the bytes.
fn round_trip_payload<T>(
    payload: &[u8],
    f: Factories,
    read: impl Fn(&mut InputStream<'_>) -> Result<T, DecodeError>,
    write: impl Fn(&mut OutputStream, &T),
) -> T {
    let mut r = InputStream::new(payload, Encoding::V1_0);
    r.set_factories(f);
    let encoding = r.start_encapsulation().unwrap();
    let value = read(&mut r).unwrap();
    r.end_encapsulation().unwrap();
    let mut w = OutputStream::new(encoding);
    w.start_encapsulation(encoding);
    write(&mut w, &value);
    w.end_encapsulation();
    assert_eq!(hex(w.as_slice()), hex(payload));
    value
}

#[test]
fn trace_requests_contexts_and_proxies() {
    for path in [TRACE_1_0, TRACE_1_1] {
        let t = traffic(path);
        let create = t.0.iter().find(|q| q.operation == "createSession").unwrap();
        assert_eq!(create.context["omero.agent"], "OMERO.py");
        assert!(create.context.contains_key("omero.client.uuid"));
        let (user, password) = round_trip_payload(
            &create.params,
            Factories::none(),
            |r| Ok((String::decode(r)?, String::decode(r)?)),
            |w, (u, p)| {
                u.encode(w);
                p.encode(w);
            },
        );
        assert_eq!((user.as_str(), password.as_str()), ("alice", "alicepw"));
        for q in t.0.iter().filter(|q| q.operation == "addProxies") {
            let proxies = round_trip_payload(
                &q.params,
                Factories::none(),
                Vec::<Option<Proxy>>::decode,
                |w, v| v.encode(w),
            );
            assert!(proxies.iter().all(Option::is_some));
        }
        for q in t.0.iter().filter(|q| q.operation == "setCallback") {
            let callback = round_trip_payload(
                &q.params,
                Factories::none(),
                |r| r.read_proxy(),
                |w, p| w.write_proxy(p.as_ref()),
            );
            assert!(callback.is_some());
        }
        for op in [
            "getServerProxy",
            "createSession",
            "getAdminService",
            "getSessionService",
        ] {
            for payload in reply_to(&t, op) {
                let p = round_trip_payload(
                    payload,
                    Factories::none(),
                    |r| r.read_proxy(),
                    |w, p| w.write_proxy(p.as_ref()),
                );
                assert!(p.is_some(), "{op}");
            }
        }
        for payload in reply_to(&t, "getClientProxy") {
            let (proxy, routing) = round_trip_payload(
                payload,
                Factories::none(),
                |r| Ok((r.read_proxy()?, r.read_optional::<bool>(1)?)),
                |w, (p, b)| {
                    w.write_proxy(p.as_ref());
                    w.write_optional(1, b.as_ref());
                },
            );
            assert_eq!(proxy, None);
            let expected = (path == TRACE_1_1).then_some(true);
            assert_eq!(routing, expected);
        }
    }
}

// `omero::sys::EventContext` and what it holds, as slice2rs would generate them.
mod omero_types {
    use super::facade::*;
    use std::any::Any;

    macro_rules! leaf_rtype {
        ($name:ident, $id:literal, $t:ty) => {
            #[derive(Clone, Debug, PartialEq, Default)]
            pub struct $name {
                pub val: $t,
            }
            impl Value for $name {
                fn ice_id(&self) -> &'static str {
                    $id
                }
                fn find(&self, type_id: &str) -> Option<&dyn Any> {
                    match type_id {
                        $id => Some(self),
                        "::omero::RType" => Some(&()),
                        _ => None,
                    }
                }
                fn encode_slices(&self, w: &mut OutputStream) {
                    w.start_slice($id, None, false);
                    self.val.encode(w);
                    w.end_slice();
                    w.start_slice("::omero::RType", None, true);
                    w.end_slice();
                }
                fn eq_value(&self, other: &dyn Value) -> bool {
                    other
                        .find($id)
                        .and_then(|o| o.downcast_ref::<$name>())
                        .is_some_and(|o| o == self)
                }
                fn clone_value(&self) -> Box<dyn Value> {
                    Box::new(self.clone())
                }
            }
            impl ClassType for $name {
                const ICE_ID: &'static str = $id;
                const COMPACT_ID: Option<i32> = None;
                fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
                    let val = Decode::decode(r)?;
                    r.end_slice()?;
                    r.start_slice()?;
                    r.end_slice()?;
                    Ok($name { val })
                }
            }
        };
    }

    leaf_rtype!(RLong, "::omero::RLong", i64);
    leaf_rtype!(RString, "::omero::RString", String);

    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct Permissions {
        pub restrictions: Vec<bool>,
        pub extended_restrictions: Vec<String>,
        pub perm1: i64,
    }

    impl Value for Permissions {
        fn ice_id(&self) -> &'static str {
            Self::ICE_ID
        }
        fn find(&self, type_id: &str) -> Option<&dyn Any> {
            (type_id == Self::ICE_ID).then_some(self as &dyn Any)
        }
        fn encode_slices(&self, w: &mut OutputStream) {
            w.start_slice(Self::ICE_ID, None, true);
            self.restrictions.encode(w);
            self.extended_restrictions.encode(w);
            self.perm1.encode(w);
            w.end_slice();
        }
        fn eq_value(&self, other: &dyn Value) -> bool {
            other
                .find(Self::ICE_ID)
                .and_then(|o| o.downcast_ref::<Self>())
                .is_some_and(|o| o == self)
        }
        fn clone_value(&self) -> Box<dyn Value> {
            Box::new(self.clone())
        }
    }

    impl ClassType for Permissions {
        const ICE_ID: &'static str = "::omero::model::Permissions";
        const COMPACT_ID: Option<i32> = None;
        fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
            let p = Permissions {
                restrictions: Decode::decode(r)?,
                extended_restrictions: Decode::decode(r)?,
                perm1: Decode::decode(r)?,
            };
            r.end_slice()?;
            Ok(p)
        }
    }

    #[derive(Clone, Debug, PartialEq, Default)]
    pub struct EventContext {
        pub share_id: i64,
        pub session_id: i64,
        pub session_uuid: String,
        pub user_id: i64,
        pub user_name: String,
        pub sudoer_id: Option<ValueRef>,
        pub sudoer_name: Option<ValueRef>,
        pub group_id: i64,
        pub group_name: String,
        pub is_admin: bool,
        pub admin_privileges: Vec<String>,
        pub event_id: i64,
        pub event_type: String,
        pub member_of_groups: Vec<i64>,
        pub leader_of_groups: Vec<i64>,
        pub group_permissions: Option<ValueRef>,
    }

    impl Value for EventContext {
        fn ice_id(&self) -> &'static str {
            Self::ICE_ID
        }
        fn find(&self, type_id: &str) -> Option<&dyn Any> {
            (type_id == Self::ICE_ID).then_some(self as &dyn Any)
        }
        fn encode_slices(&self, w: &mut OutputStream) {
            w.start_slice(Self::ICE_ID, None, true);
            self.share_id.encode(w);
            self.session_id.encode(w);
            self.session_uuid.encode(w);
            self.user_id.encode(w);
            self.user_name.encode(w);
            self.sudoer_id.encode(w);
            self.sudoer_name.encode(w);
            self.group_id.encode(w);
            self.group_name.encode(w);
            self.is_admin.encode(w);
            self.admin_privileges.encode(w);
            self.event_id.encode(w);
            self.event_type.encode(w);
            self.member_of_groups.encode(w);
            self.leader_of_groups.encode(w);
            self.group_permissions.encode(w);
            w.end_slice();
        }
        fn eq_value(&self, other: &dyn Value) -> bool {
            other
                .find(Self::ICE_ID)
                .and_then(|o| o.downcast_ref::<Self>())
                .is_some_and(|o| o == self)
        }
        fn clone_value(&self) -> Box<dyn Value> {
            Box::new(self.clone())
        }
    }

    impl ClassType for EventContext {
        const ICE_ID: &'static str = "::omero::sys::EventContext";
        const COMPACT_ID: Option<i32> = None;
        fn decode_slices(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
            let ec = EventContext {
                share_id: Decode::decode(r)?,
                session_id: Decode::decode(r)?,
                session_uuid: Decode::decode(r)?,
                user_id: Decode::decode(r)?,
                user_name: Decode::decode(r)?,
                sudoer_id: Decode::decode(r)?,
                sudoer_name: Decode::decode(r)?,
                group_id: Decode::decode(r)?,
                group_name: Decode::decode(r)?,
                is_admin: Decode::decode(r)?,
                admin_privileges: Decode::decode(r)?,
                event_id: Decode::decode(r)?,
                event_type: Decode::decode(r)?,
                member_of_groups: Decode::decode(r)?,
                leader_of_groups: Decode::decode(r)?,
                group_permissions: Decode::decode(r)?,
            };
            r.end_slice()?;
            Ok(ec)
        }
    }

    fn factory<T: ClassType>(r: &mut InputStream<'_>) -> Result<Box<dyn Value>, DecodeError> {
        Ok(Box::new(T::decode_slices(r)?))
    }

    pub fn factories() -> Factories {
        Factories {
            value: |id| match id {
                "::omero::RLong" => Some(factory::<RLong>),
                "::omero::RString" => Some(factory::<RString>),
                "::omero::model::Permissions" => Some(factory::<Permissions>),
                "::omero::sys::EventContext" => Some(factory::<EventContext>),
                _ => None,
            },
            compact: |_| None,
            exception: |_| None,
        }
    }
}

#[test]
fn trace_event_context_class_graph() {
    for path in [TRACE_1_0, TRACE_1_1] {
        let t = traffic(path);
        let payload = reply_to(&t, "getEventContext")[0];
        let ec =
            round_trip_payload(payload, omero_types::factories(), read_value, write_value).unwrap();
        let ec = ec.get::<omero_types::EventContext>().unwrap();
        assert_eq!((ec.user_name.as_str(), ec.user_id), ("alice", 2));
        assert_eq!((ec.group_name.as_str(), ec.group_id), ("lab", 3));
        assert_eq!(ec.share_id, -1);
        assert_eq!(ec.sudoer_id, None);
        assert_eq!(ec.event_type, "User");
        assert_eq!(ec.member_of_groups, vec![3, 1]);
        let perms = ec.group_permissions.as_ref().unwrap();
        assert_eq!(perms.get::<omero_types::Permissions>().unwrap().perm1, -120);
    }
}

#[test]
fn trace_session_needs_its_types() {
    for path in [TRACE_1_0, TRACE_1_1] {
        let t = traffic(path);
        let payload = reply_to(&t, "getSession")[0];
        let mut r = InputStream::new(payload, Encoding::V1_0);
        r.set_factories(omero_types::factories());
        r.start_encapsulation().unwrap();
        let err = read_value(&mut r).unwrap_err();
        assert_eq!(
            err,
            DecodeError::NoValueFactory("::omero::model::Session".into())
        );
    }
}

/// Stands for any class in encoding 1.0: its slice sizes let the decoder step over every
/// member without knowing the type.
#[derive(Clone, Debug, PartialEq)]
struct Opaque10;

impl omero_sessiond::facade::Value for Opaque10 {
    fn ice_id(&self) -> &'static str {
        "::Ice::Object"
    }
    fn find(&self, _: &str) -> Option<&dyn std::any::Any> {
        None
    }
    fn encode_slices(&self, _: &mut OutputStream) {}
    fn eq_value(&self, _: &dyn omero_sessiond::facade::Value) -> bool {
        true
    }
    fn clone_value(&self) -> Box<dyn omero_sessiond::facade::Value> {
        Box::new(Opaque10)
    }
}

#[test]
fn trace_session_1_0_pending_batches_decode_without_types() {
    let t = traffic(TRACE_1_0);
    let any = Factories {
        value: |_| {
            Some(|r: &mut InputStream<'_>| {
                // leave the members unread: end_slice steps to the slice's end
                r.end_slice()?;
                Ok(Box::new(Opaque10) as Box<dyn omero_sessiond::facade::Value>)
            })
        },
        compact: |_| None,
        exception: |_| None,
    };
    let payload = reply_to(&t, "getSession")[0];
    let mut r = InputStream::new(payload, Encoding::V1_0);
    r.set_factories(any);
    r.start_encapsulation().unwrap();
    let session = read_value(&mut r).unwrap().unwrap();
    r.end_encapsulation().unwrap();
    assert!(session.is_filled());
}
