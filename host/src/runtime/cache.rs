//! The on-disk cache of precompiled components, so a restart, or a swap back
//! to a version seen before, costs a deserialize instead of a compile.
//!
//! An entry is keyed by the component's content hash and by the engine's
//! compatibility hash (wasmtime version and every setting that affects
//! generated code), so it only ever loads into an engine that can run it.
//!
//! Precompiled code is native code, run as it is: an entry someone else
//! planted would run with the host's rights. So the folder must be this
//! user's and writable by no one else (it is created 0700; one owned by
//! another user, or group- or world-writable, turns the cache off with a
//! warning), and every entry carries an HMAC-SHA256, under a per-install
//! key kept 0600 in the folder, of the component's hash, the engine's and
//! the payload: an entry that was altered, truncated, or copied to another
//! component's name is detected, reported, deleted and rebuilt. Entries are
//! written to exclusively created temporary files, then renamed into place.
//!
//! An entry is two files: `<key>.cwasm`, exactly what wasmtime serialized,
//! and `<key>.mac`, its signature. A sound entry is mapped, not copied,
//! into memory: its code pages are the file's, shared with the page cache
//! and given back by the kernel when they go unused, so an idle app's code
//! costs no anonymous memory. A freshly compiled component is written and
//! then mapped the same way, so the compile's copy is freed at once. The
//! compiling itself is the [`Compiler`]'s (in the server, a child process).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::compiler::Compiler;
use crate::hex::hex;

/// Marks a signature written by this code, in this format.
const MAGIC: &[u8; 8] = b"T4WCMP03";

/// Length of a signature file: magic, then the entry's HMAC-SHA256.
const SIGNATURE: usize = MAGIC.len() + 32;

/// The file holding the per-install key, inside the cache folder.
const KEY_FILE: &str = "key";

/// Bytes of the per-install key.
const KEY_BYTES: usize = 32;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Compiled now (and stored, when the cache is on).
    Compiled,
    /// Deserialized from the cache.
    Cached,
    /// Already loaded for another app of the same content.
    Shared,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Compiled => "compiled",
            Self::Cached => "from cache",
            Self::Shared => "shared",
        })
    }
}

/// A compiled component and what it took.
pub(crate) struct Loaded {
    /// The component, ready to instantiate; holding it keeps it shared
    /// with later loads of the same content.
    pub(crate) component: Arc<Component>,
    /// Compiled now, or taken from the cache.
    pub(crate) origin: Origin,
    /// Compile or deserialize time.
    pub(crate) elapsed: Duration,
}

/// The cache of precompiled components (or no cache).
pub(crate) struct ComponentCache {
    /// The folder entries live in, and the key that signs them; `None`
    /// turns caching off.
    dir: Option<(PathBuf, [u8; KEY_BYTES])>,
    /// Hex digest of the engine's compatibility hash, part of every key.
    engine_key: String,
    /// Compiles what the cache does not hold.
    compiler: Compiler,
    /// The components loaded in this process, by content hash, while
    /// anything holds them: apps that ship the same component (one app
    /// served to many tenants under their own host names) share one copy
    /// of its code.
    loaded: Mutex<HashMap<String, Weak<Component>>>,
}

