//! A raw Ice client of the Glacier2 router over tcp, for integration tests: frames built by
//! hand with the project's codec, each request sent with the mode its Slice declares
//! (`mod router_client;` in each test file).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use omero_sessiond::encoding::{Context, Encoding, Identity, InputStream, OutputStream, Proxy};
use omero_sessiond::protocol::{IceCodec, Message, ReplyBody, Request};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

/// Longest wait for one frame: a hang guard, not a timing assertion.
pub const GUARD: Duration = Duration::from_secs(20);

pub struct Client {
    pub framed: Framed<TcpStream, IceCodec>,
    pub next_id: i32,
    pub ctx: Context,
}

/// The mode a ZeroC client sends for `operation` (its Slice declaration): 1 for the
/// `["nonmutating"] idempotent` ones, 2 for `idempotent`, else 0. The server refuses others.
pub fn declared_mode(operation: &str) -> u8 {
    match operation {
        "ice_ping"
        | "ice_isA"
        | "ice_id"
        | "ice_ids"
        | "getCategoryForClient"
        | "getClientProxy"
        | "getServerProxy"
        | "getSessionTimeout"
        | "getACMTimeout" => 1,
        "addProxies" | "getEventContext" => 2,
        _ => 0,
    }
}

pub fn router_id() -> Identity {
    Identity::new("OMERO.Glacier2", "router")
}

impl Client {
    pub async fn connect(addr: SocketAddr, client_uuid: &str) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut framed = Framed::new(tcp, IceCodec::new(1 << 24));
        let first = timeout(GUARD, framed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first.message, Message::ValidateConnection);
        let mut ctx = HashMap::new();
        ctx.insert("omero.client.uuid".to_string(), client_uuid.to_string());
        ctx.insert("omero.agent".to_string(), "router-test".to_string());
        Client {
            framed,
            next_id: 1,
            ctx,
        }
    }

    pub async fn call(&mut self, id: &Identity, operation: &str, params: Vec<u8>) -> ReplyBody {
        let request_id = self.next_id;
        self.next_id += 1;
        let request = Request {
            request_id,
            id: id.clone(),
            facet: String::new(),
            operation: operation.into(),
            mode: declared_mode(operation),
            context: self.ctx.clone(),
            encoding: Encoding::V1_1.into(),
            params: Bytes::from(params),
        };
        self.framed
            .send(Bytes::from(request.encode()))
            .await
            .unwrap();
        loop {
            let m = timeout(GUARD, self.framed.next())
                .await
                .expect("hang guard")
                .expect("connection closed")
                .expect("protocol error");
            match m.message {
                Message::Reply(r) if r.request_id == request_id => return r.body,
                _ => continue,
            }
        }
    }

    pub async fn login(&mut self, user: &str, password: &str) -> ReplyBody {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_string(user);
        w.write_string(password);
        self.call(&router_id(), "createSession", w.into_bytes())
            .await
    }

    /// Logs in and returns the ServiceFactory proxy.
    pub async fn session(&mut self, user: &str, password: &str) -> Proxy {
        proxy_of(self.login(user, password).await)
    }
}

pub fn proxy_of(body: ReplyBody) -> Proxy {
    match body {
        ReplyBody::Ok { payload, .. } => InputStream::new(&payload, Encoding::V1_1)
            .read_proxy()
            .unwrap()
            .expect("non-null proxy"),
        other => panic!("expected a proxy, got {other:?}"),
    }
}
