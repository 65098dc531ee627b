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
//!
//! # Who may write the cache
//!
//! Whoever can write an entry and its sidecar can make canon map and run
//! native code of their choosing, so the cache must be as private as an SSH
//! key. Before anything is loaded from or stored to disk, canon walks from
//! the entries' directory (`<cache dir>/<fingerprint>`, or the deepest part
//! of it that exists yet) up to `/`, every symbolic link resolved first, as
//! OpenSSH's `StrictModes` walks a key's directories, and refuses
//! ([`CacheError::Unsafe`], naming the directory) unless every directory is
//! owned by the current (effective) user or by root and is writable by
//! neither its group nor others. One exception, for directories *above*
//! the cache directory only: a group- or world-writable directory with the
//! sticky bit, owned by root or the user, like `/tmp`, is accepted, because
//! the sticky bit keeps others from removing or renaming what the user owns
//! in it, and everything below it is checked in turn. (OpenSSH, whose walk
//! stops at the home directory, would refuse a key under `/tmp`; a cache
//! under `/tmp` is common and, with these checks, safe.) The cache
//! directory and the fingerprint directory themselves are never accepted
//! group- or world-writable, sticky or not, and an entry file must be owned
//! by the user or root and writable by no one else. Directories canon
//! creates are created 0700. On platforms without Unix ownership and modes
//! these checks are skipped.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read as _, Write as _};
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

/// Why a module could not be had from the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A directory on the way to the entries, or an entry, could be written
    /// by someone other than the user and root (see the module docs).
    #[error(
        "{path}: {problem}; canon maps compiled native code from its module cache, so the cache directory, every directory above it and every entry must be owned by you or root and writable by no one else (a directory above the cache, like /tmp, may be world-writable only with the sticky bit): fix the permissions, or set CANON_CACHE_DIR to a private directory"
    )]
    Unsafe {
        /// The directory or file at fault.
        path: PathBuf,
        /// What is wrong with it, e.g. `writable by its group (mode 0775)`.
        problem: String,
    },
    /// The cache's directories could not be inspected.
    #[error("{path}: cannot check the module cache directory: {source}")]
    Check {
        /// The path that could not be inspected.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Instrumenting or compiling the module failed.
    #[error("{0:#}")]
    Compile(wasmtime::Error),
}

/// Compiled modules, in memory and on disk.
pub struct ModuleCache {
    /// The cache directory as configured, and the entries' directory below
    /// it (`<cache dir>/<fingerprint>`).
    dirs: Option<(PathBuf, PathBuf)>,
    memory: Mutex<HashMap<Digest, Module>>,
}

impl ModuleCache {
    /// A cache that keeps entries under `dir/<fingerprint>/`, or in memory
    /// only when `dir` is `None`.
    pub fn new(dir: Option<PathBuf>, fingerprint: &str) -> ModuleCache {
        let dirs = dir.map(|root| {
            let entries = root.join(fingerprint);
            (root, entries)
        });
        ModuleCache { dirs, memory: Mutex::new(HashMap::new()) }
    }

