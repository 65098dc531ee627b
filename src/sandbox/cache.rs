//! The compiled-module cache: each module compiles once per machine.
//!
//! Compiled code is cached in memory (per [`super::Sandbox`]) and on disk
//! under `<cache dir>/<engine fingerprint>/<module sha256>.cwasm`, with a
//! sidecar `.sha256` holding the digest of the compiled bytes. An entry
//! whose bytes do not match its sidecar, or whose sidecar is missing, is
//! treated as absent and rewritten; entries are written to a temporary file
//! and renamed into place, so a reader never sees half an entry.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wasmtime::{Engine, Module};

use crate::digest::Digest;

/// Where compiled modules are kept when the caller names no directory:
/// `$CANON_CACHE_DIR`, else `$XDG_CACHE_HOME/canon`, else `$HOME/.cache/canon`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CANON_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("canon"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("canon"))
}

/// How a module was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheHit {
    /// Already compiled in this process.
    Memory,
    /// Loaded from the disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

/// Compiled modules, in memory and on disk.
pub struct ModuleCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<Digest, Module>>,
}

impl ModuleCache {
    /// A cache that keeps entries under `dir/<fingerprint>/`, or in memory
    /// only when `dir` is `None`.
    pub fn new(dir: Option<PathBuf>, fingerprint: &str) -> ModuleCache {
        ModuleCache { dir: dir.map(|d| d.join(fingerprint)), memory: Mutex::new(HashMap::new()) }
    }

    /// The directory entries go to, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The compiled module for `bytes` (whose SHA-256 is `sha`). On a miss,
    /// `instrument` rewrites the bytes before they compile; the entry is
    /// still named by `sha`, the digest of the original bytes (the engine
    /// fingerprint names the instrumentation's version).
    pub fn get(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha: &Digest,
        instrument: impl FnOnce(&[u8]) -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<(Module, CacheHit)> {
        if let Some(m) = self.memory.lock().map_err(|_| wasmtime::Error::msg("module cache lock poisoned"))?.get(sha) {
            return Ok((m.clone(), CacheHit::Memory));
        }
        let (module, hit) = match self.load_disk(engine, sha) {
            Some(m) => (m, CacheHit::Disk),
            None => {
                let m = Module::new(engine, instrument(bytes)?)?;
                // A cache that cannot be written only costs time.
                let _ = self.store_disk(&m, sha);
                (m, CacheHit::Compiled)
            }
        };
        if let Ok(mut map) = self.memory.lock() {
            map.insert(*sha, module.clone());
        }
        Ok((module, hit))
    }

    fn paths(&self, sha: &Digest) -> Option<(PathBuf, PathBuf)> {
        let dir = self.dir.as_ref()?;
        Some((dir.join(format!("{sha}.cwasm")), dir.join(format!("{sha}.cwasm.sha256"))))
    }

    fn load_disk(&self, engine: &Engine, sha: &Digest) -> Option<Module> {
        let (entry, sidecar) = self.paths(sha)?;
        let want: Digest = fs::read_to_string(&sidecar).ok()?.trim().parse().ok()?;
        let bytes = fs::read(&entry).ok()?;
        if Digest::of(&bytes) != want {
            return None;
        }
        // SAFETY: `Module::deserialize` requires bytes produced by
        // `Module::serialize` of a compatible engine. These bytes were
        // written by `store_disk` below under this engine's fingerprint (which
        // covers wasmtime's version and configuration), and we just checked
        // they are unchanged since: their SHA-256 equals the sidecar written
        // with them. wasmtime itself re-checks the header for compatibility.
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize(engine, &bytes) };
        module.ok()
    }

    fn store_disk(&self, module: &Module, sha: &Digest) -> std::io::Result<()> {
        let Some((entry, sidecar)) = self.paths(sha) else { return Ok(()) };
        let dir = entry.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let bytes = module.serialize().map_err(|e| std::io::Error::other(e.to_string()))?;
        write_atomic(dir, &entry, &bytes)?;
        write_atomic(dir, &sidecar, Digest::of(&bytes).to_string().as_bytes())
    }
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
