//! The generated Rust against omero-py 5.23 on Ice 3.6.5, both ways.
//!
//! `interop/vectors/omeropy/vectors.json` holds omero-py's own bytes (taken off the wire by
//! `make_vectors.py`) for `omero::model::Session`, `omero::sys::EventContext`,
//! `omero::sys::Principal` and every RType, in encodings 1.0, 1.1 compact and 1.1 sliced. Each
//! one must decode into the values built here and re-encode to the same bytes, except where
//! the order is not ours to match: instances in a 1.0 pending batch (Ice 3.6 writes them in
//! address order, we in first-reference order) and the keys of a multi-key dictionary (ours
//! come in `HashMap` order); those are compared by length and by decoding again.
//!
//! The reverse direction (our bytes decoded by omero-py) runs `make_vectors.py --check` when
//! with omero-py's python: `OMERO_PY` names it, else `$OMERO_VENV/bin/python`, else
//! `interop/.venv/bin/python`. Without omero-py that test fails: run `interop/setup` first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use omero_sessiond::facade::{
    Decode, DecodeError, Encode, Encoding, Format, InputStream, OutputStream,
};
use omero_sessiond::facade::{Value, ValueRef};
use omero_sessiond::generated::omero::{self as o, model, sys};

const UUID: &str = "5b2f9c6e-8d1a-4f3b-9e7c-0a1b2c3d4e5f";

// --- the vectors -------------------------------------------------------------------------

struct Vector {
    encoding: Encoding,
    format: Format,
    operation: String,
    params: Vec<u8>,
}

fn vectors() -> BTreeMap<String, Vector> {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("../interop/vectors/omeropy/vectors.json")).unwrap();
    let all = json["vectors"].as_object().unwrap();
    all.iter()
        .map(|(name, v)| {
            let encoding = match v["encoding"].as_str().unwrap() {
                "1.0" => Encoding::V1_0,
                "1.1" => Encoding::V1_1,
                other => panic!("{name}: encoding {other}"),
            };
            let format = match v["format"].as_str().unwrap() {
                "compact" => Format::Compact,
                "sliced" => Format::Sliced,
                other => panic!("{name}: format {other}"),
            };
            let vector = Vector {
                encoding,
                format,
                operation: v["operation"].as_str().unwrap().to_string(),
                params: unhex(v["params"].as_str().unwrap()),
            };
            (name.clone(), vector)
        })
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The suffixes of vector names: encoding and class format.
const VARIANTS: [(&str, Encoding, Format); 3] = [
    ("_1_0", Encoding::V1_0, Format::Compact),
    ("_1_1", Encoding::V1_1, Format::Compact),
    ("_1_1_sliced", Encoding::V1_1, Format::Sliced),
];

/// The name of a vector without its suffix, and the encoding and format the suffix names.
fn split_name(name: &str) -> (&str, Encoding, Format) {
    VARIANTS
        .iter()
        .find_map(|(suffix, enc, format)| Some((name.strip_suffix(suffix)?, *enc, *format)))
        .unwrap_or_else(|| panic!("vector {name} has no encoding suffix"))
}

// --- parameters --------------------------------------------------------------------------

/// One parameter (or return value) of the operations the vectors were taken from.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Str(String),
    Long(i64),
    Class(Option<ValueRef>),
}

/// Reads parameters shaped like `shape`, then (1.0) the pending instances, as a dispatcher
/// reads a request encapsulation; every byte must be used.
fn decode_params(shape: &[Param], bytes: &[u8], enc: Encoding) -> Result<Vec<Param>, DecodeError> {
    let mut r = InputStream::new(bytes, enc);
    r.set_factories(omero_sessiond::generated::FACTORIES);
    let mut out = Vec::new();
    for p in shape {
        out.push(match p {
            Param::Str(_) => Param::Str(String::decode(&mut r)?),
            Param::Long(_) => Param::Long(i64::decode(&mut r)?),
            Param::Class(_) => Param::Class(r.read_value()?),
        });
    }
    if has_classes(shape) {
        r.read_pending_values()?;
    }
    assert!(r.is_at_end(), "{} bytes left", r.remaining());
    Ok(out)
}

