//! Density: many idle apps in one process. Each language's echo example is
//! served as many apps, each under a host name of its own (`hosts` in its
//! `<app>.toml`, so no two share a route), with hibernation on. Once every
//! app has hibernated the run reports the server's resident memory per idle
//! app (above the same server holding one app), its threads, and the time
//! to wake: the first request to a hibernated app, answered by a fresh
//! instance, over a sample of the apps.
//!
//! The copies of one language share their compiled code (the server loads
//! a component once per content), as a host serving one app to many
//! tenants would; distinct apps of a language would each hold their own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::host::{Host, component, host_binary};
use crate::stats::{Summary, ms};

/// Options of the density scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Rust apps (copies of the echo example).
    #[arg(id = "density-rust", long = "density-rust", default_value_t = 5000)]
    pub rust: usize,
    /// JavaScript apps.
    #[arg(
        id = "density-javascript",
        long = "density-javascript",
        default_value_t = 300
    )]
    pub javascript: usize,
    /// Python apps.
    #[arg(id = "density-python", long = "density-python", default_value_t = 300)]
    pub python: usize,
    /// Apps woken per language for the wake times.
    #[arg(id = "density-wakes", long = "density-wakes", default_value_t = 200)]
    pub wakes: usize,
    /// The server's `--hibernate-after-ms`.
    #[arg(
        id = "density-hibernate-after-ms",
        long = "density-hibernate-after-ms",
        default_value_t = 1000
    )]
    pub hibernate_after_ms: u64,
}

