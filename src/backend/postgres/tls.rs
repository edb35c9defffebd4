//! TLS for the PostgreSQL backend (feature `postgres-tls`): rustls with its `ring` provider,
//! plugged into the driver by `tokio-postgres-rustls`, with libpq's meaning of each `sslmode`.
//!
//! - `prefer`, `allow`: TLS when the server offers it; the certificate is not checked.
//! - `require`: TLS or no connection; checked as with `verify-ca` when the root certificate file
//!   exists (`sslrootcert`, or `~/.postgresql/root.crt`), else not checked.
//! - `verify-ca`: the chain must lead to a CA of the root certificate file (PEM).
//! - `verify-full`: that, and the certificate must name the host connected to (the `host`
//!   parameter, not `hostaddr`).
//!
//! Without a check the handshake still proves the server holds the key of the certificate it
//! shows, which is worth nothing against an active attacker: use `verify-full` across networks.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conninfo::{SslMode, TlsSettings};

/// The connector for `tls`; `Err` is the reason (a root certificate file that cannot be used).
pub fn connector(tls: &TlsSettings) -> Result<MakeRustlsConnect, String> {
    // Deprecated in rustls 0.23.48 for lacking post-quantum key exchange, which only its
    // aws-lc-rs provider has (CMake and a C toolchain for the target: no cross or musl builds).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let root_file = tls.root_cert.as_deref();
    let roots = match tls.mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let Some(file) = root_file.filter(|f| tls.explicit_root_cert || f.exists()) else {
                return Err(format!(
                    "sslmode={} needs the CA's certificate: give sslrootcert=FILE in the URL or \
                     PGSSLROOTCERT, or put it in ~/.postgresql/root.crt",
                    tls.mode.as_str()
                ));
            };
            Some(load_roots(file)?)
        }
        SslMode::Require => match root_file {
            Some(f) if tls.explicit_root_cert || f.exists() => Some(load_roots(f)?),
            _ => None,
        },
        _ => None,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let config = match (tls.mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => builder.with_root_certificates(roots),
        (_, Some(roots)) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS set-up: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CaOnly(inner)))
        }
        (_, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(algorithms))),
    }
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file.
fn load_roots(file: &Path) -> Result<RootCertStore, String> {
    let shown = file.display();
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("cannot read the root certificate file {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read the root certificate file {shown}: {e}"))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "the root certificate file {shown} holds no usable certificate (PEM expected)"
        ));
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a root; the names in the certificate are not looked at.
#[derive(Debug)]
struct CaOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name: a name error means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
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

/// `prefer`, `allow`, `require` without a root file: any certificate; the handshake signatures
/// are still checked against it.
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// What a TLS failure underneath a connection error means, in words; `None` if it is none.
pub fn explain(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let found = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(cert)) = found {
            return Some(match cert {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "the server's certificate does not name the host connected to".to_owned()
                }
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    "the server's certificate is not signed by a CA of the root certificate file"
                        .to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the server's certificate has expired".to_owned()
                }
                _ => "the server's certificate was refused".to_owned(),
            });
        }
        if found.is_some() {
            return Some("the TLS handshake failed".to_owned());
        }
        cause = c.source();
    }
    None
}