fn encode_params(params: &[Param], enc: Encoding, format: Format) -> Vec<u8> {
    let mut w = OutputStream::new(enc);
    w.set_format(format);
    for p in params {
        match p {
            Param::Str(s) => s.encode(&mut w),
            Param::Long(v) => v.encode(&mut w),
            Param::Class(v) => w.write_value(v.as_ref()),
        }
    }
    if has_classes(params) {
        w.write_pending_values();
    }
    w.into_bytes()
}

fn has_classes(params: &[Param]) -> bool {
    params.iter().any(|p| matches!(p, Param::Class(_)))
}

fn class(v: impl Value) -> Param {
    Param::Class(Some(ValueRef::new(v)))
}

// --- the values, as make_vectors.py builds them ------------------------------------------

fn vref(v: impl Value) -> Option<ValueRef> {
    Some(ValueRef::new(v))
}

fn rstring(s: &str) -> Option<ValueRef> {
    vref(o::RString {
        base: o::RType::default(),
        val: s.into(),
    })
}

fn rlong(v: i64) -> Option<ValueRef> {
    vref(o::RLong {
        base: o::RType::default(),
        val: v,
    })
}

fn rint(v: i32) -> Option<ValueRef> {
    vref(o::RInt {
        base: o::RType::default(),
        val: v,
    })
}

fn rcollection(val: Vec<Option<ValueRef>>) -> o::RCollection {
    o::RCollection {
        base: o::RType::default(),
        val,
    }
}

fn rlist(val: Vec<Option<ValueRef>>) -> Option<ValueRef> {
    vref(o::RList {
        base: rcollection(val),
    })
}

fn rmap(entries: &[(&str, Option<ValueRef>)]) -> Option<ValueRef> {
    let val = entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    vref(o::RMap {
        base: o::RType::default(),
        val,
    })
}

/// What omero-py's `PermissionsI(text)` holds, as its `perm1` bits.
fn permissions(perm1: i64, restrictions: Vec<bool>, extended: Vec<&str>) -> Option<ValueRef> {
    vref(model::Permissions {
        restrictions,
        extended_restrictions: extended.into_iter().map(String::from).collect(),
        perm1,
    })
}

/// A loaded model object: an id and an empty `DetailsI`, as omero-py's `XI(id, True)`.
fn loaded(id: i64) -> model::IObject {
    model::IObject {
        id: rlong(id),
        details: vref(model::Details::default()),
        loaded: true,
    }
}

/// `rlong(0)` is one cached instance in omero-py; sharing it shows in the bytes.
fn event_context_with(zero: &Option<ValueRef>) -> sys::EventContext {
    sys::EventContext {
        share_id: -1,
        session_id: 11,
        session_uuid: UUID.into(),
        user_id: 2,
        user_name: "alice".into(),
        sudoer_id: zero.clone(),
        sudoer_name: None,
        group_id: 3,
        group_name: "lab".into(),
        is_admin: false,
        admin_privileges: vec!["ModifyUser".into(), "Sudo".into()],
        event_id: -1,
        event_type: "User".into(),
        member_of_groups: vec![3, 1],
        leader_of_groups: vec![3],
        group_permissions: permissions(-56, vec![], vec![]),
    }
}

fn session() -> model::Session {
    let owner = vref(model::Experimenter {
        base: loaded(2),
        ome_name: rstring("alice"),
        first_name: rstring("Alice"),
        last_name: rstring("Liddell"),
        group_experimenter_map_loaded: true,
        annotation_links_loaded: true,
        ..Default::default()
    });
    let group = vref(model::ExperimenterGroup {
        base: loaded(3),
        name: rstring("lab"),
        group_experimenter_map_loaded: true,
        annotation_links_loaded: true,
        ..Default::default()
    });
    let zero = rlong(0);
    let details = model::Details {
        owner: owner.clone(),
        group,
        permissions: permissions(-40, vec![true, false, false, true], vec!["x.y"]),
        call: HashMap::from([("omero.group".to_string(), "3".to_string())]),
        event: vref(event_context_with(&zero)),
        ..Default::default()
    };
    model::Session {
        base: model::IObject {
            id: rlong(11),
            details: vref(details),
            loaded: true,
        },
        version: rint(1),
        uuid: rstring(UUID),
        owner,
        time_to_idle: rlong(600_000),
        time_to_live: zero,
        started: vref(o::RTime {
            base: o::RType::default(),
            val: 1_700_000_000_000,
        }),
        default_event_type: rstring("User"),
        user_agent: rstring("OMERO.py"),
        events_loaded: true,
        annotation_links_loaded: true,
        annotation_links_count_per_owner: HashMap::from([(2, 1)]),
        ..Default::default()
    }
}

