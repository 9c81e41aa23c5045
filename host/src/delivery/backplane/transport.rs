//! The connections the link uses, for a single Redis node (classic pub/sub)
//! or a Redis Cluster (sharded pub/sub: each channel lives on the shard
//! that owns its slot, so traffic spreads over the cluster instead of
//! crossing every node).
//!
//! The link sees one shape for both: a [`Publisher`], and a [`Subscriber`]
//! with the [`Incoming`] stream of what it receives.

use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::future::join_all;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, RedisError, Script, Value};
use tokio::sync::mpsc;

/// Longest wait for a connection to Redis.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for Redis to answer.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is.
pub(crate) enum Transport {
    /// One node (or a failover address): PUBLISH / SUBSCRIBE.
    Node(Client),
    /// A cluster, by its seed nodes: SPUBLISH / SSUBSCRIBE.
    Cluster(Vec<String>),
}

/// Publishes to Redis (and runs the history scripts); a clone shares the
/// connection.
#[derive(Clone)]
pub(crate) enum Publisher {
    /// Batches go out as one pipeline.
    Node(MultiplexedConnection),
    /// Batches go out concurrently, each message to its channel's shard.
    Cluster(ClusterConnection),
}

/// Changes what this instance listens to.
pub(crate) enum Subscriber {
    /// The sending half of a dedicated pub/sub connection.
    Node(PubSubSink),
    /// A RESP3 cluster connection whose pushes feed [`Incoming::Cluster`].
    Cluster(ClusterConnection),
}

/// What arrives on the channels listened to.
pub(crate) enum Incoming {
    /// Messages of a dedicated pub/sub connection.
    Node(PubSubStream),
    /// The cluster connection's pushes (messages, and notice of a lost node).
    Cluster(mpsc::UnboundedReceiver<PushInfo>),
}

/// One message received.
pub(crate) enum Received {
    /// From a node's pub/sub connection.
    Node(redis::Msg),
    /// A shard message's payload.
    Shard(Vec<u8>),
}

impl Received {
    /// The published bytes.
    pub(crate) fn payload(&self) -> &[u8] {
        match self {
            Self::Node(message) => message.get_payload_bytes(),
            Self::Shard(payload) => payload,
        }
    }
}

impl Transport {
    /// `url` names one node; with `cluster`, a comma-separated list of seed
    /// nodes of a Redis Cluster.
    pub(crate) fn new(url: &str, cluster: bool) -> anyhow::Result<Self> {
        if cluster {
            let seeds: Vec<String> = url.split(',').map(|s| s.trim().to_string()).collect();
            // Validate every seed now: a typo is a configuration error.
            for seed in &seeds {
                redis::IntoConnectionInfo::into_connection_info(seed.as_str())?;
            }
            Ok(Self::Cluster(seeds))
        } else {
            Ok(Self::Node(Client::open(url)?))
        }
    }

    /// A connection for publishing.
    pub(crate) async fn publisher(&self) -> anyhow::Result<Publisher> {
        match self {
            Self::Node(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                let connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Publisher::Node(connection))
            }
            Self::Cluster(seeds) => {
                let client = cluster_builder(seeds).build()?;
                Ok(Publisher::Cluster(connect_cluster(&client).await?))
            }
        }
    }

    /// A connection for listening, and what it will receive.
    pub(crate) async fn subscriber(&self) -> anyhow::Result<(Subscriber, Incoming)> {
        match self {
            Self::Node(client) => {
                let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
                    .await
                    .context("timed out connecting")??;
                let (sink, stream) = pubsub.split();
                Ok((Subscriber::Node(sink), Incoming::Node(stream)))
            }
            Self::Cluster(seeds) => {
                let (pushes, incoming) = mpsc::unbounded_channel();
                let client = cluster_builder(seeds)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(pushes)
                    .build()?;
                let connection = connect_cluster(&client).await?;
                Ok((Subscriber::Cluster(connection), Incoming::Cluster(incoming)))
            }
        }
    }
}

fn cluster_builder(seeds: &[String]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        // The link reconnects with its own backoff; fail fast instead.
        .retries(1)
}

async fn connect_cluster(
    client: &redis::cluster::ClusterClient,
) -> anyhow::Result<ClusterConnection> {
    Ok(tokio::time::timeout(
        CONNECT_TIMEOUT + RESPONSE_TIMEOUT,
        client.get_async_connection(),
    )
    .await
    .context("timed out connecting")??)
}

/// One command of a batch.
pub(crate) enum Command<'b> {
    /// Publish `payload` on `channel`.
    Publish { channel: &'b str, payload: &'b [u8] },
    /// Run `script` on `keys` (of one slot) with `args`.
    Script {
        script: &'static Script,
        keys: [&'b str; 2],
        args: &'b [Vec<u8>],
    },
}

