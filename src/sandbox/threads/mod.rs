//! Deterministic threads: a threaded job's guest threads run one at a
//! time, as fibers on one host thread, under a scheduler whose every
//! decision is a function of the job (docs/THREADS.md).
//!
//! Each guest thread has its own [`Store`] and instance of the module, all
//! importing one [`SharedMemory`] (`env.memory`) and sharing one WASI world
//! and one fuel budget. Each runs as a `call_async` future (`_start` for
//! the main thread, `wasi_thread_start(tid, arg)` for the others), and
//! [`run`] polls them itself, one at a time, with no async runtime: a
//! thread runs until it reaches a *switch point*, a host call that records
//! why it stops and returns `Pending` once:
//!
//! - its fuel slice is used up (`canon.slice`, called where a fuel check
//!   of the instrumented module fails);
//! - it waits (`canon.wait32`/`wait64`, which `memory.atomic.wait*` became)
//!   and the value is the expected one;
//! - it notifies (`canon.notify`), spawns (`wasi::thread-spawn`) or yields
//!   (`sched_yield`);
//! - it ends.
//!
//! Then the job's [`Policy`](crate::job::Policy) picks the next thread
//! among those that can run, which gets a fresh slice. When none can run,
//! logical time jumps to the earliest wait deadline (that wait times out);
//! with no deadline either, the job ends [`TrapKind::Deadlock`]. A trap or
//! `proc_exit` in any thread, or the main thread's return, ends the job.
//!
//! Fuel: the job's budget is split between the running thread's
//! `canon.fuel` (its slice) and the scheduler's *bank* (the rest). A thread
//! that stops returns what it did not use to the bank; a WASI call counts
//! both (see `wasi::link`), so logical time and fuel are the job's, not a
//! thread's.

pub mod policy;
pub mod trace;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use wasmtime::{Caller, ExternType, Global, GlobalType, Linker, MemoryType, Module, Mutability, SharedMemory, Store, StoreLimitsBuilder, Trap, Val, ValType};

use super::wasi::{HostConfig, SharedHost, Stop, StoreData, WasiHost, lock_host};
use super::watchdog::{self, Armed};
use super::{Checks, RunError, RunOptions, Sandbox, classify, engine, limiter::Limiter};
use crate::abi::{CANON_MODULE, MAX_THREAD_ID, THREAD_SPAWN, WASI_MODULE, WASI_THREADS_MODULE};
use crate::instrument::{self, threads as rewrite};
use crate::job::{Job, SHARED_MEMORY_IMPORT, Threads};
use crate::outcome::{Outcome, Termination, TrapKind};
use policy::Chooser;
use trace::{Reason, Step};

/// Fuel each scheduler call (`wait`, `notify`, `thread-spawn`,
/// `sched_yield`) costs besides its `call` instruction: what a WASI call
/// costs ([`super::wasi::cost::CALL`]), which a switch costs the host at
/// least. Part of the determinism ABI.
pub const SCHED_CALL: u64 = super::wasi::cost::CALL;

/// What a spawn costs on top of [`SCHED_CALL`], per byte of the module: a
/// new thread is a new instance, whose creation is work in proportion to
/// the module (its functions, tables and segments), charged as a copy of
/// its bytes is ([`super::wasi::cost::bytes`]), so a loop of spawns is
/// bounded by fuel as a loop of copies is.
pub fn spawn_cost(module_bytes: u64) -> u64 {
    SCHED_CALL.saturating_add(super::wasi::cost::bytes(module_bytes))
}

/// WASI's `EAGAIN`, which `thread-spawn` returns (negated) past the job's
/// thread limit, as `pthread_create` does.
const EAGAIN: i32 = 6;

/// `memory.atomic.wait`'s results.
const WOKEN: u32 = 0;
const NOT_EQUAL: i32 = 1;
const TIMED_OUT: u32 = 2;

/// The main thread's id. wasi-threads gives spawned threads ids from 1.
const MAIN: u32 = 0;

