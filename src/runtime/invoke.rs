//! Calls the server makes to a peer: the contract typed client proxies (generated from
//! Slice) call through, and its implementation over a connection, for callbacks on the
//! bidirectional connection a client opened (spec §1.3, §7.5).

use async_trait::async_trait;

use super::dispatch::OperationMode;
use super::handle::{ConnectionHandle, InvokeError};
use crate::encoding::{Context, Encoding, Proxy};
use crate::protocol::{ReplyBody, Request};

/// Sends one request to the object `proxy` names and awaits its reply. `params` is the
/// payload of the request encapsulation (without header); a oneway call answers `Ok(empty)`
/// once the request is queued.
#[async_trait]
pub trait Invoker: Send + Sync {
    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &self,
        proxy: &Proxy,
        operation: &str,
        mode: OperationMode,
        ctx: &Context,
        params: Vec<u8>,
        encoding: Encoding,
        oneway: bool,
    ) -> Result<InvokeReply, InvokeError>;
}

/// The outcome of a request as the peer replied.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeReply {
    /// Reply status 0: the payload of the reply encapsulation.
    Ok(Vec<u8>),
    /// Reply status 1: the payload holding the user exception.
    UserException(Vec<u8>),
    /// Reply statuses 2 to 7, described (e.g. `ObjectNotExistException: cat/name`).
    Failed(String),
}

impl From<ReplyBody> for InvokeReply {
    fn from(body: ReplyBody) -> Self {
        match body {
            ReplyBody::Ok { payload, .. } => InvokeReply::Ok(payload.to_vec()),
            ReplyBody::UserException { payload, .. } => {
                InvokeReply::UserException(payload.to_vec())
            }
            ReplyBody::ObjectNotExist(n) => {
                InvokeReply::Failed(format!("ObjectNotExistException: {}", n.id))
            }
            ReplyBody::FacetNotExist(n) => {
                InvokeReply::Failed(format!("FacetNotExistException: {} -f {}", n.id, n.facet))
            }
            ReplyBody::OperationNotExist(n) => InvokeReply::Failed(format!(
                "OperationNotExistException: {} {}",
                n.id, n.operation
            )),
            ReplyBody::UnknownLocal(s) => {
                InvokeReply::Failed(format!("UnknownLocalException: {s}"))
            }
            ReplyBody::UnknownUser(s) => InvokeReply::Failed(format!("UnknownUserException: {s}")),
            ReplyBody::Unknown(s) => InvokeReply::Failed(format!("UnknownException: {s}")),
        }
    }
}

/// Calls go to the peer at the other end of this connection, whatever endpoints the proxy
/// names: a routed client is reachable only through the connection it opened.
#[async_trait]
impl Invoker for ConnectionHandle {
    async fn invoke(
        &self,
        proxy: &Proxy,
        operation: &str,
        mode: OperationMode,
        ctx: &Context,
        params: Vec<u8>,
        encoding: Encoding,
        oneway: bool,
    ) -> Result<InvokeReply, InvokeError> {
        let request = Request {
            request_id: 0,
            id: proxy.identity.clone(),
            facet: proxy.facet.clone(),
            operation: operation.to_string(),
            mode: mode as u8,
            context: ctx.clone(),
            encoding: encoding.into(),
            params: params.into(),
        };
        if oneway {
            self.send_oneway(request).await?;
            return Ok(InvokeReply::Ok(Vec::new()));
        }
        Ok(ConnectionHandle::invoke(self, request).await?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Identity;

    #[tokio::test]
    async fn a_detached_handle_reports_the_connection_closed() {
        let handle = ConnectionHandle::detached();
        let proxy = Proxy::new(Identity::new("cat", "cb"));
        let err = Invoker::invoke(
            &handle,
            &proxy,
            "ping",
            OperationMode::Normal,
            &Context::new(),
            Vec::new(),
            Encoding::V1_1,
            false,
        )
        .await;
        assert_eq!(err, Err(InvokeError::ConnectionClosed));
    }
}
