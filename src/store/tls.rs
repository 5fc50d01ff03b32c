//! TLS to PostgreSQL, as libpq's `sslmode` means it: `verify-full` checks the chain and
//! the host name (against `sslrootcert`, or the system's roots), `verify-ca` the chain
//! only, `require` and `prefer` encrypt without checking unless `sslrootcert` is given.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::location::{PgTarget, SslMode};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(path: &std::path::Path) -> Result<Arc<RootCertStore>, String> {
    let what = || format!("sslrootcert {}", path.display());
    let mut store = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: cannot read: {e}", what()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: not PEM certificates: {e}", what()))?;
        store
            .add(cert)
            .map_err(|e| format!("{}: a certificate is not usable: {e}", what()))?;
    }
    if store.is_empty() {
        return Err(format!("{}: holds no certificate", what()));
    }
    Ok(Arc::new(store))
}

/// Verifies the chain, not the name (`verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Encrypts without checking who answers (`require`, `prefer`): libpq's meaning, which
/// the README warns about. Handshake signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
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

pub(super) fn connector(
    target: &PgTarget,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let webpki = |path: &std::path::Path| -> Result<Arc<WebPkiServerVerifier>, String> {
        WebPkiServerVerifier::builder_with_provider(roots(path)?, provider.clone())
            .build()
            .map_err(|e| format!("TLS: {e}"))
    };
    let verifier: Arc<dyn ServerCertVerifier> =
        match (target.ssl_mode, target.ssl_root_cert.as_deref()) {
            (SslMode::VerifyFull, Some(path)) => webpki(path)?,
            (SslMode::VerifyFull, None) => Arc::new(
                rustls_platform_verifier::Verifier::new(provider.clone())
                    .map_err(|e| format!("TLS: the system's roots: {e}"))?,
            ),
            (SslMode::VerifyCa, None) => {
                return Err(
                    "sslmode=verify-ca needs sslrootcert (the CA that signs the server's \
                     certificate); or use verify-full with the system's roots"
                        .into(),
                );
            }
            (_, Some(path)) => Arc::new(ChainOnly(webpki(path)?)),
            (_, None) => Arc::new(Unverified(provider.clone())),
        };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
