//! The server: the one place that wires the layers together. It checks the
//! configuration, builds delivery, the runtime, the apps and the edge's
//! shared state, loads the apps, and then serves a listener until told to
//! stop. `serve` adds what only a process has: the port from the command
//! line, the banner, and SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apps::reload::{self, FolderWatch};
use crate::apps::{AppManager, source_watch};
use crate::build::toolchain::Toolchains;
use crate::config::ServeConfig;
use crate::delivery::{ConnectionRegistry, Delivery, HistoryLimits};
use crate::edge::accept::{Answer, accept_until_shutdown, shut_down};
use crate::edge::admin;
use crate::edge::admission::ConnectionCaps;
use crate::edge::auth::Authenticator;
use crate::edge::state::ServerState;
use crate::edge::tls::{CertificateFiles, Tls};
use crate::runtime::compiler::CompileIn;
use crate::runtime::{Runtime, SharedServing};
use crate::telemetry;

/// A server with its apps loaded, ready to [`run`](Self::run).
pub(crate) struct Server {
    /// What it was started with.
    config: ServeConfig,
    /// What every request handler shares.
    state: Arc<ServerState>,
    /// The serving apps, handed to the reloader when the server runs.
    apps: AppManager,
    /// The watch on the apps folder, started before the first load so no
    /// change is missed.
    watch: FolderWatch,
    /// Where the admin endpoints listen, if they do.
    admin: Option<std::net::SocketAddr>,
}

impl Server {
    /// Checks `config` (every configuration error before anything starts),
    /// builds the layers and loads the apps.
    pub(crate) async fn new(mut config: ServeConfig) -> anyhow::Result<Self> {
        if !config.apps_dir.is_dir() {
            anyhow::bail!(
                "the apps folder {} does not exist",
                config.apps_dir.display()
            );
        }
        let admin_address = config.admin_address()?;
        let auth = Authenticator::new(config.secret.as_deref())?;
        let names = config.edge.names()?;
        config.backplane.check()?;
        // One spelling of every path: the watcher reports absolute paths.
        config.apps_dir = config
            .apps_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", config.apps_dir.display()))?;
        let registry = Arc::new(ConnectionRegistry::with_history(HistoryLimits {
            max_messages: config.limits.history_max_messages,
            app_bytes: config.limits.history_bytes_per_app,
        }));
        let delivery = Arc::new(Delivery::start(&config.backplane, registry.clone())?);
        let serving: SharedServing = Arc::new(ArcSwap::from_pointee(Default::default()));
        let runtime = Arc::new(Runtime::new(
            delivery.clone(),
            config.limits.clone(),
            config.cache_dir(),
            config.fast_compile,
            // The compiler's peak memory is never the server's.
            CompileIn::ChildProcess,
        )?);
        match runtime.cache().dir() {
            Some(dir) => tracing::info!(dir = %dir.display(), "compile cache"),
            None => tracing::info!("compile cache off"),
        }
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::start(CertificateFiles {
                cert: cert.clone(),
                key: key.clone(),
            })?),
            _ => None,
        };
        let state = Arc::new(ServerState {
            tls,
            serving: serving.clone(),
            delivery,
            limits: config.limits.clone(),
            edge: config.edge.clone(),
            names: names.clone(),
            dev: config.dev || config.watch.is_some(),
            auth,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                config.limits.max_inflight_body_bytes.get().div_ceil(1024),
            )),
            http_connections: ConnectionCaps::new(
                config.edge.max_http_connections.get(),
                config.edge.per_address(),
            ),
        });
        // Up before the apps load, so `/ready` can say they have not.
        let admin = match admin_address {
            Some(address) => {
                let listener = admin::bind(address).await?;
                let bound = listener.local_addr()?;
                let admin_state = Arc::new(admin::AdminState {
                    metrics: telemetry::install()?,
                    server: state.clone(),
                });
                admin::spawn(listener, admin_state);
                tracing::info!(admin = %bound, "admin endpoints: /metrics /health /ready");
                Some(bound)
            }
            None => None,
        };
        // Watch first, so a change during the initial load is not missed.
        let watch = reload::watch(&config.apps_dir)?;
        let mut apps = AppManager::new(runtime, serving, registry, names);
        apps.load_dir(&config.apps_dir).await?;
        Ok(Self {
            config,
            state,
            apps,
            watch,
            admin,
        })
    }

    /// The startup banner: each app and its routes, and the admin address.
    pub(crate) fn banner(&self) -> String {
        let mut banner = self.apps.banner();
        if let Some(admin) = self.admin {
            banner.push_str(&format!("admin on http://{admin}\n"));
        }
        banner
    }

    /// Serves `listener` (and, if configured, the admin endpoints, and
    /// the plain port that redirects to HTTPS) until `shutdown` resolves;
    /// then closes every WebSocket with 1001 and lets in-flight requests
    /// finish.
    pub(crate) async fn run(
        self,
        listener: TcpListener,
        redirect: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            state,
            apps,
            watch,
            admin: _,
        } = self;
        if let Some(sources) = config.watch_sources() {
            let apps_dir = config.apps_dir.clone();
            let watched =
                tokio::task::spawn_blocking(move || source_watch::discover(&sources, &apps_dir))
                    .await??;
            if watched.is_empty() {
                tracing::warn!("--watch: found no sources of any of the served apps");
            }
            let toolchains = Toolchains::default_location()?.with_js_engine(config.js_engine);
            tokio::spawn(async move {
                if let Err(err) = source_watch::run(watched, toolchains).await {
                    tracing::error!("--watch stopped: {err:#}");
                }
            });
        }
        tokio::spawn(watch.run(apps));
        if let Some(redirect) = redirect {
            let answer = Answer::RedirectToHttps {
                port: listener.local_addr()?.port(),
            };
            let stop = state.shutdown.clone().cancelled_owned();
            tokio::spawn(accept_until_shutdown(redirect, state.clone(), stop, answer));
        }

        accept_until_shutdown(listener, state.clone(), shutdown, Answer::Apps).await;
        shut_down(&state).await;
        Ok(())
    }
}

