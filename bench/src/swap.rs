//! Hot-swap latency: the time from a component file's close-after-write to
//! the first reply from the new version, seen by a client that keeps
//! sending. Cold rounds install bytes never seen before (a fresh custom
//! section each time), so the host compiles; cached rounds alternate between
//! two versions already in the compile cache.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::host::{Host, component};
use crate::stats::{Summary, ms};

/// Options of the swap scenario.
#[derive(clap::Args)]
pub struct Options {
    /// Swaps measured in each case (cold, cached).
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Longest any one swap may take before the run fails.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Pause between the client's round trips, in microseconds: the
    /// measurement's resolution, traded against the CPU the client's
    /// polling takes from the host while it compiles.
    #[arg(long, default_value_t = 250)]
    poll_us: u64,
    /// Run the host with `--fast-compile`.
    #[arg(long)]
    fast_compile: bool,
}

/// The component `bytes` plus a custom section holding `tag`.
fn with_tag(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"tina4-bench";
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    let mut len = content.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&content);
    out
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let v1 = std::fs::read(component("probe")?)?;
    let v2 = std::fs::read(component("probe-v2")?)?;
    let root = tempfile::tempdir()?;
    let (apps, cache) = (root.path().join("apps"), root.path().join("cache"));
    std::fs::create_dir_all(&apps)?;
    let file = apps.join("probe.wasm");
    std::fs::write(&file, &v1)?;
    let extra: &[&str] = if options.fast_compile {
        &["--fast-compile"]
    } else {
        &[]
    };
    let host = Host::start(&apps, &cache, extra).await?;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/probe/bench", host.addr)).await?;
    let limit = Duration::from_secs(options.timeout_secs);

    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for round in 0..options.rounds * 2 {
        let is_cold = round < options.rounds;
        let version = if round % 2 == 0 { "v2" } else { "v1" };
        let base = if version == "v2" { &v2 } else { &v1 };
        let bytes = if is_cold {
            with_tag(base, &format!("cold-{round}-{}", std::process::id()))
        } else {
            base.clone()
        };
        // The file is closed when `write` returns: that is the start.
        std::fs::write(&file, &bytes)?;
        let started = Instant::now();
        let mut n = 0u64;
        loop {
            anyhow::ensure!(
                started.elapsed() < limit,
                "swap {round} took over {limit:?}"
            );
            n += 1;
            ws.send(Message::text(format!("r{round}-{n}"))).await?;
            let reply = loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => break text,
                    Some(Ok(_)) => continue,
                    other => anyhow::bail!("connection lost during swap {round}: {other:?}"),
                }
            };
            if reply.starts_with(version) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(options.poll_us)).await;
        }
        let latency = started.elapsed();
        if is_cold {
            cold.push(latency)
        } else if round >= options.rounds + 2 {
            // The first two cached rounds fill the cache for v1 and v2.
            cached.push(latency)
        }
    }

    println!(
        "Hot-swap latency: close-after-write → first reply from the new version \
         (probe app, {} KB{}; the client polls every {} µs)",
        v1.len() / 1024,
        if options.fast_compile {
            ", --fast-compile"
        } else {
            ""
        },
        options.poll_us
    );
    println!();
    println!("| case | swaps | median | p99 | max |");
    println!("|---|---|---|---|---|");
    for (case, samples) in [
        ("cold (compiled)", cold),
        ("from the compile cache", cached),
    ] {
        let s = Summary::of(samples);
        println!(
            "| {case} | {} | {} | {} | {} |",
            s.count,
            ms(s.median),
            ms(s.p99),
            ms(s.max)
        );
    }
    Ok(())
}
