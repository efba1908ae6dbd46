//! PostgreSQL over TLS, chosen by `sslmode` in the URL as libpq reads it:
//!
//! | `sslmode` | encrypted | server checked |
//! |---|---|---|
//! | absent, `disable` | no | — |
//! | `allow`, `prefer` | when the server offers it | no |
//! | `require` | yes | only with `sslrootcert` (then as `verify-ca`) |
//! | `verify-ca` | yes | chain to `sslrootcert` (or the Mozilla roots) |
//! | `verify-full` | yes | chain, and the host name or address in the certificate |
//!
//! tokio-postgres knows `disable`, `prefer` and `require` only and refuses
//! options it does not know, so `sslmode` and `sslrootcert` are taken out of
//! the URL here and the rest is handed over unchanged. TLS is rustls on the
//! workspace's ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What the URL asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: TlsMode,
    pub root_cert: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode={0} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    Mode(String),
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] Error),
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://...?...`)
/// or a key=value string, and puts back the `sslmode` tokio-postgres
/// understands. Returns the URL for tokio-postgres and what was asked.
pub fn split_url(url: &str) -> Result<(String, TlsSettings), TlsError> {
    let (base, params, separator) = match url.split_once('?') {
        Some((base, query)) if url.contains("://") => (base, query.split('&').collect(), '&'),
        None if url.contains("://") => (url, Vec::new(), '&'),
        _ => ("", url.split_whitespace().collect::<Vec<_>>(), ' '),
    };
    let mut mode = None;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for param in params {
        match param.split_once('=') {
            Some(("sslmode", value)) => mode = Some(value.trim_matches('\'')),
            Some(("sslrootcert", value)) => {
                root_cert = Some(PathBuf::from(value.trim_matches('\'')))
            }
            _ if !param.is_empty() => kept.push(param.to_owned()),
            _ => {}
        }
    }
    let mode = match mode {
        None | Some("disable") => TlsMode::Disable,
        Some("allow" | "prefer") => TlsMode::Prefer,
        Some("require") if root_cert.is_some() => TlsMode::VerifyCa,
        Some("require") => TlsMode::Require,
        Some("verify-ca") => TlsMode::VerifyCa,
        Some("verify-full") => TlsMode::VerifyFull,
        Some(other) => return Err(TlsError::Mode(other.to_owned())),
    };
    let tokio_mode = match mode {
        TlsMode::Disable => "disable",
        TlsMode::Prefer => "prefer",
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => "require",
    };
    kept.push(format!("sslmode={tokio_mode}"));
    let rebuilt = match separator {
        '&' => format!("{base}?{}", kept.join("&")),
        _ => kept.join(" "),
    };
    Ok((rebuilt, TlsSettings { mode, root_cert }))
}

/// The rustls connector for `settings`; `None` for plain connections.
pub fn connector(settings: &TlsSettings) -> Result<Option<MakeRustlsConnect>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let config = match settings.mode {
        TlsMode::Disable => return Ok(None),
        TlsMode::Prefer | TlsMode::Require => {
            tracing::warn!(
                "PostgreSQL sslmode {:?}: encrypted, but the server's certificate is not checked; \
                 use sslmode=verify-full",
                settings.mode
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        }
        TlsMode::VerifyCa => {
            let roots = Arc::new(roots(settings.root_cert.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Config(Error::General(e.to_string())))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                .with_no_client_auth()
        }
        TlsMode::VerifyFull => builder
            .with_root_certificates(roots(settings.root_cert.as_deref())?)
            .with_no_client_auth(),
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The certificates of `sslrootcert`, or the Mozilla roots without one.
fn roots(path: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let Some(path) = path else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let error = |reason: String| TlsError::RootCert {
        path: path.to_owned(),
        reason,
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| error(e.to_string()))? {
        let cert = cert.map_err(|e| error(e.to_string()))?;
        store.add(cert).map_err(|e| error(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(error("no certificate in the file".into()));
    }
    Ok(store)
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not
/// compared (libpq's meaning).
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
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
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
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a root: any certificate is taken (libpq's
/// meaning); the handshake signatures are still checked, so the session
/// key belongs to whoever holds that certificate.
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_either_form() {
        let (url, tls) =
            split_url("postgres://pc@db:5432/pc?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3")
                .unwrap();
        assert_eq!(
            url,
            "postgres://pc@db:5432/pc?connect_timeout=3&sslmode=require"
        );
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));

        let (url, tls) = split_url("host=db user=pc sslmode=verify-ca").unwrap();
        assert_eq!(url, "host=db user=pc sslmode=require");
        assert_eq!(tls.mode, TlsMode::VerifyCa);

        let (url, tls) = split_url("postgres://pc@db/pc").unwrap();
        assert_eq!(url, "postgres://pc@db/pc?sslmode=disable");
        assert_eq!(tls.mode, TlsMode::Disable);

        let (_, tls) = split_url("postgres://db/pc?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(
            tls.mode,
            TlsMode::VerifyCa,
            "libpq: require with a root verifies"
        );
        assert!(matches!(
            split_url("postgres://db/pc?sslmode=maybe"),
            Err(TlsError::Mode(_))
        ));
    }
}
