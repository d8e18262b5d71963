//! Proxies this server hands out. Clients reach every object through the router connection
//! they already have, so the endpoint only needs to be plausible: the listener the request
//! came in on.

use crate::facade::{ConnectionInfo, Encoding, Endpoint, Identity, Proxy, ProxyMode};

/// The endpoint of the listener a connection arrived on, if known.
pub fn listener_endpoints(conn: &ConnectionInfo) -> Vec<Endpoint> {
    // Without a known listener (connections not driven by the runtime) any endpoint will
    // do: clients never dial it, but an empty server proxy would make them fail.
    let local = conn
        .local
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 4063)));
    let host = local.ip().to_string();
    let port = i32::from(local.port());
    // Ice 3.6/3.7 clients accept any resource; "/" is ZeroC's default.
    let resource = "/".to_string();
    let endpoint = match conn.transport {
        "ssl" => Endpoint::Ssl {
            host,
            port,
            timeout: -1,
            compress: false,
        },
        "ws" => Endpoint::Ws {
            host,
            port,
            timeout: -1,
            compress: false,
            resource,
        },
        "wss" => Endpoint::Wss {
            host,
            port,
            timeout: -1,
            compress: false,
            resource,
        },
        _ => Endpoint::Tcp {
            host,
            port,
            timeout: -1,
            compress: false,
        },
    };
    vec![endpoint]
}

/// Whether the connection is encrypted, as a proxy's `secure` flag says it.
fn is_secure(conn: &ConnectionInfo) -> bool {
    matches!(conn.transport, "ssl" | "wss")
}

/// A twoway proxy for `identity` on the connection's listener.
pub fn proxy_for(identity: Identity, conn: &ConnectionInfo) -> Proxy {
    Proxy {
        identity,
        facet: String::new(),
        mode: ProxyMode::Twoway,
        secure: is_secure(conn),
        protocol: (1, 0),
        encoding: Encoding::V1_1,
        endpoints: listener_endpoints(conn),
        adapter_id: String::new(),
    }
}

/// Endpoints for the router's server proxy (`getServerProxy`). Clients publish them in the
/// callback proxies they make but never dial them. They must differ from the router's own
/// endpoint: Ice treats a proxy whose endpoint equals one published by a local object adapter
/// as collocated, so with the listener's endpoint an Ice 3.7 client would dispatch calls on
/// the router and on every proxy returned here to itself. Port 0 names no listener.
pub fn callback_endpoints(conn: &ConnectionInfo) -> Vec<Endpoint> {
    listener_endpoints(conn)
        .into_iter()
        .map(|e| match e {
            Endpoint::Tcp {
                host,
                timeout,
                compress,
                ..
            } => Endpoint::Tcp {
                host,
                port: 0,
                timeout,
                compress,
            },
            Endpoint::Ssl {
                host,
                timeout,
                compress,
                ..
            } => Endpoint::Ssl {
                host,
                port: 0,
                timeout,
                compress,
            },
            Endpoint::Ws {
                host,
                timeout,
                compress,
                resource,
                ..
            } => Endpoint::Ws {
                host,
                port: 0,
                timeout,
                compress,
                resource,
            },
            Endpoint::Wss {
                host,
                timeout,
                compress,
                resource,
                ..
            } => Endpoint::Wss {
                host,
                port: 0,
                timeout,
                compress,
                resource,
            },
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_connections_get_websocket_endpoints() {
        let mut conn = ConnectionInfo::detached(1, "wss");
        conn.local = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 4066)));
        let proxy = proxy_for(Identity::new("c", "n"), &conn);
        assert!(proxy.secure);
        assert!(matches!(
            &proxy.endpoints[..],
            [Endpoint::Wss { port: 4066, resource, .. }] if resource == "/"
        ));
        assert!(matches!(
            &callback_endpoints(&conn)[..],
            [Endpoint::Wss { port: 0, .. }]
        ));

        let conn = ConnectionInfo::detached(2, "ws");
        assert!(!proxy_for(Identity::new("c", "n"), &conn).secure);
        assert!(matches!(
            &callback_endpoints(&conn)[..],
            [Endpoint::Ws { port: 0, .. }]
        ));
    }
}
