//! canon's WASI preview 1 host: every function of `wasi_snapshot_preview1`,
//! each a deterministic function of the job and of what the guest did.
//!
//! Each method takes the guest's memory and its raw arguments and either
//! succeeds, returns an errno to the guest, or stops the guest ([`Stop`]: an
//! exit or a deterministic trap such as an output cap). `link.rs` binds them
//! to wasmtime. This file holds the state and what every area shares (fuel,
//! descriptors' types, limits); the functions are split by WASI area, as
//! wasmtime-wasi splits them: [`cli`] (args, environment, random, process),
//! [`clocks`] (clocks and poll), [`fd`] (descriptors, sockets), [`path`].

mod cli;
mod clocks;
mod fd;
mod path;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::cost;
use super::errno::Errno;
use super::mem::{IoVec, MAX_IOVS, Mem};
use super::vfs::{Content, Ino, MAX_PATH_LEN, OverLimit, Resolved, Vfs};
use crate::digest::Digest;
use crate::job::{Job, guest_place};
use crate::outcome::TrapKind;
use crate::tree::Tree;

/// Logical nanoseconds per unit of fuel consumed: the monotonic clock is
/// `fuel consumed × NS_PER_FUEL + virtual sleeps`. One instruction is
/// roughly a nanosecond on current hardware, so programs that time
/// themselves see plausible figures.
pub const NS_PER_FUEL: u64 = 1;

/// Resolution reported by `clock_res_get` for every clock, in nanoseconds.
pub const CLOCK_RESOLUTION_NS: u64 = 1;

/// Most descriptors a guest may hold open at once (a typical `ulimit -n`).
pub const MAX_OPEN_FDS: usize = 1024;

/// Most subscriptions one `poll_oneoff` call may pass.
pub const MAX_POLL_SUBSCRIPTIONS: u32 = 4096;

/// Largest file size and offset: 2^63 - 1, what wasi-libc's `off_t` (an
/// `i64`) can hold. A size or offset above it is `EINVAL` (a negative
/// `off_t` to the guest's libc, as Linux answers for one); a write or
/// allocation that would end past it is `EFBIG`. Below it, growth is bounded
/// by the job's `output_bytes` cap (the trap `output_limit`).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Most bytes one read or write moves: Linux's `MAX_RW_COUNT`
/// (`INT_MAX` rounded down to a page). Iovecs may overlap, so the buffers
/// of one call can name far more than the guest's memory; past this the
/// call is a short read or write, as on Linux, and the count returned
/// always fits the guest's `size_t` and `ssize_t`.
pub const MAX_IO_BYTES: u64 = 0x7fff_f000;

