//! TLS: certificates chosen by SNI, a default for unknown names, ALPN h2; and h2c.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::harness::{gateway, upstream};

/// Writes a self-signed certificate for `names` into `dir`; returns its DER and file names.
fn certificate(dir: &std::path::Path, stem: &str, names: &[&str]) -> (Vec<u8>, String, String) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let (cert_file, key_file) = (format!("{stem}.pem"), format!("{stem}.key"));
    std::fs::write(dir.join(&cert_file), cert.pem()).unwrap();
    std::fs::write(dir.join(&key_file), key_pair.serialize_pem()).unwrap();
    (cert.der().to_vec(), cert_file, key_file)
}

/// Accepts any certificate: these tests check which one was served, not who signed it.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects with `sni` (or an IP, which sends none) and ALPN h2 + http/1.1.
async fn connect(
    addr: std::net::SocketAddr,
    sni: Option<&str>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = match sni {
        Some(name) => ServerName::try_from(name.to_string()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake")
}

#[tokio::test]
async fn certificates_are_chosen_by_sni_and_h2_is_negotiated() {
    let up = upstream("a").run().await;
    let dir = tempfile::tempdir().unwrap();
    let (a_der, a_cert, a_key) = certificate(dir.path(), "a", &["a.test"]);
    let (b_der, b_cert, b_key) = certificate(dir.path(), "b", &["b.test", "*.b.test"]);
    let d = dir.path().display();
    let gw = gateway(&format!(
        "listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certificates: [{{ cert: {d}/{a_cert}, key: {d}/{a_key} }}, {{ cert: {d}/{b_cert}, key: {d}/{b_key} }}] }}
workers: 1
shutdown_timeout: 2s
upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]
routes: [{{ name: r, upstream: a }}]
",
        up.addr
    ))
    .await;

    let cases = [
        (Some("a.test"), &a_der),
        (Some("b.test"), &b_der),
        (Some("x.b.test"), &b_der),
        (Some("other.test"), &a_der),
        (None, &a_der),
    ];
    for (sni, expected) in cases {
        let tls = connect(gw.addr, sni).await;
        let served = tls.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec();
        assert_eq!(&served, expected, "SNI {sni:?} got the wrong certificate");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    }

    // An HTTP/2 request over TLS reaches the upstream (as HTTP/1.1) and says it came over https.
    let tls = connect(gw.addr, Some("b.test")).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("https://b.test/hello").body(Full::<Bytes>::default()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["uri"], "/hello");
    assert_eq!(echo["headers"]["host"], "b.test");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn http2_without_tls_works_by_prior_knowledge() {
    let up = upstream("a").run().await;
    let gw = gateway(&crate::harness::config(&format!(
        "upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]\nroutes: [{{ name: r, upstream: a }}]\n",
        up.addr
    )))
    .await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    for i in 0..20 {
        let request = http::Request::post(format!("http://api.test/h2c/{i}"))
            .body(Full::new(Bytes::from_static(b"{\"h2\":true}")))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["uri"], format!("/h2c/{i}"));
        assert_eq!(echo["body_len"], 11);
        assert_eq!(echo["headers"]["host"], "api.test");
    }
}

#[tokio::test]
async fn a_broken_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("bad.key"), "not a key").unwrap();
    let path = dir.path().join("barbican.yaml");
    std::fs::write(
        &path,
        "listeners: [{ name: public, bind: 127.0.0.1:0, tls: { certificates: [{ cert: bad.pem, key: bad.key }] } }]\n",
    )
    .unwrap();
    let error = crate::harness::start(path).await.err().expect("must not start");
    let text = error.to_string();
    assert!(text.contains("listeners[0].tls.certificates"), "{text}");
    assert!(text.contains("bad.pem") || text.contains("bad.key"), "{text}");
}

#[tokio::test]
async fn certificates_are_read_again_on_reload() {
    let up = upstream("a").run().await;
    // Certificate files are rewritten in place before a reload.
    let dir = tempfile::tempdir().unwrap();
    let (old_der, cert, key) = certificate(dir.path(), "site", &["site.test"]);
    let yaml = format!(
        "listeners: [{{ name: public, bind: 127.0.0.1:0, tls: {{ certificates: [{{ cert: {d}/{cert}, key: {d}/{key} }}] }} }}]
workers: 1
shutdown_timeout: 2s
upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]
routes: [{{ name: r, upstream: a }}]
",
        up.addr,
        d = dir.path().display()
    );
    let gw = gateway(&yaml).await;
    let served = |tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        tls.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
    };
    let before = connect(gw.addr, Some("site.test")).await;
    assert_eq!(served(&before), old_der);

    let (new_der, _, _) = certificate(dir.path(), "site", &["site.test"]);
    assert_ne!(new_der, old_der);
    assert_eq!(gw.rewrite_and_reload(&yaml).await, Ok(2));
    let after = connect(gw.addr, Some("site.test")).await;
    assert_eq!(served(&after), new_der, "a new connection gets the new certificate");

    // A certificate file broken on disk: the reload is refused and the last good one serves.
    std::fs::write(dir.path().join("site.pem"), "garbage").unwrap();
    let errors = gw.rewrite_and_reload(&yaml).await.expect_err("broken certificate");
    assert!(errors[0].path.starts_with("listeners[0].tls"), "{errors:?}");
    let still = connect(gw.addr, Some("site.test")).await;
    assert_eq!(served(&still), new_der);
}