fn principal() -> sys::Principal {
    sys::Principal {
        name: "alice".into(),
        group: "lab".into(),
        event_type: "User".into(),
        umask: permissions(-120, vec![], vec![]),
    }
}

fn image() -> model::Image {
    model::Image {
        base: loaded(7),
        name: rstring("img"),
        pixels_loaded: true,
        well_samples_loaded: true,
        rois_loaded: true,
        dataset_links_loaded: true,
        folder_links_loaded: true,
        annotation_links_loaded: true,
        ..Default::default()
    }
}

fn rtype(kind: &str) -> Option<ValueRef> {
    let base = o::RType::default;
    match kind {
        "null" => None,
        "bool" => vref(o::RBool {
            base: base(),
            val: true,
        }),
        "double" => vref(o::RDouble {
            base: base(),
            val: std::f64::consts::PI,
        }),
        "float" => vref(o::RFloat {
            base: base(),
            val: 1.5,
        }),
        "int" => rint(-7),
        "long" => rlong(1 << 40),
        "string" => rstring("h\u{e9}llo \u{2713}"),
        "class" => vref(o::RClass {
            base: o::RString {
                base: base(),
                val: "Image".into(),
            },
        }),
        "time" => vref(o::RTime {
            base: base(),
            val: 1_700_000_000_123,
        }),
        "array" => vref(o::RArray {
            base: rcollection(vec![rint(1), rint(2)]),
        }),
        "list" => rlist(vec![rstring("a"), None, rlong(3)]),
        "set" => vref(o::RSet {
            base: rcollection(vec![vref(o::RBool {
                base: base(),
                val: false,
            })]),
        }),
        "map" => rmap(&[("k", rint(1))]),
        "object" => vref(o::RObject {
            base: base(),
            val: vref(image()),
        }),
        "internal" => vref(o::RInternal {
            base: base(),
            val: vref(o::Point {
                base: o::Internal::default(),
                x: 3,
                y: 4,
            }),
        }),
        "nested" => {
            let same = rstring("same");
            let inner = rmap(&[("inner", rlist(vec![rint(1), rstring("x")]))]);
            let array = vref(o::RArray {
                base: rcollection(vec![vref(o::RDouble {
                    base: base(),
                    val: 0.5,
                })]),
            });
            let list = rlist(vec![inner, rlist(vec![]), array, same.clone(), same]);
            rmap(&[("list", list)])
        }
        "big" => {
            let ints: Vec<_> = (1..=300).map(rint).collect();
            let mut items = vec![rstring(&"x".repeat(300))];
            items.extend(ints.iter().cloned());
            items.extend([ints[0].clone(), ints[299].clone()]);
            rlist(items)
        }
        "map_multi" => rmap(&[("a", rint(1)), ("b", rstring("two")), ("c", rlist(vec![]))]),
        other => panic!("no RType vector {other}"),
    }
}

const RTYPES: [&str; 18] = [
    "null",
    "bool",
    "double",
    "float",
    "int",
    "long",
    "string",
    "class",
    "time",
    "array",
    "list",
    "set",
    "map",
    "object",
    "internal",
    "nested",
    "big",
    "map_multi",
];

