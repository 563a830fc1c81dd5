//! TLS on the gRPC port (rustls, TLS 1.2 and 1.3 only), optionally requiring
//! client certificates signed by a CA (mTLS). The certificate, key and CA
//! are re-read on [`Tls::reload`] (SIGHUP): new connections get the new
//! files, established ones keep theirs.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, RootCertStore, ServerConfig,
        crypto::ring,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tokio_stream::wrappers::ReceiverStream;

use crate::admission::peers::{self, PeerLimits, Tracked};
use crate::sync::{read, write};

/// Where the PEM files are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require client certificates signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("client CA {path}: {source}")]
    ClientCa { path: PathBuf, source: rustls::Error },
    #[error("client CA verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("certificate and key: {0}")]
    Config(#[from] rustls::Error),
}

/// The server's TLS settings, swappable at run time.
pub struct Tls {
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let config = server_config(&files)?;
        Ok(Arc::new(Self {
            files,
            config: RwLock::new(config),
        }))
    }

    /// Re-reads certificate, key and CA; on error the old ones stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.files)?;
        *write(&self.config) = fresh;
        Ok(())
    }

    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(read(&self.config).clone())
    }

    /// Accepted connections after their TLS handshake, admitted per source
    /// address (`admission::peers`): a slow or idle peer costs itself only.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
        limits: PeerLimits,
    ) -> ReceiverStream<std::io::Result<Tracked<TlsStream<TcpStream>>>> {
        peers::accept(listener, limits, move |stream| {
            let acceptor = self.acceptor();
            async move { acceptor.accept(stream).await }
        })
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Read {
        path: files.key.clone(),
        source,
    })?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|source| TlsError::ClientCa {
                    path: ca.clone(),
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    // gRPC speaks HTTP/2; RDAP clients may speak HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// SHA-256 of a DER certificate: what a token is bound to (RFC 8705 style).
pub fn certificate_sha256(der: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(der).into()
}

/// The SHA-256 of the first certificate in a PEM file (`token issue --bind-cert`).
pub fn certificate_file_sha256(path: &Path) -> Result<[u8; 32], TlsError> {
    let certs = certificates(path)?;
    Ok(certificate_sha256(&certs[0]))
}

/// A development CA with a server and a client certificate it signed, for
/// trying TLS and mTLS locally (`vpn-registry dev-certs`) and for tests.
pub struct DevCertificates {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    pub client_pem: String,
    pub client_key_pem: String,
}

impl DevCertificates {
    /// A fresh CA; the server certificate is valid for `hosts` (names or IPs).
    pub fn generate(hosts: &[String]) -> Result<Self, rcgen::Error> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "vpn-registry development CA");
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(hosts.to_vec())?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_pem = server.signed_by(&server_key, &issuer)?.pem();
        let mut set = Self {
            issuer,
            ca_pem,
            server_pem,
            server_key_pem: server_key.serialize_pem(),
            client_pem: String::new(),
            client_key_pem: String::new(),
        };
        (set.client_pem, set.client_key_pem) = set.client("vpn-registry development client")?;
        Ok(set)
    }

    /// Another client certificate (PEM certificate, PEM key) from this CA.
    pub fn client(&self, name: &str) -> Result<(String, String), rcgen::Error> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok((params.signed_by(&key, &self.issuer)?.pem(), key.serialize_pem()))
    }

    /// Writes ca.pem, server.pem, server-key.pem, client.pem, client-key.pem.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        for (name, pem) in [
            ("ca.pem", &self.ca_pem),
            ("server.pem", &self.server_pem),
            ("server-key.pem", &self.server_key_pem),
            ("client.pem", &self.client_pem),
            ("client-key.pem", &self.client_key_pem),
        ] {
            std::fs::write(dir.join(name), pem)?;
        }
        Ok(())
    }
}