// Rights (WASI preview 1 `rights` bit positions).
const RIGHT_FD_DATASYNC: u64 = 1 << 0;
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_SEEK: u64 = 1 << 2;
const RIGHT_FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
const RIGHT_FD_SYNC: u64 = 1 << 4;
const RIGHT_FD_TELL: u64 = 1 << 5;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_FD_ADVISE: u64 = 1 << 7;
const RIGHT_FD_ALLOCATE: u64 = 1 << 8;
const RIGHT_PATH_CREATE_DIRECTORY: u64 = 1 << 9;
const RIGHT_PATH_CREATE_FILE: u64 = 1 << 10;
const RIGHT_PATH_LINK_SOURCE: u64 = 1 << 11;
const RIGHT_PATH_LINK_TARGET: u64 = 1 << 12;
const RIGHT_PATH_OPEN: u64 = 1 << 13;
const RIGHT_FD_READDIR: u64 = 1 << 14;
const RIGHT_PATH_READLINK: u64 = 1 << 15;
const RIGHT_PATH_RENAME_SOURCE: u64 = 1 << 16;
const RIGHT_PATH_RENAME_TARGET: u64 = 1 << 17;
const RIGHT_PATH_FILESTAT_GET: u64 = 1 << 18;
const RIGHT_PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
const RIGHT_FD_FILESTAT_GET: u64 = 1 << 21;
const RIGHT_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
const RIGHT_FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
const RIGHT_PATH_SYMLINK: u64 = 1 << 24;
const RIGHT_PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
const RIGHT_PATH_UNLINK_FILE: u64 = 1 << 26;
const RIGHT_POLL_FD_READWRITE: u64 = 1 << 27;
/// Every right preview 1 defines (bits 0..=29).
const ALL_RIGHTS: u64 = (1 << 30) - 1;
/// The rights of a directory descriptor, the set wasmtime gives a preopen
/// and the wasi-testsuite requires of one. No read, write, seek or size
/// right, which only files have: a program that opens a directory with the
/// rights its directory has (`path_open(dir, ".", O_DIRECTORY, base, ..)`,
/// as the suite's helpers do) asks for no write, so gets no `EISDIR`. No
/// `path_filestat_set_size` either, as under wasmtime: canon does not
/// enforce path rights, and reports none it would not enforce if dropped.
const DIR_RIGHTS: u64 = RIGHT_PATH_CREATE_DIRECTORY
    | RIGHT_PATH_CREATE_FILE
    | RIGHT_PATH_LINK_SOURCE
    | RIGHT_PATH_LINK_TARGET
    | RIGHT_PATH_OPEN
    | RIGHT_FD_READDIR
    | RIGHT_PATH_READLINK
    | RIGHT_PATH_RENAME_SOURCE
    | RIGHT_PATH_RENAME_TARGET
    | RIGHT_PATH_SYMLINK
    | RIGHT_PATH_REMOVE_DIRECTORY
    | RIGHT_PATH_UNLINK_FILE
    | RIGHT_PATH_FILESTAT_GET
    | RIGHT_PATH_FILESTAT_SET_TIMES
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_FD_FILESTAT_SET_TIMES;
/// What a directory passes on to what is opened through it (its inheriting
/// rights): its own rights and every right of a file.
const DIR_INHERITING: u64 = DIR_RIGHTS
    | RIGHT_FD_DATASYNC
    | RIGHT_FD_READ
    | RIGHT_FD_SEEK
    | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_SYNC
    | RIGHT_FD_TELL
    | RIGHT_FD_WRITE
    | RIGHT_FD_ADVISE
    | RIGHT_FD_ALLOCATE
    | RIGHT_FD_FILESTAT_SET_SIZE
    | RIGHT_POLL_FD_READWRITE;

// Lookup, open and fd flags.
const LOOKUP_SYMLINK_FOLLOW: u32 = 1;
const O_CREAT: u16 = 1;
const O_DIRECTORY: u16 = 2;
const O_EXCL: u16 = 4;
const O_TRUNC: u16 = 8;
const FDFLAG_APPEND: u16 = 1;
const FDFLAGS_ALL: u16 = 0x1f;

// File types.
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
const FILETYPE_DIRECTORY: u8 = 3;

// `fstflags` for set_times.
const FST_ATIM: u16 = 1;
const FST_ATIM_NOW: u16 = 2;
const FST_MTIM: u16 = 4;
const FST_MTIM_NOW: u16 = 8;

/// Device number reported for every file: one file system.
const DEV: u64 = 1;

/// Why a guest stops: it exited, or it hit a deterministic trap in a host call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// `proc_exit`.
    #[error("guest exited with code {0}")]
    Exit(u32),
    /// A limit enforced by the host.
    #[error("guest trapped: {0}")]
    Trap(TrapKind),
}

/// The result of one host call, before it is mapped to wasmtime.
#[derive(Debug)]
pub enum Fault {
    /// Return this errno to the guest.
    Errno(Errno),
    /// Stop the guest.
    Stop(Stop),
}

impl From<Errno> for Fault {
    fn from(e: Errno) -> Fault {
        Fault::Errno(e)
    }
}

impl From<OverLimit> for Fault {
    fn from(_: OverLimit) -> Fault {
        Fault::Stop(Stop::Trap(TrapKind::OutputLimit))
    }
}

type R<T = ()> = Result<T, Fault>;

/// Takes `units` from `fuel`, or stops the job `out_of_fuel` (leaving none)
/// if it holds fewer.
fn pay(fuel: &mut u64, units: u64) -> R {
    match fuel.checked_sub(units) {
        Some(left) => {
            *fuel = left;
            Ok(())
        }
        None => {
            *fuel = 0;
            Err(Fault::Stop(Stop::Trap(TrapKind::OutOfFuel)))
        }
    }
}

/// An open descriptor.
#[derive(Clone, Debug)]
enum Fd {
    Stdin,
    Stdout,
    Stderr,
    File { ino: Ino, offset: u64, flags: u16, rights: u64 },
    Dir { ino: Ino, preopen: Option<String>, rights: u64, inheriting: u64 },
}

