//! The compiled-module cache: each module compiles once per machine.
//!
//! Compiled code is cached in memory (per [`super::Sandbox`]) and on disk
//! under `<cache dir>/<engine fingerprint>/<module sha256>.cwasm`, with a
//! sidecar `.cwasm.stamp`. Entries are written to a temporary file and
//! renamed into place, so a reader never sees half an entry.
//!
//! # Loading large modules fast, and safely
//!
//! A warm load maps the entry ([`Module::deserialize_file`]) instead of
//! reading it, so a 100 MB compiled module loads in about the time of an
//! `mmap`. What must not happen is that a damaged entry crashes canon or
//! changes an outcome. The threat is not an adversary — the cache directory
//! is the node's own (created 0700), and whoever can write it can also
//! replace canon — but accidents: a crash mid-write, a truncated or
//! half-copied file, an entry edited or replaced by hand or by another tool.
//! So:
//!
//! - when an entry is written, the sidecar records the SHA-256 of the
//!   compiled bytes *and* a stamp of the file as written: length, device,
//!   inode, modification and status-change times (nanoseconds);
//! - on load, the entry is `stat`ed; if the stamp matches, the file is the
//!   one canon wrote and no one has written to, truncated, replaced or
//!   renamed it since (every such change moves the inode or the status-change
//!   time, which user programs cannot set back), and it is mapped without
//!   reading it; wasmtime then checks its header: the engine and
//!   configuration it was compiled for;
//! - if the stamp does not match (the cache was copied or restored from a
//!   backup), the whole entry is hashed once against the recorded SHA-256;
//!   if it matches, the stamp is renewed, otherwise the entry is rebuilt.
//!
//! Hashing a 100 MB entry with SHA-256 on every load would cost far more
//! than the load itself (`docs/CACHE.md` says how to measure it); the stamp check costs one
//! `stat`. What it cannot see is media corruption that changes bytes
//! without touching the inode: that is the file system's to detect, as for
//! the canon binary itself.

use std::collections::HashMap;
use std::fs;
use std::io::{Read as _, Write as _};
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

    /// Whether `sha` is compiled in memory or has a disk entry (not checked
    /// here: a damaged entry is found, and rebuilt, when loaded).
    pub fn contains(&self, sha: &Digest) -> bool {
        self.memory.lock().is_ok_and(|m| m.contains_key(sha)) || self.paths(sha).is_some_and(|(entry, sidecar)| entry.is_file() && sidecar.is_file())
    }

    /// The compiled module for `bytes` (whose SHA-256 is `sha`). On a miss,
    /// `instrument` turns `bytes` into what is compiled and cached; entries
    /// stay keyed by the original module's digest (the fingerprint names the
    /// instrumentation version).
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
                let m = Module::new(engine, &instrument(bytes)?)?;
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
        Some((dir.join(format!("{sha}.cwasm")), dir.join(format!("{sha}.cwasm.stamp"))))
    }

    /// The disk entry for `sha`, if it is intact (see the module docs). The
    /// entry is opened once: the stamp is taken from, the bytes (if needed)
    /// hashed from, and the mapping made of that one open file.
    fn load_disk(&self, engine: &Engine, sha: &Digest) -> Option<Module> {
        let (entry, sidecar) = self.paths(sha)?;
        let recorded = Sidecar::parse(&fs::read_to_string(&sidecar).ok()?)?;
        let mut file = fs::File::open(&entry).ok()?;
        let now = Stamp::of(&file.metadata().ok()?);
        if now != recorded.stamp {
            // Not the file as written: check every byte once, then renew.
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).ok()?;
            if Digest::of(&bytes) != recorded.sha256 {
                return None;
            }
            let renewed = Sidecar { sha256: recorded.sha256, stamp: now };
            let _ = write_atomic(entry.parent()?, &sidecar, renewed.render().as_bytes());
        }
        // SAFETY: `Module::deserialize_open_file` requires a file produced by
        // `Module::serialize` of a compatible engine, not modified while it
        // is mapped. This file was written by `store_disk` below under this
        // engine's fingerprint (which covers wasmtime's version and
        // configuration), and the open file is unchanged since: its stamp
        // (length, inode, mtime, ctime), taken from this same handle, is the
        // one recorded when it was written or when its SHA-256 was last
        // checked against the one recorded then. canon never writes to an
        // entry in place (a new entry is a new inode renamed over the old,
        // and a mapping keeps the old inode), so it cannot change under the
        // mapping except by another program writing into the node's cache
        // directory, which canon creates 0700. wasmtime itself re-checks the
        // header for engine compatibility.
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize_open_file(engine, file) };
        module.ok()
    }

    fn store_disk(&self, module: &Module, sha: &Digest) -> std::io::Result<()> {
        let Some((entry, sidecar)) = self.paths(sha) else { return Ok(()) };
        let dir = entry.parent().unwrap_or(Path::new("."));
        // Private to the node: the SAFETY argument of `load_disk` relies on
        // no one else writing here.
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        let bytes = module.serialize().map_err(|e| std::io::Error::other(e.to_string()))?;
        write_atomic(dir, &entry, &bytes)?;
        let stamp = Stamp::of(&fs::metadata(&entry)?);
        write_atomic(dir, &sidecar, Sidecar { sha256: Digest::of(&bytes), stamp }.render().as_bytes())
    }
}

/// What canon records about a cache entry when it writes it.
#[derive(Debug, PartialEq, Eq)]
struct Sidecar {
    /// SHA-256 of the compiled bytes.
    sha256: Digest,
    /// The file as written.
    stamp: Stamp,
}

const SIDECAR_TAG: &str = "canon-module-cache-v2";

impl Sidecar {
    /// `canon-module-cache-v2\n<sha256 hex>\n<len> <dev> <ino> <mtime ns> <ctime ns>\n`.
    fn render(&self) -> String {
        let s = &self.stamp;
        format!("{SIDECAR_TAG}\n{}\n{} {} {} {} {}\n", self.sha256, s.len, s.dev, s.ino, s.mtime_ns, s.ctime_ns)
    }

    fn parse(text: &str) -> Option<Sidecar> {
        let mut lines = text.lines();
        if lines.next()? != SIDECAR_TAG {
            return None;
        }
        let sha256 = lines.next()?.parse().ok()?;
        let n: Vec<i128> = lines.next()?.split(' ').map(|x| x.parse().ok()).collect::<Option<_>>()?;
        let [len, dev, ino, mtime_ns, ctime_ns] = n[..] else { return None };
        Some(Sidecar { sha256, stamp: Stamp { len, dev, ino, mtime_ns, ctime_ns } })
    }
}

/// Identifies a file's content without reading it: any write, truncation,
/// replacement or rename changes one of these. On systems without inode
/// numbers and status-change times, only the length and modification time.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stamp {
    len: i128,
    dev: i128,
    ino: i128,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
            Stamp {
                len: i128::from(m.len()),
                dev: i128::from(m.dev()),
                ino: i128::from(m.ino()),
                mtime_ns: ns(m.mtime(), m.mtime_nsec()),
                ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let mtime_ns = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(-1, |d| d.as_nanos() as i128);
            Stamp { len: i128::from(m.len()), dev: 0, ino: 0, mtime_ns, ctime_ns: 0 }
        }
    }
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
