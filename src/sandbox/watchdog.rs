//! The wall-clock safety net: one thread for the whole process that, when a
//! run's deadline passes, raises that run's surcharges so that the guest's
//! next fuel check fails.
//!
//! Every fuel check of instrumented code subtracts a surcharge it reads from
//! the `canon.watchdog` memory (see [`crate::instrument::WATCHDOG_MEMORY`]);
//! the host creates that memory zeroed for each run. A check fails when the
//! fuel is below zero, so with surcharges of 0 only running out of fuel
//! stops a run, and with [`DEADLINE_SURCHARGE`] (in every slot: the whole
//! page) the next check stops it whatever the fuel. Checks are
//! at every loop header and before every call and return, so a guest cannot
//! run long without one.
//!
//! A run arms the watchdog with its deadline and the address of its page,
//! and disarms it (drops the [`Armed`] guard) before its store, and so the
//! memory, goes away. Arming and disarming take a lock and no system call;
//! the thread starts with the first armed run and then sleeps until the
//! earliest deadline.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::instrument::DEADLINE_SURCHARGE;
use crate::instrument::meter::SURCHARGE_SLOTS;

/// Runs with a deadline, and whether the thread has started.
struct Runs {
    armed: Vec<Entry>,
    next_id: u64,
    started: bool,
}

struct Entry {
    id: u64,
    deadline: Instant,
    page: Page,
    fired: bool,
}

/// The address of one run's page of surcharges.
struct Page(*mut i64);

// SAFETY: the pointer is only written by the watchdog thread, under the
// lock, while its run holds the `Armed` guard, whose contract keeps the
// page alive and not otherwise touched by the host.
#[allow(unsafe_code)]
unsafe impl Send for Page {}

static RUNS: Mutex<Runs> = Mutex::new(Runs { armed: Vec::new(), next_id: 0, started: false });
static WAKE: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Runs> {
    // Nothing under the lock can panic halfway through an update.
    RUNS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One armed run. Dropping it disarms the watchdog for that run: after the
/// drop, its page is never written again.
pub struct Armed {
    id: u64,
}

impl Armed {
    /// Has the run's deadline passed (or the run been stopped with
    /// [`fire`]) and its surcharges been raised?
    pub fn fired(&self) -> bool {
        lock().armed.iter().any(|e| e.id == self.id && e.fired)
    }

    /// The run's id, for [`fire`].
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Raises the surcharges of armed run `id` now, as if its deadline had
/// passed, so its next check stops it. Nothing happens if it is no longer
/// armed.
pub fn fire(id: u64) {
    let mut runs = lock();
    if let Some(e) = runs.armed.iter_mut().find(|e| e.id == id && !e.fired) {
        raise(e);
    }
}

/// Stores [`DEADLINE_SURCHARGE`] in every slot of the entry's page.
fn raise(e: &mut Entry) {
    // SAFETY: the entry is still armed (guards remove theirs under the lock,
    // which the caller holds, before the memory goes away), so `arm`'s
    // contract holds: the address is valid and aligned. The store is
    // atomic; guest code reads the page with plain loads, as it reads
    // wasmtime's own epoch counter.
    #[allow(unsafe_code)]
    for slot in 0..SURCHARGE_SLOTS as usize {
        unsafe {
            AtomicI64::from_ptr(e.page.0.add(slot)).store(DEADLINE_SURCHARGE, Ordering::Relaxed);
        }
    }
    e.fired = true;
}

impl Drop for Armed {
    fn drop(&mut self) {
        lock().armed.retain(|e| e.id != self.id);
    }
}

/// Arms the watchdog: at `deadline` it stores [`DEADLINE_SURCHARGE`] in every
/// `i64` of the 64 KiB page at `page`.
///
/// # Safety
///
/// `page` must be an aligned 64 KiB page valid for writes, and stay so
/// until the returned guard is dropped. The host must not read or write it
/// meanwhile (compiled guest code may read it: the write is atomic).
#[allow(unsafe_code)]
pub unsafe fn arm(deadline: Instant, page: *mut i64) -> std::io::Result<Armed> {
    let mut runs = lock();
    if !runs.started {
        std::thread::Builder::new().name("canon-watchdog".into()).spawn(watch)?;
        runs.started = true;
    }
    let id = runs.next_id;
    runs.next_id += 1;
    let earliest = runs.armed.iter().filter(|e| !e.fired).all(|e| e.deadline > deadline);
    runs.armed.push(Entry { id, deadline, page: Page(page), fired: false });
    if earliest {
        WAKE.notify_one();
    }
    Ok(Armed { id })
}

/// The watchdog thread: raises the surcharges of every run whose deadline has passed, then
/// sleeps until the next deadline or until a run arms an earlier one.
fn watch() {
    let mut runs = lock();
    loop {
        let now = Instant::now();
        for e in runs.armed.iter_mut().filter(|e| !e.fired && e.deadline <= now) {
            raise(e);
        }
        let next = runs.armed.iter().filter(|e| !e.fired).map(|e| e.deadline).min();
        runs = match next {
            None => WAKE.wait(runs).unwrap_or_else(PoisonError::into_inner),
            Some(at) => WAKE.wait_timeout(runs, at.saturating_duration_since(now)).unwrap_or_else(PoisonError::into_inner).0,
        };
    }
}
