//! Jobs: what to run, written by people as TOML, named by a digest.
//!
//! A [`Job`] is fully resolved: the module's bytes, the input trees, every
//! limit. Nothing in it refers to the host that loaded it except
//! [`Job::module_path`] and [`Mount::source`], which are informational and
//! never part of the job digest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::digest::{Digest, JobDigest};
use crate::tree::Tree;

/// The wall clock's starting point when a job names none:
/// 2000-01-01T00:00:00Z, in seconds since the Unix epoch.
pub const DEFAULT_EPOCH: u64 = 946_684_800;

/// A job, resolved and validated, ready to run.
#[derive(Clone, Debug)]
pub struct Job {
    /// A human name (informational, not part of the digest).
    pub name: String,
    /// The module's bytes.
    pub module: Arc<Vec<u8>>,
    /// SHA-256 of the module's bytes.
    pub module_sha256: Digest,
    /// Where the module was loaded from (informational).
    pub module_path: PathBuf,
    /// `argv[0]` as the guest sees it.
    pub argv0: String,
    /// `argv[1..]`.
    pub args: Vec<String>,
    /// Environment variables, sorted by name, names unique.
    pub env: Vec<(String, String)>,
    /// The bytes the guest reads from stdin.
    pub stdin: Vec<u8>,
    /// Preopened directories, sorted by guest path, none nested in another.
    pub mounts: Vec<Mount>,
    /// Seed of the guest's random stream.
    pub seed: u64,
    /// Wall-clock time at the start of the run, seconds since the Unix epoch.
    pub epoch: u64,
    /// Deterministic limits.
    pub limits: Limits,
    /// Wall-clock safety net: past it the run yields no result at all.
    /// Not part of the digest.
    pub timeout: Duration,
    /// The git commit the job was built from, if it names one.
    pub commit: Option<String>,
}

/// One preopened directory.
#[derive(Clone, Debug)]
pub struct Mount {
    /// Absolute, normalised guest path (`/data`), or another preopen name
    /// given verbatim to `canon exec` (such as `.`).
    pub guest: String,
    /// Whether the guest may change it. A writable mount is an in-memory
    /// copy; its final content is part of the outcome.
    pub writable: bool,
    /// The directory's content.
    pub tree: Tree,
    /// Where it came from on the host (informational).
    pub source: Option<PathBuf>,
}

/// Limits a guest can push against, all enforced deterministically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel budget (instructions, as metered by the engine).
    pub fuel: u64,
    /// Linear memory, in bytes, per memory.
    pub memory_bytes: u64,
    /// Cap on stdout bytes.
    pub stdout_bytes: u64,
    /// Cap on stderr bytes.
    pub stderr_bytes: u64,
    /// Cap on the bytes of all files in writable mounts (including `/tmp`).
    pub output_bytes: u64,
    /// Cap on the number of files, directories and links the guest creates.
    pub output_files: u64,
}

impl Limits {
    /// Defaults for job specs: sized for a build step, bounded for a shared node.
    pub const JOB_DEFAULT: Limits = Limits {
        fuel: 20_000_000_000,
        memory_bytes: 1 << 30,
        stdout_bytes: 16 << 20,
        stderr_bytes: 16 << 20,
        output_bytes: 256 << 20,
        output_files: 10_000,
    };

    /// Defaults for `canon exec`: generous enough for real tools.
    pub const EXEC_DEFAULT: Limits = Limits {
        fuel: 1_000_000_000_000,
        memory_bytes: 4 << 30,
        stdout_bytes: 1 << 30,
        stderr_bytes: 1 << 30,
        output_bytes: 4 << 30,
        output_files: 1_000_000,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::JOB_DEFAULT
    }
}

impl Job {
    /// The job digest (`canon/job/v1`).
    pub fn digest(&self) -> JobDigest {
        todo!("job encoding")
    }
}

/// Checks that `bytes` is a core WebAssembly module canon can run.
/// (Placeholder until the job spec module lands: accepts anything with the wasm magic.)
pub fn validate_module(bytes: &[u8]) -> Result<(), std::io::Error> {
    if bytes.starts_with(b"\0asm") { Ok(()) } else { Err(std::io::Error::other("not a WebAssembly module")) }
}