    /// The directory entries go to, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dirs.as_ref().map(|(_, entries)| entries.as_path())
    }

    /// Whether `sha` is compiled in memory or has a disk entry (not checked
    /// here: a damaged entry is found, and rebuilt, when loaded).
    pub fn contains(&self, sha: &Digest) -> bool {
        self.memory.lock().is_ok_and(|m| m.contains_key(sha)) || self.paths(sha).is_some_and(|(entry, sidecar)| entry.is_file() && sidecar.is_file())
    }

    /// The compiled module for `bytes` (whose SHA-256 is `sha`). On a miss,
    /// `instrument` turns `bytes` into what is compiled and cached; entries
    /// stay keyed by the original module's digest (the fingerprint names the
    /// instrumentation version). Before the disk is touched, the cache's
    /// directories are checked (see the module docs): an unsafe cache is
    /// [`CacheError::Unsafe`], never silently used or bypassed.
    pub fn get(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha: &Digest,
        instrument: impl FnOnce(&[u8]) -> wasmtime::Result<Vec<u8>>,
    ) -> Result<(Module, CacheHit), CacheError> {
        let poisoned = || CacheError::Compile(wasmtime::Error::msg("module cache lock poisoned"));
        if let Some(m) = self.memory.lock().map_err(|_| poisoned())?.get(sha) {
            return Ok((m.clone(), CacheHit::Memory));
        }
        if let Some((root, entries)) = &self.dirs {
            check_private(root, entries)?;
        }
        let (module, hit) = match self.load_disk(engine, sha)? {
            Some(m) => (m, CacheHit::Disk),
            None => {
                let m = Module::new(engine, &instrument(bytes).map_err(CacheError::Compile)?).map_err(CacheError::Compile)?;
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
        let (_, dir) = self.dirs.as_ref()?;
        Some((dir.join(format!("{sha}.cwasm")), dir.join(format!("{sha}.cwasm.stamp"))))
    }

    /// The disk entry for `sha`, if it is intact (see the module docs);
    /// `Ok(None)` for a missing or damaged one, which is rebuilt. The entry
    /// is opened once: its owner and mode are checked on, the stamp taken
    /// from, the bytes (if needed) hashed from, and the mapping made of that
    /// one open file. The caller has checked the directories.
    fn load_disk(&self, engine: &Engine, sha: &Digest) -> Result<Option<Module>, CacheError> {
        let Some((entry, sidecar)) = self.paths(sha) else { return Ok(None) };
        let Some(recorded) = fs::read_to_string(&sidecar).ok().and_then(|text| Sidecar::parse(&text)) else { return Ok(None) };
        let Ok(mut file) = fs::File::open(&entry) else { return Ok(None) };
        let Ok(meta) = file.metadata() else { return Ok(None) };
        check_entry(&entry, &meta)?;
        let now = Stamp::of(&meta);
        if now != recorded.stamp {
            // Not the file as written: check every byte once, then renew.
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_err() || Digest::of(&bytes) != recorded.sha256 {
                return Ok(None);
            }
            let renewed = Sidecar { sha256: recorded.sha256, stamp: now };
            if let Some(dir) = entry.parent() {
                let _ = write_atomic(dir, &sidecar, renewed.render().as_bytes());
            }
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
        // mapping except by a program of this user or root: `get` checked
        // that no one else can write the cache directory or any directory
        // above it, and `check_entry` that no one else can write this file.
        // wasmtime itself re-checks the header for engine compatibility.
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize_open_file(engine, file) };
        Ok(module.ok())
    }

    fn store_disk(&self, module: &Module, sha: &Digest) -> std::io::Result<()> {
        let Some((entry, sidecar)) = self.paths(sha) else { return Ok(()) };
        let dir = entry.parent().unwrap_or(Path::new("."));
        // Private to the node: the SAFETY argument of `load_disk` relies on
        // no one else writing here.
        create_private_dir(dir)?;
        let bytes = module.serialize().map_err(|e| std::io::Error::other(e.to_string()))?;
        write_atomic(dir, &entry, &bytes)?;
        let stamp = Stamp::of(&fs::metadata(&entry)?);
        write_atomic(dir, &sidecar, Sidecar { sha256: Digest::of(&bytes), stamp }.render().as_bytes())
    }
}

/// The commands this machine's canon validated, kept beside the compiled
/// code (`<cache dir>/validated/<key>`, the key from
/// [`crate::job::stored_key`]), so that a later process loading the same
/// module skips wasmparser's full validation, which on a large module costs
/// more than loading its compiled code. The directory is checked as the
/// compiled entries' are ([`check_private`]): a record is no more trusted
/// than the native code next to it. A record is one line naming its own
/// key; anything else is no record.
pub struct ValidationRecords {
    root: PathBuf,
    dir: PathBuf,
}

const VALIDATED_TAG: &str = "canon-validated-v1";

impl ValidationRecords {
    /// Records under `cache_dir/validated/`.
    pub fn new(cache_dir: &Path) -> ValidationRecords {
        ValidationRecords { root: cache_dir.to_path_buf(), dir: cache_dir.join("validated") }
    }
}

impl crate::job::ValidationStore for ValidationRecords {
    fn passed(&self, key: &Digest) -> bool {
        check_private(&self.root, &self.dir).is_ok()
            && fs::read_to_string(self.dir.join(key.to_string())).is_ok_and(|text| text == format!("{VALIDATED_TAG} {key}\n"))
    }

    fn record(&self, key: &Digest) {
        if check_private(&self.root, &self.dir).is_err() {
            return;
        }
        if create_private_dir(&self.dir).is_ok() {
            let _ = write_atomic(&self.dir, &self.dir.join(key.to_string()), format!("{VALIDATED_TAG} {key}\n").as_bytes());
        }
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

/// Checks the directories native code is loaded from (see the module docs):
/// from `entries` (or the deepest part of it that exists) up to `/`, each
/// owned by the user or root and writable by no one else, except that a
/// directory strictly above `root` (the configured cache directory) may be
/// group- or world-writable if it has the sticky bit.
#[cfg(unix)]
fn check_private(root: &Path, entries: &Path) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt as _;
    let check_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheError::Check { path, source }
    };
    let entries = std::path::absolute(entries).map_err(check_err(entries))?;
    let mut deepest = entries.as_path();
    while !deepest.try_exists().map_err(check_err(deepest))? {
        match deepest.parent() {
            Some(parent) => deepest = parent,
            None => return Ok(()),
        }
    }
    let real = fs::canonicalize(deepest).map_err(check_err(deepest))?;
    // `None`: the cache directory does not exist yet, so every directory
    // that does is above it.
    let real_root = match fs::canonicalize(root) {
        Ok(r) => Some(r),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(check_err(root)(e)),
    };
    for dir in real.ancestors() {
        let meta = fs::metadata(dir).map_err(check_err(dir))?;
        let above_root = real_root.as_deref().is_none_or(|r| r != dir && r.starts_with(dir));
        let sticky = meta.mode() & 0o1000 != 0;
        check_owner_and_mode(dir, &meta, above_root && sticky)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_root: &Path, _entries: &Path) -> Result<(), CacheError> {
    Ok(())
}

/// Checks an entry file: owned by the user or root, writable by no one else.
#[cfg(unix)]
fn check_entry(path: &Path, meta: &fs::Metadata) -> Result<(), CacheError> {
    check_owner_and_mode(path, meta, false)
}

#[cfg(not(unix))]
fn check_entry(_path: &Path, _meta: &fs::Metadata) -> Result<(), CacheError> {
    Ok(())
}

/// Owned by the effective user or root, and (unless `shared_ok`) writable
/// by neither group nor others.
#[cfg(unix)]
fn check_owner_and_mode(path: &Path, meta: &fs::Metadata, shared_ok: bool) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    let unsafe_ = |problem: String| CacheError::Unsafe { path: path.to_path_buf(), problem };
    let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
    if uid != me && uid != 0 {
        return Err(unsafe_(format!("owned by uid {uid}, not by you (uid {me}) or root")));
    }
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "others",
        (true, true) => "its group and others",
    };
    if shared_ok {
        return Ok(());
    }
    let sticky = if mode & 0o1000 != 0 { ", sticky, which is not enough for the cache directory itself" } else { "" };
    Err(unsafe_(format!("writable by {who} (mode {mode:04o}{sticky})")))
}

/// Creates `dir` and its missing parents, mode 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
