//! Starting the `tina4-wasm` binary for a benchmark.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `<target>/<profile>`, where this binary and the host binary live.
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("binary folder")?.to_path_buf())
}

/// The `tina4-wasm` binary built beside this one.
pub fn host_binary() -> anyhow::Result<PathBuf> {
    Ok(profile_dir()?.join("tina4-wasm"))
}

/// A built component of the workspace, e.g. `component("probe-v2")`.
pub fn component(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("TINA4_WASM_COMPONENTS") {
        Some(dir) => PathBuf::from(dir),
        None => profile_dir()?
            .parent()
            .context("target folder")?
            .join("wasm32-wasip2/guest"),
    };
    let file = dir.join(format!("{}.wasm", name.replace('-', "_")));
    if !file.is_file() {
        bail!(
            "{} not found: build the guests first (scripts/bench.sh does)",
            file.display()
        );
    }
    Ok(file)
}

/// A server under test (tina4-wasm or the native baseline), killed when dropped.
pub struct Host {
    /// The process.
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its admin endpoints are (tina4-wasm only).
    pub admin: Option<SocketAddr>,
}

impl Host {
    /// tina4-wasm serving `apps_dir` with `cache_dir` as its compile cache,
    /// and `extra` flags.
    pub async fn start(apps_dir: &Path, cache_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(host_binary()?);
        command
            .arg("serve")
            .arg(apps_dir)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--admin-listen", "127.0.0.1:0", "--cache-dir"])
            .arg(cache_dir)
            // Every load generator connects from loopback.
            .args([
                "--max-connections-per-ip",
                "0",
                "--max-http-connections",
                "1000000",
            ])
            .args(extra)
            // Load generators send as fast as they can.
            .env("TINA4_WS_MESSAGES_PER_SECOND", "0")
            .env("RUST_LOG", "warn");
        Self::spawn(command).await
    }

    /// The native baseline (this binary's `native` command).
    pub async fn native() -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["native", "--port", "0"]);
        Self::spawn(command).await
    }

    /// Starts `command` and waits for its `listening on http://ADDR` line.
    async fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut admin = None;
        let addr = loop {
            let line = lines
                .next_line()
                .await?
                .context("the server exited before listening")?;
            if let Some(addr) = line.strip_prefix("admin on http://") {
                admin = Some(addr.parse()?);
            }
            let listening = line
                .strip_prefix("listening on http://")
                .or_else(|| line.strip_prefix("listening on https://"));
            if let Some(addr) = listening {
                break addr.parse()?;
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, addr, admin })
    }

    /// The server's process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the server has exited")
    }

    /// The CPU time (user + system) the server has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time(self.pid()?)
    }

    /// The server's threads now.
    pub fn threads(&self) -> anyhow::Result<usize> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no Threads")
    }

    /// The server's resident memory now, in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")?;
        Ok(kib * 1024)
    }
}

/// The CPU time (user + system) process `pid` has used so far, from
/// `/proc/<pid>/stat` (in clock ticks of 10 ms).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at 3.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// tina4-wasm serving some example apps, and the native baseline.
pub struct Pair {
    /// The apps folder and compile cache.
    _root: tempfile::TempDir,
    /// tina4-wasm.
    pub tina4: Host,
    /// The native baseline.
    pub native: Host,
}

impl Pair {
    /// Both servers; tina4-wasm serves the example `apps`.
    pub async fn start(apps: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(apps, &[]).await
    }

    /// [`Pair::start`], with `extra` flags for tina4-wasm.
    pub async fn start_with(apps: &[&str], extra: &[&str]) -> anyhow::Result<Self> {
        let root = tempfile::tempdir()?;
        let (dir, cache) = (root.path().join("apps"), root.path().join("cache"));
        std::fs::create_dir_all(&dir)?;
        for app in apps {
            std::fs::copy(component(app)?, dir.join(format!("{app}.wasm")))?;
        }
        // The benchmarks open more connections than the default cap.
        let flags = [&["--max-connections", "1000000"], extra].concat();
        let tina4 = Host::start(&dir, &cache, &flags).await?;
        let native = Host::native().await?;
        Ok(Self {
            _root: root,
            tina4,
            native,
        })
    }

    /// Each server with its name, tina4-wasm first.
    pub fn each(&self) -> [(&'static str, &Host); 2] {
        [("tina4-wasm", &self.tina4), ("native", &self.native)]
    }
}
