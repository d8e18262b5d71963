//! Proxies in their marshaled form (spec §3.5): identity, facet, mode, security, in 1.1 the
//! protocol and encoding, then endpoints (each in its own encapsulation) or an adapter id.

use super::{Decode, DecodeError, Encode, Encoding, Identity, InputStream, OutputStream};

/// How calls on a proxy are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProxyMode {
    #[default]
    Twoway = 0,
    Oneway = 1,
    BatchOneway = 2,
    Datagram = 3,
    BatchDatagram = 4,
}

impl ProxyMode {
    pub fn from_u8(v: u8) -> Option<ProxyMode> {
        Some(match v {
            0 => ProxyMode::Twoway,
            1 => ProxyMode::Oneway,
            2 => ProxyMode::BatchOneway,
            3 => ProxyMode::Datagram,
            4 => ProxyMode::BatchDatagram,
            _ => return None,
        })
    }
}

/// One way to reach a proxy's object. Ports and timeouts stay `i32` as on the wire, so any
/// proxy decodes and re-encodes unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Tcp {
        host: String,
        port: i32,
        timeout: i32,
        compress: bool,
    },
    Ssl {
        host: String,
        port: i32,
        timeout: i32,
        compress: bool,
    },
    Udp {
        host: String,
        port: i32,
        compress: bool,
    },
    Ws {
        host: String,
        port: i32,
        timeout: i32,
        compress: bool,
        resource: String,
    },
    Wss {
        host: String,
        port: i32,
        timeout: i32,
        compress: bool,
        resource: String,
    },
    /// Any other transport, kept byte for byte: its type, the version in its
    /// encapsulation header (kept raw, it may be one this crate does not speak) and body.
    Opaque {
        kind: i16,
        encoding: (u8, u8),
        bytes: Vec<u8>,
    },
}

pub const TCP: i16 = 1;
pub const SSL: i16 = 2;
pub const UDP: i16 = 3;
pub const WS: i16 = 4;
pub const WSS: i16 = 5;

/// A proxy: which object, and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proxy {
    pub identity: Identity,
    pub facet: String,
    pub mode: ProxyMode,
    pub secure: bool,
    pub protocol: (u8, u8),
    pub encoding: Encoding,
    pub endpoints: Vec<Endpoint>,
    /// Only meaningful without endpoints ("" = well-known proxy).
    pub adapter_id: String,
}

impl Proxy {
    /// A twoway proxy for `identity` with Ice's defaults (protocol 1.0, encoding 1.1) and no
    /// endpoints.
    pub fn new(identity: Identity) -> Proxy {
        Proxy {
            identity,
            facet: String::new(),
            mode: ProxyMode::Twoway,
            secure: false,
            protocol: (1, 0),
            encoding: Encoding::V1_1,
            endpoints: Vec::new(),
            adapter_id: String::new(),
        }
    }
}

fn proxy_error(text: &str) -> DecodeError {
    DecodeError::Marshal(format!("ProxyUnmarshalException: {text}"))
}

