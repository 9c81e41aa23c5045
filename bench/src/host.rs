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

/// A running host, killed when dropped.
pub struct Host {
    /// The process.
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its admin endpoints are.
    pub admin: Option<SocketAddr>,
}

impl Host {
    /// Serves `apps_dir` with `cache_dir` as its compile cache, and `extra` flags.
    pub async fn start(apps_dir: &Path, cache_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let binary = profile_dir()?.join("tina4-wasm");
        let mut child = Command::new(&binary)
            .arg("serve")
            .arg(apps_dir)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--admin-listen", "127.0.0.1:0", "--cache-dir"])
            .arg(cache_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut admin = None;
        let addr = loop {
            let line = lines
                .next_line()
                .await?
                .context("the host exited before listening")?;
            if let Some(addr) = line.strip_prefix("admin on http://") {
                admin = Some(addr.parse()?);
            }
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.parse()?;
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, addr, admin })
    }

    /// The CPU time (user + system) the host has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time(self.child.id().context("the host has exited")?)
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
