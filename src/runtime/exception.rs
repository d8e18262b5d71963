//! Reply status 1: the user exception inside the reply encapsulation.

use crate::encoding::{Encoding, OutputStream, UserException};

/// The payload of a status-1 reply encapsulation (without its 6-byte header), in the
/// request's encoding; the encoding layer writes it in the sliced format.
pub(crate) fn encode_user_exception(encoding: Encoding, e: &dyn UserException) -> Vec<u8> {
    let mut w = OutputStream::new(encoding);
    w.write_exception(e);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use super::*;

    #[derive(Debug, Clone)]
    struct PermissionDenied {
        reason: String,
    }

    impl UserException for PermissionDenied {
        fn ice_id(&self) -> &'static str {
            "::Glacier2::PermissionDeniedException"
        }
        fn find(&self, type_id: &str) -> Option<&dyn Any> {
            (type_id == self.ice_id()).then_some(self as &dyn Any)
        }
        fn encode_slices(&self, w: &mut OutputStream) {
            w.start_exception_slice(self.ice_id(), true);
            w.write_string(&self.reason);
            w.end_exception_slice();
        }
        fn uses_classes(&self) -> bool {
            false
        }
        fn clone_exception(&self) -> Box<dyn UserException> {
            Box::new(self.clone())
        }
    }

    /// The verified Glacier2 example of spec §3.11, both encodings.
    #[test]
    fn permission_denied_matches_the_spec() {
        let e = PermissionDenied {
            reason: "wrong password".into(),
        };
        let id = b"::Glacier2::PermissionDeniedException";
        let mut tail = vec![0x25];
        tail.extend_from_slice(id);
        tail.extend_from_slice(&[0x13, 0, 0, 0, 0x0e]);
        tail.extend_from_slice(b"wrong password");

        let mut v11 = vec![0x30];
        v11.extend_from_slice(&tail);
        assert_eq!(encode_user_exception(Encoding::V1_1, &e), v11);

        let mut v10 = vec![0x00];
        v10.extend_from_slice(&tail);
        assert_eq!(encode_user_exception(Encoding::V1_0, &e), v10);
    }
}
