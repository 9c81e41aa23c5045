//! The embedded store: one redb file per server. Reads run where they are
//! asked, on a snapshot the writer never blocks. Writes go to one thread,
//! which applies everything waiting in one transaction and commits it
//! durably before answering: writers share one disk sync, and a quota is
//! checked and the write made in the same transaction, so concurrent
//! writes of one app can never pass it together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use tokio::sync::oneshot;

use super::{StorageError, StorageQuota, Stored, check_key, expiry, now_ms};

/// Every app's keys, `<app>\0<key>`, to the stored value.
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Each app's keys and bytes.
const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("usage");

/// Writes waiting for the writer thread at most; a writer beyond waits.
const QUEUE: usize = 1024;
/// Writes committed in one transaction at most.
const BATCH: usize = 256;
/// Least time between two sweeps of one app's expired values, in ms: a
/// sweep reads all the app's keys, so an app writing at its quota cannot
/// make every write (everyone's, on the one writer) pay for one.
pub(crate) const SWEEP_EVERY_MS: u64 = 1000;
/// Keys one listing returns at most.
pub(crate) const MAX_LISTED: usize = 1000;

/// The store, opened on first use, so a server whose apps keep nothing
/// never touches the file (nor its lock).
pub(crate) struct Embedded {
    /// Where the file is.
    path: PathBuf,
    /// The open store, or why it could not be opened.
    open: OnceLock<Result<Open, String>>,
}

/// The database and its writer.
struct Open {
    /// The database, for reads.
    db: Arc<Database>,
    /// The writer thread's queue.
    writes: SyncSender<Write>,
}

/// One write, answered on `reply`.
struct Write {
    /// `<app>\0<key>`.
    key: Vec<u8>,
    /// The app, for its usage.
    app: Arc<str>,
    /// What to do.
    change: Change,
    /// The app's quota.
    quota: StorageQuota,
    /// The outcome.
    reply: oneshot::Sender<Result<Answer, StorageError>>,
}

/// What a write does.
enum Change {
    /// Sets the value, to expire at the time given (0: never).
    Set { value: Vec<u8>, expires_at: u64 },
    /// Removes the key.
    Delete,
    /// Adds to the integer the key holds (0 if none).
    Increment(i64),
}

/// What a write answers.
enum Answer {
    /// Set.
    Done,
    /// Deleted: whether the key was there.
    Existed(bool),
    /// Incremented: the new value.
    Count(i64),
}

impl Embedded {
    /// The store in the file `path`, opened when first used.
    pub(crate) fn at(path: PathBuf) -> Self {
        Self {
            path,
            open: OnceLock::new(),
        }
    }

    fn open(&self) -> Result<&Open, StorageError> {
        self.open
            .get_or_init(|| {
                let opened = Open::new(&self.path);
                match &opened {
                    Ok(_) => tracing::info!(file = %self.path.display(), "storage: opened"),
                    Err(err) => tracing::error!(file = %self.path.display(), "storage: {err}"),
                }
                opened
            })
            .as_ref()
            .map_err(|err| StorageError::Unavailable(err.clone()))
    }

