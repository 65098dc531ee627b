//! The scheduler settings of a threaded job: which rule picks the next
//! guest thread, its seed, how long a thread runs before the scheduler may
//! switch, and how many threads may be alive at once.
//!
//! A job is *threaded* when its module imports `wasi::thread-spawn` or a
//! shared memory, or defines a shared memory ([`is_threaded`]); only then
//! does it carry [`Threads`] (and only then are they in the job encoding,
//! field 14). How the scheduler uses them is in `docs/THREADS.md`.

use wasmparser::{Parser, Payload, TypeRef};

/// How the next thread to run is chosen at each switch point. Every rule
/// is a function of the job alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Uniformly among the runnable threads, from the scheduler's seeded
    /// stream. The default: it explores interleavings a fixed rule never
    /// reaches, yet each seed is one fixed schedule.
    Random,
    /// The runnable thread after the one that ran, in thread-id order.
    RoundRobin,
    /// Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010,
    /// as awslabs/shuttle implements it): threads get random distinct
    /// priorities, the highest-priority runnable thread runs, and at
    /// `depth - 1` random switch points the running thread drops below all
    /// others. Finds any bug of depth `depth` with a known probability.
    Pct {
        /// The bug depth aimed at, 1 ..= [`MAX_PCT_DEPTH`].
        depth: u32,
    },
}

impl Policy {
    /// The spec spelling: `random`, `round-robin` or `pct`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Random => "random",
            Policy::RoundRobin => "round-robin",
            Policy::Pct { .. } => "pct",
        }
    }

    /// The byte in the job encoding (field 14): 0 random, 1 round-robin, 2 PCT.
    pub fn code(self) -> u8 {
        match self {
            Policy::Random => 0,
            Policy::RoundRobin => 1,
            Policy::Pct { .. } => 2,
        }
    }

    /// PCT's depth; 0 for the other rules (as encoded).
    pub fn depth(self) -> u32 {
        match self {
            Policy::Pct { depth } => depth,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Pct { depth } => write!(f, "pct (depth {depth})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Fuel a thread runs before the scheduler may switch to another, when a
/// job names none: 10 000 units (about 10 µs of compute), short enough
/// that threads interleave many times in a test-sized run, long enough
/// that switching costs little beside the work.
pub const DEFAULT_SLICE: u64 = 10_000;

/// Shortest slice: 100 units. Every slice end is a switch, which costs the
/// host far more than 100 instructions.
pub const MIN_SLICE: u64 = 100;

/// Longest slice: 2⁴⁰ units. Past it the scheduler would only switch at
/// waits, which a guest that spins never reaches.
pub const MAX_SLICE: u64 = 1 << 40;

/// Threads alive at once when a job names no `limits.threads`: 32, the
/// main thread included.
pub const DEFAULT_MAX_THREADS: u64 = 32;

/// Most threads a job may allow alive at once: 256. Each holds an instance
/// of the module and a reserved native stack of 65 MiB (address space, not
/// memory, until used), so 256 reserve 16 GiB of address space.
pub const MAX_THREADS: u64 = 256;

/// PCT's depth when a spec names none: 3, shuttle's default.
pub const DEFAULT_PCT_DEPTH: u32 = 3;

/// Largest PCT depth: 64.
pub const MAX_PCT_DEPTH: u32 = 64;

/// A threaded job's scheduler settings, all in the job digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Threads {
    /// The rule that picks the next thread. Default: [`Policy::Random`].
    pub policy: Policy,
    /// The scheduler's seed as the job gives it. Default: none, and then
    /// [`Threads::effective_seed`] derives one from the job's seed.
    pub seed: Option<u64>,
    /// Fuel a thread runs before the scheduler may switch. Default:
    /// [`DEFAULT_SLICE`].
    pub slice: u64,
    /// Most threads alive at once, the main thread included (`limits.threads`);
    /// a spawn past it fails with `EAGAIN`. Default: [`DEFAULT_MAX_THREADS`].
    pub max_threads: u64,
}

impl Default for Threads {
    fn default() -> Threads {
        Threads { policy: Policy::Random, seed: None, slice: DEFAULT_SLICE, max_threads: DEFAULT_MAX_THREADS }
    }
}

impl Threads {
    /// The seed the scheduler runs with: the job's own [`Threads::seed`], or
    /// else the first 8 bytes, little-endian, of SHA-256(`canon/sched-seed/v1\n` ‖
    /// the job's seed, little-endian): a stream apart from `random_get`'s,
    /// which is keyed by SHA-256(`canon/rng/v1\n` ‖ seed).
    pub fn effective_seed(&self, job_seed: u64) -> u64 {
        if let Some(seed) = self.seed {
            return seed;
        }
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"canon/sched-seed/v1\n");
        h.update(job_seed.to_le_bytes());
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

/// Whether `wasm` is a threaded module: it imports
/// `wasi::thread-spawn` or a shared memory, or defines a shared memory.
/// Unparseable bytes are not threaded (validation reports them).
pub fn is_threaded(wasm: &[u8]) -> bool {
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::ImportSection(reader)) => {
                for import in reader.into_imports() {
                    let Ok(import) = import else { return false };
                    match import.ty {
                        TypeRef::Memory(m) if m.shared => return true,
                        TypeRef::Func(_) | TypeRef::FuncExact(_)
                            if import.module == crate::abi::WASI_THREADS_MODULE && import.name == crate::abi::THREAD_SPAWN =>
                        {
                            return true;
                        }
                        _ => {}
                    }
                }
            }
            Ok(Payload::MemorySection(reader)) => {
                for memory in reader {
                    if memory.is_ok_and(|m| m.shared) {
                        return true;
                    }
                }
            }
            Ok(Payload::CodeSectionStart { .. }) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    false
}
