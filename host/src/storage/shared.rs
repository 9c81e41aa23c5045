//! The store on Redis (`--store redis`): the same calls and quotas as the
//! embedded store, shared by every instance that uses the same Redis and
//! prefix, so a cluster sees one app's data alike.
//!
//! Each app has four keys, all with the app as their hash tag (one shard
//! per app in a Redis Cluster): its values (a hash), their expiry times (a
//! hash, in ms since the Unix epoch), its keys in order (a sorted set, for
//! listing by prefix) and its usage (a hash: keys, bytes). Every write is
//! one Lua script that checks the quotas and writes, atomically; expired
//! values are treated as absent and swept, as in the embedded store, when
//! a write would pass a quota.
//!
//! Increments run in Redis's Lua numbers (doubles): exact to 2^53, refused
//! beyond.

use std::sync::{Arc, LazyLock};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, Script, Value};
use tokio::sync::Mutex;

use super::{MAX_LISTED, StorageError, StorageQuota, check_key, expiry, now_ms};
use std::time::Duration;

/// Longest wait for Redis.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Removes what has expired of the app's keys (but `keep`); updates usage.
/// A Lua function shared by the scripts: `sweep(keep, now)`.
const SWEEP: &str = r"
local function sweep(keep, now)
  local freed_keys, freed_bytes = 0, 0
  for _, key in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    local at = tonumber(redis.call('HGET', KEYS[2], key) or '0')
    if key ~= keep and at > 0 and at <= now then
      local value = redis.call('HGET', KEYS[1], key) or ''
      redis.call('HDEL', KEYS[1], key)
      redis.call('HDEL', KEYS[2], key)
      redis.call('ZREM', KEYS[4], key)
      freed_keys = freed_keys + 1
      freed_bytes = freed_bytes + #key + #value
    end
  end
  if freed_keys > 0 then
    redis.call('HINCRBY', KEYS[3], 'keys', -freed_keys)
    redis.call('HINCRBY', KEYS[3], 'bytes', -freed_bytes)
  end
  return freed_keys, freed_bytes
end
local function live(key, now)
  local at = tonumber(redis.call('HGET', KEYS[2], key) or '0')
  return at == 0 or at > now
end
";

/// Writes a value within the quotas. KEYS: values, expiries, usage, keys.
/// ARGV: key, value or delta, expires at (0: never, -1: keep the old
/// one's), max keys, max value bytes, max bytes, now, `set` or `incr`.
static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SWEEP}{}",
        r"
local key, now, mode = ARGV[1], tonumber(ARGV[7]), ARGV[8]
local max_keys, max_value, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local old = redis.call('HGET', KEYS[1], key)
local old_at = tonumber(redis.call('HGET', KEYS[2], key) or '0')
local value, at = ARGV[2], tonumber(ARGV[3])
if mode == 'incr' then
  local current = 0
  if old and live(key, now) then
    if not string.match(old, '^%-?%d+$') then return {'invalid', 'the key does not hold an integer'} end
    current = tonumber(old)
    at = old_at
  else
    at = 0
  end
  local next = current + tonumber(value)
  if math.abs(next) > 9007199254740991 then return {'invalid', 'the integer would overflow'} end
  value = string.format('%d', next)
end
if #value > max_value then return {'quota', 'a value may have at most ' .. max_value .. ' bytes'} end
local keys = tonumber(redis.call('HGET', KEYS[3], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0')
local old_size = 0
if old then old_size = #key + #old end
local new_keys = keys
if not old then new_keys = keys + 1 end
local new_bytes = bytes - old_size + #key + #value
local last_sweep = tonumber(redis.call('HGET', KEYS[3], 'swept') or '0')
if (new_keys > max_keys or new_bytes > max_bytes) and now - last_sweep >= 1000 then
  -- At most once a second: a sweep reads all the app's keys.
  redis.call('HSET', KEYS[3], 'swept', now)
  local freed_keys, freed_bytes = sweep(key, now)
  new_keys, new_bytes = new_keys - freed_keys, new_bytes - freed_bytes
end
if new_keys > max_keys then return {'quota', 'the app may keep at most ' .. max_keys .. ' keys'} end
if new_bytes > max_bytes then return {'quota', 'the app may keep at most ' .. max_bytes .. ' bytes'} end
redis.call('HSET', KEYS[1], key, value)
if at > 0 then redis.call('HSET', KEYS[2], key, at) else redis.call('HDEL', KEYS[2], key) end
redis.call('ZADD', KEYS[4], 0, key)
redis.call('HSET', KEYS[3], 'keys', new_keys, 'bytes', new_bytes)
return {'ok', value}
"
    ))
});

