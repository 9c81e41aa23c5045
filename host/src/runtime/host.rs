//! What an app's imports do: the store data of one app instance and its
//! implementation of the `websocket` and `logging` interfaces.
//!
//! Every call is checked against the app's own rooms and connections
//! (tenancy) and the message size limit, and never blocks: delivery only
//! queues onto outboxes, and a render is awaited (it runs a guest of its
//! own). An app may address a path only where one of its own WebSocket
//! routes (the running version's) serves it, and then only its own room
//! there: route conflicts are refused, so no other app serves that path
//! on the app's host names.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Message;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::tina4::wasm::storage::StorageError as WitStorageError;
use super::bindings::tina4::wasm::{
    logging, outbound, storage, templates, timers, types, websocket,
};
use super::bindings::{GuestApiError, Level};
use crate::delivery::Delivery;
use crate::delivery::close;
use crate::delivery::{ConnectionHandle, PresenceError, RegistryError, Room};
use crate::outbound::AppOutbound;
use crate::router::{RequestPath, RoutePattern};
use crate::runtime::templates::AppTemplates;
use crate::runtime::timers::{AppTimers, TimerError, TimerSpec};
use crate::storage::{Storage, StorageError, StorageQuota};
use crate::telemetry::AppMetrics;

/// The data of one app instance's `Store`.
pub(crate) struct HostState {
    /// The app's name: tags its log lines and owns its connections.
    pub(crate) app: Arc<str>,
    /// The running version's WebSocket and SSE route patterns: the paths they
    /// serve are the only ones the app may address.
    pub(crate) connection_routes: Arc<[RoutePattern]>,
    /// Where connections live, here and on other instances.
    pub(crate) delivery: Arc<Delivery>,
    /// Largest message the app may send, in bytes.
    pub(crate) max_message_bytes: usize,
    /// Largest per-connection attachment, in bytes.
    pub(crate) max_attachment_bytes: usize,
    /// WASI state: no files, no environment, no sockets; output goes to the log.
    pub(crate) wasi: WasiCtx,
    /// WASI resources (streams) the guest holds.
    pub(crate) table: ResourceTable,
    /// Memory and table caps, enforced by wasmtime.
    pub(crate) limits: super::limiter::AppLimiter,
    /// The app's templates folder, rendered on its behalf.
    pub(crate) templates: Arc<AppTemplates>,
    /// The app's metrics.
    pub(crate) metrics: Arc<AppMetrics>,
    /// The app's way into the host log (rate-limited, escaped).
    pub(crate) log: super::guest_output::AppLog,
    /// When the guest call in progress must end; WASI sleeps end by then.
    pub(crate) deadline: Option<std::time::Instant>,
    /// The app's timers, shared by its instances and versions.
    pub(crate) timers: Arc<AppTimers>,
    /// The server's store and the app's quota in it, if it has a grant.
    pub(crate) storage: Option<(Arc<Storage>, StorageQuota)>,
    /// The app's outbound HTTP grant, and the hooks that enforce it.
    pub(crate) outbound: AppOutbound,
    /// wasi:http's own settings (header size limit).
    pub(crate) http: WasiHttpCtx,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        // A request made now must end by the current call's deadline.
        self.outbound.deadline = self.deadline;
        WasiHttpCtxView {
            hooks: &mut self.outbound,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl HostState {
    /// Refuses a path unless one of the app's WebSocket or SSE routes serves it;
    /// returns the app's room there.
    fn own_room(&self, path: &str) -> Result<Room, GuestApiError> {
        let owned = RequestPath::from_decoded(path)
            .is_some_and(|p| self.connection_routes.iter().any(|r| r.matches_path(&p)));
        if owned {
            Ok(Room::new(&self.app, path))
        } else {
            Err(GuestApiError::NotPermitted(format!(
                "{path:?} is not a path this app's WebSocket or SSE routes serve"
            )))
        }
    }

    /// Refuses a connection id unless it is open and served by this app.
    fn own_connection(&self, id: &str) -> Result<Arc<ConnectionHandle>, GuestApiError> {
        match self.delivery.registry().get(id) {
            Some(handle) if handle.app == self.app => Ok(handle),
            Some(_) => Err(GuestApiError::NotPermitted(format!(
                "connection {id} belongs to another app"
            ))),
            None => Err(GuestApiError::UnknownConnection(id.to_string())),
        }
    }

    /// Sends to one connection; one on another instance is reached through
    /// the delivery, which checks there that it is this app's.
    fn send_frame(&mut self, to: &str, len: usize, frame: Message) -> Result<(), GuestApiError> {
        within_limit(len, self.max_message_bytes)?;
        if self.delivery.is_remote(to) {
            self.delivery.send_remote(&self.app, to, &frame)?;
        } else {
            self.own_connection(to)?.send(frame)?;
            self.metrics.count_out(1, len);
        }
        Ok(())
    }

    fn broadcast_frame(
        &mut self,
        path: &str,
        len: usize,
        frame: Message,
        exclude: Option<&str>,
    ) -> Result<u32, GuestApiError> {
        within_limit(len, self.max_message_bytes)?;
        let room = self.own_room(path)?;
        let fanout = self.delivery.broadcast(&room, &frame, exclude);
        self.metrics.count_out(fanout.local, len);
        self.metrics.fanout(fanout.local);
        Ok(fanout.local.saturating_add(fanout.remote))
    }
}

impl From<RegistryError> for GuestApiError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::UnknownConnection(id) => Self::UnknownConnection(id),
        }
    }
}

