//! TLS to PostgreSQL (Cloud SQL) with rustls.

use crate::config::{DbConfig, SslMode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tern::ConfigError;

/// The rustls client configuration for `cfg`, or `None` for `DB_SSLMODE=disable`.
pub fn client_config(cfg: &DbConfig) -> Result<Option<rustls::ClientConfig>, ConfigError> {
    if cfg.ssl_mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    match &cfg.ssl_root_cert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::new("DB_SSL_ROOT_CERT", format!("cannot read {path:?}: {e}"))
            })?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    ConfigError::new("DB_SSL_ROOT_CERT", format!("{path:?} is not PEM: {e}"))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| ConfigError::new("DB_SSL_ROOT_CERT", format!("{path:?}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ConfigError::new(
                    "DB_SSL_ROOT_CERT",
                    format!("{path:?} holds no certificate"),
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ConfigError::new("DB_SSL_ROOT_CERT", e.to_string()))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("DB_SSLMODE", e.to_string()))?;
    let config = match cfg.ssl_mode {
        SslMode::VerifyCa => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            .with_no_client_auth(),
        _ => builder.with_webpki_verifier(webpki).with_no_client_auth(),
    };
    Ok(Some(config))
}

/// `verify-ca`: the chain must lead to the configured CA; the name is not checked
/// (Cloud SQL server certificates name the instance, and we connect to an IP address).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(v) => Ok(v),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tern::Env;

    async fn config(root_cert: &str) -> Result<Option<rustls::ClientConfig>, ConfigError> {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://u@10.0.0.5/d"),
            ("DB_SSLMODE", "verify-ca"),
            ("DB_SSL_ROOT_CERT", root_cert),
        ]);
        client_config(&DbConfig::from_env(&env).await?)
    }

    #[tokio::test]
    async fn the_root_certificate_is_read_from_pem() {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-ca.pem");
        assert!(config(fixture).await.unwrap().is_some());

        let dir = std::env::temp_dir().join(format!("tern-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = config(empty.to_str().unwrap()).await.unwrap_err();
        assert_eq!(e.var, "DB_SSL_ROOT_CERT");
        assert!(e.to_string().contains("holds no certificate"), "{e}");

        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = config(broken.to_str().unwrap()).await.unwrap_err();
        assert!(e.to_string().contains("is not PEM"), "{e}");
        let missing = config("/nonexistent/ca.pem").await.unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