impl Fd {
    fn rights(&self) -> (u64, u64) {
        match self {
            Fd::Stdin => (RIGHT_FD_READ | RIGHT_POLL_FD_READWRITE, 0),
            Fd::Stdout | Fd::Stderr => (RIGHT_FD_WRITE | RIGHT_POLL_FD_READWRITE, 0),
            Fd::File { rights, .. } => (*rights, 0),
            Fd::Dir { rights, inheriting, .. } => (*rights, *inheriting),
        }
    }
}

/// What the host needs to know about a job to serve it.
#[derive(Clone, Debug)]
pub struct HostConfig<'a> {
    /// `argv`, including `argv[0]`.
    pub argv: Vec<String>,
    /// `KEY=VALUE` strings, in the job's order.
    pub env: Vec<String>,
    /// stdin's bytes.
    pub stdin: Arc<Vec<u8>>,
    /// Preopens: guest name, writable, content (borrowed from the job: the
    /// file system copies what it needs when it mounts them).
    pub mounts: Vec<(String, bool, &'a Tree)>,
    /// The index in `mounts` of the sandbox's scratch `/tmp`, if it has
    /// one: the only writable mount left out of the output tree.
    pub scratch: Option<usize>,
    /// Seed of the random stream.
    pub seed: u64,
    /// Wall-clock start, seconds since the Unix epoch.
    pub epoch: u64,
    /// Fuel budget (to turn remaining fuel into fuel consumed).
    pub fuel: u64,
    /// Caps.
    pub stdout_cap: u64,
    /// Caps.
    pub stderr_cap: u64,
    /// Cap on bytes held by writable mounts.
    pub output_bytes: u64,
    /// Cap on inodes the guest creates.
    pub output_files: u64,
    /// Also copy the guest's stdout/stderr to the host's as they are written.
    pub stream_stdio: bool,
    /// Also hand the guest's stdout/stderr to this as they are written.
    pub tap: Option<StdioTap>,
}

/// Sees the guest's stdout (stream 1) and stderr (2) as they are written,
/// after they are captured: a live log. It cannot change the outcome.
#[derive(Clone)]
pub struct StdioTap(pub Arc<TapFn>);

/// What a [`StdioTap`] calls: the stream (1 or 2) and the bytes written.
pub type TapFn = dyn Fn(u32, &[u8]) + Send + Sync;

impl std::fmt::Debug for StdioTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StdioTap")
    }
}

/// The content of the default `/out` and `/tmp`.
static EMPTY_TREE: Tree = Tree { entries: std::collections::BTreeMap::new() };

