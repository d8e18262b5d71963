//! The ssl listener with a client that verifies nothing and sends no SNI, like an OMERO
//! client with IceSSL.VerifyPeer=0.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use omero_sessiond::config::ServerConfig;
use omero_sessiond::encoding::{Context, Encoding, Identity};
use omero_sessiond::protocol::{IceCodec, Message, ReplyBody, Request};
use omero_sessiond::runtime::{ObjectAdapter, Server};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_util::codec::Framed;

const GUARD: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn ping_over_tls(version: &'static rustls::SupportedProtocolVersion) {
    let dir = tempfile::tempdir().unwrap();
    let adapter = ObjectAdapter::new();
    let server = Server::bind(ServerConfig::local(dir.path()), adapter)
        .await
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnything))
    .with_no_client_auth();
    let tcp = TcpStream::connect(server.ssl_addr().unwrap())
        .await
        .unwrap();
    // An IP address as server name: rustls then sends no SNI.
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    assert_eq!(session.protocol_version(), Some(version.version));
    let mut c = Framed::new(tls, IceCodec::new(1 << 20));
    let first = timeout(GUARD, c.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.message, Message::ValidateConnection);
    let request = Request {
        request_id: 1,
        id: Identity::new("", "unknown"),
        facet: String::new(),
        operation: "ice_ping".into(),
        mode: 1,
        context: Context::new(),
        encoding: Encoding::V1_1.into(),
        params: Bytes::new(),
    };
    c.send(Bytes::from(request.encode())).await.unwrap();
    let reply = timeout(GUARD, c.next()).await.unwrap().unwrap().unwrap();
    match reply.message {
        Message::Reply(r) => assert!(matches!(r.body, ReplyBody::ObjectNotExist(_))),
        other => panic!("{other:?}"),
    }
    assert!(dir.path().join("cert.pem").exists());
}

#[tokio::test]
async fn tls12_without_sni() {
    ping_over_tls(&rustls::version::TLS12).await;
}

#[tokio::test]
async fn tls13_without_sni() {
    ping_over_tls(&rustls::version::TLS13).await;
}
