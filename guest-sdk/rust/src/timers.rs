//! Timers kept by the host, which calls the app back when one fires.
//!
//! Register what a timer does with [`Router::every`](crate::Router::every),
//! [`Router::after`](crate::Router::after) or
//! [`Router::on_timer`](crate::Router::on_timer); the first two also
//! schedule it as the app loads. [`schedule`] and [`cancel`] work from any
//! handler. Timers belong to the app, not to its instance: they survive a
//! hot swap and wake a hibernated app.

use std::time::Duration;

use crate::bindings::tina4::wasm::timers;
use crate::error::Error;

/// How a timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Once, after the delay.
    Once,
    /// Every period, on this instance.
    Period,
    /// Every period, on one instance of the cluster (each period's lease
    /// is claimed in Redis); the tick is the period's number everywhere.
    PeriodOnceInCluster,
}

/// Schedules (or replaces) the timer `name`: after `after`, then as
/// `every` says. Refused below the host's minimum interval
/// ([`Error::Invalid`]), past its number of timers ([`Error::TooLarge`]),
/// or where the host grants none ([`Error::NotPermitted`]).
pub fn schedule(name: &str, after: Duration, every: Every) -> Result<(), Error> {
    let ms = u32::try_from(after.as_millis())
        .map_err(|_| Error::Invalid(format!("timer {name}: at most {} ms", u32::MAX)))?;
    let (repeat, cluster_once) = match every {
        Every::Once => (false, false),
        Every::Period => (true, false),
        Every::PeriodOnceInCluster => (true, true),
    };
    timers::schedule(name, ms, repeat, cluster_once).map_err(Error::from)
}

/// Cancels the timer `name`; false if there was none.
pub fn cancel(name: &str) -> bool {
    timers::cancel(name)
}
