//! Memory and table limits that keep host failures out of outcomes.
//!
//! wasmtime's [`StoreLimits`] decides what a guest may grow to. This wrapper
//! also remembers *why* a growth did not happen, because the two reasons
//! must end differently:
//!
//! - the job's limit refused it: the same on every node, so it is part of
//!   the outcome (`memory.grow` returns -1; an instantiation whose initial
//!   memory or table is too large traps `memory_limit`);
//! - the host failed to provide memory it was allowed to (an `mmap`
//!   failure): that depends on the host, so the run yields no result.

use wasmtime::{ResourceLimiter, StoreLimits};

/// [`StoreLimits`] that records refusals and host failures, and caps the
/// bytes of all linear memories of the store together (a job with preloads
/// has one memory per module; the job's memory limit is for all of them).
pub struct Limiter {
    limits: StoreLimits,
    /// Most bytes all memories together may hold.
    memory_cap: u64,
    /// Bytes all memories hold now.
    memory_total: u64,
    /// A growth was refused by the job's limits.
    pub refused: bool,
    /// The host failed to grow a memory or table the limits allowed.
    pub host_failed: bool,
}

impl Limiter {
    /// Wraps `limits`; `trap_on_grow_failure` must be off (refusals are
    /// reported to the guest, host failures end the run).
    /// `memory_cap` bounds all memories together.
    pub fn new(limits: StoreLimits, memory_cap: u64) -> Limiter {
        Limiter { limits, memory_cap, memory_total: 0, refused: false, host_failed: false }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        let total = self.memory_total.saturating_add(growth);
        let allowed = self.limits.memory_growing(current, desired, maximum)? && total <= self.memory_cap;
        if allowed {
            self.memory_total = total;
        }
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.host_failed = true;
        Err(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.host_failed = true;
        Err(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