/// Locks the scheduler state.
pub fn lock(s: &Mutex<Sched>) -> MutexGuard<'_, Sched> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The bytes of a threaded job's shared memory, for one host call.
pub fn shared_bytes<'a>(memory: &SharedMemory) -> &'a mut [u8] {
    let data = memory.data();
    // SAFETY: the scheduler runs exactly one guest thread at a time, all on
    // the one host thread that is making this host call on behalf of the
    // running guest thread; every other guest thread is suspended at a
    // switch point, and no other host code touches the memory, so nothing
    // else reads or writes these bytes while the slice lives (it is used
    // only within the call). The memory cannot shrink, and it grows only
    // by the guest's `memory.grow`, which cannot run during a host call;
    // `data` covers exactly its current, mapped size. `UnsafeCell<u8>` has
    // the layout of `u8`.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts_mut(data.as_ptr() as *mut u8, data.len())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Runnable,
    /// Waiting on the address, until the deadline (logical monotonic ns),
    /// if any; `seq` orders waiters (notify wakes the earliest first).
    Waiting {
        addr: u64,
        deadline: Option<u64>,
        seq: u64,
    },
}

/// The scheduler's state, shared by the executor and the host calls of
/// every thread's store.
pub struct Sched {
    /// Fuel of the job not handed to the running thread.
    pub bank: u64,
    /// Live threads by id.
    threads: BTreeMap<u32, Status>,
    /// What each thread's last wait returned, by id.
    woken: BTreeMap<u32, u32>,
    /// The thread running now.
    current: u32,
    /// The fuel the thread resumed next takes into its `canon.fuel`.
    grant: u64,
    /// Set by the switch point the running thread stopped at.
    switch: Option<Reason>,
    /// Threads spawned since the executor last looked: (id, start argument).
    spawned: Vec<(u32, i32)>,
    next_tid: u32,
    max_threads: u64,
    waits: u64,
    /// What a spawn costs ([`spawn_cost`] of the job's module).
    spawn_cost: u64,
}

impl Sched {
    fn wake(&mut self, addr: u64, count: u32) -> u32 {
        let mut waiting: Vec<(u64, u32)> = self
            .threads
            .iter()
            .filter_map(|(&t, s)| match *s {
                Status::Waiting { addr: a, seq, .. } if a == addr => Some((seq, t)),
                _ => None,
            })
            .collect();
        waiting.sort_unstable();
        let mut n = 0;
        for (_, t) in waiting.into_iter().take(count as usize) {
            self.threads.insert(t, Status::Runnable);
            self.woken.insert(t, WOKEN);
            n += 1;
        }
        n
    }
}

/// A future that is pending once: how a host call hands control back to
/// the executor. The executor polls the thread again when it chooses it.
struct Suspend(bool);

