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
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
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
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "--raw",
                "PUBSUB",
                "NUMSUB",
                channel,
            ])
            .output()
            .await
            .expect("running redis-cli");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(channel), "redis-cli said: {text}");
        lines
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("redis-cli said: {text}"))
    }
}