impl InputStream<'_> {
    /// A proxy, or `None` for the null proxy (an empty identity).
    pub fn read_proxy(&mut self) -> Result<Option<Proxy>, DecodeError> {
        let identity = Identity::decode(self)?;
        if identity.name.is_empty() && identity.category.is_empty() {
            return Ok(None);
        }
        let facet = match self.read_count(1)? {
            0 => String::new(),
            1 => self.read_string()?,
            _ => return Err(proxy_error("more than one facet")),
        };
        let mode =
            ProxyMode::from_u8(self.read_u8()?).ok_or_else(|| proxy_error("invalid mode"))?;
        let secure = self.read_bool()?;
        let (protocol, encoding) = if self.encoding() == Encoding::V1_1 {
            let protocol = (self.read_u8()?, self.read_u8()?);
            let (major, minor) = (self.read_u8()?, self.read_u8()?);
            (protocol, Encoding::from_bytes(major, minor)?)
        } else {
            ((1, 0), Encoding::V1_0)
        };
        let count = self.read_count(8)?;
        self.charge(count.saturating_mul(std::mem::size_of::<Endpoint>()))?;
        let mut endpoints = Vec::with_capacity(count);
        for _ in 0..count {
            endpoints.push(self.read_endpoint()?);
        }
        let adapter_id = if count == 0 {
            self.read_string()?
        } else {
            String::new()
        };
        Ok(Some(Proxy {
            identity,
            facet,
            mode,
            secure,
            protocol,
            encoding,
            endpoints,
            adapter_id,
        }))
    }

    fn read_endpoint(&mut self) -> Result<Endpoint, DecodeError> {
        let kind = self.read_i16()?;
        if !(TCP..=WSS).contains(&kind) {
            return self.read_opaque_endpoint(kind);
        }
        self.start_encapsulation()?;
        let host = self.read_string()?;
        let port = self.read_i32()?;
        let endpoint = match kind {
            UDP => {
                if self.encoding() == Encoding::V1_0 {
                    // protocol and encoding versions, which 1.1 dropped
                    self.skip(4)?;
                }
                Endpoint::Udp {
                    host,
                    port,
                    compress: self.read_bool()?,
                }
            }
            _ => {
                let timeout = self.read_i32()?;
                let compress = self.read_bool()?;
                match kind {
                    TCP => Endpoint::Tcp {
                        host,
                        port,
                        timeout,
                        compress,
                    },
                    SSL => Endpoint::Ssl {
                        host,
                        port,
                        timeout,
                        compress,
                    },
                    WS => Endpoint::Ws {
                        host,
                        port,
                        timeout,
                        compress,
                        resource: self.read_string()?,
                    },
                    _ => Endpoint::Wss {
                        host,
                        port,
                        timeout,
                        compress,
                        resource: self.read_string()?,
                    },
                }
            }
        };
        self.end_encapsulation()?;
        Ok(endpoint)
    }

    fn read_opaque_endpoint(&mut self, kind: i16) -> Result<Endpoint, DecodeError> {
        let size = self.read_i32()?;
        let size = usize::try_from(size).map_err(|_| DecodeError::NegativeSize(size))?;
        if size < 6 {
            return Err(DecodeError::Encapsulation(format!(
                "size {size} is smaller than its header"
            )));
        }
        let encoding = (self.read_u8()?, self.read_u8()?);
        let bytes = self.read_bytes(size - 6)?.to_vec();
        self.charge(bytes.len())?;
        Ok(Endpoint::Opaque {
            kind,
            encoding,
            bytes,
        })
    }
}

impl OutputStream {
    /// A proxy, or the null proxy for `None`.
    pub fn write_proxy(&mut self, proxy: Option<&Proxy>) {
        let Some(p) = proxy else {
            Identity::default().encode(self);
            return;
        };
        p.identity.encode(self);
        if p.facet.is_empty() {
            self.write_size(0);
        } else {
            self.write_size(1);
            self.write_string(&p.facet);
        }
        self.write_u8(p.mode as u8);
        self.write_bool(p.secure);
        if self.encoding() == Encoding::V1_1 {
            self.write_u8(p.protocol.0);
            self.write_u8(p.protocol.1);
            let (major, minor) = p.encoding.to_bytes();
            self.write_u8(major);
            self.write_u8(minor);
        }
        self.write_size(p.endpoints.len());
        for e in &p.endpoints {
            self.write_endpoint(e);
        }
        if p.endpoints.is_empty() {
            self.write_string(&p.adapter_id);
        }
    }

    fn write_endpoint(&mut self, e: &Endpoint) {
        if let Endpoint::Opaque {
            kind,
            encoding,
            bytes,
        } = e
        {
            self.write_i16(*kind);
            self.write_i32(i32::try_from(bytes.len() + 6).unwrap_or(i32::MAX));
            self.write_u8(encoding.0);
            self.write_u8(encoding.1);
            self.write_bytes(bytes);
            return;
        }
        let encoding = self.encoding();
        match e {
            Endpoint::Tcp { .. } => self.write_i16(TCP),
            Endpoint::Ssl { .. } => self.write_i16(SSL),
            Endpoint::Udp { .. } => self.write_i16(UDP),
            Endpoint::Ws { .. } => self.write_i16(WS),
            Endpoint::Wss { .. } => self.write_i16(WSS),
            Endpoint::Opaque { .. } => {}
        }
        self.start_encapsulation(encoding);
        self.write_endpoint_body(e);
        self.end_encapsulation();
    }

    fn write_endpoint_body(&mut self, e: &Endpoint) {
        match e {
            Endpoint::Tcp {
                host,
                port,
                timeout,
                compress,
            }
            | Endpoint::Ssl {
                host,
                port,
                timeout,
                compress,
            } => self.write_ip_body(host, *port, *timeout, *compress),
            Endpoint::Ws {
                host,
                port,
                timeout,
                compress,
                resource,
            }
            | Endpoint::Wss {
                host,
                port,
                timeout,
                compress,
                resource,
            } => {
                self.write_ip_body(host, *port, *timeout, *compress);
                self.write_string(resource);
            }
            Endpoint::Udp {
                host,
                port,
                compress,
            } => {
                self.write_string(host);
                self.write_i32(*port);
                if self.encoding() == Encoding::V1_0 {
                    self.write_bytes(&[1, 0, 1, 0]);
                }
                self.write_bool(*compress);
            }
            Endpoint::Opaque { .. } => {}
        }
    }