impl Future for Suspend {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

fn sched_of(caller: &Caller<'_, StoreData>) -> wasmtime::Result<Arc<Mutex<Sched>>> {
    caller.data().sched.clone().ok_or_else(|| wasmtime::Error::msg("internal: a scheduler call in an unthreaded store"))
}

fn fuel_global(caller: &Caller<'_, StoreData>) -> wasmtime::Result<Global> {
    caller.data().fuel.ok_or_else(|| wasmtime::Error::msg("internal: a store without canon.fuel"))
}

/// Charges `cost` against the job's fuel (the store's and the bank), or
/// ends the job `out_of_fuel`.
fn charge(caller: &mut Caller<'_, StoreData>, cost: u64) -> wasmtime::Result<()> {
    let global = fuel_global(caller)?;
    let g = global.get(&mut *caller).i64().unwrap_or(0);
    let sched = sched_of(caller)?;
    let mut s = lock(&sched);
    let total = i128::from(s.bank) + i128::from(g) - i128::from(cost);
    if total < 0 {
        return Err(wasmtime::Error::new(Stop::Trap(TrapKind::OutOfFuel)));
    }
    let total = total as u64;
    // The bank keeps what it held, up to the total; the thread the rest.
    let mine = total.saturating_sub(s.bank);
    s.bank = s.bank.min(total);
    drop(s);
    global.set(&mut *caller, Val::I64(mine as i64))
}

/// Stops the running thread at a switch point: its fuel goes to the bank,
/// and when the executor resumes it, it takes its new slice.
async fn switch(caller: &mut Caller<'_, StoreData>, why: Reason) -> wasmtime::Result<()> {
    let global = fuel_global(caller)?;
    let g = global.get(&mut *caller).i64().unwrap_or(0);
    let sched = sched_of(caller)?;
    {
        let mut s = lock(&sched);
        let total = i128::from(s.bank) + i128::from(g);
        if total < 0 {
            return Err(wasmtime::Error::new(Stop::Trap(TrapKind::OutOfFuel)));
        }
        s.bank = total as u64;
        s.switch = Some(why);
    }
    global.set(&mut *caller, Val::I64(0))?;
    Suspend(false).await;
    let grant = lock(&sched).grant;
    global.set(&mut *caller, Val::I64(grant as i64))
}

/// The effective address of a wait or notify, checked as the instruction
/// checks it: in bounds (`memory_out_of_bounds`), then aligned to `width`
/// (`unaligned_atomic`).
fn address(caller: &Caller<'_, StoreData>, addr: i32, offset: i32, width: u64) -> wasmtime::Result<(SharedMemory, u64)> {
    let memory = caller.data().shared_memory.clone().ok_or_else(|| wasmtime::Error::msg("internal: no shared memory"))?;
    let ea = u64::from(addr as u32) + u64::from(offset as u32);
    if ea + width > memory.data_size() as u64 {
        return Err(wasmtime::Error::new(Trap::MemoryOutOfBounds));
    }
    if ea % width != 0 {
        return Err(wasmtime::Error::new(Trap::HeapMisaligned));
    }
    Ok((memory, ea))
}

/// Reads the `width`-byte value at the checked address `ea`.
fn load(memory: &SharedMemory, ea: u64, width: u64) -> u64 {
    let base = memory.data().as_ptr() as *mut u8;
    // SAFETY: `address` checked that `ea + width` is within the memory's
    // current size and that `ea` is aligned to `width` (the memory's base
    // is page-aligned); the memory outlives this read; no guest thread runs
    // during a host call (see `shared_bytes`), and the load is atomic as
    // the guest's own atomics are.
    #[allow(unsafe_code)]
    unsafe {
        let p = base.add(ea as usize);
        if width == 4 { u64::from(AtomicU32::from_ptr(p.cast()).load(Ordering::SeqCst)) } else { AtomicU64::from_ptr(p.cast()).load(Ordering::SeqCst) }
    }
}

/// `memory.atomic.wait32/64`, rewritten: returns 0 when notified, 1 if the
/// value is not `expected`, 2 when the (relative, ns) timeout passed; a
/// negative timeout waits forever.
async fn wait(caller: &mut Caller<'_, StoreData>, addr: i32, offset: i32, width: u64, expected: u64, timeout: i64) -> wasmtime::Result<i32> {
    let (memory, ea) = address(caller, addr, offset, width)?;
    charge(caller, SCHED_CALL)?;
    if load(&memory, ea, width) != expected {
        return Ok(NOT_EQUAL);
    }
    let fuel_left = super::wasi::link::fuel_left(&mut *caller);
    let sched = sched_of(caller)?;
    let now = {
        let bank = lock(&sched).bank;
        lock_host(&caller.data().wasi).monotonic_at(bank.saturating_add(fuel_left))
    };
    {
        let mut s = lock(&sched);
        let deadline = u64::try_from(timeout).ok().map(|t| now.saturating_add(t));
        s.waits += 1;
        let (me, seq) = (s.current, s.waits);
        s.threads.insert(me, Status::Waiting { addr: ea, deadline, seq });
    }
    switch(caller, Reason::Wait).await?;
    let s = lock(&sched);
    Ok(s.woken.get(&s.current).copied().unwrap_or(WOKEN) as i32)
}

/// `memory.atomic.notify`, rewritten: wakes up to `count` threads waiting
/// on the address, those that began waiting first, and returns how many.
async fn notify(caller: &mut Caller<'_, StoreData>, addr: i32, count: i32, offset: i32) -> wasmtime::Result<i32> {
    let (_, ea) = address(caller, addr, offset, 4)?;
    charge(caller, SCHED_CALL)?;
    let sched = sched_of(caller)?;
    let n = lock(&sched).wake(ea, count as u32);
    switch(caller, Reason::Notify).await?;
    Ok(n as i32)
}

/// `wasi::thread-spawn`: a new thread's id, or `-EAGAIN` past the job's
/// thread limit (or past the last thread id).
async fn spawn(caller: &mut Caller<'_, StoreData>, start_arg: i32) -> wasmtime::Result<i32> {
    let cost = {
        let sched = sched_of(caller)?;
        lock(&sched).spawn_cost
    };
    charge(caller, cost)?;
    let tid = {
        let sched = sched_of(caller)?;
        let mut s = lock(&sched);
        if s.threads.len() as u64 >= s.max_threads || s.next_tid > MAX_THREAD_ID {
            return Ok(-EAGAIN);
        }
        let tid = s.next_tid;
        s.next_tid += 1;
        s.threads.insert(tid, Status::Runnable);
        s.spawned.push((tid, start_arg));
        tid
    };
    switch(caller, Reason::Spawn).await?;
    Ok(tid as i32)
}

/// `sched_yield`, in a threaded job a switch point.
async fn sched_yield(caller: &mut Caller<'_, StoreData>) -> wasmtime::Result<i32> {
    charge(caller, SCHED_CALL)?;
    switch(caller, Reason::Yield).await?;
    Ok(0)
}

/// The scheduler's host functions, over `linker` (canon's WASI host):
/// the threads pass's imports, `wasi::thread-spawn`, and `sched_yield`
/// as a switch point.
fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(CANON_MODULE, rewrite::WAIT32, |mut caller: Caller<'_, StoreData>, (addr, expected, timeout, offset): (i32, i32, i64, i32)| {
        Box::new(async move { wait(&mut caller, addr, offset, 4, u64::from(expected as u32), timeout).await })
    })?;
    linker.func_wrap_async(CANON_MODULE, rewrite::WAIT64, |mut caller: Caller<'_, StoreData>, (addr, expected, timeout, offset): (i32, i64, i64, i32)| {
        Box::new(async move { wait(&mut caller, addr, offset, 8, expected as u64, timeout).await })
    })?;
    linker.func_wrap_async(CANON_MODULE, rewrite::NOTIFY, |mut caller: Caller<'_, StoreData>, (addr, count, offset): (i32, i32, i32)| {
        Box::new(async move { notify(&mut caller, addr, count, offset).await })
    })?;
    linker.func_wrap_async(CANON_MODULE, rewrite::SLICE, |mut caller: Caller<'_, StoreData>, (): ()| {
        Box::new(async move { switch(&mut caller, Reason::Slice).await })
    })?;
    linker.func_wrap_async(WASI_THREADS_MODULE, THREAD_SPAWN, |mut caller: Caller<'_, StoreData>, (arg,): (i32,)| {
        Box::new(async move { spawn(&mut caller, arg).await })
    })?;
    linker.func_wrap_async(WASI_MODULE, "sched_yield", |mut caller: Caller<'_, StoreData>, (): ()| Box::new(async move { sched_yield(&mut caller).await }))?;
    Ok(())
}