    /// The live value of `app`'s `key`, if any.
    pub(crate) fn get(&self, app: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        let open = self.open()?;
        let read = open.db.begin_read().map_err(unavailable)?;
        let table = match read.open_table(KV) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(unavailable(err)),
        };
        let found = table
            .get(namespaced(app, key).as_slice())
            .map_err(unavailable)?;
        Ok(found
            .and_then(|value| Stored::decode(value.value()))
            .filter(|stored| stored.is_live(now_ms()))
            .map(|stored| stored.value))
    }

    /// `app`'s live keys that start with `prefix`, in order, at most `limit`
    /// (and [`MAX_LISTED`]).
    pub(crate) fn keys(
        &self,
        app: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let open = self.open()?;
        let read = open.db.begin_read().map_err(unavailable)?;
        let table = match read.open_table(KV) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(err) => return Err(unavailable(err)),
        };
        let start = namespaced(app, prefix);
        let skip = app.len() + 1;
        let now = now_ms();
        let mut keys = Vec::new();
        for entry in table.range(start.as_slice()..).map_err(unavailable)? {
            let (key, value) = entry.map_err(unavailable)?;
            if !key.value().starts_with(&start) || keys.len() >= limit.min(MAX_LISTED) {
                break;
            }
            if Stored::decode(value.value()).is_some_and(|s| s.is_live(now)) {
                keys.push(String::from_utf8_lossy(&key.value()[skip..]).into_owned());
            }
        }
        Ok(keys)
    }

    /// Sets `app`'s `key` to `value`, for `ttl` if given.
    pub(crate) async fn set(
        &self,
        app: &Arc<str>,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: StorageQuota,
    ) -> Result<(), StorageError> {
        let expires_at = expiry(ttl);
        self.write(app, key, Change::Set { value, expires_at }, quota)
            .await
            .map(|_| ())
    }

    /// Removes `app`'s `key`; whether it was there.
    pub(crate) async fn delete(
        &self,
        app: &Arc<str>,
        key: &str,
        quota: StorageQuota,
    ) -> Result<bool, StorageError> {
        match self.write(app, key, Change::Delete, quota).await? {
            Answer::Existed(existed) => Ok(existed),
            _ => Ok(false),
        }
    }

    /// Adds `delta` to the integer `app`'s `key` holds (0 if none); the new value.
    pub(crate) async fn increment(
        &self,
        app: &Arc<str>,
        key: &str,
        delta: i64,
        quota: StorageQuota,
    ) -> Result<i64, StorageError> {
        match self
            .write(app, key, Change::Increment(delta), quota)
            .await?
        {
            Answer::Count(n) => Ok(n),
            _ => Err(StorageError::Unavailable(
                "the writer answered oddly".into(),
            )),
        }
    }

    async fn write(
        &self,
        app: &Arc<str>,
        key: &str,
        change: Change,
        quota: StorageQuota,
    ) -> Result<Answer, StorageError> {
        check_key(key)?;
        let open = self.open()?;
        let (reply, answer) = oneshot::channel();
        let write = Write {
            key: namespaced(app, key),
            app: app.clone(),
            change,
            quota,
            reply,
        };
        // The queue is bounded: a writer past it waits, off the async workers.
        let writes = open.writes.clone();
        tokio::task::spawn_blocking(move || writes.send(write))
            .await
            .map_err(unavailable)?
            .map_err(|_| StorageError::Unavailable("the writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Unavailable("the writer stopped".into()))?
    }
}

impl Open {
    fn new(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        }
        let db = Database::create(path)
            .map_err(|err| format!("cannot open {}: {err}", path.display()))?;
        let db = Arc::new(db);
        let (writes, queue) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = db.clone();
        std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || write_batches(&writer, &queue))
            .map_err(|err| format!("cannot start the writer: {err}"))?;
        Ok(Self { db, writes })
    }
}

/// The writer thread: everything waiting, in one transaction, then one commit.
fn write_batches(db: &Database, queue: &Receiver<Write>) {
    // When each app's expired values were last swept.
    let mut swept = HashMap::new();
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        match commit(db, &mut batch, &mut swept) {
            Ok(answers) => {
                for (write, answer) in batch.into_iter().zip(answers) {
                    let _ = write.reply.send(answer);
                }
            }
            Err(err) => {
                tracing::error!("storage: a commit failed: {err}");
                for write in batch {
                    let _ = write
                        .reply
                        .send(Err(StorageError::Unavailable(err.clone())));
                }
            }
        }
    }
}

/// Applies `batch` in one transaction; each write's own refusal leaves the others be.
fn commit(
    db: &Database,
    batch: &mut [Write],
    swept: &mut HashMap<Arc<str>, u64>,
) -> Result<Vec<Result<Answer, StorageError>>, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let answers = {
        let mut kv = txn.open_table(KV).map_err(|e| e.to_string())?;
        let mut usage = txn.open_table(USAGE).map_err(|e| e.to_string())?;
        let now = now_ms();
        batch
            .iter_mut()
            .map(|write| apply(&mut kv, &mut usage, swept, write, now))
            .collect()
    };
    txn.commit().map_err(|e| e.to_string())?;
    Ok(answers)
}

type Kv<'t> = Table<'t, &'static [u8], &'static [u8]>;
type Usage<'t> = Table<'t, &'static str, (u64, u64)>;

