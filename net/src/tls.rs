//! TLS 1.3 for pool links. Every node makes a self-signed certificate at first start and keeps
//! it; the certificate itself is never trusted — peers prove knowledge of the pool secret with
//! SPAKE2 bound to the TLS session (see `auth`), which is what authenticates a link.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// ALPN protocol id: a peer speaking anything else fails the TLS handshake.
pub const ALPN: &[u8] = b"millpond-pool/1";

/// The node's certificate and key.
#[derive(Debug)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

/// The one crypto provider, passed explicitly everywhere: with more than one compiled in,
/// rustls refuses to pick a default (ARCHITECTURE.md §9).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the node certificate from `dir` (`node-cert.der`, `node-key.der`), or makes one and
/// saves it there (the key readable only by the user). With no directory, a fresh one.
pub fn load_or_create_identity(dir: Option<&Path>) -> std::io::Result<Identity> {
    if let Some(dir) = dir {
        let (c, k) = (dir.join("node-cert.der"), dir.join("node-key.der"));
        if let (Ok(cert), Ok(key)) = (std::fs::read(&c), std::fs::read(&k)) {
            return Ok(Identity {
                cert: CertificateDer::from(cert),
                key: PrivatePkcs8KeyDer::from(key),
            });
        }
        let id = generate()?;
        std::fs::create_dir_all(dir)?;
        crate::secret::write_private(&k, id.key.secret_pkcs8_der())?;
        crate::secret::write_private(&c, id.cert.as_ref())?;
        // Another process may have won the race: use whatever pair is on disk now.
        if let (Ok(cert), Ok(key)) = (std::fs::read(&c), std::fs::read(&k)) {
            return Ok(Identity {
                cert: CertificateDer::from(cert),
                key: PrivatePkcs8KeyDer::from(key),
            });
        }
        return Ok(id);
    }
    generate()
}

fn generate() -> std::io::Result<Identity> {
    let cert = rcgen::generate_simple_self_signed(vec!["millpond-node".to_string()])
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Identity {
        cert: cert.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()),
    })
}

/// Accepts any server certificate but still checks the handshake signature with it, so the
/// TLS session is a real one whose exporter keys SPAKE2 can bind to.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The most stream data a peer may have sent and this node not yet read, over all of a
/// connection's streams, until the peer has authenticated: the auth stream carries 65 bytes
/// each way and the Hello less than a hundred, so a stranger can make this node buffer no
/// more than this (quinn's default, and the 8 MiB stream window below, would let it park
/// megabytes in every pending connection).
pub const PREAUTH_WINDOW: u32 = 16 << 10;
/// The same once authenticated ([`authenticated`]): room for bulk streams in flight.
pub const RECEIVE_WINDOW: u32 = 32 << 20;
/// One stream's receive window: a mesh or result streams at full speed on a LAN.
const STREAM_WINDOW: u32 = 8 << 20;
/// Bulk streams a peer may have open at once, once authenticated.
pub const MAX_BULK_STREAMS: u32 = 64;

/// Transport settings: quinn's defaults are wrong for a pool (ARCHITECTURE.md §9), and a
/// connection starts as a stranger's (§4.4).
///
/// quinn fixes a stream's receive window for the whole endpoint (it is an initial transport
/// parameter), but lets a connection's window grow later (`Connection::set_receive_window`
/// sends the peer a larger MAX_DATA). The connection window bounds what all streams together
/// may carry, so the stream window stays at its working size and the connection window
/// starts at [`PREAUTH_WINDOW`]: the 8 MiB a stream could take is unreachable until
/// [`authenticated`] opens the connection to [`RECEIVE_WINDOW`].
pub fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // A dead peer is noticed within a few seconds; keep-alives keep idle links up.
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(4)).expect("4 s is a valid timeout"),
    ));
    t.keep_alive_interval(Some(Duration::from_millis(800)));
    // Before authentication only the auth stream may be opened; uni streams for bulk data
    // are allowed once the link is authenticated ([`authenticated`]).
    t.max_concurrent_bidi_streams(1u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.stream_receive_window(STREAM_WINDOW.into());
    t.receive_window(PREAUTH_WINDOW.into());
    t.send_window(32 << 20);
    // The pool sends no datagrams: none are accepted (quinn would buffer ~1.25 MB of them
    // per connection by default, before authentication too).
    t.datagram_receive_buffer_size(None);
    Arc::new(t)
}

