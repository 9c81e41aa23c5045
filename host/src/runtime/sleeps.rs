//! Guest sleeps that end at the event's deadline.
//!
//! A guest's blocking sleep (`std::thread::sleep`, `time.sleep`) waits on a
//! WASI monotonic-clock pollable in host code, where the epoch deadline
//! cannot interrupt it: a 4 s sleep under a 1 s limit would hold its app
//! for 4 s. The two functions that make those pollables are replaced here:
//! a sleep that would end after the call's deadline fails at once (a trap,
//! handled like any other overrun), and one that ends in time is kept.

use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host as _;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::HostState;

/// The interface whose `subscribe-*` functions are replaced.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A sleep that ends at `until`.
struct BoundedSleep {
    /// When it is ready.
    until: tokio::time::Instant,
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedSleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.until).await;
    }
}

impl HostState {
    /// A pollable ready after `wait`; an error if that is past the
    /// deadline of the call in progress.
    fn bounded_sleep(&mut self, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let until = Instant::now() + wait;
        if self.deadline.is_some_and(|deadline| until > deadline) {
            wasmtime::bail!("a sleep of {wait:?} would outlast the event's CPU deadline");
        }
        let sleep = self.table.push(BoundedSleep {
            until: tokio::time::Instant::from_std(until),
        })?;
        subscribe(&mut self.table, sleep)
    }
}

/// Replaces the monotonic clock's `subscribe-duration` and
/// `subscribe-instant` in a linker that already has WASI.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |mut store, (nanos,): (u64,)| {
        let pollable = store
            .data_mut()
            .bounded_sleep(Duration::from_nanos(nanos))?;
        Ok((pollable,))
    })?;
    clock.func_wrap("subscribe-instant", |mut store, (when,): (u64,)| {
        let state: &mut HostState = store.data_mut();
        let now = state.clocks().now()?;
        let pollable = state.bounded_sleep(Duration::from_nanos(when.saturating_sub(now)))?;
        Ok((pollable,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}