/// One write, within the app's quota.
fn apply(
    kv: &mut Kv<'_>,
    usage: &mut Usage<'_>,
    swept: &mut HashMap<Arc<str>, u64>,
    write: &mut Write,
    now: u64,
) -> Result<Answer, StorageError> {
    let old = kv
        .get(write.key.as_slice())
        .map_err(unavailable)?
        .and_then(|v| Stored::decode(v.value()));
    let (keys, bytes) = usage
        .get(&*write.app)
        .map_err(unavailable)?
        .map_or((0, 0), |u| u.value());
    let old_size = old
        .as_ref()
        .map_or(0, |o| (write.key.len() + o.value.len()) as u64);
    let live = old.as_ref().filter(|o| o.is_live(now));
    let new = match &mut write.change {
        Change::Delete => {
            if old.is_some() {
                kv.remove(write.key.as_slice()).map_err(unavailable)?;
                usage
                    .insert(
                        &*write.app,
                        (keys.saturating_sub(1), bytes.saturating_sub(old_size)),
                    )
                    .map_err(unavailable)?;
            }
            return Ok(Answer::Existed(live.is_some()));
        }
        Change::Set { value, expires_at } => Stored {
            expires_at: *expires_at,
            value: std::mem::take(value),
        },
        Change::Increment(delta) => {
            let current = match live {
                None => 0,
                Some(old) => std::str::from_utf8(&old.value)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .ok_or_else(|| {
                        StorageError::Invalid("the key does not hold an integer".into())
                    })?,
            };
            let next = current
                .checked_add(*delta)
                .ok_or_else(|| StorageError::Invalid("the integer would overflow".into()))?;
            Stored {
                expires_at: live.map_or(0, |old| old.expires_at),
                value: next.to_string().into_bytes(),
            }
        }
    };
    let quota = write.quota;
    if new.value.len() > quota.max_value_bytes {
        return Err(StorageError::Quota(format!(
            "a value may have at most {} bytes",
            quota.max_value_bytes
        )));
    }
    let new_size = (write.key.len() + new.value.len()) as u64;
    let (mut keys, mut bytes) = (keys, bytes);
    let mut after = (keys + u64::from(old.is_none()), bytes - old_size + new_size);
    let last_sweep = swept.get(&write.app).copied().unwrap_or(0);
    if (after.0 > quota.max_keys || after.1 > quota.max_bytes)
        && now.saturating_sub(last_sweep) >= SWEEP_EVERY_MS
    {
        // Expired values still count until they are swept: sweep, and see.
        swept.insert(write.app.clone(), now);
        let (swept_keys, swept_bytes) = sweep(kv, &write.app, &write.key, now)?;
        (keys, bytes) = (keys - swept_keys, bytes - swept_bytes);
        after = (after.0 - swept_keys, after.1 - swept_bytes);
        usage
            .insert(&*write.app, (keys, bytes))
            .map_err(unavailable)?;
    }
    if after.0 > quota.max_keys {
        return Err(StorageError::Quota(format!(
            "the app may keep at most {} keys",
            quota.max_keys
        )));
    }
    if after.1 > quota.max_bytes {
        return Err(StorageError::Quota(format!(
            "the app may keep at most {} bytes",
            quota.max_bytes
        )));
    }
    kv.insert(write.key.as_slice(), new.encode().as_slice())
        .map_err(unavailable)?;
    usage.insert(&*write.app, after).map_err(unavailable)?;
    Ok(match write.change {
        Change::Increment(_) => Answer::Count(
            std::str::from_utf8(&new.value)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        ),
        _ => Answer::Done,
    })
}

/// Removes `app`'s expired values (but `keep`); the keys and bytes freed.
fn sweep(kv: &mut Kv<'_>, app: &str, keep: &[u8], now: u64) -> Result<(u64, u64), StorageError> {
    let start = namespaced(app, "");
    let mut expired = Vec::new();
    for entry in kv.range(start.as_slice()..).map_err(unavailable)? {
        let (key, value) = entry.map_err(unavailable)?;
        if !key.value().starts_with(&start) {
            break;
        }
        if key.value() != keep
            && let Some(stored) = Stored::decode(value.value())
            && !stored.is_live(now)
        {
            expired.push((key.value().to_vec(), stored.value.len()));
        }
    }
    let mut freed = (0, 0);
    for (key, len) in expired {
        kv.remove(key.as_slice()).map_err(unavailable)?;
        freed.0 += 1;
        freed.1 += (key.len() + len) as u64;
    }
    Ok(freed)
}

/// `app`'s `key`, as the store names it: no key of one app can name another's.
fn namespaced(app: &str, key: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(app.len() + 1 + key.len());
    bytes.extend_from_slice(app.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(key.as_bytes());
    bytes
}

fn unavailable(err: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(err.to_string())
}