/// One language's echo example.
struct Language {
    /// Its name in the table, and the prefix of its apps' names.
    name: &'static str,
    /// The component.
    file: PathBuf,
    /// How many apps of it.
    count: usize,
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let cache = root.path().join("cache");
    let languages = [
        ("rust", component("echo")?, options.rust),
        (
            "javascript",
            example("javascript", root.path())?,
            options.javascript,
        ),
        ("python", example("python", root.path())?, options.python),
    ]
    .map(|(name, file, count)| Language { name, file, count });
    for language in &languages {
        warm(&language.file, &cache)?;
    }
    println!(
        "Density: copies of the echo example per language, each on a host name of its own, \
         hibernating after {} ms; RSS per idle app above the same server with one app",
        options.hibernate_after_ms
    );
    println!();
    println!(
        "| apps | load time | RSS | RSS per idle app | threads | wake p50 | wake p99 | awake request p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut total = Vec::new();
    for language in &languages {
        let one = Serving::start(root.path(), &cache, &[(language, 1)], options).await?;
        let many =
            Serving::start(root.path(), &cache, &[(language, language.count)], options).await?;
        let (wake, awake) = many.wake_times(language, options.wakes).await?;
        let per_app = many.rss.saturating_sub(one.rss) as f64 / (language.count - 1).max(1) as f64;
        println!(
            "| {} {} | {:.1} s | {:.0} MiB | {:.0} KiB | {} | {} | {} | {} |",
            language.count,
            language.name,
            many.load.as_secs_f64(),
            mib(many.rss),
            per_app / 1024.0,
            many.threads,
            ms(wake.median),
            ms(wake.p99),
            ms(awake.median),
        );
        total.push((language, language.count));
    }
    let all = Serving::start(root.path(), &cache, &total, options).await?;
    let apps: usize = total.iter().map(|(_, n)| n).sum();
    println!(
        "| all {apps} in one process | {:.1} s | {:.0} MiB | | {} | | | |",
        all.load.as_secs_f64(),
        mib(all.rss),
        all.threads
    );
    Ok(())
}

/// Mebibytes.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The `language` echo example, as the test suite built it, or built now
/// into `scratch`.
fn example(language: &str, scratch: &Path) -> anyhow::Result<PathBuf> {
    let built = host_binary()?
        .parent()
        .and_then(Path::parent)
        .context("target folder")?
        .join("guest-apps")
        .join(language)
        .join("echo.wasm");
    if built.is_file() {
        return Ok(built);
    }
    let apps = scratch.join(format!("built-{language}"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the repository")?
        .join("examples")
        .join(language)
        .join("echo");
    let output = std::process::Command::new(host_binary()?)
        .arg("build")
        .arg(source)
        .arg("--apps")
        .arg(&apps)
        .output()
        .context("running tina4-wasm build")?;
    if !output.status.success() {
        bail!(
            "building the {language} echo: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(apps.join("echo.wasm"))
}

/// Compiles `file` into `cache` once, so the servers load it from there.
fn warm(file: &Path, cache: &Path) -> anyhow::Result<()> {
    let output = std::process::Command::new(host_binary()?)
        .arg("check")
        .arg(file)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .context("running tina4-wasm check")?;
    anyhow::ensure!(
        output.status.success(),
        "{} does not load: {}",
        file.display(),
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

/// A server holding many hibernated apps.
struct Serving {
    /// The server; killed when this is dropped.
    host: Host,
    /// Holds its apps folder.
    _apps: tempfile::TempDir,
    /// From start to listening.
    load: Duration,
    /// Its resident memory once every app hibernated.
    rss: u64,
    /// Its threads then.
    threads: usize,
}

impl Serving {
    /// A server with `count` apps of each language, every one hibernated.
    async fn start(
        scratch: &Path,
        cache: &Path,
        languages: &[(&Language, usize)],
        options: &Options,
    ) -> anyhow::Result<Self> {
        let apps = tempfile::tempdir_in(scratch)?;
        for (language, count) in languages {
            for i in 0..*count {
                let name = format!("{}-{i:05}", language.name);
                // Links, not copies: thousands of apps, one file.
                std::fs::hard_link(&language.file, apps.path().join(format!("{name}.wasm")))?;
                std::fs::write(
                    apps.path().join(format!("{name}.toml")),
                    format!("hosts = [\"{name}.density.test\"]\n"),
                )?;
            }
        }
        let total: usize = languages.iter().map(|(_, n)| n).sum();
        let after = options.hibernate_after_ms.to_string();
        let started = Instant::now();
        let host = Host::start(
            apps.path(),
            cache,
            &[
                "--hibernate-after-ms",
                &after,
                "--max-connections",
                "100000",
            ],
        )
        .await?;
        let load = started.elapsed();
        let admin = host.admin.context("no admin listener")?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let metrics = get(admin, "localhost", "/metrics").await?.1;
            let hibernated = sum_of(&metrics, "tina4_app_hibernations_total");
            let woke = sum_of(&metrics, "tina4_app_wake_seconds_count");
            if hibernated - woke >= total as f64 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the apps did not all hibernate");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let rss = host.rss()?;
        let threads = host.threads()?;
        Ok(Self {
            host,
            _apps: apps,
            load,
            rss,
            threads,
        })
    }

    /// The first request to each of `sample` hibernated apps (spread over
    /// the language's apps), and a second one to it, awake.
    async fn wake_times(
        &self,
        language: &Language,
        sample: usize,
    ) -> anyhow::Result<(Summary, Summary)> {
        let step = (language.count / sample.max(1)).max(1);
        let (mut wake, mut awake) = (Vec::new(), Vec::new());
        for i in (0..language.count).step_by(step).take(sample) {
            let host = format!("{}-{i:05}.density.test", language.name);
            let (status, _, first) = timed(self.host.addr, &host, "/hello/density").await?;
            anyhow::ensure!(status == 200, "{host}: status {status}");
            let (_, _, second) = timed(self.host.addr, &host, "/hello/density").await?;
            wake.push(first);
            awake.push(second);
        }
        Ok((Summary::of(wake), Summary::of(awake)))
    }
}

/// The sum of every sample of metric `name`.
fn sum_of(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET path` with `Host: host` on a fresh connection: the status, the
/// body, and the time from sending the request to the whole answer.
async fn timed(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> anyhow::Result<(u16, String, Duration)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())?;
    let sent = Instant::now();
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    let elapsed = sent.elapsed();
    Ok((status, String::from_utf8_lossy(&body).into_owned(), elapsed))
}

/// [`timed`] without the time.
async fn get(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (status, body, _) = timed(addr, host, path).await?;
    Ok((status, body))
}
