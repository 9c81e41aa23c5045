//! Presence across two instances: `members` connections on one path, half
//! on each of two hosts sharing a `redis-server`, each saying who it is.
//! Measured: how long until both hosts list every member, the hosts' CPU
//! per presence change, the memory presence costs each host per member
//! (every host keeps every member), how long the app's `presence(path)`
//! takes to list them all, and how long a killed host's members take to
//! leave the other's list.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::SinkExt;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::backplane::{Redis, wait_connected};
use crate::host::{Host, component};
use crate::load::{Socket, connect_many_from};
use crate::stats::{Summary, ms};

/// Options of the presence scenario.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Members in all, half on each host.
    #[arg(long = "presence-members", default_value_t = 10_000)]
    pub members: usize,
}

/// The probe's path that keeps presence and tells no one.
const PATH: &str = "/who-quiet/bench";

/// Says `text` on `ws` and returns the first text answer.
async fn ask(ws: &mut Socket, text: &str) -> anyhow::Result<String> {
    ws.send(Message::text(text)).await?;
    loop {
        match ws.next().await.context("the connection ended")?? {
            Message::Text(answer) => return Ok(answer.to_string()),
            _ => continue,
        }
    }
}

/// How many members `asker`'s path lists.
async fn listed(asker: &mut Socket) -> anyhow::Result<u64> {
    let answer: Value = serde_json::from_str(&ask(asker, "who-count").await?)?;
    answer["members"].as_u64().context("no count")
}

/// Waits until `asker`'s path lists `expected` members; how long it took.
async fn until_listed(asker: &mut Socket, expected: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while listed(asker).await? != expected {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("never listed {expected} members");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(started.elapsed())
}

/// Each of `members` says who it is (`user<first + i>`), waiting for the
/// answer; or, `plain`, asks for its id (the same round trip through the
/// app, without presence).
async fn say_who(members: &mut [Socket], first: usize, plain: bool) -> anyhow::Result<()> {
    let said = stream::iter(members.iter_mut().enumerate())
        .map(|(i, ws)| async move {
            let n = first + i;
            if plain {
                ask(ws, "id").await?;
                return Ok(());
            }
            let answer = ask(ws, &format!("iam:user{n} {{\"name\":\"User {n}\"}}")).await?;
            anyhow::ensure!(answer == "Ok(())", "set-presence answered {answer}");
            Ok(())
        })
        .buffer_unordered(256)
        .collect::<Vec<anyhow::Result<()>>>()
        .await;
    said.into_iter().collect()
}

/// The CPU time each of `hosts` has used so far.
fn cpu_of(hosts: &[&Host]) -> anyhow::Result<Vec<Duration>> {
    hosts.iter().map(|h| h.cpu_time()).collect()
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let half = options.members / 2;
    let total = (half * 2) as u64;
    println!(
        "Presence: {total} members of one path, {half} on each of two hosts on one redis-server"
    );
    println!();
    let redis = Redis::start().await?;
    let root = tempfile::tempdir()?;
    let apps = root.path().join("apps");
    std::fs::create_dir_all(&apps)?;
    std::fs::copy(component("probe")?, apps.join("probe.wasm"))?;
    let flags = [
        "--backplane",
        "redis",
        "--backplane-url",
        &redis.url,
        "--max-connections",
        "1000000",
    ];
    let a = Host::start(&apps, &root.path().join("cache-a"), &flags).await?;
    let mut b = Some(Host::start(&apps, &root.path().join("cache-b"), &flags).await?);
    wait_connected(&a).await?;
    wait_connected(b.as_ref().context("b")?).await?;

    let mut on_a = connect_many_from(a.addr, PATH, half, 1, 32).await?;
    let mut on_b = connect_many_from(b.as_ref().context("b")?.addr, PATH, half, 33, 32).await?;
    let mut asker_a = connect_many_from(a.addr, PATH, 1, 100, 1).await?.remove(0);
    let hosts = [&a, b.as_ref().context("b")?];
    // The same round trip through the app without presence, for scale.
    let cpu_plain = cpu_of(&hosts)?;
    let (asked_a, asked_b) =
        tokio::join!(say_who(&mut on_a, 0, true), say_who(&mut on_b, half, true));
    asked_a?;
    asked_b?;
    let cpu_before = cpu_of(&hosts)?;
    let rss_before: Vec<u64> = hosts.iter().map(|h| h.rss()).collect::<Result<_, _>>()?;

    let started = Instant::now();
    let (said_a, said_b) = tokio::join!(
        say_who(&mut on_a, 0, false),
        say_who(&mut on_b, half, false)
    );
    said_a?;
    said_b?;
    let said = started.elapsed();
    let converged = until_listed(&mut asker_a, total).await?;
    let mut asker_b = connect_many_from(hosts[1].addr, PATH, 1, 101, 1)
        .await?
        .remove(0);
    until_listed(&mut asker_b, total).await?;
    let cpu_after = cpu_of(&hosts)?;
    let rss_after: Vec<u64> = hosts.iter().map(|h| h.rss()).collect::<Result<_, _>>()?;

    println!(
        "all {total} set in {}; host A listed all {} later",
        ms(said),
        ms(converged)
    );
    for (i, name) in ["A", "B"].iter().enumerate() {
        let plain = cpu_before[i].saturating_sub(cpu_plain[i]);
        let cpu = cpu_after[i].saturating_sub(cpu_before[i]);
        let grown = rss_after[i].saturating_sub(rss_before[i]);
        println!(
            "host {name}: CPU {:.1} µs per member setting presence (hearing the other host's too) against {:.1} µs for a plain round trip; RSS +{:.1} MiB ({:.0} bytes per member)",
            cpu.as_secs_f64() * 1e6 / total as f64,
            plain.as_secs_f64() * 1e6 / total as f64,
            grown as f64 / (1 << 20) as f64,
            grown as f64 / total as f64,
        );
    }
    let mut lists = Vec::new();
    for _ in 0..20 {
        let asked = Instant::now();
        listed(&mut asker_a).await?;
        lists.push(asked.elapsed());
    }
    let lists = Summary::of(lists);
    println!(
        "the app lists {total} members (presence(path) in one event): p50 {}, p99 {}",
        ms(lists.median),
        ms(lists.p99)
    );
    drop(on_b);
    drop(asker_b);
    let killed = Instant::now();
    drop(b.take());
    until_listed(&mut asker_a, half as u64).await?;
    println!(
        "host B killed: its {half} members left host A's list after {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    drop(on_a);
    Ok(())
}
