//! The TLS settings of `rediss://`, made once per store from the URL's options (`RedisTls`):
//! rustls with the ring provider, the trusted roots from `ca=` or else the platform's (read by
//! rustls-native-certs: `/etc/ssl/certs` on Debian, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), a
//! client certificate from `cert=` and `key=`, the name to check from `server_name=` or else the
//! host connected to. `insecure=true` checks no certificate at all (tests only).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::config::RedisTls;
use crate::error::{Error, ErrorKind, Result};

/// What a TLS connection needs: the rustls configuration and the name to check, if fixed.
#[derive(Clone)]
pub(super) struct Tls {
    pub config: Arc<ClientConfig>,
    server_name: Option<String>,
}

impl Tls {
    /// Reads the files the options name; a file that cannot be read or holds no usable PEM is
    /// `CannotOpenStore`, naming the option and the file.
    pub fn new(options: &RedisTls) -> Result<Tls> {
        // ring rather than aws-lc-rs (rustls's default, with post-quantum key exchange): ring
        // builds with the C compiler alone, in seconds; aws-lc-rs needs cmake and minutes.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| cannot(format!("cannot set up TLS: {e}")))?;
        let builder = if options.insecure {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        } else {
            builder.with_root_certificates(roots(options.ca.as_deref())?)
        };
        let config = match (&options.cert, &options.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates("cert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| cannot(format!("key={}: no private key could be read from it ({e})", key.display())))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    cannot(format!("cert= and key= do not make a usable client certificate ({e})"))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Tls { config: Arc::new(config), server_name: options.server_name.clone() })
    }

    /// The name the certificate of the server at `host` must be for.
    pub fn server_name(&self, host: &str) -> std::result::Result<ServerName<'static>, String> {
        let name = self.server_name.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_owned())
            .map_err(|_| format!("{name:?} is not a name a certificate can be for (give server_name=)"))
    }
}

fn cannot(why: String) -> Error {
    Error::new(ErrorKind::CannotOpenStore, format!("redis TLS: {why}; no broker was made"))
}

/// The certificates of the PEM file `path`, the value of option `option`.
fn certificates(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let read = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| cannot(format!("{option}={}: cannot read certificates from it ({e})", path.display())))?;
    if read.is_empty() {
        return Err(cannot(format!("{option}={}: holds no PEM certificate", path.display())));
    }
    Ok(read)
}

/// The CAs of `ca`, or the platform's.
fn roots(ca: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in certificates("ca", path)? {
                roots
                    .add(cert)
                    .map_err(|e| cannot(format!("ca={}: a certificate in it is not usable ({e})", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(cannot(format!(
                    "no trusted certificate authority found on this machine{why}: install ca-certificates, or \
                     give the server's CA with ca=/path/ca.pem"
                )));
            }
        }
    }
    Ok(roots)
}

/// `insecure=true`: any certificate is taken, but the handshake's signatures are still
/// checked (so the connection is encrypted to whoever holds the certificate's key).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
