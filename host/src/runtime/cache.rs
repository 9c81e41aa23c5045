//! The on-disk cache of precompiled components, so a restart, or a swap back
//! to a version seen before, costs a deserialize instead of a compile.
//!
//! An entry is keyed by the component's content hash and by the engine's
//! compatibility hash (wasmtime version and every setting that affects
//! generated code), so it only ever loads into an engine that can run it.
//! Each entry carries a checksum of its payload; a corrupt, truncated or
//! mismatched entry is detected, reported, deleted and rebuilt.
//!
//! The cache folder must be trusted: precompiled code is native code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Marks an entry written by this code, in this format.
const MAGIC: &[u8; 8] = b"T4WCMP01";

/// Length of the header: magic, then the SHA-256 of the payload.
const HEADER: usize = MAGIC.len() + 32;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now (and stored, when the cache is on).
    Compiled,
    /// Deserialized from the cache.
    Cached,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Compiled => "compiled",
            Self::Cached => "from cache",
        })
    }
}

/// A compiled component and what it took.
pub struct Loaded {
    /// The component, ready to instantiate.
    pub component: Component,
    /// Compiled now, or taken from the cache.
    pub origin: Origin,
    /// Compile or deserialize time.
    pub elapsed: Duration,
}

/// The cache of precompiled components (or no cache).
pub struct ComponentCache {
    /// The folder entries live in; `None` turns caching off.
    dir: Option<PathBuf>,
    /// Hex digest of the engine's compatibility hash, part of every key.
    engine_key: String,
    /// Entries being written in the background, joined before exit.
    writing: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a component's bytes, in hex: its version id.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl ComponentCache {
    /// A cache in `dir` (created if missing), or none.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        let dir = dir.and_then(|dir| match std::fs::create_dir_all(&dir) {
            Ok(()) => Some(dir),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), "compile cache disabled: cannot create its folder: {err}");
                None
            }
        });
        Self {
            dir,
            engine_key,
            writing: Default::default(),
        }
    }

    /// Waits for entries still being written (at shutdown).
    pub fn finish_writes(&self) {
        let writing = std::mem::take(&mut *self.writing.lock().unwrap_or_else(|e| e.into_inner()));
        for write in writing {
            let _ = write.join();
        }
    }

    /// The cache folder, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry_path(&self, hash: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{hash}-{}.cwasm", self.engine_key)))
    }

    /// The compiled form of `bytes` (whose content hash is `hash`): from the
    /// cache if a sound entry exists, else compiled and stored.
    pub fn load(&self, engine: &Engine, bytes: &[u8], hash: &str) -> anyhow::Result<Loaded> {
        let started = Instant::now();
        if let Some(entry) = self.entry_path(hash) {
            match read_entry(engine, &entry) {
                Ok(Some(component)) => {
                    return Ok(Loaded {
                        component,
                        origin: Origin::Cached,
                        elapsed: started.elapsed(),
                    });
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(entry = %entry.display(), "discarding a bad compile cache entry, recompiling: {err:#}");
                    let _ = std::fs::remove_file(&entry);
                }
            }
        }
        let started = Instant::now();
        let component = Component::new(engine, bytes)
            .map_err(anyhow::Error::from)
            .context("not a valid WebAssembly component")?;
        let elapsed = started.elapsed();
        if let Some(entry) = self.entry_path(hash) {
            // Off the critical path: the new version need not wait for it.
            let component = component.clone();
            let write = std::thread::spawn(move || {
                if let Err(err) = write_entry(&component, &entry) {
                    tracing::warn!(entry = %entry.display(), "cannot write a compile cache entry: {err:#}");
                }
            });
            let mut writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            writing.retain(|w| !w.is_finished());
            writing.push(write);
        }
        Ok(Loaded {
            component,
            origin: Origin::Compiled,
            elapsed,
        })
    }
}

/// Reads and checks an entry; `Ok(None)` if there is none.
fn read_entry(engine: &Engine, entry: &Path) -> anyhow::Result<Option<Component>> {
    let data = match std::fs::read(entry) {
        Ok(data) => data,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).context("cannot read the entry"),
    };
    anyhow::ensure!(
        data.len() > HEADER && data.starts_with(MAGIC),
        "not a cache entry of this format"
    );
    let (header, payload) = data.split_at(HEADER);
    anyhow::ensure!(
        Sha256::digest(payload).as_slice() == &header[MAGIC.len()..],
        "checksum mismatch (corrupt or truncated)"
    );
    // SAFETY: the payload is exactly what `Component::serialize` wrote for an
    // engine with the same compatibility hash (the key says so and the
    // checksum proves it unchanged), in a folder the operator trusts;
    // wasmtime checks compatibility again while deserializing.
    let component = unsafe { Component::deserialize(engine, payload) }
        .map_err(anyhow::Error::from)
        .context("wasmtime refused the precompiled component")?;
    Ok(Some(component))
}

/// Writes an entry atomically (temporary file, then rename), so a reader
/// never sees half of one.
fn write_entry(component: &Component, entry: &Path) -> anyhow::Result<()> {
    let payload = component
        .serialize()
        .map_err(anyhow::Error::from)
        .context("serializing")?;
    let mut data = Vec::with_capacity(HEADER + payload.len());
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&Sha256::digest(&payload));
    data.extend_from_slice(&payload);
    let temporary = entry.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, &data).context("writing")?;
    std::fs::rename(&temporary, entry).context("renaming into place")?;
    Ok(())
}

/// The default cache folder: `$XDG_CACHE_HOME/tina4-wasm/components`, or
/// `~/.cache/tina4-wasm/components`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tina4-wasm").join("components"))
}
