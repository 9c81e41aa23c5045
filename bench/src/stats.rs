//! Summaries of samples.

use std::time::Duration;

/// Median, p99 and max of a set of durations.
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// The 50th percentile.
    pub median: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples` (nearest-rank percentiles).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        let rank = |p: f64| {
            let index = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Self {
            count: samples.len(),
            median: rank(50.0),
            p99: rank(99.0),
            max: samples[samples.len() - 1],
        }
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
