//! An app's timers, kept by the host rather than by the app's instance, so
//! they outlive instances and versions: a hot swap keeps them (the new
//! version's `on-timer` is called) and a hibernated app wakes for one.
//!
//! Each timer is a task that sleeps until it is due, hands the app its
//! firing through the same path as any event (at once if the app is idle,
//! otherwise its mailbox), and, for a repeating timer, sleeps again only
//! once that firing is queued: a slow app never has more than one firing
//! of a timer waiting, and missed periods are skipped, not made up.
//!
//! A `cluster-once` timer fires, each period, on the one instance that
//! claims the period's lease in Redis ([`Delivery::lease`]); its `tick` is
//! the period's number, the same on every instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::AbortHandle;

use super::actor::AppHandle;
use crate::delivery::Delivery;

/// Longest timer name, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 128;

/// The operator's bounds on every app's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerLimits {
    /// Timers one app may have at once (0: none).
    pub(crate) per_app: usize,
    /// The shortest `after` (and period) a timer may ask for.
    pub(crate) min_interval: Duration,
}

/// Why a timer was not scheduled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimerError {
    /// The host grants no timers.
    #[error("this host grants apps no timers")]
    NotPermitted,
    /// The app has the most timers allowed.
    #[error("the app already has {0} timers, the most allowed")]
    TooMany(usize),
    /// Sooner than the shortest interval allowed.
    #[error("a timer may fire at most every {0} ms")]
    TooSoon(u128),
    /// The name or the options are not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// What a timer is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimerSpec {
    /// Until its first firing, and then its period if it repeats.
    pub(crate) after: Duration,
    /// Whether it fires again every `after`.
    pub(crate) repeat: bool,
    /// Whether each period fires on one instance of the cluster only.
    pub(crate) cluster_once: bool,
}

/// One running timer.
struct Running {
    /// Tells a finished one-shot from its replacement of the same name.
    id: u64,
    /// Its task.
    task: AbortHandle,
}

/// The timers of one app.
pub(crate) struct AppTimers {
    /// The app's name, in its leases.
    app: Arc<str>,
    /// The app, once it serves; firings go nowhere before, or after it is gone.
    target: Mutex<Weak<AppHandle>>,
    /// Each timer's task, by name.
    running: Mutex<HashMap<Arc<str>, Running>>,
    /// Ids of timers scheduled so far.
    next_id: std::sync::atomic::AtomicU64,
    /// The operator's bounds.
    limits: TimerLimits,
    /// For the leases of cluster-once timers.
    delivery: Arc<Delivery>,
}

impl AppTimers {
    /// No timers yet for `app`.
    pub(crate) fn new(app: Arc<str>, limits: TimerLimits, delivery: Arc<Delivery>) -> Self {
        Self {
            app,
            target: Mutex::new(Weak::new()),
            running: Mutex::default(),
            next_id: 0.into(),
            limits,
            delivery,
        }
    }

    /// Firings go to `app` from now on.
    pub(crate) fn serve(&self, app: &Arc<AppHandle>) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(app);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Schedules (or replaces) the timer `name`.
    pub(crate) fn schedule(
        self: &Arc<Self>,
        name: &str,
        spec: TimerSpec,
    ) -> Result<(), TimerError> {
        if self.limits.per_app == 0 {
            return Err(TimerError::NotPermitted);
        }
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(TimerError::Invalid(format!(
                "a timer name has 1 to {MAX_NAME_BYTES} bytes"
            )));
        }
        if spec.after < self.limits.min_interval {
            return Err(TimerError::TooSoon(self.limits.min_interval.as_millis()));
        }
        if spec.cluster_once && !spec.repeat {
            return Err(TimerError::Invalid(
                "only a repeating timer can fire once in the cluster".to_string(),
            ));
        }
        let mut running = self.lock();
        if !running.contains_key(name) && running.len() >= self.limits.per_app {
            return Err(TimerError::TooMany(self.limits.per_app));
        }
        let name: Arc<str> = name.into();
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let task = tokio::spawn(run(Arc::downgrade(self), name.clone(), id, spec));
        if let Some(old) = running.insert(
            name,
            Running {
                id,
                task: task.abort_handle(),
            },
        ) {
            old.task.abort();
        }
        Ok(())
    }

    /// Cancels the timer `name`; false if there was none.
    pub(crate) fn cancel(&self, name: &str) -> bool {
        match self.lock().remove(name) {
            Some(old) => {
                old.task.abort();
                true
            }
            None => false,
        }
    }

    /// Cancels every timer (the app is gone).
    pub(crate) fn cancel_all(&self) {
        for (_, old) in self.lock().drain() {
            old.task.abort();
        }
    }

    /// The app to fire into, if it still serves.
    fn target(&self) -> Option<Arc<AppHandle>> {
        self.target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
    }

    /// Whether this instance fires period `period` of cluster-once timer
    /// `name`.
    async fn claim(&self, name: &str, period: u64, every: Duration) -> bool {
        let key = lease_key(&self.app, name, period);
        self.delivery.lease(&key, every * 2).await
    }
}