impl Publisher {
    /// Loads `scripts` into a node, so that a batch can name them by hash
    /// (a cluster connection loads one where it is missing, as it goes).
    pub(crate) async fn load(&mut self, scripts: &[&Script]) -> Result<(), RedisError> {
        if let Self::Node(connection) = self {
            for script in scripts {
                script.load_async(connection).await?;
            }
        }
        Ok(())
    }

    /// Runs every command of `batch`, in order.
    pub(crate) async fn run_batch<'b>(
        &mut self,
        batch: impl Iterator<Item = Command<'b>>,
    ) -> Result<(), RedisError> {
        match self {
            Self::Node(connection) => {
                let mut pipe = redis::pipe();
                for command in batch {
                    match command {
                        Command::Publish { channel, payload } => {
                            pipe.publish(channel, payload).ignore();
                        }
                        Command::Script { script, keys, args } => {
                            pipe.cmd("EVALSHA")
                                .arg(script.get_hash())
                                .arg(keys.len())
                                .arg(&keys[..])
                                .arg(args)
                                .ignore();
                        }
                    }
                }
                pipe.query_async::<()>(connection).await
            }
            Self::Cluster(connection) => {
                // A cluster pipeline must stay on one node; shards differ.
                let sends = batch.map(|command| {
                    let mut connection = connection.clone();
                    async move {
                        match command {
                            Command::Publish { channel, payload } => redis::cmd("SPUBLISH")
                                .arg(channel)
                                .arg(payload)
                                .query_async::<Value>(&mut connection)
                                .await
                                .map(drop),
                            Command::Script { script, keys, args } => {
                                invoke(script, keys, args, &mut connection).await.map(drop)
                            }
                        }
                    }
                });
                join_all(sends).await.into_iter().collect()
            }
        }
    }

    /// Runs one command and returns its answer.
    pub(crate) async fn query(&mut self, command: redis::Cmd) -> Result<Value, RedisError> {
        match self {
            Self::Node(connection) => command.query_async(connection).await,
            Self::Cluster(connection) => command.query_async(connection).await,
        }
    }

    /// Runs `script` on `keys` with `args` and returns its answer.
    pub(crate) async fn run(
        &mut self,
        script: &Script,
        keys: [&str; 2],
        args: &[Vec<u8>],
    ) -> Result<Value, RedisError> {
        match self {
            Self::Node(connection) => invoke(script, keys, args, connection).await,
            Self::Cluster(connection) => invoke(script, keys, args, connection).await,
        }
    }
}

/// Runs `script` (loading it first where Redis lacks it).
async fn invoke(
    script: &Script,
    keys: [&str; 2],
    args: &[Vec<u8>],
    connection: &mut impl redis::aio::ConnectionLike,
) -> Result<Value, RedisError> {
    let mut invocation = script.prepare_invoke();
    invocation.key(&keys[..]).arg(args);
    invocation.invoke_async(connection).await
}

impl Subscriber {
    /// Starts listening to `channels`.
    pub(crate) async fn subscribe(&mut self, channels: Vec<String>) -> Result<(), RedisError> {
        match self {
            Self::Node(sink) => sink.subscribe(channels).await,
            // One SSUBSCRIBE may only name channels of one slot.
            Self::Cluster(connection) => {
                each_channel(connection, channels, |mut c, channel| async move {
                    c.ssubscribe(channel).await
                })
                .await
            }
        }
    }

    /// Stops listening to `channels`.
    pub(crate) async fn unsubscribe(&mut self, channels: Vec<String>) -> Result<(), RedisError> {
        match self {
            Self::Node(sink) => sink.unsubscribe(channels).await,
            Self::Cluster(connection) => {
                each_channel(connection, channels, |mut c, channel| async move {
                    c.sunsubscribe(channel).await
                })
                .await
            }
        }
    }
}

/// Runs `command` for every channel at once, each on its own handle of the
/// shared cluster connection.
async fn each_channel<F, Fut>(
    connection: &ClusterConnection,
    channels: Vec<String>,
    command: F,
) -> Result<(), RedisError>
where
    F: Fn(ClusterConnection, String) -> Fut,
    Fut: Future<Output = Result<(), RedisError>>,
{
    let commands = channels
        .into_iter()
        .map(|channel| command(connection.clone(), channel));
    join_all(commands).await.into_iter().collect()
}

impl Incoming {
    /// The next message; `None` once the connection (or, in a cluster, a
    /// node's connection) is lost.
    pub(crate) async fn next(&mut self) -> Option<Received> {
        match self {
            Self::Node(stream) => stream.next().await.map(Received::Node),
            Self::Cluster(pushes) => loop {
                let push = pushes.recv().await?;
                match push.kind {
                    PushKind::SMessage => {
                        if let Some(Value::BulkString(payload)) = push.data.into_iter().nth(1) {
                            return Some(Received::Shard(payload));
                        }
                    }
                    PushKind::Disconnection => return None,
                    // Subscription confirmations and the like.
                    _ => {}
                }
            },
        }
    }
}
