//! What a WASI call costs in fuel: a fixed part for the call and a part in
//! proportion to the work it does, so that a job's wall time is bounded by
//! its fuel whatever host calls it makes (docs/FUEL.md, "Host calls", has
//! the table and the measurements behind it).
//!
//! The model is the Internet Computer's system API: a fixed overhead per
//! call plus a charge per byte copied. Work whose size is known before the
//! call does it (bytes to copy, fill or generate, entries to list) is
//! charged first, so a call that cannot pay does none of it and the job
//! stops `out_of_fuel`; walks whose length only the walk finds (path
//! components, symbolic-link expansions, parents followed), each bounded per
//! call, are counted as they go and charged when the call ends.
//!
//! Every figure here is part of the determinism ABI: changing one changes
//! the fuel an outcome reports, and bumps
//! [`crate::sandbox::engine::DETERMINISM_ABI`].

/// Every WASI call, whatever it does: the trampoline into the host, the
/// memory lookup, the fuel handed over and back, and the errno: what a
/// call to `sched_yield` takes, measured against compute (docs/FUEL.md).
pub const CALL: u64 = 500;

/// One step of a walk: a path component resolved, a directory entry
/// listed or skipped, a parent followed, a poll subscription, a descriptor
/// scanned for the lowest free number.
pub const STEP: u64 = 32;

/// Bytes copied between guest memory and the host, or filled with zeros,
/// per unit of fuel (as `memory.copy` is charged, at a copy's real cost:
/// see docs/FUEL.md).
pub const BYTES_PER_FUEL: u64 = 8;

/// Fuel per byte of the job's random stream (ChaCha20 costs far more per
/// byte than a copy).
pub const RANDOM_FUEL_PER_BYTE: u64 = 2;

/// Bytes of a path argument or symlink target per unit of fuel: a path is
/// copied, checked as UTF-8, scanned for NUL and split, not just copied.
pub const PATH_BYTES_PER_FUEL: u64 = 2;

/// The fuel to take in a path argument of `n` bytes.
pub fn path(n: u64) -> u64 {
    n.div_ceil(PATH_BYTES_PER_FUEL)
}

/// The fuel to copy or fill `n` bytes.
pub fn bytes(n: u64) -> u64 {
    n.div_ceil(BYTES_PER_FUEL)
}

/// The fuel to generate `n` random bytes.
pub fn random(n: u64) -> u64 {
    n.saturating_mul(RANDOM_FUEL_PER_BYTE)
}

/// The fuel for `n` steps of a walk.
pub fn steps(n: u64) -> u64 {
    n.saturating_mul(STEP)
}