/// What a thread's future gives back: its store (to read its counters),
/// whether its instance was created, and how it ended.
type Finished = (Store<StoreData>, bool, wasmtime::Result<()>);
type ThreadFuture = Pin<Box<dyn Future<Output = Finished>>>;

/// Everything one run's threads share.
struct Run<'a> {
    sandbox: &'a Sandbox,
    job: &'a Job,
    module: &'a Module,
    linker: Linker<StoreData>,
    wasi: SharedHost,
    sched: Arc<Mutex<Sched>>,
    memory: SharedMemory,
    page: SharedMemory,
    memory_cap: u64,
}

impl Run<'_> {
    /// A store for one thread, with its own counters, and the linker that
    /// instantiates the module in it.
    fn store(&self) -> Result<(Store<StoreData>, Linker<StoreData>, Global, Global), RunError> {
        let host_err = |e: wasmtime::Error| RunError::Host(format!("{e:#}"));
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.memory_cap).unwrap_or(usize::MAX))
            .table_elements(engine::MAX_TABLE_ELEMENTS)
            .instances(1)
            .trap_on_grow_failure(false)
            .build();
        let data = StoreData {
            wasi: self.wasi.clone(),
            limits: Limiter::new(limits, self.memory_cap),
            memory: None,
            linked: false,
            fuel: None,
            sched: Some(self.sched.clone()),
            shared_memory: Some(self.memory.clone()),
        };
        let mut store = Store::new(self.sandbox.engine(), data);
        let fuel = Global::new(&mut store, GlobalType::new(ValType::I64, Mutability::Var), Val::I64(0)).map_err(host_err)?;
        let depth = i32::try_from(self.job.limits.call_depth).unwrap_or(i32::MAX);
        let depth = Global::new(&mut store, GlobalType::new(ValType::I32, Mutability::Var), Val::I32(depth)).map_err(host_err)?;
        store.limiter(|d| &mut d.limits);
        store.data_mut().fuel = Some(fuel);
        let mut linker = self.linker.clone();
        linker.define(&store, CANON_MODULE, instrument::FUEL_GLOBAL, fuel).map_err(host_err)?;
        linker.define(&store, CANON_MODULE, instrument::DEPTH_GLOBAL, depth).map_err(host_err)?;
        linker.define(&store, CANON_MODULE, instrument::WATCHDOG_MEMORY, self.page.clone()).map_err(host_err)?;
        let (m, n) = SHARED_MEMORY_IMPORT;
        linker.define(&store, m, n, self.memory.clone()).map_err(host_err)?;
        Ok((store, linker, fuel, depth))
    }

    /// The future of one thread: instantiate, then run `_start` (`spawned`
    /// None) or `wasi_thread_start(tid, arg)`.
    fn thread(&self, spawned: Option<(u32, i32)>) -> Result<(ThreadFuture, Global, Global), RunError> {
        let (mut store, linker, fuel, depth) = self.store()?;
        let module = self.module.clone();
        let sched = self.sched.clone();
        let future = Box::pin(async move {
            // The slice the executor granted when it first chose this thread.
            let grant = lock(&sched).grant;
            if let Err(e) = fuel.set(&mut store, Val::I64(grant as i64)) {
                return (store, false, Err(e));
            }
            let instance = match linker.instantiate_async(&mut store, &module).await {
                Ok(i) => i,
                Err(e) => return (store, false, Err(e)),
            };
            let no_entry = || wasmtime::Error::new(Stop::Trap(TrapKind::NoEntryPoint));
            let result = match spawned {
                None => match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                    Ok(start) => start.call_async(&mut store, ()).await,
                    Err(_) => Err(no_entry()),
                },
                Some((tid, arg)) => match instance.get_typed_func::<(i32, i32), ()>(&mut store, "wasi_thread_start") {
                    Ok(start) => start.call_async(&mut store, (tid as i32, arg)).await,
                    Err(_) => Err(no_entry()),
                },
            };
            (store, true, result)
        }) as ThreadFuture;
        Ok((future, fuel, depth))
    }
}