/// Removes a key; whether it had a live value. KEYS as [`WRITE`]; ARGV:
/// key, now.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SWEEP}{}",
        r"
local key, now = ARGV[1], tonumber(ARGV[2])
local old = redis.call('HGET', KEYS[1], key)
if not old then return 0 end
local was_live = live(key, now)
redis.call('HDEL', KEYS[1], key)
redis.call('HDEL', KEYS[2], key)
redis.call('ZREM', KEYS[4], key)
redis.call('HINCRBY', KEYS[3], 'keys', -1)
redis.call('HINCRBY', KEYS[3], 'bytes', -(#key + #old))
if was_live then return 1 end
return 0
"
    ))
});

/// A live value, or nil. KEYS as [`WRITE`]; ARGV: key, now.
static GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SWEEP}{}",
        r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value and live(ARGV[1], tonumber(ARGV[2])) then return value end
return false
"
    ))
});

/// Live keys from `prefix`, in order. KEYS as [`WRITE`]; ARGV: prefix,
/// limit, now.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SWEEP}{}",
        r"
local prefix, limit, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local found = {}
local candidates = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. prefix, '(' .. prefix .. '\255')
for _, key in ipairs(candidates) do
  if #found >= limit then break end
  if live(key, now) then table.insert(found, key) end
end
return found
"
    ))
});

/// The store on one Redis server.
pub(crate) struct Shared {
    /// Where Redis is.
    client: Link,
    /// Prepended to every key, as the backplane's channels.
    prefix: String,
    /// The connection, made on first use and again after a failure.
    connection: Mutex<Option<Connection>>,
}

/// A Redis server or a Redis Cluster.
enum Link {
    /// One server.
    Node(Client),
    /// A cluster: each app's keys share a hash tag, so each script runs on
    /// the one shard that holds them.
    Cluster(Box<ClusterClient>),
}

/// A connection to either.
#[derive(Clone)]
enum Connection {
    /// To one server.
    Node(MultiplexedConnection),
    /// To a cluster, routing each command by its keys.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Link {
    /// A new connection.
    async fn connect(&self) -> redis::RedisResult<Connection> {
        match self {
            Self::Node(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT));
                let connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Connection::Node(connection))
            }
            Self::Cluster(client) => {
                let connection = tokio::time::timeout(TIMEOUT * 2, client.get_async_connection())
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((redis::ErrorKind::Io, "timed out connecting"))
                    })??;
                Ok(Connection::Cluster(connection))
            }
        }
    }
}

impl Shared {
    /// The store at `url` (with `cluster`, a Redis Cluster's seed nodes,
    /// comma-separated), keys under `prefix`; connects on first use.
    pub(crate) fn new(url: &str, prefix: &str, cluster: bool) -> anyhow::Result<Self> {
        let client = if cluster {
            let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
            Link::Cluster(Box::new(
                ClusterClientBuilder::new(seeds)
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .build()?,
            ))
        } else {
            Link::Node(Client::open(url)?)
        };
        Ok(Self {
            client,
            prefix: prefix.to_string(),
            connection: Mutex::new(None),
        })
    }

    /// The app's four keys.
    fn keys_of(&self, app: &str) -> [String; 4] {
        let p = &self.prefix;
        [
            format!("{p}:kv:{{{app}}}:values"),
            format!("{p}:kv:{{{app}}}:expiry"),
            format!("{p}:kv:{{{app}}}:usage"),
            format!("{p}:kv:{{{app}}}:keys"),
        ]
    }