/// The SHA-256 of a component's bytes, in hex: its version id.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl ComponentCache {
    /// A cache in `dir` (created if missing), or none: also none, with a
    /// warning, if the folder is not safe to run code from.
    pub(crate) fn new(dir: Option<PathBuf>, engine: &Engine, compiler: Compiler) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        let dir = dir.and_then(|dir| match open_folder(&dir) {
            Ok(key) => Some((dir, key)),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), "compile cache disabled: {err:#}");
                None
            }
        });
        Self {
            dir,
            engine_key,
            compiler,
            loaded: Mutex::default(),
        }
    }

    /// The cache folder, if caching is on.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|(dir, _)| dir.as_path())
    }

    /// Where the entry for the component whose hash is `hash` lives, and
    /// what signs it.
    fn entry(&self, hash: &str) -> Option<Entry> {
        let (dir, key) = self.dir.as_ref()?;
        Some(Entry {
            path: dir.join(format!("{hash}-{}.cwasm", self.engine_key)),
            signature: dir.join(format!("{hash}-{}.mac", self.engine_key)),
            key: *key,
            context: format!("{hash}-{}", self.engine_key),
        })
    }

    /// The compiled form of `bytes` (whose content hash is `hash`): from the
    /// cache if a sound entry exists, else compiled and stored.
    pub(crate) fn load(&self, engine: &Engine, bytes: &[u8], hash: &str) -> anyhow::Result<Loaded> {
        let started = Instant::now();
        if let Some(component) = self.shared(hash) {
            return Ok(Loaded {
                component,
                origin: Origin::Shared,
                elapsed: started.elapsed(),
            });
        }
        let loaded = self.load_anew(engine, bytes, hash)?;
        let mut shared = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|_, held| held.strong_count() > 0);
        shared.insert(hash.to_string(), Arc::downgrade(&loaded.component));
        Ok(loaded)
    }

    /// The component of content `hash` if this process holds it already.
    fn shared(&self, hash: &str) -> Option<Arc<Component>> {
        let shared = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        shared.get(hash).and_then(Weak::upgrade)
    }

    /// [`load`](Self::load) from the cache or the compiler.
    fn load_anew(&self, engine: &Engine, bytes: &[u8], hash: &str) -> anyhow::Result<Loaded> {
        let started = Instant::now();
        if let Some(entry) = self.entry(hash) {
            match entry.read(engine) {
                Ok(Some(component)) => {
                    return Ok(Loaded {
                        component: Arc::new(component),
                        origin: Origin::Cached,
                        elapsed: started.elapsed(),
                    });
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(entry = %entry.path.display(), "discarding a bad compile cache entry, recompiling: {err:#}");
                    entry.remove();
                }
            }
        }
        let started = Instant::now();
        let compiled = self.compiler.compile(engine, bytes)?;
        let elapsed = started.elapsed();
        // Stored, then mapped from the file: the compiled copy is freed.
        let mapped = self.entry(hash).and_then(|entry| {
            entry
                .write(&compiled)
                .and_then(|()| entry.map(engine))
                .inspect_err(|err| {
                    tracing::warn!(entry = %entry.path.display(), "cannot write a compile cache entry: {err:#}");
                })
                .ok()
        });
        let component = match mapped {
            Some(component) => component,
            // SAFETY: `compiled` is what this host's compiler made for an
            // engine with this engine's settings, just now; wasmtime checks
            // the engine's compatibility again.
            None => unsafe { Component::deserialize(engine, &compiled) }
                .map_err(anyhow::Error::from)
                .context("wasmtime refused the component it compiled")?,
        };
        drop(compiled);
        // What the compile (or the copy of its output) freed goes back to
        // the system now, not whenever the allocator would get round to it.
        give_back_free_memory();
        Ok(Loaded {
            component: Arc::new(component),
            origin: Origin::Compiled,
            elapsed,
        })
    }
}

/// Creates `dir` (0700) if it is missing, checks that it is safe to run
/// code from, and returns the per-install key (made on first use).
fn open_folder(dir: &Path) -> anyhow::Result<[u8; KEY_BYTES]> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .context("cannot create its folder")?;
    let me = rustix::process::geteuid().as_raw();
    let folder = std::fs::symlink_metadata(dir).context("cannot read its folder")?;
    anyhow::ensure!(
        folder.is_dir(),
        "it is not a folder (a link is not followed)"
    );
    anyhow::ensure!(
        folder.uid() == me,
        "it belongs to another user (uid {})",
        folder.uid()
    );
    anyhow::ensure!(
        folder.mode() & 0o022 == 0,
        "others may write to it (mode {:o}); make it 0700",
        folder.mode() & 0o777
    );
    let path = dir.join(KEY_FILE);
    let mut key = [0u8; KEY_BYTES];
    if !path.exists() {
        // Written whole to a file of its own, then linked into place: a
        // server starting beside this one reads all of it or none.
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for its key: {e}"))?;
        let (fresh, mut file) = temporary_beside(&path).context("cannot create its key")?;
        let written = file.write_all(&key);
        let linked = written.and_then(|()| std::fs::hard_link(&fresh, &path));
        let _ = std::fs::remove_file(&fresh);
        match linked {
            Ok(()) => return Ok(key),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err).context("cannot write its key"),
        }
    }
    let meta = std::fs::symlink_metadata(&path).context("cannot read its key")?;
    anyhow::ensure!(
        meta.is_file() && meta.uid() == me && meta.mode() & 0o077 == 0,
        "its key file must be this user's, mode 0600"
    );
    let bytes = std::fs::read(&path).context("cannot read its key")?;
    key = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("its key file is damaged; delete it to make a new one"))?;
    Ok(key)
}

