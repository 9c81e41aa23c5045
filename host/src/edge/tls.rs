//! TLS on the public port: the certificate chain and key from PEM files,
//! swapped in when the files change, and the handshake within the same
//! bound as a request head.
//!
//! rustls (with aws-lc-rs) speaks TLS 1.3 and 1.2 only, prefers a
//! post-quantum key exchange where the client offers one, never
//! renegotiates, and offers HTTP/2 and HTTP/1.1 by ALPN. The files
//! are read again after any change in their folders (a certificate renewed
//! in place, a rename into place, a mounted secret swapped by its link), a
//! moment after the last event, so a renewal written in two steps is read
//! once, whole. A pair that does not load (half written, a key that does
//! not match its certificate) is logged and the previous one keeps serving.
//! Open connections keep the certificate they were made with; new
//! handshakes get the new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// How long the certificate's folders must be quiet before the files are
/// read again.
const SETTLE: Duration = Duration::from_millis(200);

/// The longest a busy folder can put off reading the files again.
const MAX_SETTLE: Duration = Duration::from_secs(2);

/// The PEM files a server's certificate comes from.
#[derive(Debug, Clone)]
pub(crate) struct CertificateFiles {
    /// The certificate chain, leaf first.
    pub(crate) cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: PathBuf,
}

impl CertificateFiles {
    /// Reads and checks the pair: a chain with at least one certificate,
    /// and a key that matches its leaf.
    fn load(&self, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read certificates from {}", self.cert.display()))?;
        if chain.is_empty() {
            bail!("no certificate in {}", self.cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("cannot read a private key from {}", self.key.display()))?;
        CertifiedKey::from_der(chain, key, provider).with_context(|| {
            format!(
                "the key in {} does not go with the certificate in {}",
                self.key.display(),
                self.cert.display()
            )
        })
    }
}

/// The certificate every handshake gets: the last pair that loaded.
#[derive(Debug)]
struct CurrentCertificate(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// TLS for the public port.
#[derive(Clone)]
pub(crate) struct Tls {
    /// Accepts handshakes with the current certificate.
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the pair and keeps it up to date with its files. Call it on
    /// the async runtime.
    pub(crate) fn start(files: CertificateFiles) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let current = Arc::new(CurrentCertificate(ArcSwap::from_pointee(
            files.load(&provider)?,
        )));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // HTTP/2 for HTTP routes; WebSocket upgrades are HTTP/1.1 (RFC 6455).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let watch = watch_folders(&files)?;
        tokio::spawn(keep_current(watch, files, provider, current));
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Runs the server side of a handshake on `stream`, within `timeout`.
    pub(crate) async fn accept<S>(
        &self,
        stream: S,
        timeout: Duration,
    ) -> anyhow::Result<tokio_rustls::server::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        match tokio::time::timeout(timeout, self.acceptor.accept(stream)).await {
            Ok(done) => done.context("TLS handshake failed"),
            Err(_) => bail!("TLS handshake took longer than {timeout:?}"),
        }
    }
}

/// A watch on the folders of the certificate and key, and its events.
struct FolderEvents {
    /// Kept alive as long as the watch should last.
    _watcher: notify::RecommendedWatcher,
    /// One message per event in either folder.
    events: mpsc::Receiver<()>,
}

fn watch_folders(files: &CertificateFiles) -> anyhow::Result<FolderEvents> {
    let (tx, events) = mpsc::channel(16);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| is_change(&event)) {
            // A full queue already holds a reason to read the files again.
            let _ = tx.try_send(());
        }
    })
    .context("cannot start the certificate watcher")?;
    let mut folders: Vec<&Path> = [&files.cert, &files.key]
        .iter()
        .map(|file| {
            file.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        })
        .collect();
    folders.dedup();
    for folder in folders {
        watcher
            .watch(folder, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", folder.display()))?;
    }
    Ok(FolderEvents {
        _watcher: watcher,
        events,
    })
}

/// Whether a watch event may have changed the files: reading one is no
/// change (and reading the pair would otherwise set off the next reload).
fn is_change(event: &notify::Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Reads the pair again once its folders have been quiet for [`SETTLE`]
/// after a change; a pair that loads replaces the current one.
async fn keep_current(
    mut watch: FolderEvents,
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCertificate>,
) {
    while watch.events.recv().await.is_some() {
        // Wait for the folders to settle: each event starts the wait
        // again, within a bound.
        let latest = tokio::time::Instant::now() + MAX_SETTLE;
        loop {
            let quiet = (tokio::time::Instant::now() + SETTLE).min(latest);
            match tokio::time::timeout_at(quiet, watch.events.recv()).await {
                Ok(Some(())) if tokio::time::Instant::now() < latest => continue,
                Ok(Some(())) => break,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        match files.load(&provider) {
            // Something else changed in the folder: nothing to do.
            Ok(pair) if pair.cert == current.0.load().cert => {}
            Ok(pair) => {
                current.0.store(Arc::new(pair));
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(err) => tracing::warn!(
                "TLS certificate not reloaded, the previous one keeps serving: {err:#}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    use super::*;

    #[test]
    fn reading_the_files_is_no_change_and_writing_them_is() {
        let of = |kind| is_change(&notify::Event::new(kind));
        assert!(!of(EventKind::Access(AccessKind::Open(AccessMode::Read))));
        assert!(!of(EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(of(EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(of(EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        assert!(of(EventKind::Create(CreateKind::File)));
    }
}