/// A connection whose peer proved it knows the secret: the receive window opens to
/// [`RECEIVE_WINDOW`] and the peer may open bulk streams.
pub fn authenticated(conn: &quinn::Connection) {
    conn.set_receive_window(RECEIVE_WINDOW.into());
    conn.set_max_concurrent_uni_streams(MAX_BULK_STREAMS.into());
}

pub fn server_config(id: &Identity) -> Result<quinn::ServerConfig, String> {
    let provider = provider();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![id.cert.clone()],
            PrivateKeyDer::Pkcs8(id.key.clone_key()),
        )
        .map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport());
    // Bound the incoming connections not yet looked at by the accept loop, which then
    // bounds those it takes (`proto::admission`).
    cfg.max_incoming(64);
    cfg.incoming_buffer_size(64 * 1024);
    cfg.incoming_buffer_size_total(4 << 20);
    Ok(cfg)
}

pub fn client_config() -> Result<quinn::ClientConfig, String> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport());
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `buf` on `send` until the peer's flow control stops it (nothing more taken for
    /// 300 ms) or `limit` bytes went; returns how many went.
    async fn write_until_blocked(send: &mut quinn::SendStream, limit: usize) -> usize {
        let buf = vec![7u8; 64 << 10];
        let mut sent = 0;
        while sent < limit {
            match tokio::time::timeout(Duration::from_millis(300), send.write(&buf)).await {
                Ok(Ok(n)) => sent += n,
                Ok(Err(e)) => panic!("write failed: {e}"),
                Err(_) => break,
            }
        }
        sent
    }

    /// Over loopback: before authentication a stranger can make this node buffer at most
    /// `PREAUTH_WINDOW` on its auth stream, which it never reads; once the connection is
    /// `authenticated`, megabytes go. Neither end takes datagrams.
    #[test]
    fn a_stranger_parks_16_kib_at_most_and_no_datagrams_until_authenticated() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let id = generate().unwrap();
            let lo = "127.0.0.1:0".parse().unwrap();
            let server = quinn::Endpoint::server(server_config(&id).unwrap(), lo).unwrap();
            let mut client = quinn::Endpoint::client(lo).unwrap();
            client.set_default_client_config(client_config().unwrap());
            let addr = server.local_addr().unwrap();
            let accept = async { server.accept().await.unwrap().await.unwrap() };
            let connect = async {
                client
                    .connect(addr, "millpond-node")
                    .unwrap()
                    .await
                    .unwrap()
            };
            let (acceptor, dialer) = tokio::join!(accept, connect);
            assert_eq!(
                dialer.max_datagram_size(),
                None,
                "the acceptor takes datagrams"
            );
            assert_eq!(
                acceptor.max_datagram_size(),
                None,
                "the dialer takes datagrams"
            );
            let (mut send, _recv) = dialer.open_bi().await.unwrap();
            let before = write_until_blocked(&mut send, 1 << 20).await;
            assert!(
                before > 0 && before <= PREAUTH_WINDOW as usize,
                "{before} bytes taken before authentication"
            );
            authenticated(&acceptor);
            let after = write_until_blocked(&mut send, 4 << 20).await;
            assert!(after >= 4 << 20, "{after} bytes taken after authentication");
            dialer.close(0u32.into(), b"done");
            server.close(0u32.into(), b"done");
        });
    }
}