/// The parameters (or return value) of vector `base` (its name without the encoding).
fn expected(base: &str) -> Vec<Param> {
    match base {
        "session" => vec![class(session())],
        "principal" => vec![
            class(principal()),
            Param::Long(600_000),
            Param::Long(120_000),
        ],
        "event_context" => vec![class(event_context_with(&rlong(0)))],
        _ => {
            let kind = base
                .strip_prefix("rtype_")
                .unwrap_or_else(|| panic!("unknown vector {base}"));
            vec![
                Param::Str("u".into()),
                Param::Str("k".into()),
                Param::Class(rtype(kind)),
            ]
        }
    }
}

fn operation_of(base: &str) -> &'static str {
    match base {
        "session" => "closeSession",
        "principal" => "createSessionWithTimeouts",
        "event_context" => "getEventContext",
        _ => "setInput",
    }
}

/// Vectors whose bytes depend on the order a `HashMap` is walked: an RMap with several
/// keys. Ours come out in any order, so they are compared by decoding them again.
fn order_free(base: &str) -> bool {
    base == "rtype_map_multi"
}

fn all_names() -> Vec<String> {
    let mut bases: Vec<String> = ["session", "principal", "event_context"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    bases.extend(RTYPES.iter().map(|k| format!("rtype_{k}")));
    bases
        .iter()
        .flat_map(|b| {
            VARIANTS
                .iter()
                .map(move |(suffix, _, _)| format!("{b}{suffix}"))
        })
        .collect()
}

fn the_class(params: &[Param]) -> &ValueRef {
    params
        .iter()
        .find_map(|p| match p {
            Param::Class(Some(v)) => Some(v),
            _ => None,
        })
        .expect("a class parameter")
}

// --- omero-py's bytes into Rust ------------------------------------------------------------

#[test]
fn every_value_is_covered_once() {
    let names: Vec<String> = vectors().into_keys().collect();
    let mut ours = all_names();
    ours.sort();
    assert_eq!(names, ours);
    for (name, v) in vectors() {
        let (base, enc, format) = split_name(&name);
        assert_eq!((v.encoding, v.format), (enc, format), "{name}");
        assert_eq!(v.operation, operation_of(base), "{name}");
    }
}

#[test]
fn omero_py_bytes_decode_to_the_expected_values() {
    for (name, v) in vectors() {
        let (base, _, _) = split_name(&name);
        let want = expected(base);
        let got =
            decode_params(&want, &v.params, v.encoding).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn re_encoding_gives_omero_py_bytes() {
    let mut reordered = Vec::new();
    for (name, v) in vectors() {
        let (base, _, _) = split_name(&name);
        let decoded = decode_params(&expected(base), &v.params, v.encoding).unwrap();
        let again = encode_params(&decoded, v.encoding, v.format);
        let by_hand = encode_params(&expected(base), v.encoding, v.format);
        if again == v.params && by_hand == v.params {
            continue;
        }
        if order_free(base) || v.encoding == Encoding::V1_0 {
            // Same length, and the same values when read back.
            assert_eq!(again.len(), v.params.len(), "{name}");
            assert_eq!(by_hand.len(), v.params.len(), "{name}");
            assert_eq!(
                decode_params(&decoded, &again, v.encoding).unwrap(),
                decoded,
                "{name}"
            );
            assert_eq!(
                decode_params(&decoded, &by_hand, v.encoding).unwrap(),
                decoded,
                "{name}"
            );
            reordered.push(name);
            continue;
        }
        assert_eq!(hex(&again), hex(&v.params), "{name}");
        assert_eq!(
            hex(&by_hand),
            hex(&v.params),
            "{name}: the hand-built value"
        );
    }
    println!("same values, other order: {reordered:?}");
}

#[test]
fn session_fields() {
    for name in ["session_1_0", "session_1_1", "session_1_1_sliced"] {
        let v = &vectors()[name];
        let got = decode_params(&expected("session"), &v.params, v.encoding).unwrap();
        let s = the_class(&got);
        assert_eq!(s.ice_id(), "::omero::model::Session");
        let s = s.get::<model::Session>().unwrap();
        let val_str =
            |v: &Option<ValueRef>| v.as_ref().unwrap().get::<o::RString>().unwrap().val.clone();
        let val_long = |v: &Option<ValueRef>| v.as_ref().unwrap().get::<o::RLong>().unwrap().val;
        assert_eq!(val_str(&s.uuid), UUID, "{name}");
        assert_eq!(val_long(&s.time_to_idle), 600_000, "{name}");
        assert_eq!(val_long(&s.time_to_live), 0, "{name}");
        assert_eq!(val_long(&s.base.id), 11, "{name}");
        assert_eq!(val_str(&s.user_agent), "OMERO.py", "{name}");
        let details = s
            .base
            .details
            .as_ref()
            .unwrap()
            .get::<model::Details>()
            .unwrap();
        let owner = details.owner.as_ref().unwrap();
        assert_eq!(owner.ice_id(), "::omero::model::Experimenter");
        let owner_v = owner.get::<model::Experimenter>().unwrap();
        assert_eq!(val_str(&owner_v.ome_name), "alice", "{name}");
        assert_eq!(val_long(&owner_v.base.id), 2, "{name}");
        // One instance on omero-py's side, one after decoding.
        assert!(ValueRef::ptr_eq(owner, s.owner.as_ref().unwrap()), "{name}");
        let group = details.group.as_ref().unwrap();
        let group = group.get::<model::ExperimenterGroup>().unwrap();
        assert_eq!(val_str(&group.name), "lab", "{name}");
        let perms = details.permissions.as_ref().unwrap();
        let perms = perms.get::<model::Permissions>().unwrap();
        assert_eq!(perms.perm1, -40, "{name}");
        assert_eq!(perms.restrictions, [true, false, false, true], "{name}");
        assert_eq!(perms.extended_restrictions, ["x.y"], "{name}");
        assert_eq!(details.call["omero.group"], "3", "{name}");
        let ec = details
            .event
            .as_ref()
            .unwrap()
            .get::<sys::EventContext>()
            .unwrap();
        assert_eq!(ec.user_name, "alice", "{name}");
        // omero-py's cached rlong(0), shared by sudoerId and timeToLive.
        assert!(
            ValueRef::ptr_eq(
                ec.sudoer_id.as_ref().unwrap(),
                s.time_to_live.as_ref().unwrap()
            ),
            "{name}"
        );
    }
}

#[test]
fn event_context_and_principal_fields() {
    for enc in ["1_0", "1_1", "1_1_sliced"] {
        let name = format!("event_context_{enc}");
        let v = &vectors()[&name];
        let got = decode_params(&expected("event_context"), &v.params, v.encoding).unwrap();
        let ec = the_class(&got).get::<sys::EventContext>().unwrap();
        assert_eq!(
            (ec.share_id, ec.session_id, ec.user_id, ec.group_id),
            (-1, 11, 2, 3)
        );
        assert_eq!(
            (ec.session_uuid.as_str(), ec.group_name.as_str()),
            (UUID, "lab")
        );
        assert_eq!(ec.admin_privileges, ["ModifyUser", "Sudo"]);
        assert_eq!(
            (&ec.member_of_groups, &ec.leader_of_groups),
            (&vec![3, 1], &vec![3])
        );
        assert!(ec.sudoer_name.is_none() && !ec.is_admin);
        let sudoer = ec.sudoer_id.as_ref().unwrap().get::<o::RLong>().unwrap();
        assert_eq!(sudoer.val, 0);
        let perms = ec.group_permissions.as_ref().unwrap();
        assert_eq!(perms.get::<model::Permissions>().unwrap().perm1, -56);

        let name = format!("principal_{enc}");
        let v = &vectors()[&name];
        let got = decode_params(&expected("principal"), &v.params, v.encoding).unwrap();
        assert_eq!(got[1..], [Param::Long(600_000), Param::Long(120_000)]);
        let p = the_class(&got).get::<sys::Principal>().unwrap();
        assert_eq!(
            (p.name.as_str(), p.group.as_str(), p.event_type.as_str()),
            ("alice", "lab", "User")
        );
        let umask = p
            .umask
            .as_ref()
            .unwrap()
            .get::<model::Permissions>()
            .unwrap();
        assert_eq!(umask.perm1, -120);
    }
}

#[test]
fn rtype_fields() {
    for enc in ["1_0", "1_1", "1_1_sliced"] {
        let decoded = |kind: &str| {
            let name = format!("rtype_{kind}_{enc}");
            let v = &vectors()[&name];
            let got = decode_params(&expected(&format!("rtype_{kind}")), &v.params, v.encoding);
            match got.unwrap().remove(2) {
                Param::Class(v) => v,
                other => panic!("{other:?}"),
            }
        };
        assert!(decoded("null").is_none());
        let object = decoded("object").unwrap();
        let image = object.get::<o::RObject>().unwrap().val.as_ref().unwrap();
        assert_eq!(image.ice_id(), "::omero::model::Image");
        let image = image.get::<model::Image>().unwrap();
        let name = image.name.as_ref().unwrap().get::<o::RString>().unwrap();
        assert_eq!(name.val, "img");
        let id = image.base.id.as_ref().unwrap().get::<o::RLong>().unwrap();
        assert_eq!((id.val, image.base.loaded), (7, true));

        let class = decoded("class").unwrap();
        assert_eq!(class.ice_id(), "::omero::RClass");
        assert_eq!(class.get::<o::RString>().unwrap().val, "Image");

        let nested = decoded("nested").unwrap();
        let map = &nested.get::<o::RMap>().unwrap().val;
        let list = map["list"].as_ref().unwrap();
        assert_eq!(list.ice_id(), "::omero::RList");
        let items = &list.get::<o::RCollection>().unwrap().val;
        assert_eq!(items.len(), 5);
        let inner = &items[0].as_ref().unwrap().get::<o::RMap>().unwrap().val;
        let inner = &inner["inner"]
            .as_ref()
            .unwrap()
            .get::<o::RCollection>()
            .unwrap()
            .val;
        assert_eq!(
            inner[1].as_ref().unwrap().get::<o::RString>().unwrap().val,
            "x"
        );
        assert_eq!(items[2].as_ref().unwrap().ice_id(), "::omero::RArray");
        assert!(ValueRef::ptr_eq(
            items[3].as_ref().unwrap(),
            items[4].as_ref().unwrap()
        ));

        let list = decoded("list").unwrap();
        assert!(list.get::<o::RCollection>().unwrap().val[1].is_none());
    }
}

// --- Rust's bytes into omero-py ------------------------------------------------------------

/// omero-py's python; missing, it fails the calling test (CI installs it before the tests).
fn omero_py() -> PathBuf {
    if let Some(p) = std::env::var_os("OMERO_PY") {
        return PathBuf::from(p);
    }
    // interop/setup puts the venv where OMERO_VENV says (CI keeps it under ~/.cache).
    let venv = match std::env::var_os("OMERO_VENV") {
        Some(dir) => PathBuf::from(dir).join("bin/python"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/.venv/bin/python"),
    };
    assert!(
        venv.exists(),
        "omero-py not found at {} (run interop/setup, or set OMERO_VENV or OMERO_PY)",
        venv.display()
    );
    venv
}

#[test]
fn omero_py_decodes_rust_bytes() {
    let python = omero_py();
    let mut ours = serde_json::Map::new();
    for name in all_names() {
        let (base, enc, format) = split_name(&name);
        let bytes = encode_params(&expected(base), enc, format);
        let entry = serde_json::json!({ "encoding": enc.to_string(), "params": hex(&bytes) });
        ours.insert(name, entry);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rust-vectors.json");
    std::fs::write(&file, serde_json::to_string(&ours).unwrap()).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/vectors/omeropy/make_vectors.py");
    let (status, out) = run_with_timeout(
        Command::new(&python).arg(script).arg("--check").arg(&file),
        Duration::from_secs(60),
    );
    println!("{out}");
    assert!(status, "omero-py refused some of our bytes:\n{out}");
    assert!(
        out.contains(&format!("{} checked, 0 failed, 0 missing", ours.len())),
        "{out}"
    );
}

/// Runs `cmd`, killing it after `limit`; whether it succeeded and its stdout and stderr.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let start = Instant::now();
    let ok = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (ok, std::fs::read_to_string(&out_path).unwrap())
}