fn within_limit(len: usize, limit: usize) -> Result<(), GuestApiError> {
    if len > limit {
        Err(GuestApiError::TooLarge(
            u32::try_from(limit).unwrap_or(u32::MAX),
        ))
    } else {
        Ok(())
    }
}

impl types::Host for HostState {}

impl websocket::Host for HostState {
    fn send(&mut self, to: String, text: String) -> Result<(), GuestApiError> {
        self.send_frame(&to, text.len(), Message::text(text))
    }

    fn send_binary(&mut self, to: String, data: Vec<u8>) -> Result<(), GuestApiError> {
        self.send_frame(&to, data.len(), Message::binary(data))
    }

    fn broadcast(
        &mut self,
        path: String,
        text: String,
        exclude: Option<String>,
    ) -> Result<(), GuestApiError> {
        let len = text.len();
        self.broadcast_frame(&path, len, Message::text(text), exclude.as_deref())
            .map(drop)
    }

    fn broadcast_binary(
        &mut self,
        path: String,
        data: Vec<u8>,
        exclude: Option<String>,
    ) -> Result<(), GuestApiError> {
        let len = data.len();
        self.broadcast_frame(&path, len, Message::binary(data), exclude.as_deref())
            .map(drop)
    }

    fn close(&mut self, conn: String, code: u16, reason: String) -> Result<(), GuestApiError> {
        if !close::sendable(code) {
            return Err(GuestApiError::Invalid(format!(
                "close code {code} may not be sent by an application"
            )));
        }
        if close::truncate_reason(&reason).len() != reason.len() {
            return Err(GuestApiError::Invalid(
                "close reason longer than 123 bytes".to_string(),
            ));
        }
        if self.delivery.is_remote(&conn) {
            self.delivery
                .close_remote(&self.app, &conn, code, &reason)?;
            return Ok(());
        }
        self.own_connection(&conn)?
            .close(code, &reason)
            .map_err(Into::into)
    }

    fn count(&mut self, path: String) -> Result<u32, GuestApiError> {
        let room = self.own_room(&path)?;
        Ok(self.delivery.count(&room))
    }

    fn push(&mut self, path: String, text: String) -> Result<u32, GuestApiError> {
        let len = text.len();
        self.broadcast_frame(&path, len, Message::text(text), None)
    }

    fn history(
        &mut self,
        path: String,
        since: u64,
        limit: u32,
    ) -> Result<Vec<types::KeptMessage>, GuestApiError> {
        let room = self.own_room(&path)?;
        let now = std::time::Instant::now();
        let kept = self
            .delivery
            .registry()
            .history()
            .read(&room, since, limit as usize, now);
        Ok(kept
            .iter()
            .filter_map(|kept| {
                let message = match &kept.frame {
                    Message::Text(text) => types::Message::Text(text.as_str().to_string()),
                    Message::Binary(data) => types::Message::Binary(data.to_vec()),
                    _ => return None,
                };
                Some(types::KeptMessage {
                    offset: kept.offset,
                    message,
                })
            })
            .collect())
    }

    fn set_attachment(&mut self, conn: String, value: Vec<u8>) -> Result<(), GuestApiError> {
        within_limit(value.len(), self.max_attachment_bytes)?;
        self.own_connection(&conn)?.set_attachment(value);
        Ok(())
    }

    fn set_presence(
        &mut self,
        conn: String,
        key: String,
        value: String,
    ) -> Result<(), GuestApiError> {
        let handle = self.own_connection(&conn)?;
        self.delivery
            .registry()
            .set_presence(&handle, &key, &value)
            .map_err(|err| match err {
                PresenceError::TooLarge(_, limit) => {
                    GuestApiError::TooLarge(u32::try_from(limit).unwrap_or(u32::MAX))
                }
                PresenceError::NotKept(_) => GuestApiError::NotPermitted(err.to_string()),
            })
    }

