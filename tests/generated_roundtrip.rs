//! The code generated from `slice/` against the bytes real Ice runtimes produce.

use std::sync::Arc;

use omero_sessiond::facade::{
    ClassType, ConnectionInfo, Current, Decode, Dispatch, DispatchError, Encode, Encoding,
    Identity, InputStream, OperationMode, OutputStream, ValueRef,
};
use omero_sessiond::generated::{glacier2, omero};

fn current(operation: &str, encoding: Encoding) -> Current {
    Current {
        id: Identity::new("", "verifier"),
        facet: String::new(),
        operation: operation.to_string(),
        mode: OperationMode::Normal,
        ctx: Default::default(),
        request_id: 1,
        encoding,
        connection: Arc::new(ConnectionInfo::detached(1, "tcp")),
        received: std::time::Instant::now(),
    }
}

fn permission_denied_bytes() -> Vec<u8> {
    let id = b"::Glacier2::PermissionDeniedException";
    let mut v = vec![0x30, id.len() as u8];
    v.extend_from_slice(id);
    v.extend_from_slice(&[0x13, 0, 0, 0, 0x0e]);
    v.extend_from_slice(b"wrong password");
    v
}

#[test]
fn permission_denied_encodes_as_ice_does() {
    let e = glacier2::PermissionDeniedException {
        reason: "wrong password".into(),
    };
    let mut w = OutputStream::new(Encoding::V1_1);
    w.write_exception(&e);
    let bytes = w.into_bytes();
    assert_eq!(bytes, permission_denied_bytes());

    let mut r = InputStream::new(&bytes, Encoding::V1_1);
    r.set_factories(omero_sessiond::generated::FACTORIES);
    let back = r.read_exception().unwrap();
    assert_eq!(back.ice_id(), "::Glacier2::PermissionDeniedException");
    let back = back
        .find("::Glacier2::PermissionDeniedException")
        .and_then(|a| a.downcast_ref::<glacier2::PermissionDeniedException>())
        .unwrap();
    assert_eq!(back, &e);
}

#[test]
fn structs_round_trip() {
    let info = glacier2::SSLInfo {
        remote_host: "10.0.0.1".into(),
        remote_port: 4064,
        local_host: "server".into(),
        local_port: 4064,
        cipher: "TLS".into(),
        certs: vec!["pem".into()],
    };
    let mut w = OutputStream::new(Encoding::V1_0);
    info.encode(&mut w);
    let bytes = w.into_bytes();
    let mut r = InputStream::new(&bytes, Encoding::V1_0);
    assert_eq!(glacier2::SSLInfo::decode(&mut r).unwrap(), info);
    assert!(r.is_at_end());
}

#[test]
fn omero_rtypes_round_trip_through_their_bases() {
    let v = ValueRef::new(omero::RString {
        base: omero::RType::default(),
        val: "hello".into(),
    });
    for enc in [Encoding::V1_0, Encoding::V1_1] {
        let mut w = OutputStream::new(enc);
        w.write_value(Some(&v));
        w.write_pending_values();
        let bytes = w.into_bytes();
        let mut r = InputStream::new(&bytes, enc);
        r.set_factories(omero_sessiond::generated::FACTORIES);
        let back = r.read_value().unwrap().unwrap();
        r.read_pending_values().unwrap();
        assert_eq!(back.ice_id(), <omero::RString as ClassType>::ICE_ID);
        assert_eq!(back.get::<omero::RString>().unwrap().val, "hello");
        assert!(back.get::<omero::RType>().is_some());
    }
}

struct Verifier;

impl glacier2::PermissionsVerifier for Verifier {
    async fn check_permissions(
        &self,
        user_id: String,
        password: String,
        _current: &Current,
    ) -> Result<(bool, String), DispatchError> {
        match (user_id.as_str(), password.as_str()) {
            ("root", "ome") => Ok((true, String::new())),
            ("boom", _) => Err(glacier2::CannotCreateSessionException {
                reason: "not declared".into(),
            }
            .into()),
            _ => Err(glacier2::PermissionDeniedException {
                reason: "wrong password".into(),
            }
            .into()),
        }
    }
}

fn params(user: &str, password: &str) -> Vec<u8> {
    let mut w = OutputStream::new(Encoding::V1_1);
    user.encode(&mut w);
    password.encode(&mut w);
    w.into_bytes()
}

#[tokio::test]
async fn dispatcher_decodes_calls_and_encodes() {
    let d = glacier2::PermissionsVerifierDispatcher(Arc::new(Verifier));
    assert_eq!(d.most_derived_type_id(), "::Glacier2::PermissionsVerifier");
    assert_eq!(
        d.type_ids(),
        ["::Glacier2::PermissionsVerifier", "::Ice::Object"]
    );
    // `checkPermissions` is idempotent.
    let mut cur = current("checkPermissions", Encoding::V1_1);
    cur.mode = OperationMode::Idempotent;

    // Return value last, after the out-parameter `reason`.
    let reply = d.dispatch(&cur, &params("root", "ome")).await.unwrap();
    assert_eq!(reply, [0, 1]);

    match d.dispatch(&cur, &params("x", "y")).await {
        Err(DispatchError::User(e)) => {
            assert_eq!(e.ice_id(), "::Glacier2::PermissionDeniedException")
        }
        other => panic!("{other:?}"),
    }
    // Not in the operation's throws clause.
    match d.dispatch(&cur, &params("boom", "y")).await {
        Err(DispatchError::UnknownUser(id)) => {
            assert_eq!(id, "::Glacier2::CannotCreateSessionException")
        }
        other => panic!("{other:?}"),
    }
    match d.dispatch(&cur, &[0xff]).await {
        Err(DispatchError::UnknownLocal(_)) => {}
        other => panic!("{other:?}"),
    }
    let unknown = current("nope", Encoding::V1_1);
    assert!(matches!(
        d.dispatch(&unknown, &[]).await,
        Err(DispatchError::OperationNotExist)
    ));
}

#[test]
fn client_callback_has_a_typed_proxy() {
    fn assert_proxy<T: Clone + Send + Sync>() {}
    assert_proxy::<omero::api::ClientCallbackPrx>();
    assert_proxy::<glacier2::SessionManagerPrx>();
}
