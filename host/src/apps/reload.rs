//! Hot reload: watch the apps folder and bring each changed component file's
//! app up to date, without a restart and without dropping a connection.
//!
//! The folder is watched, not the files: a watch on a file dies after one
//! atomic rename. A file is acted on only once it is complete:
//! - after the writer closes it (`cp` over a file, or a fresh write),
//! - after it is renamed or moved into place (write-then-rename, `mv`),
//!
//! each followed by a short debounce that merges bursts of events. A file
//! that is modified but never closed (an unusual writer) is acted on after
//! [`WRITE_QUIET`] without events. A deletion waits [`REMOVE_GRACE`], so a
//! delete-then-recreate (some editors, some build tools) is a swap, not an
//! unload followed by a load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::app_files::AppFiles;
use crate::apps::AppManager;

/// Debounce after a close-after-write or a rename into place.
const SETTLED: Duration = Duration::from_millis(2);
/// Wait after a deletion before unloading.
const REMOVE_GRACE: Duration = Duration::from_millis(250);
/// Fallback for writes that are never seen closing.
const WRITE_QUIET: Duration = Duration::from_secs(2);
/// Filesystem events buffered between the watcher thread and the reloader.
const EVENT_QUEUE: usize = 1024;

/// Starts watching `dir`. Events that arrive before [`run`] is called are
/// kept, so nothing is missed between the initial scan and the watch loop.
pub(crate) fn watch(dir: &Path) -> anyhow::Result<FolderWatch> {
    let (tx, events) = mpsc::channel(EVENT_QUEUE);
    let mut watcher = notify::recommended_watcher(move |event| {
        // The reloader only stops with the process; a full queue means a
        // storm of events, and the reloader rescans files by name anyway.
        let _ = tx.blocking_send(event);
    })
    .context("cannot start the file watcher")?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(FolderWatch { watcher, events })
}

/// A watch on the apps folder and its queue of events.
pub(crate) struct FolderWatch {
    /// Kept alive for as long as the watch should last.
    watcher: notify::RecommendedWatcher,
    /// Events from the watcher thread.
    events: mpsc::Receiver<notify::Result<notify::Event>>,
}

impl FolderWatch {
    /// Applies changes to `manager` until the process ends.
    pub(crate) async fn run(mut self, mut manager: AppManager) {
        let _watcher = self.watcher;
        let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
        loop {
            let next = pending.values().min().copied();
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(Ok(event)) => note(&mut pending, &event),
                    Some(Err(err)) => tracing::warn!("file watcher: {err}"),
                    None => return,
                },
                () = sleep_until(next) => {
                    let now = Instant::now();
                    let mut due: Vec<PathBuf> = pending
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(path, _)| path.clone())
                        .collect();
                    due.sort();
                    for path in due {
                        pending.remove(&path);
                        manager.update(&path).await;
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Records when each path touched by `event` should be looked at.
fn note(pending: &mut HashMap<PathBuf, Instant>, event: &notify::Event) {
    let now = Instant::now();
    let delay = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => SETTLED,
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => SETTLED,
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => REMOVE_GRACE,
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
            WRITE_QUIET
        }
        _ => return,
    };
    // For a rename seen as one event, `paths` is [from, to]: the old name
    // is gone, the new one is complete.
    let paths: Vec<(&PathBuf, Duration)> = match event.kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if event.paths.len() == 2 => {
            vec![(&event.paths[0], REMOVE_GRACE), (&event.paths[1], SETTLED)]
        }
        _ => event.paths.iter().map(|p| (p, delay)).collect(),
    };
    for (path, delay) in paths {
        // An app's settings file is part of its version: reload the app.
        if let Some(path) = AppFiles::component_of(path) {
            // The latest event decides: a close after writes shortens the
            // wait, writes after a close lengthen it again.
            pending.insert(path, now + delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut event = notify::Event::new(kind);
        for p in paths {
            event = event.add_path(PathBuf::from(p));
        }
        event
    }

    #[test]
    fn a_copy_waits_for_the_close_and_then_settles_quickly() {
        let mut pending = HashMap::new();
        let start = Instant::now();
        note(
            &mut pending,
            &event(EventKind::Create(CreateKind::File), &["/a/chat.wasm"]),
        );
        note(
            &mut pending,
            &event(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                &["/a/chat.wasm"],
            ),
        );
        assert!(pending[Path::new("/a/chat.wasm")] >= start + WRITE_QUIET);
        note(
            &mut pending,
            &event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/a/chat.wasm"],
            ),
        );
        assert!(pending[Path::new("/a/chat.wasm")] < start + REMOVE_GRACE);
    }

    #[test]
    fn renames_settle_the_destination_and_retire_the_source() {
        let mut pending = HashMap::new();
        let start = Instant::now();
        note(
            &mut pending,
            &event(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &["/a/old.wasm", "/a/new.wasm"],
            ),
        );
        assert!(pending[Path::new("/a/new.wasm")] < start + REMOVE_GRACE);
        assert!(pending[Path::new("/a/old.wasm")] >= start + REMOVE_GRACE);
    }

    #[test]
    fn only_visible_wasm_files_count() {
        let mut pending = HashMap::new();
        for path in ["/a/chat.wasm.tmp", "/a/.chat.wasm", "/a/notes.txt"] {
            note(
                &mut pending,
                &event(EventKind::Remove(RemoveKind::File), &[path]),
            );
        }
        assert!(pending.is_empty());
    }
}