    fn presence(&mut self, path: String) -> Result<Vec<types::Member>, GuestApiError> {
        let room = self.own_room(&path)?;
        let members = self.delivery.registry().presence().members(&room);
        Ok(members
            .into_iter()
            .map(|m| types::Member {
                conn: m.conn.to_string(),
                key: m.key.to_string(),
                value: m.value.to_string(),
            })
            .collect())
    }

    fn attachment(&mut self, conn: String) -> Result<Option<Vec<u8>>, GuestApiError> {
        Ok(self.own_connection(&conn)?.attachment())
    }
}

impl templates::Host for HostState {
    async fn render(&mut self, name: String, context: String) -> Result<String, GuestApiError> {
        let templates = self.templates.clone();
        templates
            .render(&name, &context, self.deadline)
            .await
            .map_err(|err| {
                let line = format!("{name:?}: {err}");
                self.log.line(tracing::Level::WARN, "template", &line);
                GuestApiError::Invalid(err.to_string())
            })
    }
}

impl timers::Host for HostState {
    fn schedule(
        &mut self,
        name: String,
        after_ms: u32,
        repeat: bool,
        cluster_once: bool,
    ) -> Result<(), GuestApiError> {
        let spec = TimerSpec {
            after: std::time::Duration::from_millis(u64::from(after_ms)),
            repeat,
            cluster_once,
        };
        self.timers.schedule(&name, spec).map_err(|err| match err {
            TimerError::NotPermitted => GuestApiError::NotPermitted(err.to_string()),
            TimerError::TooMany(limit) => {
                GuestApiError::TooLarge(u32::try_from(limit).unwrap_or(u32::MAX))
            }
            TimerError::TooSoon(_) | TimerError::Invalid(_) => {
                GuestApiError::Invalid(err.to_string())
            }
        })
    }

    fn cancel(&mut self, name: String) -> bool {
        self.timers.cancel(&name)
    }
}

impl HostState {
    /// The store and the app's quota, or the refusal of an app without a grant.
    fn store(&self) -> Result<(Arc<Storage>, StorageQuota), StorageError> {
        self.storage.clone().ok_or(StorageError::NotPermitted)
    }

    /// Logs a store failure (the app is told it is unavailable).
    fn storage_failed(&self, err: StorageError) -> WitStorageError {
        if let StorageError::Unavailable(why) = &err {
            tracing::warn!(app = %self.app, "storage: {why}");
        }
        match err {
            StorageError::NotPermitted => WitStorageError::NotPermitted,
            StorageError::Quota(why) => WitStorageError::Quota(why),
            StorageError::Invalid(why) => WitStorageError::Invalid(why),
            StorageError::Unavailable(_) => {
                WitStorageError::Unavailable("the store failed; try again later".to_string())
            }
        }
    }
}

impl storage::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, WitStorageError> {
        let found = match self.store() {
            Ok((store, _)) => store.get(&self.app, &key).await,
            Err(err) => Err(err),
        };
        found.map_err(|err| self.storage_failed(err))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u32>,
    ) -> Result<(), WitStorageError> {
        let ttl = ttl_ms.map(|ms| std::time::Duration::from_millis(u64::from(ms)));
        let set = match self.store() {
            Ok((store, quota)) => store.set(&self.app, &key, value, ttl, quota).await,
            Err(err) => Err(err),
        };
        set.map_err(|err| self.storage_failed(err))
    }

    async fn delete(&mut self, key: String) -> Result<bool, WitStorageError> {
        let deleted = match self.store() {
            Ok((store, quota)) => store.delete(&self.app, &key, quota).await,
            Err(err) => Err(err),
        };
        deleted.map_err(|err| self.storage_failed(err))
    }

    async fn keys(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, WitStorageError> {
        let keys = match self.store() {
            Ok((store, _)) => store.keys(&self.app, &prefix, limit as usize).await,
            Err(err) => Err(err),
        };
        keys.map_err(|err| self.storage_failed(err))
    }

    async fn increment(&mut self, key: String, delta: i32) -> Result<i64, WitStorageError> {
        let counted = match self.store() {
            Ok((store, quota)) => {
                store
                    .increment(&self.app, &key, i64::from(delta), quota)
                    .await
            }
            Err(err) => Err(err),
        };
        counted.map_err(|err| self.storage_failed(err))
    }
}

impl outbound::Host for HostState {
    fn why_failed(&mut self, method: String, url: String) -> Option<(String, String)> {
        self.outbound.recent.why(&method, &url)
    }
}

impl logging::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.log.line(level, "log", &message);
    }
}