/// `tina4-wasm serve`: runs until SIGINT or SIGTERM.
pub(crate) async fn serve(config: ServeConfig) -> anyhow::Result<bool> {
    let shutdown = shutdown_signal()?;
    let (host, port, redirect_port) = (config.host, config.port, config.redirect_http_port);
    let server = Server::new(config).await?;
    let listener = TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    // Both ports are listening before either is announced.
    let redirect = match redirect_port {
        Some(port) => Some(
            TcpListener::bind((host, port))
                .await
                .with_context(|| format!("cannot listen on {host}:{port}"))?,
        ),
        None => None,
    };
    let address = listener.local_addr()?;
    print!("{}", server.banner());
    let scheme = if server.state.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("listening on {scheme}://{address}");
    tracing::info!(%address, scheme, "listening");
    if address.ip().is_unspecified() {
        println!(
            "  (on this machine: {scheme}://localhost:{})",
            address.port()
        );
    }
    if let Some(redirect) = &redirect {
        println!("redirecting http://{} to https", redirect.local_addr()?);
    }
    server.run(listener, redirect, shutdown).await?;
    Ok(true)
}

/// SIGINT or SIGTERM. The handlers are installed when this is created, so
/// a signal that arrives while apps are still loading is not missed.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServeConfig,
    }

    /// The server driven in-process: built from a configuration, served on
    /// a listener the test bound, stopped by a future the test resolves.
    #[tokio::test]
    async fn runs_in_process_until_told_to_stop() {
        let apps = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let args = [
            "serve".as_ref(),
            apps.path().as_os_str(),
            "--admin-listen".as_ref(),
            "off".as_ref(),
            "--cache-dir".as_ref(),
            cache.path().as_os_str(),
        ];
        let config = Serve::parse_from(args).config;
        let server = Server::new(config).await.unwrap();
        assert!(server.banner().starts_with("tina4-wasm "));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(listener, None, async {
            let _ = stopped.await;
        }));

        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET /nothing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
    }
}
