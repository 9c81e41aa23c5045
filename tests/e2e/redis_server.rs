//! A real `redis-server` on a loopback port, started and killed by a test.
//! `scripts/test.sh` installs Redis when it is missing.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{free_port, within};

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    /// The process.
    child: Child,
    /// Its loopback port.
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts one on `port` (again, after [`kill`](Self::kill)), keeping
    /// nothing on disk.
    pub async fn start_on(port: u16) -> Self {
        Self::start_with(port, &[]).await
    }

    /// Starts one on `port` with `extra` arguments.
    async fn start_with(port: u16, extra: &[&str]) -> Self {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting redis-server (scripts/test.sh installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        within("redis-server to accept connections", async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line.contains("Ready to accept connections") => return,
                    Ok(Some(_)) => {}
                    _ => panic!("redis-server on port {port} exited before it was ready"),
                }
            }
        })
        .await;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, port }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it outright (SIGKILL); returns its port for a restart.
    pub async fn kill(mut self) -> u16 {
        self.child.start_kill().expect("killing redis-server");
        within("redis-server to die", self.child.wait())
            .await
            .expect("waiting for redis-server");
        self.port
    }

    /// How many clients listen to `channel` (`PUBSUB NUMSUB`).
    pub async fn subscribers(&self, channel: &str) -> u64 {
        self.pubsub_count("NUMSUB", channel).await
    }

    /// How many clients of this node listen to shard channel `channel`
    /// (`PUBSUB SHARDNUMSUB`).
    pub async fn shard_subscribers(&self, channel: &str) -> u64 {
        self.pubsub_count("SHARDNUMSUB", channel).await
    }

    async fn pubsub_count(&self, what: &str, channel: &str) -> u64 {
        let text = self.cli(&["PUBSUB", what, channel]).await;
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(channel), "redis-cli said: {text}");
        lines
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("redis-cli said: {text}"))
    }

    /// Publishes `payload` on `channel` as anyone with access to Redis
    /// could; returns how many clients received it.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> u64 {
        use tokio::io::AsyncWriteExt;
        let mut child = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "--raw",
                "-x",
                "PUBLISH",
                channel,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("running redis-cli");
        let mut stdin = child.stdin.take().expect("redis-cli's stdin");
        stdin
            .write_all(payload)
            .await
            .expect("writing to redis-cli");
        drop(stdin);
        let out = within("redis-cli", child.wait_with_output())
            .await
            .expect("redis-cli");
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("redis-cli said: {text}"))
    }

    /// What `redis-cli` prints for `args` against this server.
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .await
            .expect("running redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A Redis Cluster of real `redis-server` primaries on loopback.
pub struct RedisCluster {
    /// Its nodes.
    pub nodes: Vec<RedisServer>,
    /// Their cluster configuration files.
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `n` primaries and joins them into one cluster.
    pub async fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp folder");
        let mut nodes = Vec::new();
        for _ in 0..n {
            let port = cluster_port();
            let config = dir.path().join(format!("nodes-{port}.conf"));
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                config.to_str().unwrap(),
                "--cluster-node-timeout",
                "2000",
            ];
            nodes.push(RedisServer::start_with(port, &args).await);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .expect("running redis-cli --cluster create");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        for node in &nodes {
            crate::support::eventually("the cluster to agree", || async {
                node.cli(&["CLUSTER", "INFO"])
                    .await
                    .contains("cluster_state:ok")
                    .then_some(())
            })
            .await;
        }
        Self { nodes, _dir: dir }
    }

    /// Listeners of shard channel `channel`, summed over the nodes, and
    /// the index of the node that has them.
    pub async fn shard_subscribers(&self, channel: &str) -> (u64, Option<usize>) {
        let mut total = 0;
        let mut owner = None;
        for (i, node) in self.nodes.iter().enumerate() {
            let n = node.shard_subscribers(channel).await;
            if n > 0 {
                owner = Some(i);
            }
            total += n;
        }
        (total, owner)
    }
}

/// A port for a cluster node: it and its cluster bus port (+10000) free.
fn cluster_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 5000) as u16;
    loop {
        let port = 20000 + (start + NEXT.fetch_add(7, Ordering::Relaxed)) % 10000;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
}