/// One live thread as the executor holds it.
struct Live {
    future: ThreadFuture,
    fuel: Global,
    depth: Global,
}

/// Runs a threaded job (`job.threads` is set) whose instrumented module is
/// `module`, on `sandbox`'s engine.
pub(super) fn run(sandbox: &Sandbox, job: &Job, module: &Module, threads: &Threads, options: RunOptions) -> Result<Outcome, RunError> {
    let host_err = |e: wasmtime::Error| RunError::Host(format!("{e:#}"));
    let engine = sandbox.engine();
    let budget = job.limits.fuel.min(instrument::MAX_FUEL);
    let mut config = HostConfig::for_job(job);
    config.stream_stdio = options.stream_stdio;
    config.tap = options.tap.clone();
    let wasi: SharedHost = Arc::new(Mutex::new(WasiHost::new(config)));
    let finish = |wasi: SharedHost, termination, fuel_consumed| -> Result<Outcome, RunError> {
        let wasi = Arc::try_unwrap(wasi).map_err(|_| RunError::Host("internal: a thread's store outlived the run".into()))?;
        let wasi = wasi.into_inner().unwrap_or_else(PoisonError::into_inner);
        let outputs = wasi.output_tree();
        Ok(Outcome { termination, fuel_consumed, stdout: wasi.stdout, stderr: wasi.stderr, outputs })
    };

    // The shared memory, as the module imports it, its maximum lowered to
    // the job's memory limit (growth past it fails: memory.grow returns -1).
    let Some(ty) = module.imports().find_map(|i| match i.ty() {
        ExternType::Memory(m) if m.is_shared() && (i.module(), i.name()) == SHARED_MEMORY_IMPORT => Some(m),
        _ => None,
    }) else {
        return Err(RunError::Compile {
            module: job.module_sha256,
            message: "a threaded module must import its shared memory as `env.memory` (as wasm32-wasip1-threads builds do)".into(),
        });
    };
    let cap_pages = job.limits.memory_bytes / (64 << 10);
    if ty.minimum() > cap_pages {
        return finish(wasi, Termination::Trap(TrapKind::MemoryLimit), 0);
    }
    let maximum = ty.maximum().unwrap_or(1 << 16).min(cap_pages);
    let memory = SharedMemory::new(engine, MemoryType::shared(ty.minimum() as u32, maximum as u32)).map_err(host_err)?;
    let page = SharedMemory::new(engine, MemoryType::shared(1, 1)).map_err(host_err)?;

    let mut chooser = Chooser::new(threads.policy, threads.effective_seed(job.seed));
    let sched = Arc::new(Mutex::new(Sched {
        bank: budget,
        threads: BTreeMap::from([(MAIN, Status::Runnable)]),
        woken: BTreeMap::new(),
        current: MAIN,
        grant: 0,
        switch: None,
        spawned: Vec::new(),
        next_tid: 1,
        max_threads: threads.max_threads,
        waits: 0,
        spawn_cost: spawn_cost(job.module.len() as u64),
    }));
    let mut linker = sandbox.linker.clone();
    add_to_linker(&mut linker).map_err(host_err)?;
    let run = Run { sandbox, job, module, linker, wasi: wasi.clone(), sched: sched.clone(), memory, page: page.clone(), memory_cap: job.limits.memory_bytes };

    let armed = match Instant::now().checked_add(job.timeout) {
        // SAFETY: the page is one 64 KiB page (minimum and maximum), so it
        // never moves or grows, and its base is page-aligned. `page` (a
        // handle keeping it alive) outlives `armed`, which is dropped below
        // before it; the host never reads or writes it.
        #[allow(unsafe_code)]
        Some(deadline) => Some(
            unsafe { watchdog::arm(deadline, page.data().as_ptr() as *mut i64) }
                .map_err(|e| RunError::Host(format!("cannot start the watchdog thread: {e}")))?,
        ),
        None => None,
    };
    if let Some(c) = &options.cancel {
        c.attach(armed.as_ref().map(Armed::id));
    }
    let schedule =
        Schedule { chooser: &mut chooser, slice: threads.slice, trace: options.trace.as_ref(), replay: options.replay.as_deref().map(Vec::as_slice) };
    let result = execute(&run, &sched, schedule, armed.as_ref(), options.cancel.as_ref());
    if let Some(c) = &options.cancel {
        c.attach(None);
    }
    drop(armed);
    let (termination, fuel_left) = result?;
    let fuel_consumed = match termination {
        Termination::Trap(TrapKind::OutOfFuel) => job.limits.fuel,
        _ => budget.saturating_sub(fuel_left),
    };
    drop(run);
    finish(wasi, termination, fuel_consumed)
}