impl<'a> HostConfig<'a> {
    /// The host configuration for a job: its mounts, in the job's order
    /// (fd 3, 4, ..., as `wasmtime run` numbers its `--dir`s), then, if it
    /// has the sandbox dirs ([`Job::adds_sandbox_dirs`]: not when it says
    /// `sandbox_dirs = false` or mounts `/`), the default empty, writable
    /// `/out` unless it mounts one itself, and the scratch `/tmp`. The job
    /// digest covers the job's order and whether the defaults are there,
    /// and their places follow from it.
    pub fn for_job(job: &'a Job) -> HostConfig<'a> {
        let mut mounts: Vec<(String, bool, &Tree)> = job.mounts.iter().map(|m| (m.guest.clone(), m.writable, m.tree())).collect();
        let mut scratch = None;
        if job.adds_sandbox_dirs() {
            // An input at `/out` (or a relative `out`, placed there)
            // replaces the default one; no input is at `/tmp` (reserved).
            if !job.mounts.iter().any(|m| guest_place(&m.guest) == "/out") {
                mounts.push(("/out".to_string(), true, &EMPTY_TREE));
            }
            scratch = Some(mounts.len());
            mounts.push(("/tmp".to_string(), true, &EMPTY_TREE));
        }
        let mut argv = vec![job.argv0.clone()];
        argv.extend(job.args.iter().cloned());
        HostConfig {
            argv,
            env: job.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            stdin: Arc::new(job.stdin.clone()),
            mounts,
            scratch,
            seed: job.seed,
            epoch: job.epoch,
            fuel: job.limits.fuel,
            stdout_cap: job.limits.stdout_bytes,
            stderr_cap: job.limits.stderr_bytes,
            output_bytes: job.limits.output_bytes,
            output_files: job.limits.output_files,
            stream_stdio: false,
            tap: None,
        }
    }
}

/// The state of one guest's WASI world.
pub struct WasiHost {
    argv: Vec<String>,
    env: Vec<String>,
    stdin: Arc<Vec<u8>>,
    stdin_pos: usize,
    /// Bytes written to stdout.
    pub stdout: Vec<u8>,
    /// Bytes written to stderr.
    pub stderr: Vec<u8>,
    stdout_cap: u64,
    stderr_cap: u64,
    stream_stdio: bool,
    tap: Option<StdioTap>,
    /// The file system.
    pub vfs: Vfs,
    fds: BTreeMap<u32, Fd>,
    /// Preopens: guest name, writable, root inode.
    pub preopens: Vec<(String, bool, Ino)>,
    /// The index in `preopens` of the sandbox's scratch `/tmp`, if any.
    scratch: Option<usize>,
    rng: ChaCha20Rng,
    epoch_ns: u64,
    fuel_budget: u64,
    /// Fuel remaining at the current host call (set by the caller).
    pub fuel_remaining: u64,
    sleep_ns: u64,
}

impl WasiHost {
    /// A fresh host for one run.
    pub fn new(cfg: HostConfig<'_>) -> WasiHost {
        let epoch_ns = cfg.epoch.saturating_mul(1_000_000_000);
        let mut vfs = Vfs::new(cfg.output_bytes, cfg.output_files);
        let mut fds = BTreeMap::new();
        fds.insert(0, Fd::Stdin);
        fds.insert(1, Fd::Stdout);
        fds.insert(2, Fd::Stderr);
        let mut preopens = Vec::new();
        for (i, (name, writable, tree)) in cfg.mounts.iter().enumerate() {
            let ino = vfs.mount(tree, *writable, epoch_ns);
            vfs.get_mut(ino).map(|n| n.open += 1).ok();
            fds.insert(3 + i as u32, Fd::Dir { ino, preopen: Some(name.clone()), rights: DIR_RIGHTS, inheriting: DIR_INHERITING });
            preopens.push((name.clone(), *writable, ino));
        }
        let mut seed_material = b"canon/rng/v1\n".to_vec();
        seed_material.extend_from_slice(&cfg.seed.to_le_bytes());
        let rng = ChaCha20Rng::from_seed(*Digest::of(&seed_material).as_bytes());
        WasiHost {
            argv: cfg.argv,
            env: cfg.env,
            stdin: cfg.stdin,
            stdin_pos: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_cap: cfg.stdout_cap,
            stderr_cap: cfg.stderr_cap,
            stream_stdio: cfg.stream_stdio,
            tap: cfg.tap,
            vfs,
            fds,
            preopens,
            scratch: cfg.scratch,
            rng,
            epoch_ns,
            fuel_budget: cfg.fuel,
            fuel_remaining: cfg.fuel,
            sleep_ns: 0,
        }
    }

    /// The final content of every writable mount except the sandbox's
    /// scratch `/tmp` (an input at `/tmp`, in a job without the sandbox
    /// dirs, is a mount like any other), as one tree
    /// whose top-level names are the mounts' guest paths without the leading
    /// `/` (so the empty name for a mount at `/`, and a relative name as it
    /// is: see [`crate::outcome::Outcome::outputs`]).
    pub fn output_tree(&self) -> Tree {
        let mut out = Tree::new();
        for (i, (name, writable, ino)) in self.preopens.iter().enumerate() {
            if !*writable || self.scratch == Some(i) {
                continue;
            }
            let key = name.trim_start_matches('/').to_string();
            out.entries.insert(key, crate::tree::Node::Dir(self.vfs.to_tree(*ino)));
        }
        out
    }

    // ---- fuel -------------------------------------------------------------

    /// Charges `units` of fuel for host work about to be done; a job that
    /// cannot pay stops `out_of_fuel` before the work starts.
    fn charge(&mut self, units: u64) -> R {
        pay(&mut self.fuel_remaining, units)
    }

    /// Starts a host call: charges [`cost::CALL`].
    pub fn begin_call(&mut self) -> R {
        self.charge(cost::CALL)
    }

    /// Ends a host call: charges the walks counted while it ran (see
    /// [`cost`]). A call that cannot pay for them stops the job
    /// `out_of_fuel`, whatever it returned.
    pub fn end_call(&mut self, result: R) -> R {
        let walked = self.vfs.take_steps();
        self.charge(cost::steps(walked))?;
        result
    }
}
