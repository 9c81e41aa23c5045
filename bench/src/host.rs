//! Starting the `tina4-wasm` binary for a benchmark.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

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
    _child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Host {
    /// Serves `apps_dir` with `cache_dir` as its compile cache, and `extra` flags.
    pub async fn start(apps_dir: &Path, cache_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let binary = profile_dir()?.join("tina4-wasm");
        let mut child = Command::new(&binary)
            .arg("serve")
            .arg(apps_dir)
            .args(["--host", "127.0.0.1", "--port", "0", "--cache-dir"])
            .arg(cache_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let addr = loop {
            let line = lines
                .next_line()
                .await?
                .context("the host exited before listening")?;
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.parse()?;
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            _child: child,
            addr,
        })
    }
}
