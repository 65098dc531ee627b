//! Run logs: what a worker says about a run, and the guest's stdout and
//! stderr as they are written, one append-only file per run under
//! `DATA/logs/`. Logs are for people following a run; they are not part of
//! any receipt or digest.
//!
//! A worker appends with the offset it believes the log is at, so a retried
//! append is never written twice: an append at another offset is refused
//! with the log's size, and the worker resumes from there.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The append's offset is not the log's size.
    #[error("the log of run {run} is {size} bytes, not {offset}: append from {size}")]
    Offset {
        /// The run.
        run: String,
        /// Its size.
        size: u64,
        /// The offset given.
        offset: u64,
    },
    /// The log would pass its limit.
    #[error("the log of run {run} would pass its limit of {limit} bytes")]
    TooLarge {
        /// The run.
        run: String,
        /// The limit.
        limit: u64,
    },
    /// A run id that cannot name a file.
    #[error("{0:?} is not a run id")]
    BadRun(String),
    /// Host I/O.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The logs of every run.
#[derive(Clone, Debug)]
pub struct LogStore {
    root: PathBuf,
    max_bytes: u64,
}

impl LogStore {
    /// Logs under `root`, each at most `max_bytes`.
    pub fn open(root: &Path, max_bytes: u64) -> Result<LogStore, LogError> {
        fs::create_dir_all(root).map_err(|source| LogError::Io { path: root.to_path_buf(), source })?;
        Ok(LogStore { root: root.to_path_buf(), max_bytes })
    }

    fn path(&self, run: &str) -> Result<PathBuf, LogError> {
        // Runs are UUIDs the coordinator made; anything else names no file.
        if uuid::Uuid::parse_str(run).is_err() {
            return Err(LogError::BadRun(run.to_string()));
        }
        Ok(self.root.join(format!("{run}.log")))
    }

    /// The log's size (0 if there is none yet).
    pub fn size(&self, run: &str) -> Result<u64, LogError> {
        let path = self.path(run)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(LogError::Io { path, source }),
        }
    }

    /// Appends `bytes` at `offset`, which must be the log's size. Returns
    /// the new size.
    pub fn append(&self, run: &str, offset: u64, bytes: &[u8]) -> Result<u64, LogError> {
        let path = self.path(run)?;
        let size = self.size(run)?;
        if offset != size {
            return Err(LogError::Offset { run: run.to_string(), size, offset });
        }
        let end = size.saturating_add(bytes.len() as u64);
        if end > self.max_bytes {
            return Err(LogError::TooLarge { run: run.to_string(), limit: self.max_bytes });
        }
        let io = |source| LogError::Io { path: path.clone(), source };
        let mut f = fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        Ok(end)
    }

    /// At most `max` bytes of the log from `offset` (empty past its end).
    pub fn read(&self, run: &str, offset: u64, max: usize) -> Result<Vec<u8>, LogError> {
        let path = self.path(run)?;
        let io = |source| LogError::Io { path: path.clone(), source };
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(LogError::Io { path, source }),
        };
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut out = Vec::new();
        f.take(max as u64).read_to_end(&mut out).map_err(io)?;
        Ok(out)
    }
}
