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
