//! The message rate of one connection: a token bucket, filled at the
//! app's rate up to its burst, one token per message. Pure: time is an
//! argument, and so are the settings, so a hot swap that changes them
//! applies to the next message. An HTTP/2 connection's budget of
//! cancelled requests is the same bucket.

use std::time::{Duration, Instant};

use crate::runtime::policy::MessageRate;

/// What a connection has left of its burst.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Messages it may send now; fractional between two refills.
    tokens: f64,
    /// When it was last filled.
    filled: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens (a fresh connection may send its
    /// burst at once).
    pub(crate) fn new(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            filled: now,
        }
    }

    /// Takes a token for one message at `now`; false if it is over `rate`.
    pub(crate) fn take(&mut self, rate: &MessageRate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.filled).as_secs_f64();
        self.filled = now;
        self.tokens =
            (self.tokens + elapsed * f64::from(rate.per_second)).min(f64::from(rate.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long after `now` the next token comes, at `rate`.
    pub(crate) fn until_next(&self, rate: &MessageRate, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.filled).as_secs_f64();
        let tokens =
            (self.tokens + elapsed * f64::from(rate.per_second)).min(f64::from(rate.burst));
        Duration::from_secs_f64((1.0 - tokens).max(0.0) / f64::from(rate.per_second.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OverRate;

    const RATE: MessageRate = MessageRate {
        per_second: 10,
        burst: 3,
        over: OverRate::Drop,
    };

    #[test]
    fn a_burst_then_the_steady_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(RATE.burst, start);
        assert!((0..3).all(|_| bucket.take(&RATE, start)));
        assert!(!bucket.take(&RATE, start));
        // Ten per second: one more after 100 ms, not before.
        assert!(!bucket.take(&RATE, start + Duration::from_millis(50)));
        assert!(bucket.take(&RATE, start + Duration::from_millis(100)));
        assert!(!bucket.take(&RATE, start + Duration::from_millis(100)));
    }

    #[test]
    fn the_next_token_is_due_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1, start);
        assert_eq!(bucket.until_next(&RATE, start), Duration::ZERO);
        assert!(bucket.take(&RATE, start));
        assert_eq!(bucket.until_next(&RATE, start), Duration::from_millis(100));
        let later = start + Duration::from_millis(40);
        let due = bucket.until_next(&RATE, later);
        assert!(due > Duration::from_millis(59) && due < Duration::from_millis(61));
        assert!(bucket.take(&RATE, later + due));
    }

    #[test]
    fn an_idle_connection_saves_up_only_its_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(RATE.burst, start);
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.take(&RATE, later)).count(), 3);
    }

    #[test]
    fn a_lower_rate_applies_to_the_next_message() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, start);
        let strict = MessageRate { burst: 1, ..RATE };
        assert!(bucket.take(&strict, start));
        assert!(!bucket.take(&strict, start));
    }
}
