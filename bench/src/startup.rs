//! Startup: from starting the process to its `listening on` line, with the
//! three example apps and a warm compile cache, against the native
//! baseline (which has nothing to load).

use std::time::Instant;

use crate::host::{Host, component};
use crate::stats::{Summary, ms};

/// Options of the startup scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Starts measured per server.
    #[arg(id = "startup-runs", long = "startup-runs", default_value_t = 10)]
    pub runs: usize,
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let (apps, cache) = (root.path().join("apps"), root.path().join("cache"));
    std::fs::create_dir_all(&apps)?;
    for app in ["echo", "chat", "notifications"] {
        std::fs::copy(component(app)?, apps.join(format!("{app}.wasm")))?;
    }
    // Fill the compile cache.
    drop(Host::start(&apps, &cache, &[]).await?);
    let mut tina4 = Vec::new();
    let mut native = Vec::new();
    for _ in 0..options.runs {
        let started = Instant::now();
        let host = Host::start(&apps, &cache, &[]).await?;
        tina4.push(started.elapsed());
        drop(host);
        let started = Instant::now();
        let host = Host::native().await?;
        native.push(started.elapsed());
        drop(host);
    }
    println!(
        "Startup: process start → `listening on` line, {} runs each (tina4-wasm: echo, chat and notifications from a warm compile cache)",
        options.runs
    );
    println!();
    println!("| server | median | p99 | max |");
    println!("|---|---|---|---|");
    for (name, samples) in [("tina4-wasm", tina4), ("native", native)] {
        let s: Summary = Summary::of(samples);
        println!(
            "| {name} | {} | {} | {} |",
            ms(s.median),
            ms(s.p99),
            ms(s.max)
        );
    }
    println!();
    Ok(())
}