/// The lease of `period` of `app`'s timer `name`. The app's name cannot
/// hold a NUL byte (it is a file's), so no name another app gives a timer
/// can make its lease this app's.
fn lease_key(app: &str, name: &str, period: u64) -> String {
    format!("{app}\0{name}\0{period}")
}

/// The milliseconds since the Unix epoch, by which every instance numbers
/// the periods of a cluster-once timer alike.
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A timer's task; holds the timers weakly, so it ends with them.
async fn run(timers: Weak<AppTimers>, name: Arc<str>, id: u64, spec: TimerSpec) {
    let every = spec.after;
    let mut due = tokio::time::Instant::now() + every;
    let mut fired = 0u64;
    loop {
        if spec.cluster_once {
            // Periods are counted from the Unix epoch, so every
            // instance names the same one.
            let now = since_epoch();
            let next_period = now.as_millis() / every.as_millis().max(1) + 1;
            let at = Duration::from_millis((next_period * every.as_millis()) as u64);
            due = tokio::time::Instant::now() + at.saturating_sub(now);
        }
        tokio::time::sleep_until(due).await;
        let Some(timers) = timers.upgrade() else {
            return;
        };
        let tick = if spec.cluster_once {
            let period = (since_epoch().as_millis() / every.as_millis().max(1)) as u64;
            if !timers.claim(&name, period, every).await {
                continue;
            }
            period
        } else {
            fired += 1;
            fired
        };
        // A version schedules its timers as it loads, before it
        // serves: a firing before then is skipped.
        let Some(app) = timers.target() else {
            if spec.repeat {
                due += every;
                continue;
            }
            return;
        };
        if !spec.repeat {
            let mut running = timers.lock();
            if running.get(&name).is_some_and(|r| r.id == id) {
                running.remove(&name);
            }
        }
        drop(timers);
        app.timer(name.to_string(), tick).await;
        if !spec.repeat {
            return;
        }
        // Missed periods are skipped, not made up.
        let now = tokio::time::Instant::now();
        due += every;
        while due <= now {
            due += every;
        }
    }
}

impl Drop for AppTimers {
    fn drop(&mut self) {
        self.cancel_all();
    }
}

/// Every app's timers, by app name, so each version of an app finds its
/// predecessor's.
#[derive(Default)]
pub(crate) struct TimerBook {
    /// The timers of each app that has had a version loaded.
    apps: Mutex<HashMap<Arc<str>, Arc<AppTimers>>>,
}

impl TimerBook {
    /// `app`'s timers, made on first use.
    pub(crate) fn of(
        &self,
        app: &Arc<str>,
        limits: TimerLimits,
        delivery: &Arc<Delivery>,
    ) -> Arc<AppTimers> {
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app.clone())
            .or_insert_with(|| Arc::new(AppTimers::new(app.clone(), limits, delivery.clone())))
            .clone()
    }

    /// `app` is unloaded: its timers are cancelled and forgotten.
    pub(crate) fn forget(&self, app: &str) {
        let gone = self
            .apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app);
        if let Some(timers) = gone {
            timers.cancel_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::ConnectionRegistry;

    fn timers(per_app: usize) -> Arc<AppTimers> {
        let limits = TimerLimits {
            per_app,
            min_interval: Duration::from_millis(100),
        };
        let delivery = Arc::new(Delivery::local(Arc::new(ConnectionRegistry::new())));
        Arc::new(AppTimers::new("app".into(), limits, delivery))
    }

    fn after(ms: u64, repeat: bool, cluster_once: bool) -> TimerSpec {
        TimerSpec {
            after: Duration::from_millis(ms),
            repeat,
            cluster_once,
        }
    }

    #[test]
    fn no_app_can_name_another_app_s_lease() {
        assert_ne!(lease_key("a", "b:1", 7), lease_key("a:b", "1", 7));
        assert!(lease_key("a", "x", 7).starts_with("a\0"));
    }

    #[tokio::test]
    async fn a_timer_is_refused_with_its_reason() {
        let app = timers(1);
        assert_eq!(app.schedule("a", after(1000, true, false)), Ok(()));
        // Replacing one is not one more.
        assert_eq!(app.schedule("a", after(2000, false, false)), Ok(()));
        assert_eq!(
            app.schedule("b", after(1000, false, false)),
            Err(TimerError::TooMany(1))
        );
        assert_eq!(
            app.schedule("a", after(99, false, false)),
            Err(TimerError::TooSoon(100))
        );
        assert!(matches!(
            app.schedule("a", after(500, false, true)),
            Err(TimerError::Invalid(_))
        ));
        assert!(matches!(
            app.schedule("", after(500, false, false)),
            Err(TimerError::Invalid(_))
        ));
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        assert!(matches!(
            app.schedule(&long, after(500, false, false)),
            Err(TimerError::Invalid(_))
        ));
        assert!(app.cancel("a"));
        assert!(!app.cancel("a"));
        assert_eq!(app.schedule("b", after(1000, false, false)), Ok(()));
        assert_eq!(
            timers(0).schedule("a", after(1000, false, false)),
            Err(TimerError::NotPermitted)
        );
    }
}
