//! TLS on the client listener (`proxy.tls_cert_file`, `proxy.tls_key_file`, and
//! `proxy.tls_client_ca_file` to require client certificates), as managed Redis services'
//! applications expect. The handshake runs in the client's own task, before its session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// The PEM files of the client listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

pub(crate) fn certs(
    path: &Path,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// Builds the acceptor (also how the configuration is checked at start).
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let chain = certs(&files.cert)?;
    let pem =
        std::fs::read(&files.key).with_context(|| format!("reading {}", files.key.display()))?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("{}: not a PEM private key", files.key.display()))?
        .with_context(|| format!("{} holds no private key", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .with_context(|| format!("{}: a CA certificate", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .context("the certificate and the key do not go together")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client configuration for `cutover ctl` against a TLS admin listener: the web PKI
/// roots and `ca` (a private CA), and a client certificate when the listener asks for one.
pub fn client_config(
    ca: Option<&Path>,
    cert_key: Option<(&Path, &Path)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        for c in certs(ca)? {
            roots
                .add(c)
                .with_context(|| format!("{}: a CA certificate", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots);
    let config = match cert_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certs(cert)?;
            let pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            let key = rustls_pemfile::private_key(&mut pem.as_slice())
                .with_context(|| format!("{}: not a PEM private key", key.display()))?
                .with_context(|| format!("{} holds no private key", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("the client certificate and key do not go together")?
        }
    };
    Ok(Arc::new(config))
}
