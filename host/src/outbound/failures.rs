//! An instance's most recent failed requests, so that a guest library
//! whose error keeps no reason (JavaScript's `fetch`) can ask why.
//!
//! Bounded in entries and in bytes; the instance's own, gone with it.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Failures kept per instance.
const KEPT: usize = 16;
/// Longest URL kept (longer ones are not kept at all: no lookup could
/// match them after a cut).
const MAX_URL_BYTES: usize = 2048;

/// One failed request.
#[derive(Debug, Clone)]
struct Failure {
    /// Its method, upper case.
    method: String,
    /// Its absolute URL, as the host received it.
    url: String,
    /// The kind: `denied`, `timeout`, ...
    kind: &'static str,
    /// The reason, in words.
    reason: String,
}

/// The last [`KEPT`] failures, newest last.
#[derive(Debug, Default)]
pub(crate) struct RecentFailures(Mutex<VecDeque<Failure>>);

impl RecentFailures {
    /// Keeps a failure, forgetting the oldest past the bound.
    pub(crate) fn record(&self, method: &str, url: &str, kind: &'static str, reason: String) {
        if url.len() > MAX_URL_BYTES {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(Failure {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            kind,
            reason,
        });
    }

    /// The kind and reason of the newest failure of `method url`.
    pub(crate) fn why(&self, method: &str, url: &str) -> Option<(String, String)> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter()
            .rev()
            .find(|f| f.url == url && f.method.eq_ignore_ascii_case(method))
            .map(|f| (f.kind.to_string(), f.reason.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_failure_of_a_request_is_found_and_old_ones_are_forgotten() {
        let recent = RecentFailures::default();
        recent.record("get", "http://a.test/", "timeout", "timed out".into());
        recent.record("GET", "http://a.test/", "denied", "not listed".into());
        assert_eq!(
            recent.why("GET", "http://a.test/"),
            Some(("denied".into(), "not listed".into()))
        );
        assert_eq!(recent.why("POST", "http://a.test/"), None);
        for i in 0..KEPT {
            recent.record(
                "GET",
                &format!("http://b.test/{i}"),
                "failed",
                String::new(),
            );
        }
        assert_eq!(recent.why("GET", "http://a.test/"), None, "pushed out");
        assert!(recent.why("GET", "http://b.test/0").is_some());
        recent.record(
            "GET",
            &format!("http://c.test/{}", "x".repeat(MAX_URL_BYTES)),
            "failed",
            String::new(),
        );
        assert!(
            recent.why("GET", "http://b.test/0").is_some(),
            "a long URL is not kept"
        );
    }
}