/// Returns the allocator's free memory to the system (glibc keeps what a
/// compile freed in its arenas otherwise).
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One entry: its files and what it is signed with.
struct Entry {
    /// The compiled component, as wasmtime serialized it.
    path: PathBuf,
    /// Its signature.
    signature: PathBuf,
    /// The per-install key.
    key: [u8; KEY_BYTES],
    /// The component's and the engine's hashes: what the entry must be for.
    context: String,
}

impl Entry {
    /// The HMAC of `payload` for this entry.
    fn tag(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(self.context.as_bytes());
        mac.update(b"\0");
        mac.update(payload);
        mac
    }

    /// Checks the entry and maps it; `Ok(None)` if there is none.
    fn read(&self, engine: &Engine) -> anyhow::Result<Option<Component>> {
        let signature = match std::fs::read(&self.signature) {
            Ok(signature) => signature,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).context("cannot read the entry's signature"),
        };
        let payload = match std::fs::read(&self.path) {
            Ok(payload) => payload,
            // Signed but not there: one being written, or half removed.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).context("cannot read the entry"),
        };
        anyhow::ensure!(
            signature.len() == SIGNATURE && signature.starts_with(MAGIC),
            "not a cache entry of this format"
        );
        self.tag(&payload)
            .verify_slice(&signature[MAGIC.len()..])
            .map_err(|_| {
                anyhow::anyhow!(
                    "its signature does not match (altered, truncated, or not this component's)"
                )
            })?;
        drop(payload);
        self.map(engine).map(Some)
    }

    /// Maps the entry's file as a component.
    fn map(&self, engine: &Engine) -> anyhow::Result<Component> {
        // SAFETY: the file is exactly what `Component::serialize` wrote for
        // this component and an engine with the same compatibility hash:
        // its HMAC under this install's key proves it, and only this user
        // can write the folder or read the key. Entries are only ever
        // replaced by a rename, never rewritten in place, so the mapped
        // file does not change under the running code. wasmtime checks
        // compatibility again while deserializing.
        unsafe { Component::deserialize_file(engine, &self.path) }
            .map_err(anyhow::Error::from)
            .context("wasmtime refused the precompiled component")
    }

    /// Removes both files.
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.signature);
        let _ = std::fs::remove_file(&self.path);
    }

    /// Writes the entry atomically: each file to an exclusively created
    /// temporary file, then renamed into place, the signature last, so a
    /// reader sees a whole entry or none, and nobody can have prepared
    /// either file beforehand.
    fn write(&self, payload: &[u8]) -> anyhow::Result<()> {
        let tag = self.tag(payload).finalize().into_bytes();
        write_new(&self.path, &[payload])?;
        write_new(&self.signature, &[MAGIC, &tag])
    }
}

/// A new file (0600) beside `path`, under a random name nobody can have
/// prepared: exclusively created, so a planted file or link is refused.
fn temporary_beside(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let temporary = path.with_extension(format!("tmp-{}", hex(&nonce)));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    Ok((temporary, file))
}

/// Writes `parts` to a fresh temporary file beside `path`, then renames it
/// to `path`.
fn write_new(path: &Path, parts: &[&[u8]]) -> anyhow::Result<()> {
    let (temporary, mut file) = temporary_beside(path).context("creating")?;
    let written = parts.iter().try_for_each(|part| file.write_all(part));
    if let Err(err) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(err).context("writing");
    }
    Ok(())
}
