//! What each guest language costs: the echo example in Rust, JavaScript
//! (SpiderMonkey and QuickJS) and Python, built with `tina4-wasm build`.
//! Per language: build time, component size, compile time, cached load
//! time and instantiate time (from `tina4-wasm check`, which loads a
//! component exactly as `serve` does), restart time with a warm cache, and
//! the server's CPU per echo round trip under load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::host::{Host, component, host_binary};
use crate::load::{Spent, connect_many, micros_per};
use crate::stats::{Summary, ms};

/// Options of the languages scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Warm-cache loads and restarts measured per language.
    #[arg(id = "languages-runs", long = "languages-runs", default_value_t = 5)]
    pub runs: usize,
    /// Echo clients for the per-event cost.
    #[arg(
        id = "languages-clients",
        long = "languages-clients",
        default_value_t = 50
    )]
    pub clients: usize,
    /// Seconds of echo load per language.
    #[arg(
        id = "languages-seconds",
        long = "languages-seconds",
        default_value_t = 5
    )]
    pub seconds: u64,
}

/// One implementation of the echo example.
struct Variant {
    /// How the table names it.
    label: &'static str,
    /// `examples/<folder>/echo`, or `None` for the Rust example (built by cargo).
    folder: Option<&'static str>,
    /// Extra `tina4-wasm build` flags.
    flags: &'static [&'static str],
}

const VARIANTS: &[Variant] = &[
    Variant {
        label: "Rust",
        folder: None,
        flags: &[],
    },
    Variant {
        label: "JavaScript (SpiderMonkey, default)",
        folder: Some("javascript"),
        flags: &["--js-engine", "spidermonkey"],
    },
    Variant {
        label: "JavaScript (QuickJS)",
        folder: Some("javascript"),
        flags: &["--js-engine", "quickjs"],
    },
    Variant {
        label: "Python",
        folder: Some("python"),
        flags: &[],
    },
];

/// The repository's root folder.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is in the repository")
        .to_path_buf()
}

/// Builds the variant's echo into `apps/echo.wasm`; the build's wall time
/// (`None` for Rust, which `scripts/bench.sh` built with cargo).
fn build(variant: &Variant, apps: &Path) -> anyhow::Result<Option<Duration>> {
    std::fs::create_dir_all(apps)?;
    let Some(folder) = variant.folder else {
        std::fs::copy(component("echo")?, apps.join("echo.wasm"))?;
        return Ok(None);
    };
    let started = Instant::now();
    let output = Command::new(host_binary()?)
        .arg("build")
        .arg(repo_root().join("examples").join(folder).join("echo"))
        .arg("--apps")
        .arg(apps)
        .arg("--no-cache")
        .args(variant.flags)
        .output()
        .context("running tina4-wasm build")?;
    if !output.status.success() {
        bail!(
            "building {}: {}",
            variant.label,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Some(started.elapsed()))
}

/// What `tina4-wasm check` reports of one load.
struct Load {
    /// Compile or cache-load time.
    compile: Duration,
    /// Whether it was compiled (not taken from the cache).
    compiled: bool,
    /// Instantiate time, `routes()` included.
    instantiate: Duration,
}

/// Parses a Rust `Duration` debug string (`6.1s`, `7.02ms`, `950µs`).
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() || c == 'µ')
        .context("no unit")?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse()?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "µs" => value / 1e6,
        "ns" => value / 1e9,
        other => bail!("unknown unit {other}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Loads `file` with `tina4-wasm check`, compiling into or loading from `cache`.
fn check(file: &Path, cache: &Path) -> anyhow::Result<Load> {
    let output = Command::new(host_binary()?)
        .arg("check")
        .arg(file)
        .arg("--cache-dir")
        .arg(cache)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // loads: compile 6.1s (compiled), instantiate 7.0ms
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("loads: compile "))
        .with_context(|| format!("tina4-wasm check said: {stdout}"))?;
    let (compile, rest) = line.split_once(" (").context("no origin")?;
    let (origin, instantiate) = rest
        .split_once("), instantiate ")
        .context("no instantiate")?;
    Ok(Load {
        compile: parse_duration(compile)?,
        compiled: origin == "compiled",
        instantiate: parse_duration(instantiate)?,
    })
}

