//! canon's WASI preview 1 host: every function of `wasi_snapshot_preview1`,
//! each a deterministic function of the job and of what the guest did.
//!
//! Each method here takes the guest's memory and its raw arguments and either
//! succeeds, returns an errno to the guest, or stops the guest ([`Stop`]: an
//! exit or a deterministic trap such as an output cap). `link.rs` binds them
//! to wasmtime.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::cost;
use super::errno::Errno;
use super::mem::{IoVec, Mem};
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
}

/// The content of the default `/out` and `/tmp`.
static EMPTY_TREE: Tree = Tree { entries: std::collections::BTreeMap::new() };

impl<'a> HostConfig<'a> {
    /// The host configuration for a job: its mounts, in the job's order
    /// (fd 3, 4, ..., as `wasmtime run` numbers its `--dir`s), then the
    /// default empty, writable `/out` and scratch `/tmp` unless the job
    /// mounts those itself or mounts `/`. The job digest covers the job's
    /// order, and the defaults' places follow from it.
    pub fn for_job(job: &'a Job) -> HostConfig<'a> {
        let mut mounts: Vec<(String, bool, &Tree)> = job.mounts.iter().map(|m| (m.guest.clone(), m.writable, m.tree())).collect();
        // A mount at `/` is the whole file system: nothing beside it. An
        // input at `/out` (or a relative `out`, placed there) replaces it.
        let root = job.mounts.iter().any(|m| m.guest == "/");
        for default in ["/out", "/tmp"] {
            if !root && !job.mounts.iter().any(|m| guest_place(&m.guest) == default) {
                mounts.push((default.to_string(), true, &EMPTY_TREE));
            }
        }
        let mut argv = vec![job.argv0.clone()];
        argv.extend(job.args.iter().cloned());
        HostConfig {
            argv,
            env: job.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            stdin: Arc::new(job.stdin.clone()),
            mounts,
            seed: job.seed,
            epoch: job.epoch,
            fuel: job.limits.fuel,
            stdout_cap: job.limits.stdout_bytes,
            stderr_cap: job.limits.stderr_bytes,
            output_bytes: job.limits.output_bytes,
            output_files: job.limits.output_files,
            stream_stdio: false,
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
    /// The file system.
    pub vfs: Vfs,
    fds: BTreeMap<u32, Fd>,
    /// Preopens: guest name, writable, root inode.
    pub preopens: Vec<(String, bool, Ino)>,
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
            vfs,
            fds,
            preopens,
            rng,
            epoch_ns,
            fuel_budget: cfg.fuel,
            fuel_remaining: cfg.fuel,
            sleep_ns: 0,
        }
    }

    /// The final content of every writable mount except `/tmp`, as one tree
    /// whose top-level names are the mounts' guest paths without the leading
    /// `/` (so the empty name for a mount at `/`, and a relative name as it
    /// is: see [`crate::outcome::Outcome::outputs`]).
    pub fn output_tree(&self) -> Tree {
        let mut out = Tree::new();
        for (name, writable, ino) in &self.preopens {
            if !*writable || name == "/tmp" {
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

    // ---- clocks ----------------------------------------------------------

    /// Logical nanoseconds since the start of the run.
    fn logical_ns(&self) -> u64 {
        let used = self.fuel_budget.saturating_sub(self.fuel_remaining);
        used.saturating_mul(NS_PER_FUEL).saturating_add(self.sleep_ns)
    }

    fn now(&self, clock: u32) -> Result<u64, Errno> {
        match clock {
            0 => Ok(self.epoch_ns.saturating_add(self.logical_ns())),
            1..=3 => Ok(self.logical_ns()),
            _ => Err(Errno::Inval),
        }
    }

    /// Wall-clock time now, for timestamps on files.
    fn wall(&self) -> u64 {
        self.epoch_ns.saturating_add(self.logical_ns())
    }

    /// `clock_res_get`
    pub fn clock_res_get(&mut self, mem: &mut Mem, id: u32, out: u32) -> R {
        self.now(id)?;
        mem.put_u64(out, CLOCK_RESOLUTION_NS)?;
        Ok(())
    }

    /// `clock_time_get`
    pub fn clock_time_get(&mut self, mem: &mut Mem, id: u32, _precision: u64, out: u32) -> R {
        let t = self.now(id)?;
        mem.put_u64(out, t)?;
        Ok(())
    }

    // ---- args, environ, random, proc ------------------------------------

    fn strings_sizes(&mut self, env: bool, mem: &mut Mem, count_ptr: u32, size_ptr: u32) -> R {
        let strings = if env { &self.env } else { &self.argv };
        // Summing the lengths is a walk over the strings: charged as one.
        let n = strings.len() as u64;
        let size: usize = strings.iter().map(|s| s.len() + 1).sum();
        let count = strings.len();
        self.charge(cost::steps(n))?;
        mem.put_u32(count_ptr, u32::try_from(count).map_err(|_| Errno::Overflow)?)?;
        mem.put_u32(size_ptr, u32::try_from(size).map_err(|_| Errno::Overflow)?)?;
        Ok(())
    }

    /// Writes the pointer array at `ptrs` and the NUL-terminated strings at
    /// `buf`, each checked whole before anything is written.
    fn strings_get(&mut self, env: bool, mem: &mut Mem, ptrs: u32, buf: u32) -> R {
        let strings = if env { &self.env } else { &self.argv };
        let count = u32::try_from(strings.len()).map_err(|_| Errno::Overflow)?;
        let size = u32::try_from(strings.iter().map(|s| s.len() + 1).sum::<usize>()).map_err(|_| Errno::Overflow)?;
        self.charge(cost::bytes(u64::from(size) + 4 * u64::from(count)))?;
        let strings = if env { &self.env } else { &self.argv };
        mem.slice(ptrs, count.checked_mul(4).ok_or(Errno::Fault)?)?;
        let area = mem.slice_mut(buf, size)?;
        let mut offsets = Vec::with_capacity(strings.len());
        let mut at = 0usize;
        for s in strings {
            offsets.push(at);
            area[at..at + s.len()].copy_from_slice(s.as_bytes());
            area[at + s.len()] = 0;
            at += s.len() + 1;
        }
        // `buf + offset` stays below `buf + size`, which the check above
        // proved lies inside the memory, so it is a valid u32.
        let mut array = mem.record_mut(ptrs, count * 4)?;
        for (i, off) in offsets.into_iter().enumerate() {
            array.u32(4 * i, (u64::from(buf) + off as u64) as u32);
        }
        Ok(())
    }

    /// `args_sizes_get`
    pub fn args_sizes_get(&mut self, mem: &mut Mem, count: u32, size: u32) -> R {
        self.strings_sizes(false, mem, count, size)
    }

    /// `args_get`
    pub fn args_get(&mut self, mem: &mut Mem, argv: u32, buf: u32) -> R {
        self.strings_get(false, mem, argv, buf)
    }

    /// `environ_sizes_get`
    pub fn environ_sizes_get(&mut self, mem: &mut Mem, count: u32, size: u32) -> R {
        self.strings_sizes(true, mem, count, size)
    }

    /// `environ_get`
    pub fn environ_get(&mut self, mem: &mut Mem, environ: u32, buf: u32) -> R {
        self.strings_get(true, mem, environ, buf)
    }

    /// `random_get`: the job's ChaCha20 stream, never host entropy.
    pub fn random_get(&mut self, mem: &mut Mem, buf: u32, len: u32) -> R {
        mem.slice(buf, len)?;
        self.charge(cost::random(u64::from(len)))?;
        let dst = mem.slice_mut(buf, len)?;
        self.rng.fill_bytes(dst);
        Ok(())
    }

    /// `proc_exit`
    pub fn proc_exit(&mut self, code: u32) -> R {
        Err(Fault::Stop(Stop::Exit(code)))
    }

    /// `proc_raise`: signals are not part of the sandbox.
    pub fn proc_raise(&mut self, _sig: u32) -> R {
        Err(Errno::Nosys.into())
    }

    /// `sched_yield`: there is one thread; yielding is a no-op.
    pub fn sched_yield(&mut self) -> R {
        Ok(())
    }

    // ---- sockets: none ----------------------------------------------------

    /// `sock_*`: no descriptor is a socket.
    pub fn sock_any(&mut self, fd: u32) -> R {
        self.fd(fd)?;
        Err(Errno::Notsock.into())
    }

    // ---- descriptors -------------------------------------------------------

    fn fd(&self, fd: u32) -> Result<&Fd, Errno> {
        self.fds.get(&fd).ok_or(Errno::Badf)
    }

    fn fd_mut(&mut self, fd: u32) -> Result<&mut Fd, Errno> {
        self.fds.get_mut(&fd).ok_or(Errno::Badf)
    }

    fn dir_fd(&self, fd: u32) -> Result<Ino, Errno> {
        match self.fd(fd)? {
            Fd::Dir { ino, .. } => Ok(*ino),
            _ => Err(Errno::Notdir),
        }
    }

    /// Gives `entry` the lowest free descriptor number, as POSIX does;
    /// finding it scans the open ones, a step each.
    fn insert_fd(&mut self, entry: Fd) -> Result<u32, Fault> {
        if self.fds.len() >= MAX_OPEN_FDS {
            return Err(Errno::Mfile.into());
        }
        let n = self.fds.keys().zip(0u32..).find(|(k, i)| **k != *i).map_or(self.fds.len() as u32, |(_, i)| i);
        self.charge(cost::steps(u64::from(n)))?;
        self.fds.insert(n, entry);
        Ok(n)
    }

    fn release(&mut self, entry: Fd) {
        if let Fd::File { ino, .. } | Fd::Dir { ino, .. } = entry {
            if let Ok(node) = self.vfs.get_mut(ino) {
                node.open = node.open.saturating_sub(1);
            }
            self.vfs.maybe_free(ino);
        }
    }

    /// `fd_close`
    pub fn fd_close(&mut self, fd: u32) -> R {
        let entry = self.fds.remove(&fd).ok_or(Errno::Badf)?;
        self.release(entry);
        Ok(())
    }

    /// `fd_renumber`: moves `from` onto `to`, closing what `to` was.
    pub fn fd_renumber(&mut self, from: u32, to: u32) -> R {
        self.fd(from)?;
        self.fd(to)?;
        if from == to {
            return Ok(());
        }
        let entry = self.fds.remove(&from).ok_or(Errno::Badf)?;
        if let Some(old) = self.fds.insert(to, entry) {
            self.release(old);
        }
        Ok(())
    }

    /// `fd_fdstat_get`
    pub fn fd_fdstat_get(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        let entry = self.fd(fd)?;
        let (filetype, flags) = match entry {
            Fd::Stdin | Fd::Stdout | Fd::Stderr => (FILETYPE_CHARACTER_DEVICE, 0),
            Fd::File { ino, flags, .. } => (self.vfs.get(*ino)?.filetype(), *flags),
            Fd::Dir { .. } => (FILETYPE_DIRECTORY, 0),
        };
        let (base, inheriting) = entry.rights();
        let mut rec = mem.record_mut(out, 24)?;
        rec.u8(0, filetype);
        rec.u8(1, 0);
        rec.u16(2, flags);
        rec.u32(4, 0);
        rec.u64(8, base);
        rec.u64(16, inheriting);
        Ok(())
    }

    /// `fd_fdstat_set_flags`: only `APPEND` changes anything; the others are
    /// meaningless in memory and accepted.
    pub fn fd_fdstat_set_flags(&mut self, fd: u32, new: u16) -> R {
        if new & !FDFLAGS_ALL != 0 {
            return Err(Errno::Inval.into());
        }
        if let Fd::File { flags, .. } = self.fd_mut(fd)? {
            *flags = new;
        }
        Ok(())
    }

    /// `fd_fdstat_set_rights`: rights, base and inheriting, can only be
    /// dropped (a file has no inheriting rights).
    pub fn fd_fdstat_set_rights(&mut self, fd: u32, base: u64, inheriting: u64) -> R {
        match self.fd_mut(fd)? {
            Fd::File { rights, .. } => {
                if base & !*rights != 0 || inheriting != 0 {
                    return Err(Errno::Notcapable.into());
                }
                *rights = base;
                Ok(())
            }
            Fd::Dir { rights, inheriting: passed_on, .. } => {
                if base & !*rights != 0 || inheriting & !*passed_on != 0 {
                    return Err(Errno::Notcapable.into());
                }
                *rights = base;
                *passed_on = inheriting;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `fd_prestat_get`
    pub fn fd_prestat_get(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        match self.fd(fd)? {
            Fd::Dir { preopen: Some(name), .. } => {
                let len = u32::try_from(name.len()).map_err(|_| Errno::Overflow)?;
                let mut rec = mem.record_mut(out, 8)?;
                rec.u32(0, 0);
                rec.u32(4, len);
                Ok(())
            }
            _ => Err(Errno::Badf.into()),
        }
    }

    /// `fd_prestat_dir_name`
    pub fn fd_prestat_dir_name(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        match self.fd(fd)? {
            Fd::Dir { preopen: Some(name), .. } => {
                if (len as usize) < name.len() {
                    return Err(Errno::Nametoolong.into());
                }
                let name = name.clone();
                self.charge(cost::bytes(name.len() as u64))?;
                mem.write(path, name.as_bytes())?;
                Ok(())
            }
            _ => Err(Errno::Badf.into()),
        }
    }

    fn write_filestat(&self, mem: &mut Mem, ino: Ino, out: u32) -> R {
        let node = self.vfs.get(ino)?;
        let mut rec = mem.record_mut(out, 64)?;
        rec.u64(0, DEV);
        rec.u64(8, ino);
        rec.u64(16, u64::from(node.filetype()));
        rec.u64(24, node.nlink.max(1));
        rec.u64(32, node.size());
        rec.u64(40, node.atim);
        rec.u64(48, node.mtim);
        rec.u64(56, node.ctim);
        Ok(())
    }

    /// `fd_filestat_get`
    pub fn fd_filestat_get(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        match self.fd(fd)? {
            Fd::Stdin | Fd::Stdout | Fd::Stderr => {
                let mut rec = mem.record_mut(out, 64)?;
                for at in (0..64).step_by(8) {
                    rec.u64(at, 0);
                }
                rec.u8(16, FILETYPE_CHARACTER_DEVICE);
                rec.u64(24, 1);
                Ok(())
            }
            Fd::File { ino, .. } | Fd::Dir { ino, .. } => {
                let ino = *ino;
                self.write_filestat(mem, ino, out)
            }
        }
    }

    fn set_times(&mut self, ino: Ino, atim: u64, mtim: u64, fst: u16) -> R {
        if fst & !(FST_ATIM | FST_ATIM_NOW | FST_MTIM | FST_MTIM_NOW) != 0
            || (fst & FST_ATIM != 0 && fst & FST_ATIM_NOW != 0)
            || (fst & FST_MTIM != 0 && fst & FST_MTIM_NOW != 0)
        {
            return Err(Errno::Inval.into());
        }
        let now = self.wall();
        let node = self.vfs.get_mut(ino)?;
        if !node.writable {
            return Err(Errno::Rofs.into());
        }
        if fst & FST_ATIM != 0 {
            node.atim = atim;
        } else if fst & FST_ATIM_NOW != 0 {
            node.atim = now;
        }
        if fst & FST_MTIM != 0 {
            node.mtim = mtim;
        } else if fst & FST_MTIM_NOW != 0 {
            node.mtim = now;
        }
        node.ctim = now;
        Ok(())
    }

    /// `fd_filestat_set_times`
    pub fn fd_filestat_set_times(&mut self, fd: u32, atim: u64, mtim: u64, fst: u16) -> R {
        match self.fd(fd)? {
            Fd::File { ino, .. } | Fd::Dir { ino, .. } => {
                let ino = *ino;
                self.set_times(ino, atim, mtim, fst)
            }
            _ => Err(Errno::Badf.into()),
        }
    }

    fn file_fd(&self, fd: u32) -> Result<(Ino, u64, u16, u64), Errno> {
        match self.fd(fd)? {
            Fd::File { ino, offset, flags, rights } => Ok((*ino, *offset, *flags, *rights)),
            Fd::Dir { .. } => Err(Errno::Isdir),
            _ => Err(Errno::Spipe),
        }
    }

    /// Resizes file `ino` to `len`, charging the output cap first.
    fn resize(&mut self, ino: Ino, len: u64) -> R {
        if len > MAX_FILE_SIZE {
            return Err(Errno::Fbig.into());
        }
        let now = self.wall();
        let old = self.vfs.get(ino)?.size();
        // Checked against the cap before any memory is touched: a size the
        // cap allows is one this host holds (the cap is part of the job).
        self.vfs.reserve(old, len, 0)?;
        let len_usize = usize::try_from(len).map_err(|_| Errno::Fbig)?;
        // The zeros a growth fills in are work; a shrink is not.
        self.charge(cost::bytes(len.saturating_sub(old)))?;
        let bytes = self.file_bytes_mut(ino, len.min(old))?;
        bytes.resize(len_usize, 0);
        let node = self.vfs.get_mut(ino)?;
        node.mtim = now;
        node.ctim = now;
        Ok(())
    }

    /// File `ino`'s bytes, to change. A file still shared with the job's
    /// input tree is copied first, its first `keep` bytes (all that the
    /// change keeps), and the copy is charged like any other; a file is
    /// shared exactly until its first change in this run, so the charge is
    /// the same on every node.
    fn file_bytes_mut(&mut self, ino: Ino, keep: u64) -> R<&mut Vec<u8>> {
        let shared = match &mut self.vfs.get_mut(ino)?.content {
            Content::File(bytes) => Arc::get_mut(bytes).is_none(),
            _ => return Err(Errno::Inval.into()),
        };
        if shared {
            self.charge(cost::bytes(keep))?;
        }
        match &mut self.vfs.get_mut(ino)?.content {
            Content::File(bytes) => {
                if shared {
                    let keep = usize::try_from(keep).unwrap_or(usize::MAX).min(bytes.len());
                    *bytes = Arc::new(bytes[..keep].to_vec());
                }
                Ok(Arc::make_mut(bytes))
            }
            _ => Err(Errno::Inval.into()),
        }
    }

    /// Writes the guest bytes `iovs` name into file `ino` at `offset`,
    /// growing the file (and charging the output caps) first, and copying
    /// straight from guest memory. The iovecs may overlap, so their total can
    /// exceed the guest's memory; nothing is held beyond the file itself.
    /// Returns the bytes written.
    fn write_iovecs(&mut self, ino: Ino, offset: u64, mem: &Mem, iovs: &[IoVec]) -> R<u64> {
        let total = IoVec::total(iovs);
        let end = offset.checked_add(total).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::Fbig)?;
        if end > self.vfs.get(ino)?.size() {
            self.resize(ino, end)?;
        }
        self.charge(cost::bytes(total))?;
        let now = self.wall();
        let size = self.vfs.get(ino)?.size();
        let bytes = self.file_bytes_mut(ino, size)?;
        let mut at = usize::try_from(offset).map_err(|_| Errno::Fbig)?;
        for v in iovs {
            let src = mem.slice(v.ptr, v.len)?;
            bytes[at..at + src.len()].copy_from_slice(src);
            at += src.len();
        }
        let node = self.vfs.get_mut(ino)?;
        node.mtim = now;
        node.ctim = now;
        Ok(total)
    }

    fn read_at(&self, ino: Ino, offset: u64, max: usize) -> Result<&[u8], Errno> {
        match &self.vfs.get(ino)?.content {
            Content::File(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = start.saturating_add(max).min(bytes.len());
                Ok(&bytes[start..end])
            }
            Content::Dir { .. } => Err(Errno::Isdir),
            Content::Symlink(_) => Err(Errno::Inval),
        }
    }

    /// `fd_filestat_set_size`
    pub fn fd_filestat_set_size(&mut self, fd: u32, size: u64) -> R {
        let (ino, _, _, rights) = self.file_fd(fd).map_err(|e| if e == Errno::Spipe { Errno::Inval } else { e })?;
        if rights & RIGHT_FD_WRITE == 0 {
            return Err(Errno::Badf.into());
        }
        if size > MAX_FILE_SIZE {
            return Err(Errno::Inval.into());
        }
        self.resize(ino, size)
    }

    /// `fd_advise`: accepted and ignored after checking its arguments.
    pub fn fd_advise(&mut self, fd: u32, _offset: u64, _len: u64, advice: u8) -> R {
        self.file_fd(fd)?;
        if advice > 5 {
            return Err(Errno::Inval.into());
        }
        Ok(())
    }

    /// `fd_allocate`: makes the file at least `offset + len` long.
    pub fn fd_allocate(&mut self, fd: u32, offset: u64, len: u64) -> R {
        let (ino, _, _, rights) = self.file_fd(fd)?;
        if rights & RIGHT_FD_WRITE == 0 {
            return Err(Errno::Badf.into());
        }
        // As posix_fallocate: a negative offset or a length that is not
        // positive is EINVAL, an end past the largest file EFBIG.
        if offset > MAX_FILE_SIZE || len == 0 || len > MAX_FILE_SIZE {
            return Err(Errno::Inval.into());
        }
        let end = offset.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::Fbig)?;
        if end > self.vfs.get(ino)?.size() {
            self.resize(ino, end)?;
        }
        Ok(())
    }

    /// `fd_sync` and `fd_datasync`: memory is always in sync.
    pub fn fd_sync(&mut self, fd: u32) -> R {
        self.fd(fd)?;
        Ok(())
    }

    /// `fd_seek`
    pub fn fd_seek(&mut self, mem: &mut Mem, fd: u32, delta: i64, whence: u8, out: u32) -> R {
        let (ino, offset, _, _) = self.file_fd(fd).map_err(|e| if e == Errno::Isdir { Errno::Badf } else { e })?;
        let base = match whence {
            0 => 0i128,
            1 => offset as i128,
            2 => self.vfs.get(ino)?.size() as i128,
            _ => return Err(Errno::Inval.into()),
        };
        let new = base + delta as i128;
        if new < 0 || new > i64::MAX as i128 {
            return Err(Errno::Inval.into());
        }
        let new = new as u64;
        mem.put_u64(out, new)?;
        if let Fd::File { offset, .. } = self.fd_mut(fd)? {
            *offset = new;
        }
        Ok(())
    }

    /// `fd_tell`
    pub fn fd_tell(&mut self, mem: &mut Mem, fd: u32, out: u32) -> R {
        let (_, offset, _, _) = self.file_fd(fd).map_err(|e| if e == Errno::Isdir { Errno::Badf } else { e })?;
        mem.put_u64(out, offset)?;
        Ok(())
    }

    /// The iovec array of a read or write, charged for its bytes, and cut
    /// to [`MAX_IO_BYTES`].
    fn iovecs(&mut self, mem: &Mem, ptr: u32, count: u32) -> R<Vec<IoVec>> {
        if count > super::mem::MAX_IOVS {
            return Err(Errno::Inval.into());
        }
        self.charge(cost::bytes(8 * u64::from(count)))?;
        Ok(IoVec::clamp(mem.iovecs(ptr, count)?, MAX_IO_BYTES))
    }

    /// `fd_read`
    pub fn fd_read(&mut self, mem: &mut Mem, fd: u32, iovs: u32, iovs_len: u32, nread: u32) -> R {
        let iovs = self.iovecs(mem, iovs, iovs_len)?;
        let want: usize = iovs.iter().map(|v| v.len as usize).sum();
        let n = match self.fd(fd)?.clone() {
            Fd::Stdin => {
                let start = self.stdin_pos.min(self.stdin.len());
                let n = want.min(self.stdin.len() - start);
                self.charge(cost::bytes(n as u64))?;
                let n = mem.scatter(&iovs, &self.stdin[start..start + n])?;
                self.stdin_pos += n;
                n
            }
            Fd::Stdout | Fd::Stderr => return Err(Errno::Badf.into()),
            Fd::Dir { .. } => return Err(Errno::Isdir.into()),
            Fd::File { ino, offset, rights, .. } => {
                if rights & RIGHT_FD_READ == 0 {
                    return Err(Errno::Badf.into());
                }
                let n = self.read_at(ino, offset, want)?.len();
                self.charge(cost::bytes(n as u64))?;
                let n = mem.scatter(&iovs, self.read_at(ino, offset, want)?)?;
                if let Fd::File { offset, .. } = self.fd_mut(fd)? {
                    *offset += n as u64;
                }
                n
            }
        };
        mem.put_u32(nread, n as u32)?;
        Ok(())
    }

    /// `fd_pread`
    pub fn fd_pread(&mut self, mem: &mut Mem, fd: u32, iovs: u32, iovs_len: u32, offset: u64, nread: u32) -> R {
        let iovs = self.iovecs(mem, iovs, iovs_len)?;
        let want: usize = iovs.iter().map(|v| v.len as usize).sum();
        let (ino, _, _, rights) = self.file_fd(fd)?;
        if rights & RIGHT_FD_READ == 0 {
            return Err(Errno::Badf.into());
        }
        if offset > MAX_FILE_SIZE {
            return Err(Errno::Inval.into());
        }
        let n = self.read_at(ino, offset, want)?.len();
        self.charge(cost::bytes(n as u64))?;
        let n = mem.scatter(&iovs, self.read_at(ino, offset, want)?)?;
        mem.put_u32(nread, n as u32)?;
        Ok(())
    }

    /// Appends the guest bytes `iovs` name to stdout (1) or stderr (2),
    /// trapping first if that would pass the stream's cap; copies straight
    /// from guest memory. Returns the bytes written.
    fn emit(&mut self, stream: u32, mem: &Mem, iovs: &[IoVec]) -> R<u64> {
        let total = IoVec::total(iovs);
        let (buf, cap, kind) =
            if stream == 1 { (&mut self.stdout, self.stdout_cap, TrapKind::StdoutLimit) } else { (&mut self.stderr, self.stderr_cap, TrapKind::StderrLimit) };
        if (buf.len() as u64).saturating_add(total) > cap {
            return Err(Fault::Stop(Stop::Trap(kind)));
        }
        self.charge(cost::bytes(total))?;
        let buf = if stream == 1 { &mut self.stdout } else { &mut self.stderr };
        let start = buf.len();
        for v in iovs {
            buf.extend_from_slice(mem.slice(v.ptr, v.len)?);
        }
        if self.stream_stdio {
            // Best effort: the captured bytes are the outcome; a closed host
            // pipe must not change it.
            let written = &buf[start..];
            let _ = if stream == 1 { std::io::stdout().write_all(written) } else { std::io::stderr().write_all(written) };
        }
        Ok(total)
    }

    /// `fd_write`. The iovecs may overlap, so their total can be far larger
    /// than the guest's memory: each destination checks its cap against that
    /// total before copying anything.
    pub fn fd_write(&mut self, mem: &mut Mem, fd: u32, iovs: u32, iovs_len: u32, nwritten: u32) -> R {
        let iovs = self.iovecs(mem, iovs, iovs_len)?;
        let written = match self.fd(fd)?.clone() {
            Fd::Stdout => self.emit(1, mem, &iovs)?,
            Fd::Stderr => self.emit(2, mem, &iovs)?,
            Fd::Stdin => return Err(Errno::Badf.into()),
            Fd::Dir { .. } => return Err(Errno::Isdir.into()),
            Fd::File { ino, offset, flags, rights } => {
                if rights & RIGHT_FD_WRITE == 0 {
                    return Err(Errno::Badf.into());
                }
                let at = if flags & FDFLAG_APPEND != 0 { self.vfs.get(ino)?.size() } else { offset };
                let written = self.write_iovecs(ino, at, mem, &iovs)?;
                if let Fd::File { offset, .. } = self.fd_mut(fd)? {
                    *offset = at + written;
                }
                written
            }
        };
        mem.put_u32(nwritten, u32::try_from(written).map_err(|_| Errno::Overflow)?)?;
        Ok(())
    }

    /// `fd_pwrite`
    pub fn fd_pwrite(&mut self, mem: &mut Mem, fd: u32, iovs: u32, iovs_len: u32, offset: u64, nwritten: u32) -> R {
        let iovs = self.iovecs(mem, iovs, iovs_len)?;
        let (ino, _, flags, rights) = self.file_fd(fd)?;
        if rights & RIGHT_FD_WRITE == 0 {
            return Err(Errno::Badf.into());
        }
        if offset > MAX_FILE_SIZE {
            return Err(Errno::Inval.into());
        }
        // As on Linux, pwrite on an append-mode file appends.
        let at = if flags & FDFLAG_APPEND != 0 { self.vfs.get(ino)?.size() } else { offset };
        let written = self.write_iovecs(ino, at, mem, &iovs)?;
        mem.put_u32(nwritten, u32::try_from(written).map_err(|_| Errno::Overflow)?)?;
        Ok(())
    }

    /// `fd_readdir`: `.`, `..`, then entries in sorted order; the cookie is
    /// the index of the next entry.
    pub fn fd_readdir(&mut self, mem: &mut Mem, fd: u32, buf: u32, buf_len: u32, cookie: u64, bufused: u32) -> R {
        let ino = match self.fd(fd)? {
            Fd::Dir { ino, .. } => *ino,
            _ => return Err(Errno::Notdir.into()),
        };
        mem.slice(buf, buf_len)?;
        let parent = self.vfs.parent(ino)?;
        // Skipping to the cookie is a step per entry skipped, paid first;
        // each entry listed is a step and its bytes, paid as it is listed.
        let count = self.vfs.entries(ino)?.len() as u64 + 2;
        self.charge(cost::steps(cookie.min(count)))?;
        let start = usize::try_from(cookie).unwrap_or(usize::MAX);
        let dots = [(".", ino), ("..", parent)];
        let list = dots.into_iter().chain(self.vfs.entries(ino)?.iter().map(|(n, &i)| (n.as_str(), i)));
        let mut out: Vec<u8> = Vec::new();
        for (index, (name, child)) in list.enumerate().skip(start) {
            if out.len() >= buf_len as usize {
                break;
            }
            pay(&mut self.fuel_remaining, cost::STEP + cost::bytes(24 + name.len() as u64))?;
            let filetype = self.vfs.get(child).map(|n| n.filetype()).unwrap_or(0);
            out.extend_from_slice(&(index as u64 + 1).to_le_bytes());
            out.extend_from_slice(&child.to_le_bytes());
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(&[filetype, 0, 0, 0]);
            out.extend_from_slice(name.as_bytes());
        }
        out.truncate(buf_len as usize);
        mem.write(buf, &out)?;
        mem.put_u32(bufused, out.len() as u32)?;
        Ok(())
    }

    // ---- paths --------------------------------------------------------------

    /// `path_open`
    #[allow(clippy::too_many_arguments)]
    pub fn path_open(
        &mut self,
        mem: &mut Mem,
        dirfd: u32,
        dirflags: u32,
        path: u32,
        path_len: u32,
        oflags: u16,
        base: u64,
        _inheriting: u64,
        fdflags: u16,
        out: u32,
    ) -> R {
        let (dir, passed_on) = match self.fd(dirfd)? {
            Fd::Dir { ino, inheriting, .. } => (*ino, *inheriting),
            _ => return Err(Errno::Notdir.into()),
        };
        let path = self.path_arg(mem, path, path_len)?;
        if fdflags & !FDFLAGS_ALL != 0 || oflags & !0xf != 0 {
            return Err(Errno::Inval.into());
        }
        // A descriptor never gets a right its directory does not pass on.
        if base & (RIGHT_FD_READ | RIGHT_FD_WRITE) & !passed_on != 0 {
            return Err(Errno::Notcapable.into());
        }
        let follow = dirflags & LOOKUP_SYMLINK_FOLLOW != 0;
        let r = self.vfs.resolve(dir, &path, follow)?;
        let wants_write = base & RIGHT_FD_WRITE != 0 || oflags & O_TRUNC != 0 || fdflags & FDFLAG_APPEND != 0;
        let now = self.wall();
        let ino = match r.ino {
            Some(ino) => {
                if oflags & O_CREAT != 0 && oflags & O_EXCL != 0 {
                    return Err(Errno::Exist.into());
                }
                let node = self.vfs.get(ino)?;
                match &node.content {
                    Content::Symlink(_) => return Err(Errno::Loop.into()),
                    Content::Dir { .. } => {
                        if wants_write {
                            return Err(Errno::Isdir.into());
                        }
                        self.vfs.get_mut(ino)?.open += 1;
                        let (rights, inheriting) = (DIR_RIGHTS & passed_on, DIR_INHERITING & passed_on);
                        let fd = self.insert_fd(Fd::Dir { ino, preopen: None, rights, inheriting });
                        return self.finish_open(mem, ino, fd, out);
                    }
                    Content::File(_) => {
                        if oflags & O_DIRECTORY != 0 {
                            return Err(Errno::Notdir.into());
                        }
                        if wants_write && !node.writable {
                            return Err(Errno::Rofs.into());
                        }
                    }
                }
                if oflags & O_TRUNC != 0 {
                    self.resize(ino, 0)?;
                }
                ino
            }
            None => {
                if oflags & O_CREAT == 0 {
                    return Err(Errno::Noent.into());
                }
                if oflags & O_DIRECTORY != 0 {
                    return Err(Errno::Inval.into());
                }
                if r.trailing_slash {
                    return Err(Errno::Isdir.into());
                }
                self.vfs.create(r.parent, &r.name, Content::File(Arc::new(Vec::new())), now)??
            }
        };
        // Rights: read and write as asked; everything else its directory
        // passes on.
        let rights = ((ALL_RIGHTS & !(RIGHT_FD_READ | RIGHT_FD_WRITE)) | (base & (RIGHT_FD_READ | RIGHT_FD_WRITE))) & passed_on;
        self.vfs.get_mut(ino)?.open += 1;
        let fd = self.insert_fd(Fd::File { ino, offset: 0, flags: fdflags, rights });
        self.finish_open(mem, ino, fd, out)
    }

    fn finish_open(&mut self, mem: &mut Mem, ino: Ino, fd: Result<u32, Fault>, out: u32) -> R {
        match fd {
            Ok(fd) => {
                if let Err(e) = mem.put_u32(out, fd) {
                    self.fd_close(fd)?;
                    return Err(e.into());
                }
                Ok(())
            }
            Err(e) => {
                if let Ok(node) = self.vfs.get_mut(ino) {
                    node.open = node.open.saturating_sub(1);
                }
                Err(e)
            }
        }
    }

    /// Resolves the guest path at `path`/`len` relative to directory `fd`.
    fn resolve_at(&mut self, mem: &Mem, fd: u32, path: u32, len: u32, follow: bool) -> R<Resolved> {
        let dir = self.dir_fd(fd)?;
        let path = self.path_arg(mem, path, len)?;
        Ok(self.vfs.resolve(dir, &path, follow)?)
    }

    /// A path argument: refused past [`MAX_PATH_LEN`] before a byte is
    /// copied (as Linux does past `PATH_MAX`), then charged per byte.
    fn path_arg(&mut self, mem: &Mem, ptr: u32, len: u32) -> R<String> {
        mem.slice(ptr, len)?;
        if len as usize > MAX_PATH_LEN {
            return Err(Errno::Nametoolong.into());
        }
        self.charge(cost::path(u64::from(len)))?;
        Ok(mem.str(ptr, len)?)
    }

    fn writable_dir(&self, ino: Ino) -> Result<(), Errno> {
        if self.vfs.get(ino)?.writable { Ok(()) } else { Err(Errno::Rofs) }
    }

    /// `path_create_directory`
    pub fn path_create_directory(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, false)?;
        if r.ino.is_some() {
            return Err(Errno::Exist.into());
        }
        self.writable_dir(r.parent)?;
        let now = self.wall();
        let content = Content::Dir { entries: BTreeMap::new(), parent: r.parent };
        self.vfs.create(r.parent, &r.name, content, now)??;
        Ok(())
    }

    /// `path_filestat_get`
    pub fn path_filestat_get(&mut self, mem: &mut Mem, fd: u32, flags: u32, path: u32, len: u32, out: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, flags & LOOKUP_SYMLINK_FOLLOW != 0)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        self.write_filestat(mem, ino, out)
    }

    /// `path_filestat_set_times`
    #[allow(clippy::too_many_arguments)]
    pub fn path_filestat_set_times(&mut self, mem: &mut Mem, fd: u32, flags: u32, path: u32, len: u32, atim: u64, mtim: u64, fst: u16) -> R {
        let r = self.resolve_at(mem, fd, path, len, flags & LOOKUP_SYMLINK_FOLLOW != 0)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        self.set_times(ino, atim, mtim, fst)
    }

    /// `path_link`: a hard link, within writable mounts only. The new path
    /// names a file, so a trailing `/` on it gives `ENOENT`, as on Linux.
    #[allow(clippy::too_many_arguments)]
    pub fn path_link(&mut self, mem: &mut Mem, old_fd: u32, old_flags: u32, old_path: u32, old_len: u32, new_fd: u32, new_path: u32, new_len: u32) -> R {
        let old_dir = self.dir_fd(old_fd)?;
        let new_dir = self.dir_fd(new_fd)?;
        let old_path = self.path_arg(mem, old_path, old_len)?;
        let new_path = self.path_arg(mem, new_path, new_len)?;
        let src = self.vfs.resolve(old_dir, &old_path, old_flags & LOOKUP_SYMLINK_FOLLOW != 0)?;
        let src_ino = src.ino.ok_or(Errno::Noent)?;
        if self.vfs.get(src_ino)?.is_dir() {
            return Err(Errno::Perm.into());
        }
        let dst = self.vfs.resolve(new_dir, &new_path, false)?;
        if dst.ino.is_some() {
            return Err(Errno::Exist.into());
        }
        if dst.trailing_slash {
            return Err(Errno::Noent.into());
        }
        self.writable_dir(dst.parent)?;
        if !self.vfs.get(src_ino)?.writable {
            return Err(Errno::Xdev.into());
        }
        self.vfs.reserve(0, 0, 1)?;
        // The entry added: a step, as for every directory edit.
        self.charge(cost::STEP)?;
        let now = self.wall();
        if let Content::Dir { entries, .. } = &mut self.vfs.get_mut(dst.parent)?.content {
            entries.insert(dst.name, src_ino);
        }
        let node = self.vfs.get_mut(src_ino)?;
        node.nlink += 1;
        node.ctim = now;
        Ok(())
    }

    /// `path_readlink`: the target, truncated to the buffer as on Linux.
    #[allow(clippy::too_many_arguments)]
    pub fn path_readlink(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32, buf: u32, buf_len: u32, bufused: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, false)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        let Content::Symlink(target) = &self.vfs.get(ino)?.content else {
            return Err(Errno::Inval.into());
        };
        let n = target.len().min(buf_len as usize);
        let bytes = target.as_bytes()[..n].to_vec();
        self.charge(cost::bytes(n as u64))?;
        mem.write(buf, &bytes)?;
        mem.put_u32(bufused, n as u32)?;
        Ok(())
    }

    /// `path_remove_directory`
    pub fn path_remove_directory(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, false)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        if r.name == "." {
            return Err(Errno::Inval.into());
        }
        let node = self.vfs.get(ino)?;
        let Content::Dir { entries, .. } = &node.content else {
            return Err(Errno::Notdir.into());
        };
        if !entries.is_empty() {
            return Err(Errno::Notempty.into());
        }
        self.writable_dir(r.parent)?;
        let now = self.wall();
        self.vfs.unlink(r.parent, &r.name, now)?;
        Ok(())
    }

    /// `path_unlink_file`
    pub fn path_unlink_file(&mut self, mem: &mut Mem, fd: u32, path: u32, len: u32) -> R {
        let r = self.resolve_at(mem, fd, path, len, false)?;
        let ino = r.ino.ok_or(Errno::Noent)?;
        if self.vfs.get(ino)?.is_dir() {
            return Err(Errno::Isdir.into());
        }
        if r.trailing_slash {
            return Err(Errno::Notdir.into());
        }
        self.writable_dir(r.parent)?;
        let now = self.wall();
        self.vfs.unlink(r.parent, &r.name, now)?;
        Ok(())
    }

    /// `path_symlink`: a relative target may be anything (following one
    /// that leaves the preopen is refused at resolution time); an absolute
    /// one could only ever name something outside it, and is refused with
    /// `ENOTCAPABLE` here, as wasmtime refuses it.
    pub fn path_symlink(&mut self, mem: &mut Mem, target: u32, target_len: u32, fd: u32, path: u32, len: u32) -> R {
        // A target is held by the host and written to disk with the output:
        // bound it as Linux does (ENAMETOOLONG past PATH_MAX), and refuse
        // what no host path can hold. Checked before the bytes are copied.
        if target_len as usize > MAX_PATH_LEN {
            return Err(Errno::Nametoolong.into());
        }
        self.charge(cost::path(u64::from(target_len)))?;
        let target = mem.str(target, target_len)?;
        if target.contains('\0') {
            return Err(Errno::Inval.into());
        }
        if target.starts_with('/') {
            return Err(Errno::Notcapable.into());
        }
        let r = self.resolve_at(mem, fd, path, len, false)?;
        if r.ino.is_some() {
            return Err(Errno::Exist.into());
        }
        if r.trailing_slash {
            return Err(Errno::Noent.into());
        }
        self.writable_dir(r.parent)?;
        let now = self.wall();
        self.vfs.create(r.parent, &r.name, Content::Symlink(target), now)??;
        Ok(())
    }

    /// `path_rename`, with POSIX `rename` semantics.
    #[allow(clippy::too_many_arguments)]
    pub fn path_rename(&mut self, mem: &mut Mem, old_fd: u32, old_path: u32, old_len: u32, new_fd: u32, new_path: u32, new_len: u32) -> R {
        let old_dir = self.dir_fd(old_fd)?;
        let new_dir = self.dir_fd(new_fd)?;
        let old_path = self.path_arg(mem, old_path, old_len)?;
        let new_path = self.path_arg(mem, new_path, new_len)?;
        let src = self.vfs.resolve(old_dir, &old_path, false)?;
        let src_ino = src.ino.ok_or(Errno::Noent)?;
        let dst = self.vfs.resolve(new_dir, &new_path, false)?;
        if src.name == "." || dst.name == "." {
            return Err(Errno::Inval.into());
        }
        self.writable_dir(src.parent)?;
        self.writable_dir(dst.parent)?;
        if self.vfs.get(src.parent)?.writable != self.vfs.get(dst.parent)?.writable {
            return Err(Errno::Xdev.into());
        }
        let src_is_dir = self.vfs.get(src_ino)?.is_dir();
        if !src_is_dir && (dst.trailing_slash || src.trailing_slash) {
            return Err(Errno::Notdir.into());
        }
        if let Some(dst_ino) = dst.ino {
            if dst_ino == src_ino {
                return Ok(());
            }
            let dst_node = self.vfs.get(dst_ino)?;
            match (&dst_node.content, src_is_dir) {
                (Content::Dir { entries, .. }, true) => {
                    if !entries.is_empty() {
                        return Err(Errno::Notempty.into());
                    }
                }
                (Content::Dir { .. }, false) => return Err(Errno::Isdir.into()),
                (_, true) => return Err(Errno::Notdir.into()),
                (_, false) => {}
            }
        }
        if src_is_dir && self.vfs.is_ancestor(src_ino, dst.parent) {
            return Err(Errno::Inval.into());
        }
        // The entry moved: removed from one directory, added to another.
        self.charge(cost::steps(2))?;
        let now = self.wall();
        if dst.ino.is_some() {
            self.vfs.unlink(dst.parent, &dst.name, now)?;
        }
        if let Content::Dir { entries, .. } = &mut self.vfs.get_mut(src.parent)?.content {
            entries.remove(&src.name);
        }
        let p = self.vfs.get_mut(src.parent)?;
        p.mtim = now;
        p.ctim = now;
        let p = self.vfs.get_mut(dst.parent)?;
        if let Content::Dir { entries, .. } = &mut p.content {
            entries.insert(dst.name, src_ino);
        }
        p.mtim = now;
        p.ctim = now;
        let node = self.vfs.get_mut(src_ino)?;
        node.ctim = now;
        if let Content::Dir { parent, .. } = &mut node.content {
            *parent = dst.parent;
        }
        Ok(())
    }

    // ---- poll -----------------------------------------------------------

    /// `poll_oneoff`: descriptors are always ready; with only clock
    /// subscriptions, logical time jumps to the earliest deadline at once.
    pub fn poll_oneoff(&mut self, mem: &mut Mem, subs: u32, events: u32, nsubs: u32, nevents_out: u32) -> R {
        if nsubs == 0 || nsubs > MAX_POLL_SUBSCRIPTIONS {
            return Err(Errno::Inval.into());
        }
        // Both arrays are checked whole; fields are then read and written
        // at offsets inside them (`nsubs` is at most 4096, so the sizes fit).
        mem.slice(subs, nsubs * 48)?;
        mem.slice_mut(events, nsubs * 32)?;
        self.charge(cost::steps(u64::from(nsubs)) + cost::bytes(80 * u64::from(nsubs)))?;
        let raw = mem.slice(subs, nsubs * 48)?.to_vec();
        struct Sub {
            userdata: u64,
            tag: u8,
            clock: u32,
            deadline: Option<u64>,
            fd: u32,
        }
        let field = |rec: &[u8], at: usize, n: usize| rec[at..at + n].iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        let mut list = Vec::with_capacity(nsubs as usize);
        for rec in raw.chunks_exact(48) {
            let userdata = field(rec, 0, 8);
            let tag = rec[8];
            let mut sub = Sub { userdata, tag, clock: 0, deadline: None, fd: 0 };
            match tag {
                0 => {
                    sub.clock = field(rec, 16, 4) as u32;
                    let timeout = field(rec, 24, 8);
                    let abstime = field(rec, 40, 2) & 1 != 0;
                    sub.deadline = self.now(sub.clock).ok().map(|now| if abstime { timeout } else { now.saturating_add(timeout) });
                }
                1 | 2 => sub.fd = field(rec, 16, 4) as u32,
                _ => return Err(Errno::Inval.into()),
            }
            list.push(sub);
        }
        let mut out: Vec<(u64, u16, u8, u64)> = Vec::new();
        // Descriptor subscriptions and invalid clocks complete at once.
        for s in &list {
            match s.tag {
                0 if s.deadline.is_none() => out.push((s.userdata, Errno::Inval as u16, 0, 0)),
                0 => {}
                _ => {
                    let (err, nbytes) = match self.fds.get(&s.fd) {
                        None => (Errno::Badf as u16, 0),
                        Some(Fd::Stdin) if s.tag == 1 => (0, (self.stdin.len() - self.stdin_pos.min(self.stdin.len())) as u64),
                        Some(Fd::File { ino, offset, .. }) if s.tag == 1 => (0, self.vfs.get(*ino).map(|n| n.size()).unwrap_or(0).saturating_sub(*offset)),
                        Some(_) => (0, 0),
                    };
                    out.push((s.userdata, err, s.tag, nbytes));
                }
            }
        }
        if out.is_empty() {
            // Only valid clock subscriptions: sleep until the earliest one,
            // measured on its own clock, then fire every one that is due.
            let wait = list.iter().filter_map(|s| s.deadline.map(|d| d.saturating_sub(self.now(s.clock).unwrap_or(0)))).min().unwrap_or(0);
            self.sleep_ns = self.sleep_ns.saturating_add(wait);
            for s in &list {
                if let Some(d) = s.deadline
                    && self.now(s.clock).unwrap_or(0) >= d
                {
                    out.push((s.userdata, 0, 0, 0));
                }
            }
        }
        let n = out.len() as u32;
        let mut rec = mem.record_mut(events, n * 32)?;
        for (i, (userdata, err, tag, nbytes)) in out.into_iter().enumerate() {
            let at = i * 32;
            rec.u64(at, userdata);
            rec.u16(at + 8, err);
            rec.u8(at + 10, tag);
            for pad in [11, 12, 13, 14, 15] {
                rec.u8(at + pad, 0);
            }
            rec.u64(at + 16, nbytes);
            rec.u64(at + 24, 0);
        }
        mem.put_u32(nevents_out, n)?;
        Ok(())
    }
}