    fn write_ip_body(&mut self, host: &str, port: i32, timeout: i32, compress: bool) {
        self.write_string(host);
        self.write_i32(port);
        self.write_i32(timeout);
        self.write_bool(compress);
    }
}

impl Decode for Option<Proxy> {
    const MIN_WIRE_SIZE: usize = 2;
    fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        r.read_proxy()
    }
}

impl Encode for Option<Proxy> {
    fn encode(&self, w: &mut OutputStream) {
        w.write_proxy(self.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::test_types::bytes;
    use proptest::prelude::*;

    fn router() -> Proxy {
        let mut p = Proxy::new(Identity::new("OMERO.Glacier2", "router"));
        p.endpoints.push(Endpoint::Ssl {
            host: "localhost".into(),
            port: 4064,
            timeout: 60000,
            compress: false,
        });
        p
    }

    fn in_encaps(encoding: Encoding, p: Option<&Proxy>) -> Vec<u8> {
        let mut w = OutputStream::new(encoding);
        w.start_encapsulation(encoding);
        w.write_proxy(p);
        w.end_encapsulation();
        w.into_bytes()
    }

    fn from_encaps(bytes: &[u8]) -> Option<Proxy> {
        let mut r = InputStream::new(bytes, Encoding::V1_1);
        r.start_encapsulation().unwrap();
        let p = r.read_proxy().unwrap();
        r.end_encapsulation().unwrap();
        p
    }

    const ROUTER_1_1: &str = "3f 00 00 00 01 01 | 06 72 6f 75 74 65 72
        0e 4f 4d 45 52 4f 2e 47 6c 61 63 69 65 72 32 | 00 00 00 | 01 00 01 01 | 01 | 02 00
        19 00 00 00 01 01 | 09 6c 6f 63 61 6c 68 6f 73 74 | e0 0f 00 00 | 60 ea 00 00 | 00";
    const ROUTER_1_0: &str = "3b 00 00 00 01 00 | 06 72 6f 75 74 65 72
        0e 4f 4d 45 52 4f 2e 47 6c 61 63 69 65 72 32 | 00 00 00 | 01 | 02 00
        19 00 00 00 01 00 | 09 6c 6f 63 61 6c 68 6f 73 74 | e0 0f 00 00 | 60 ea 00 00 | 00";

    #[test]
    fn spec_router_proxy_1_1() {
        assert_eq!(
            in_encaps(Encoding::V1_1, Some(&router())),
            bytes(ROUTER_1_1)
        );
        assert_eq!(from_encaps(&bytes(ROUTER_1_1)), Some(router()));
    }

    #[test]
    fn spec_router_proxy_1_0_has_no_versions_and_gets_encoding_1_0() {
        assert_eq!(
            in_encaps(Encoding::V1_0, Some(&router())),
            bytes(ROUTER_1_0)
        );
        let p = from_encaps(&bytes(ROUTER_1_0)).unwrap();
        assert_eq!(p.encoding, Encoding::V1_0);
        assert_eq!(p.protocol, (1, 0));
        assert_eq!(p.endpoints, router().endpoints);
    }

    #[test]
    fn null_proxy_is_two_empty_strings() {
        for encoding in [Encoding::V1_0, Encoding::V1_1] {
            let mut w = OutputStream::new(encoding);
            None::<Proxy>.encode(&mut w);
            assert_eq!(w.as_slice(), &[0, 0]);
            let mut r = InputStream::new(w.as_slice(), encoding);
            assert_eq!(Option::<Proxy>::decode(&mut r).unwrap(), None);
        }
    }

    #[test]
    fn adapter_id_and_facet() {
        let mut p = Proxy::new(Identity::new("", "obj"));
        p.facet = "f".into();
        p.adapter_id = "Adapter".into();
        p.mode = ProxyMode::Oneway;
        p.secure = true;
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_proxy(Some(&p));
        assert_eq!(
            w.as_slice(),
            bytes("03 obj 00 | 01 01 f | 01 01 | 01 00 01 01 | 00 | 07 Adapter")
        );
        let mut r = InputStream::new(w.as_slice(), Encoding::V1_1);
        assert_eq!(r.read_proxy().unwrap(), Some(p));
    }

    #[test]
    fn udp_carries_versions_only_in_1_0() {
        let mut p = Proxy::new(Identity::new("", "u"));
        p.endpoints.push(Endpoint::Udp {
            host: "h".into(),
            port: 9,
            compress: true,
        });
        let v10 = in_encaps(Encoding::V1_0, Some(&p));
        assert!(v10.ends_with(&bytes(
            "03 00 11 00 00 00 01 00 01 68 09 00 00 00 01 00 01 00 01"
        )));
        let v11 = in_encaps(Encoding::V1_1, Some(&p));
        assert!(v11.ends_with(&bytes("03 00 0d 00 00 00 01 01 01 68 09 00 00 00 01")));
        assert_eq!(from_encaps(&v11), Some(p.clone()));
        assert_eq!(from_encaps(&v10).unwrap().endpoints, p.endpoints);
    }

    #[test]
    fn opaque_endpoint_is_kept_byte_for_byte() {
        let wire = bytes(
            "01 x 00 | 00 | 00 | 00 | 01 00 01 01 | 01 | 63 00 0a 00 00 00 01 07 de ad be ef",
        );
        let mut r = InputStream::new(&wire, Encoding::V1_1);
        let p = r.read_proxy().unwrap().unwrap();
        assert_eq!(
            p.endpoints,
            vec![Endpoint::Opaque {
                kind: 99,
                encoding: (1, 7),
                bytes: vec![0xde, 0xad, 0xbe, 0xef]
            }]
        );
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_proxy(Some(&p));
        assert_eq!(w.as_slice(), wire.as_slice());
    }

    #[test]
    fn invalid_mode_and_facets_are_refused() {
        for wire in [
            "01 x 00 00 05 00 01 00 01 01 00 00",
            "01 x 00 02 00 00 00 00",
        ] {
            let data = bytes(wire);
            let mut r = InputStream::new(&data, Encoding::V1_1);
            assert!(r.read_proxy().is_err(), "{wire}");
        }
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        let ip = ("[a-z.]{0,12}", any::<i32>(), any::<i32>(), any::<bool>());
        prop_oneof![
            ip.prop_map(|(host, port, timeout, compress)| Endpoint::Tcp {
                host,
                port,
                timeout,
                compress
            }),
            ip.prop_map(|(host, port, timeout, compress)| Endpoint::Ssl {
                host,
                port,
                timeout,
                compress
            }),
            ("[a-z]{0,5}", any::<i32>(), any::<bool>()).prop_map(|(host, port, compress)| {
                Endpoint::Udp {
                    host,
                    port,
                    compress,
                }
            }),
            (ip, "/[a-z]{0,5}").prop_map(|((host, port, timeout, compress), resource)| {
                Endpoint::Ws {
                    host,
                    port,
                    timeout,
                    compress,
                    resource,
                }
            }),
            (ip, "/[a-z]{0,5}").prop_map(|((host, port, timeout, compress), resource)| {
                Endpoint::Wss {
                    host,
                    port,
                    timeout,
                    compress,
                    resource,
                }
            }),
            (6i16..100, any::<Vec<u8>>()).prop_map(|(kind, bytes)| Endpoint::Opaque {
                kind,
                encoding: (1, 1),
                bytes
            }),
        ]
    }

    proptest! {
        #[test]
        fn proxies_round_trip(
            name in "[a-z]{1,8}", category in "[a-z]{0,8}", facet in "[a-z]{0,3}",
            mode in 0u8..5, secure: bool, v11: bool,
            endpoints in proptest::collection::vec(endpoint(), 0..4), adapter in "[a-z]{0,6}",
        ) {
            let encoding = if v11 { Encoding::V1_1 } else { Encoding::V1_0 };
            let p = Proxy {
                identity: Identity::new(category, name),
                facet,
                mode: ProxyMode::from_u8(mode).unwrap(),
                secure,
                protocol: (1, 0),
                encoding,
                adapter_id: if endpoints.is_empty() { adapter } else { String::new() },
                endpoints,
            };
            let mut w = OutputStream::new(encoding);
            Some(p.clone()).encode(&mut w);
            let mut r = InputStream::new(w.as_slice(), encoding);
            prop_assert_eq!(Option::<Proxy>::decode(&mut r).unwrap(), Some(p));
            prop_assert!(r.is_at_end());
        }

        #[test]
        fn random_bytes_never_panic_as_proxy(data: Vec<u8>, v11: bool) {
            let encoding = if v11 { Encoding::V1_1 } else { Encoding::V1_0 };
            let mut r = InputStream::new(&data, encoding);
            let _ = r.read_proxy();
        }
    }
}
