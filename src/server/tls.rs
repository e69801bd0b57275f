//! TLS termination: certificates loaded from PEM files and chosen by SNI.
//!
//! Each certificate serves the DNS names in its subjectAltName (wildcards included); a client
//! that sends no SNI, or a name no certificate has, gets the first certificate. ALPN offers h2
//! and http/1.1. The `ServerConfig` lives in the snapshot, so a reload brings new certificates
//! to new connections without touching the listening socket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Builds the TLS config for `(cert, key)` PEM file pairs; the first pair is the default.
pub fn server_config(pairs: &[(PathBuf, PathBuf)]) -> Result<Arc<ServerConfig>, String> {
    let mut resolver = SniResolver { exact: HashMap::new(), wildcard: HashMap::new(), default: None };
    let mut errors = Vec::new();
    for (cert_path, key_path) in pairs {
        match load(cert_path, key_path) {
            Ok((key, names)) => resolver.add(Arc::new(key), &names),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load(cert_path: &PathBuf, key_path: &PathBuf) -> Result<(CertifiedKey, Vec<String>), String> {
    let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()));
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", cert_path.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{}: no certificate in the file", cert_path.display()));
    };
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{}: not a PEM private key: {e}", key_path.display()))?
        .ok_or_else(|| format!("{}: no private key in the file", key_path.display()))?;
    let signing = ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: unusable private key: {e}", key_path.display()))?;
    let names = dns_names(leaf).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{} and {} do not belong together: {e}", cert_path.display(), key_path.display()))?;
    Ok((certified, names))
}

/// The DNS names a certificate is for: subjectAltName DNS entries, else the subject CN.
fn dns_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| format!("cannot parse certificate: {e}"))?;
    let mut names: Vec<String> = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names
            .extend(parsed.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase));
    }
    Ok(names)
}

#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`: matches exactly one more label.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn add(&mut self, key: Arc<CertifiedKey>, names: &[String]) {
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => self.wildcard.entry(parent.to_string()).or_insert_with(|| key.clone()),
                None => self.exact.entry(name.clone()).or_insert_with(|| key.clone()),
            };
        }
        self.default.get_or_insert(key);
    }

    fn find(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = server_name.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact
                .get(&name)
                .or_else(|| name.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)))
                .cloned()
        });
        found.or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name())
    }
}