/// Closed-loop echo round trips on `/ws/echo` for `seconds`; the server's
/// CPU per round trip in µs.
async fn cpu_per_event(server: &Host, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let sockets = connect_many(server.addr, "/ws/echo", clients, 4).await?;
    let spent = Spent::start(server)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut n = 0usize;
                while Instant::now() < deadline {
                    ws.send(Message::text(format!("ping {n}"))).await?;
                    match ws.next().await {
                        Some(Ok(Message::Text(_))) => n += 1,
                        other => bail!("echo connection lost: {other:?}"),
                    }
                }
                Ok(n)
            })
        })
        .collect();
    let mut round_trips = 0;
    for task in tasks {
        round_trips += task.await??;
    }
    let (cpu, _wall) = spent.stop(server)?;
    Ok(micros_per(cpu, round_trips))
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    println!(
        "Guest languages: the echo example built with `tina4-wasm build`; loads measured by \
         `tina4-wasm check` ({} warm runs, median); restart = process start → `listening on` \
         with a warm cache; CPU per event = server CPU per `/ws/echo` round trip, {} clients, {} s",
        options.runs, options.clients, options.seconds
    );
    println!();
    println!(
        "| language | build | component | compile (cold) | load from cache | instantiate | restart | idle RSS | CPU per event | ÷ Rust (CPU per event) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut rust_cpu = None;
    for (i, variant) in VARIANTS.iter().enumerate() {
        let apps = root.path().join(format!("apps-{i}"));
        let cache = root.path().join(format!("cache-{i}"));
        let built = build(variant, &apps)?;
        let file = apps.join("echo.wasm");
        let size = std::fs::metadata(&file)?.len();
        let cold = check(&file, &cache)?;
        if !cold.compiled {
            bail!("{}: the first load was not a compile", variant.label);
        }
        let mut loads = Vec::new();
        let mut instantiates = Vec::new();
        let mut restarts = Vec::new();
        for _ in 0..options.runs {
            let warm = check(&file, &cache)?;
            if warm.compiled {
                bail!("{}: a warm load compiled", variant.label);
            }
            loads.push(warm.compile);
            instantiates.push(warm.instantiate);
            let started = Instant::now();
            drop(Host::start(&apps, &cache, &[]).await?);
            restarts.push(started.elapsed());
        }
        let server = Host::start(&apps, &cache, &[]).await?;
        let rss = server.rss()?;
        let cpu = cpu_per_event(&server, options.clients, options.seconds).await?;
        drop(server);
        let ratio = match rust_cpu {
            None => {
                rust_cpu = Some(cpu);
                "1.00×".to_string()
            }
            Some(rust) => format!("{:.1}×", cpu / rust),
        };
        println!(
            "| {} | {} | {:.1} MB | {:.1} s | {} | {} | {} | {:.1} MiB | {cpu:.1} µs | {ratio} |",
            variant.label,
            built.map_or("cargo".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
            size as f64 / 1e6,
            cold.compile.as_secs_f64(),
            ms(Summary::of(loads).median),
            ms(Summary::of(instantiates).median),
            ms(Summary::of(restarts).median),
            rss as f64 / (1024.0 * 1024.0),
        );
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_durations_check_prints() {
        assert_eq!(parse_duration("6.5s").unwrap(), Duration::from_millis(6500));
        assert_eq!(
            parse_duration("7.25ms").unwrap(),
            Duration::from_micros(7250)
        );
        assert_eq!(parse_duration("950µs").unwrap(), Duration::from_micros(950));
        assert!(parse_duration("12").is_err());
    }
}
