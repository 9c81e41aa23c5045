//! The app actor: one long-lived instance of an app, owned by one thread and
//! fed by a bounded mailbox.
//!
//! Events of an app run one at a time, in arrival order, so module-level
//! state in the guest (a map of chat users) behaves as it does in Tina4. A
//! dedicated thread keeps guest CPU off the async reactor; the epoch deadline
//! bounds each call. Any guest error discards the `Store` (a trap poisons it)
//! and the next event runs on a fresh instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use wasmtime::Store;

use super::bindings::{Connection, Handler, HttpRequest, HttpResponse, WsEvent};
use super::{InstanceFactory, describe_guest_error};

/// What an app is asked to do.
pub enum AppCommand {
    /// Answer an HTTP request on route `route`.
    Http {
        route: u32,
        request: HttpRequest,
        reply: oneshot::Sender<Result<HttpResponse, AppCallError>>,
    },
    /// Handle a WebSocket event of `conn` on route `route`.
    WebSocket {
        route: u32,
        conn: Arc<Connection>,
        event: WsEvent,
    },
}

/// Why an app gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AppCallError {
    /// The guest trapped, ran out of time or memory; it has been restarted.
    #[error("the app failed while handling the request")]
    GuestFailed,
    /// The app is gone (unloaded) or could not be instantiated.
    #[error("the app is not running")]
    Unavailable,
}

/// A loaded app, as the rest of the host sees it.
#[derive(Debug)]
pub struct AppHandle {
    /// The app's name (its file name without `.wasm`).
    pub name: Arc<str>,
    /// The component file it was loaded from.
    pub file: PathBuf,
    /// The actor's mailbox.
    mailbox: mpsc::Sender<AppCommand>,
}

impl std::fmt::Display for AppHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "app {:?}", &*self.name)
    }
}

impl AppHandle {
    /// Sends a WebSocket event to the app, waiting for mailbox space.
    pub async fn websocket_event(&self, route: u32, conn: &Arc<Connection>, event: WsEvent) {
        let command = AppCommand::WebSocket {
            route,
            conn: conn.clone(),
            event,
        };
        // A closed mailbox means the app was unloaded; its connections are
        // being closed, so the event has nobody to go to.
        let _ = self.mailbox.send(command).await;
    }

    /// Asks the app to answer an HTTP request.
    pub async fn http(
        &self,
        route: u32,
        request: HttpRequest,
    ) -> Result<HttpResponse, AppCallError> {
        let (reply, answer) = oneshot::channel();
        let command = AppCommand::Http {
            route,
            request,
            reply,
        };
        self.mailbox
            .send(command)
            .await
            .map_err(|_| AppCallError::Unavailable)?;
        answer.await.map_err(|_| AppCallError::Unavailable)?
    }
}

/// A live instance: its store and its typed exports.
pub struct Instance {
    pub store: Store<super::HostState>,
    pub handler: Handler,
}

/// The thread-side half of an app.
pub struct AppActor {
    /// Makes fresh instances after a failure.
    factory: InstanceFactory,
    /// The current instance; `None` after a failure until re-instantiated.
    instance: Option<Instance>,
}

impl AppActor {
    /// Starts the actor on its own thread with an already-created instance.
    pub fn spawn(
        factory: InstanceFactory,
        instance: Instance,
        file: PathBuf,
        mailbox_capacity: usize,
    ) -> std::io::Result<Arc<AppHandle>> {
        let (mailbox, rx) = mpsc::channel(mailbox_capacity);
        let name = factory.app.clone();
        let actor = Self {
            factory,
            instance: Some(instance),
        };
        std::thread::Builder::new()
            .name(format!("app-{name}"))
            .spawn(move || actor.run(rx))?;
        Ok(Arc::new(AppHandle {
            name,
            file,
            mailbox,
        }))
    }

    fn run(mut self, mut mailbox: mpsc::Receiver<AppCommand>) {
        while let Some(command) = mailbox.blocking_recv() {
            self.handle(command);
        }
        tracing::debug!(app = %self.factory.app, "app stopped");
    }

    /// The current instance, instantiating afresh if the last one failed.
    fn instance(&mut self) -> Option<&mut Instance> {
        if self.instance.is_none() {
            let started = Instant::now();
            match self.factory.instantiate() {
                Ok(instance) => {
                    tracing::info!(app = %self.factory.app, elapsed = ?started.elapsed(), "app re-instantiated");
                    self.instance = Some(instance);
                }
                Err(err) => {
                    tracing::error!(app = %self.factory.app, "cannot instantiate app: {err:#}");
                }
            }
        }
        let instance = self.instance.as_mut()?;
        instance
            .store
            .set_epoch_deadline(self.factory.deadline_ticks);
        Some(instance)
    }

    fn handle(&mut self, command: AppCommand) {
        match command {
            AppCommand::Http {
                route,
                request,
                reply,
            } => {
                let path = request.path.clone();
                let Some(instance) = self.instance() else {
                    let _ = reply.send(Err(AppCallError::Unavailable));
                    return;
                };
                let result =
                    instance
                        .handler
                        .call_handle_http(&mut instance.store, route, &request);
                let answer = result.map_err(|err| {
                    self.fail(&err, "HTTP", &path);
                    AppCallError::GuestFailed
                });
                let _ = reply.send(answer);
            }
            AppCommand::WebSocket { route, conn, event } => {
                let is_close = matches!(event, WsEvent::Close(_));
                let Some(instance) = self.instance() else {
                    if !is_close {
                        let _ = self
                            .factory
                            .registry
                            .close(&conn.id, 1011, "app unavailable");
                    }
                    return;
                };
                let result =
                    instance
                        .handler
                        .call_on_websocket(&mut instance.store, route, &conn, &event);
                if let Err(err) = result {
                    self.fail(&err, "WebSocket", &conn.path);
                    // The connection whose event failed is closed; a close
                    // event has no connection left to close.
                    if !is_close {
                        let _ = self
                            .factory
                            .registry
                            .close(&conn.id, 1011, "internal error");
                    }
                }
            }
        }
    }

    /// Logs a guest failure and throws the instance away: after a trap its
    /// store is poisoned, and after any error its state is suspect.
    fn fail(&mut self, err: &wasmtime::Error, kind: &str, path: &str) {
        tracing::error!(
            app = %self.factory.app,
            kind,
            path,
            "guest failed: {}; restarting the app",
            describe_guest_error(err)
        );
        self.instance = None;
        // Re-instantiate now, so a broken app is reported at once and the
        // next event does not pay for it.
        let _ = self.instance();
    }
}