/// How the executor decides: the job's policy and slice, and optionally a
/// trace to record into or a schedule to follow instead of the policy.
struct Schedule<'a> {
    chooser: &'a mut Chooser,
    slice: u64,
    trace: Option<&'a super::TraceSink>,
    replay: Option<&'a [Step]>,
}

/// With a schedule to follow: the thread its `step`-th decision runs, or
/// where the run departs from it.
fn follow(replay: &[Step], step: usize, reason: Reason, runnable: &[u32]) -> Result<u32, RunError> {
    let departed = |message: String| Err(RunError::Departed { step, message });
    match replay.get(step) {
        None => departed(format!("the trace ends after {} steps, but the run goes on (a {reason}; threads {runnable:?} can run)", replay.len())),
        Some(want) if want.reason != reason => {
            departed(format!("the trace says the thread that ran stopped at a {}, the run stopped at a {reason}", want.reason))
        }
        Some(want) if !runnable.contains(&want.thread) => {
            departed(format!("the trace runs thread {} next, which cannot run (threads {runnable:?} can)", want.thread))
        }
        Some(want) => Ok(want.thread),
    }
}

/// The executor: polls one thread at a time until the job ends. Returns how
/// it ended and the job's fuel left.
fn execute(
    run: &Run<'_>,
    sched: &Arc<Mutex<Sched>>,
    schedule: Schedule<'_>,
    armed: Option<&Armed>,
    cancel: Option<&super::Cancel>,
) -> Result<(Termination, u64), RunError> {
    let Schedule { chooser, slice, trace, replay } = schedule;
    let (mut reason, mut step) = (Reason::Start, 0usize);
    // A run that ends while a schedule it follows goes on departs from it.
    let ended = |step: usize, termination: Termination| match replay {
        Some(steps) if step < steps.len() => {
            Err(RunError::Departed { step, message: format!("the run ended ({termination}), but the trace has {} steps", steps.len()) })
        }
        _ => Ok(()),
    };
    let mut live: BTreeMap<u32, Live> = BTreeMap::new();
    let (future, fuel, depth) = run.thread(None)?;
    live.insert(MAIN, Live { future, fuel, depth });
    let mut cx = Context::from_waker(Waker::noop());
    let mut pending: VecDeque<(u32, i32)> = VecDeque::new();
    loop {
        // Threads spawned at the last switch point.
        pending.extend(std::mem::take(&mut lock(sched).spawned));
        while let Some((tid, arg)) = pending.pop_front() {
            let (future, fuel, depth) = run.thread(Some((tid, arg)))?;
            live.insert(tid, Live { future, fuel, depth });
            chooser.spawned(tid);
        }
        // Who can run: time out the waits whose deadline has passed; if
        // none can run, jump to the earliest deadline, or deadlock.
        let next = {
            let mut s = lock(sched);
            let now = lock_host(&run.wasi).monotonic_at(s.bank);
            let mut due: Vec<(u64, u64, u32)> = Vec::new();
            for (&t, st) in &s.threads {
                if let Status::Waiting { deadline: Some(d), seq, .. } = *st {
                    due.push((d, seq, t));
                }
            }
            due.sort_unstable();
            let mut runnable: Vec<u32> = s.threads.iter().filter(|(_, st)| **st == Status::Runnable).map(|(&t, _)| t).collect();
            let time_out = |s: &mut Sched, t: u32, runnable: &mut Vec<u32>| {
                s.threads.insert(t, Status::Runnable);
                s.woken.insert(t, TIMED_OUT);
                runnable.push(t);
            };
            for &(_, _, t) in due.iter().filter(|(d, _, _)| *d <= now) {
                time_out(&mut s, t, &mut runnable);
            }
            if runnable.is_empty()
                && let Some(&(earliest, _, _)) = due.first()
            {
                // Nothing can run before the earliest deadline: sleep to it.
                lock_host(&run.wasi).sleep(earliest - now);
                for &(_, _, t) in due.iter().filter(|(d, _, _)| *d == earliest) {
                    time_out(&mut s, t, &mut runnable);
                }
            }
            runnable.sort_unstable();
            if runnable.is_empty() {
                ended(step, Termination::Trap(TrapKind::Deadlock))?;
                return Ok((Termination::Trap(TrapKind::Deadlock), s.bank));
            }
            let chosen = chooser.choose(&runnable, s.current);
            let next = match replay {
                Some(steps) => follow(steps, step, reason, &runnable)?,
                None => chosen,
            };
            if let Some(t) = trace {
                t.lock().unwrap_or_else(PoisonError::into_inner).push(Step { reason, thread: next });
            }
            step += 1;
            s.current = next;
            s.grant = slice.min(s.bank);
            s.bank -= s.grant;
            s.switch = None;
            next
        };
        let Some(mut thread) = live.remove(&next) else {
            return Err(RunError::Host(format!("internal: thread {next} is runnable but has no future")));
        };
        match thread.future.as_mut().poll(&mut cx) {
            Poll::Pending => {
                let Some(why) = lock(sched).switch else {
                    return Err(RunError::Host("internal: a guest thread suspended outside the scheduler".into()));
                };
                reason = why;
                live.insert(next, thread);
            }
            Poll::Ready((mut store, instantiated, result)) => {
                let bank = lock(sched).bank;
                let left = bank.saturating_add(super::wasi::link::fuel_left(&mut store));
                match result {
                    // A spawned thread returned: it ends, and what fuel it
                    // held goes back to the bank.
                    Ok(()) if next != MAIN => {
                        let mut s = lock(sched);
                        s.bank = left;
                        s.threads.remove(&next);
                        reason = Reason::Exit;
                    }
                    // The main thread returned: the job exits 0.
                    Ok(()) => {
                        ended(step, Termination::Exit(0))?;
                        return Ok((Termination::Exit(0), left));
                    }
                    Err(e) => {
                        // Past the deadline every check fails: no result.
                        if armed.is_some_and(Armed::fired) {
                            if cancel.is_some_and(super::Cancel::is_cancelled) {
                                return Err(RunError::Cancelled);
                            }
                            return Err(RunError::Timeout(run.job.timeout));
                        }
                        let checks = Checks { fuel: thread.fuel, depth: thread.depth, armed, cancel };
                        let termination = classify(&e, run.job, &mut store, &checks, !instantiated)?;
                        ended(step, termination)?;
                        return Ok((termination, left));
                    }
                }
            }
        }
    }
}
