//! A call that, once started, runs to its end even if its caller stops
//! waiting for it.
//!
//! An event that runs at once on the task that read it is polled by that
//! task: a client that leaves mid-request, an HTTP deadline that passes or a
//! connection evicted mid-event drops the future. Dropping a guest call
//! half-way would leave its store inside a call, as good as poisoned, so
//! the rest of the call is handed to the runtime instead, and the app's
//! state stays whole.

use std::pin::Pin;
use std::task::{Context, Poll};

/// A boxed call that finishes on its own task if it is dropped unfinished.
pub(crate) struct RunToEnd<T: Send + 'static> {
    /// The call, until it has finished.
    call: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
}

impl<T: Send + 'static> RunToEnd<T> {
    /// Wraps `call`; nothing runs until it is polled.
    pub(crate) fn new(call: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            call: Some(Box::pin(call)),
        }
    }
}

impl<T: Send + 'static> Future for RunToEnd<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let Some(call) = this.call.as_mut() else {
            panic!("RunToEnd polled after it finished");
        };
        let done = call.as_mut().poll(cx);
        if done.is_ready() {
            this.call = None;
        }
        done
    }
}

impl<T: Send + 'static> Drop for RunToEnd<T> {
    fn drop(&mut self) {
        // Outside a runtime (it is shutting down) there is nothing left to
        // finish the call for.
        if let Some(call) = self.call.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn a_call_dropped_midway_still_runs_to_its_end() {
        let (go, gate) = oneshot::channel::<()>();
        let (finished, ended) = oneshot::channel();
        let mut call = RunToEnd::new(async move {
            let _ = gate.await;
            let _ = finished.send(());
        });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut call).poll(&mut cx).is_pending());
        drop(call);
        go.send(()).unwrap();
        ended
            .await
            .expect("the rest of the call ran on its own task");
    }

    #[tokio::test]
    async fn an_awaited_call_gives_its_result_and_is_not_run_again() {
        let ran = Arc::new(AtomicBool::new(false));
        let seen = ran.clone();
        let answer = RunToEnd::new(async move {
            assert!(!seen.swap(true, Ordering::SeqCst), "ran twice");
            42
        })
        .await;
        assert_eq!(answer, 42);
        assert!(ran.load(Ordering::SeqCst));
    }
}