    /// Runs `script` for `app` with `args`.
    async fn run(
        &self,
        script: &Script,
        app: &str,
        args: &[Vec<u8>],
    ) -> Result<Value, StorageError> {
        let mut held = self.connection.lock().await;
        if held.is_none() {
            let connection = self
                .client
                .connect()
                .await
                .map_err(|err| StorageError::Unavailable(format!("Redis: {err}")))?;
            *held = Some(connection);
        }
        let mut connection = held.clone().expect("connected above");
        drop(held);
        let mut invocation = script.prepare_invoke();
        for key in self.keys_of(app) {
            invocation.key(key);
        }
        invocation.arg(args);
        let answer = invocation.invoke_async(&mut connection).await;
        answer.map_err(|err| {
            // A broken connection is made afresh on the next call.
            if (err.is_io_error() || err.is_timeout() || err.is_connection_dropped())
                && let Ok(mut held) = self.connection.try_lock()
            {
                *held = None;
            }
            StorageError::Unavailable(format!("Redis: {err}"))
        })
    }

    pub(crate) async fn get(&self, app: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        let args = [key.as_bytes().to_vec(), now_ms().to_string().into_bytes()];
        match self.run(&GET, app, &args).await? {
            Value::BulkString(bytes) => Ok(Some(bytes)),
            _ => Ok(None),
        }
    }

    pub(crate) async fn keys(
        &self,
        app: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let limit = limit.min(MAX_LISTED);
        let args = [
            prefix.as_bytes().to_vec(),
            limit.to_string().into_bytes(),
            now_ms().to_string().into_bytes(),
        ];
        match self.run(&LIST, app, &args).await? {
            Value::Array(keys) => Ok(keys
                .into_iter()
                .filter_map(|key| match key {
                    Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                    _ => None,
                })
                .collect()),
            _ => Ok(Vec::new()),
        }
    }

    pub(crate) async fn set(
        &self,
        app: &Arc<str>,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: StorageQuota,
    ) -> Result<(), StorageError> {
        self.write(app, key, value, expiry(ttl), quota, "set")
            .await
            .map(drop)
    }

    pub(crate) async fn increment(
        &self,
        app: &Arc<str>,
        key: &str,
        delta: i64,
        quota: StorageQuota,
    ) -> Result<i64, StorageError> {
        let value = self
            .write(app, key, delta.to_string().into_bytes(), 0, quota, "incr")
            .await?;
        std::str::from_utf8(&value)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| StorageError::Unavailable("Redis answered oddly".into()))
    }

    pub(crate) async fn delete(&self, app: &Arc<str>, key: &str) -> Result<bool, StorageError> {
        check_key(key)?;
        let args = [key.as_bytes().to_vec(), now_ms().to_string().into_bytes()];
        Ok(matches!(
            self.run(&DELETE, app, &args).await?,
            Value::Int(1)
        ))
    }

    async fn write(
        &self,
        app: &str,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
        quota: StorageQuota,
        mode: &str,
    ) -> Result<Vec<u8>, StorageError> {
        check_key(key)?;
        let args = [
            key.as_bytes().to_vec(),
            value,
            expires_at.to_string().into_bytes(),
            quota.max_keys.to_string().into_bytes(),
            quota.max_value_bytes.to_string().into_bytes(),
            quota.max_bytes.to_string().into_bytes(),
            now_ms().to_string().into_bytes(),
            mode.as_bytes().to_vec(),
        ];
        let Value::Array(answer) = self.run(&WRITE, app, &args).await? else {
            return Err(StorageError::Unavailable("Redis answered oddly".into()));
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::BulkString(bytes)) => bytes.clone(),
            Some(Value::SimpleString(s)) => s.clone().into_bytes(),
            _ => Vec::new(),
        };
        let outcome = String::from_utf8_lossy(&text(answer.first())).into_owned();
        let detail = text(answer.get(1));
        match outcome.as_str() {
            "ok" => Ok(detail),
            "quota" => Err(StorageError::Quota(
                String::from_utf8_lossy(&detail).into_owned(),
            )),
            "invalid" => Err(StorageError::Invalid(
                String::from_utf8_lossy(&detail).into_owned(),
            )),
            _ => Err(StorageError::Unavailable("Redis answered oddly".into())),
        }
    }
}
