//! The publisher: one connection to Redis that drains the bounded queue,
//! one pipeline per batch. While it is down, new messages are dropped and
//! counted at once, and what was queued is dropped too: nothing waits for
//! Redis to come back.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::RedisError;
use tokio::sync::mpsc;

use super::envelope::Envelope;
use super::transport::{Publisher, RESPONSE_TIMEOUT, Transport};
use super::{BATCH, Backoff, Publication, RedisLink, Target, streams};
use crate::delivery::Room;
use crate::telemetry;

impl RedisLink {
    /// The publisher task: connect, publish batches until an error, drop
    /// what is queued, reconnect.
    pub(super) async fn publish(
        self: Arc<Self>,
        transport: Arc<Transport>,
        mut queue: mpsc::Receiver<Publication>,
    ) {
        let mut backoff = Backoff::default();
        loop {
            let mut connection = match transport.publisher().await {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::debug!(url = %self.shown_url, "backplane publisher: {err:#}");
                    tokio::time::sleep(backoff.next_pause()).await;
                    continue;
                }
            };
            if let Err(err) = connection.load(&[&streams::KEEP, &streams::TAIL]).await {
                tracing::debug!(url = %self.shown_url, "backplane publisher: {err:#}");
                tokio::time::sleep(backoff.next_pause()).await;
                continue;
            }
            backoff = Backoff::default();
            *self.lock_reader() = Some(connection.clone());
            self.publishing.store(true, Ordering::Release);
            self.announce();
            let err = self.publish_until_error(&mut connection, &mut queue).await;
            self.publishing.store(false, Ordering::Release);
            *self.lock_reader() = None;
            let mut stranded = 0;
            while let Ok(publication) = queue.try_recv() {
                stranded += 1;
                self.deliver_here(&publication);
            }
            if stranded > 0 {
                self.dropped("unreachable", stranded);
            }
            tracing::debug!(url = %self.shown_url, "backplane publisher lost Redis: {err}");
        }
    }

    async fn publish_until_error(
        &self,
        connection: &mut Publisher,
        queue: &mut mpsc::Receiver<Publication>,
    ) -> RedisError {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if queue.recv_many(&mut batch, BATCH).await == 0 {
                return RedisError::from(std::io::Error::other("the link was dropped"));
            }
            let commands = batch.iter().map(|p| p.target.command());
            let sent = tokio::time::timeout(RESPONSE_TIMEOUT, connection.run_batch(commands))
                .await
                .unwrap_or_else(|_| {
                    Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "Redis did not answer in time",
                    )))
                });
            let n = batch.len() as u64;
            match sent {
                Ok(()) => {
                    metrics::counter!(telemetry::BACKPLANE_PUBLISHED).increment(n);
                    for publication in batch.drain(..) {
                        if let Some(sent) = publication.sent {
                            let _ = sent.send(());
                        }
                    }
                    self.report_drops();
                }
                Err(err) => {
                    self.dropped("unreachable", n);
                    for publication in &batch {
                        self.deliver_here(publication);
                    }
                    return err;
                }
            }
        }
    }

    /// A broadcast Redis was to number and hand back did not get there:
    /// this instance's own members get it anyway, numbered here.
    fn deliver_here(&self, publication: &Publication) {
        let Target::History { args, .. } = &publication.target else {
            return;
        };
        let sealed = &args[streams::ENVELOPE_ARG];
        if let Ok(Envelope::Broadcast {
            room,
            exclude,
            payload,
            ..
        }) = self.seal.open(sealed)
            && let Some(room) = Room::parse(room)
        {
            self.registry.broadcast(&room, &payload.to_frame(), exclude);
        }
    }

    pub(super) fn lock_reader(&self) -> std::sync::MutexGuard<'_, Option<Publisher>> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs how many messages were dropped since the last report, if any.
    fn report_drops(&self) {
        let dropped = self.unreported_drops.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "backplane: {dropped} cross-instance messages were dropped (see tina4_backplane_dropped_total)"
            );
        }
    }
}
