//! Content-addressed blobs on disk: `DIR/sha256/ab/abcdef…`, one file per
//! distinct content, so an upload of bytes already held is free.
//!
//! A blob is written to a temporary file in the same directory, checked
//! against its digest, and renamed into place: a reader sees a whole,
//! checked blob or none, whatever process crashes when. A durable store
//! also syncs the file before the rename, so a blob outlives a power loss
//! too; the coordinator's `durable` setting chooses, as it chooses
//! SQLite's `synchronous` (a blob and the row naming it are exactly as
//! durable). Reads are checked again, so a blob cut short or corrupted on
//! disk is reported, not served.
//!
//! Garbage collection (docs/POOL.md, "Blobs"): the coordinator deletes a
//! blob older than the grace period that no unfinished job, and no job
//! finished within the retention, names.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// A blob store rooted at a directory.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    max_blob_bytes: u64,
    durable: bool,
}

/// Why a blob cannot be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The bytes do not have the digest they were sent under.
    #[error("blob {expected}: the bytes have SHA-256 {actual}")]
    Mismatch {
        /// The digest named.
        expected: Digest,
        /// The digest of the bytes.
        actual: Digest,
    },
    /// Larger than the store allows.
    #[error("blob {digest}: {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The digest.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not held.
    #[error("blob {0}: not held")]
    Missing(Digest),
    /// Held, but its bytes on disk no longer match (disk corruption).
    #[error("blob {digest}: corrupt on disk ({path})")]
    Corrupt {
        /// The digest.
        digest: Digest,
        /// Where.
        path: PathBuf,
    },
    /// Host I/O.
    #[error("{path}: {source}")]
    Io {
        /// The host path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl BlobStore {
    /// A store at `root` (created if missing) that holds blobs of at most
    /// `max_blob_bytes`, each synced to disk before it is renamed into
    /// place.
    pub fn open(root: &Path, max_blob_bytes: u64) -> Result<BlobStore, BlobError> {
        let root = root.join("sha256");
        fs::create_dir_all(&root).map_err(|source| BlobError::Io { path: root.clone(), source })?;
        Ok(BlobStore { root, max_blob_bytes, durable: true })
    }

    /// Whether each blob is synced before its rename (power-loss safe)
    /// rather than left to the kernel (safe against a crash of the process,
    /// not of the machine). The default value for this is `true`.
    pub fn durable(mut self, yes: bool) -> BlobStore {
        self.durable = yes;
        self
    }

    /// The limit on one blob's size.
    pub fn max_blob_bytes(&self) -> u64 {
        self.max_blob_bytes
    }

    fn path(&self, d: &Digest) -> PathBuf {
        let hex = d.to_string();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Whether the blob is held.
    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Whether the blob is held, marking it as just used so that garbage
    /// collection spares it for the grace period (a client told "you need
    /// not upload this" must find it still there).
    pub fn keep(&self, d: &Digest) -> bool {
        let path = self.path(d);
        match fs::OpenOptions::new().append(true).open(&path) {
            Ok(f) => {
                let _ = f.set_modified(std::time::SystemTime::now());
                true
            }
            Err(_) => false,
        }
    }

    /// Stores `bytes` under `d`, after checking that they hash to it.
    pub fn put(&self, d: &Digest, bytes: &[u8]) -> Result<(), BlobError> {
        if bytes.len() as u64 > self.max_blob_bytes {
            return Err(BlobError::TooLarge { digest: *d, size: bytes.len() as u64, limit: self.max_blob_bytes });
        }
        let actual = Digest::of(bytes);
        if actual != *d {
            return Err(BlobError::Mismatch { expected: *d, actual });
        }
        let path = self.path(d);
        if self.keep(d) {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let io = |source| BlobError::Io { path: dir.clone(), source };
        fs::create_dir_all(&dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
        tmp.write_all(bytes).map_err(io)?;
        if self.durable {
            tmp.as_file().sync_data().map_err(io)?;
        }
        tmp.persist(&path).map_err(|e| BlobError::Io { path: path.clone(), source: e.error })?;
        Ok(())
    }

    /// The blob's bytes, checked against its digest.
    pub fn get(&self, d: &Digest) -> Result<Vec<u8>, BlobError> {
        let path = self.path(d);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::Missing(*d)),
            Err(source) => return Err(BlobError::Io { path, source }),
        };
        if Digest::of(&bytes) != *d {
            return Err(BlobError::Corrupt { digest: *d, path });
        }
        Ok(bytes)
    }

    /// The blobs whose files were last written before `cutoff`.
    pub fn older_than(&self, cutoff: std::time::SystemTime) -> Vec<Digest> {
        let mut out = Vec::new();
        let Ok(dirs) = fs::read_dir(&self.root) else { return out };
        for d in dirs.flatten() {
            let Ok(files) = fs::read_dir(d.path()) else { continue };
            for f in files.flatten() {
                let old = f.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
                if let (true, Some(Ok(digest))) = (old, f.file_name().to_str().map(str::parse::<Digest>)) {
                    out.push(digest);
                }
            }
        }
        out
    }

    /// Deletes a blob; whether it was there.
    pub fn remove(&self, d: &Digest) -> bool {
        fs::remove_file(self.path(d)).is_ok()
    }

    /// Total bytes held (walks the store; for metrics).
    pub fn total_bytes(&self) -> u64 {
        let mut total = 0;
        if let Ok(dirs) = fs::read_dir(&self.root) {
            for d in dirs.flatten() {
                if let Ok(files) = fs::read_dir(d.path()) {
                    total += files.flatten().filter_map(|f| f.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum::<u64>();
                }
            }
        }
        total
    }
}
