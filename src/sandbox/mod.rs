//! The deterministic sandbox: one engine configured for determinism, a
//! compiled-module cache, and canon's own WASI preview 1 host over an
//! in-memory file system.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let job = canon::job::Job::load(std::path::Path::new("fixtures/jobs/hello.toml"))?;
//! let sandbox = canon::sandbox::Sandbox::new()?;
//! let outcome = sandbox.run(&job)?;
//! println!("{}", outcome.summary().outcome_digest);
//! # Ok(()) }
//! ```

pub mod cache;
// The differential harness serves the fuzzers and their tests only.
#[cfg(feature = "fuzzing")]
pub mod differential;
pub mod engine;
pub mod limiter;
pub mod threads;
pub mod wasi;
pub mod watchdog;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, ExternType, Global, GlobalType, Linker, Memory, MemoryType, Module, Mutability, Store, StoreLimitsBuilder, Trap, Val, ValType};

use crate::digest::Digest;
use crate::instrument;
use crate::job::{ImportSource, Job, Preload, UnknownImports, import_source};
use crate::outcome::{Outcome, Termination, TrapKind};
use cache::ModuleCache;
pub use cache::{CacheError, CacheHit};
pub use engine::Backend;
use limiter::Limiter;
pub use wasi::StdioTap;
use wasi::{HostConfig, Stop, StoreData, WasiHost};
use watchdog::Armed;

/// Why a run produced no outcome. None of these is ever signed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The engine could not be created.
    #[error("could not set up the WebAssembly engine: {0}")]
    Engine(String),
    /// The module failed to compile or link.
    #[error("module {module}: could not compile or link: {message}")]
    Compile {
        /// The module's SHA-256.
        module: Digest,
        /// wasmtime's message.
        message: String,
    },
    /// The module cache is not private to this user (see [`cache`]): canon
    /// will not load native code from it.
    #[error("{0}")]
    Cache(cache::CacheError),
    /// The wall-clock safety net fired.
    #[error("the run exceeded its wall-clock safety timeout of {0:?}: no result")]
    Timeout(Duration),
    /// The native stack ran out before the job's call-depth limit was
    /// reached (frames too large for [`engine::MAX_WASM_STACK`]). Where this
    /// happens depends on the backend and the machine: no result.
    #[error("the guest exhausted the host's native stack ({mib} MiB) before reaching its call-depth limit of {0}: no result (lower `call_depth`)", mib = engine::MAX_WASM_STACK >> 20)]
    NativeStackOverflow(u64),
    /// The host failed in a way that is not a property of the job.
    #[error("the host failed while running the guest: {0}")]
    Host(String),
    /// The run was stopped through its [`Cancel`] handle: no result.
    #[error("the run was cancelled: no result")]
    Cancelled,
    /// A run following a recorded schedule ([`RunOptions::replay`]) could
    /// not follow it: no result.
    #[error("the run departs from the trace at step {step}: {message}")]
    Departed {
        /// The decision, counted from 0.
        step: usize,
        /// How the run and the trace differ there.
        message: String,
    },
    /// canon itself panicked while running the guest: a bug in canon, never
    /// an outcome (the message is the panic's).
    #[error("canon panicked while running the guest (a bug in canon; no result): {0}")]
    Panicked(String),
}

/// Options for one run that do not change its outcome.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Copy the guest's stdout and stderr to the host's as they are written
    /// (they are captured either way). Default: off.
    pub stream_stdio: bool,
    /// Stops the run from another thread when cancelled: the run then has
    /// no result ([`RunError::Cancelled`]). Default: none.
    pub cancel: Option<Cancel>,
    /// Sees stdout and stderr as they are written (a live log). Default: none.
    pub tap: Option<StdioTap>,
    /// Records a threaded run's schedule here, every decision in order
    /// (`canon run --trace`; docs/THREADS.md). Default: none.
    pub trace: Option<TraceSink>,
    /// Follows this schedule instead of the job's policy: the run stops
    /// with [`RunError::Departed`] at the first decision it cannot follow
    /// (`canon replay`). Default: none.
    pub replay: Option<Arc<Vec<threads::trace::Step>>>,
}

/// Where a threaded run's schedule is recorded.
pub type TraceSink = Arc<std::sync::Mutex<Vec<threads::trace::Step>>>;

/// A handle that stops a run from another thread (a worker whose job was
/// cancelled). Stopping uses the watchdog's mechanism: the run's next fuel
/// check fails, so a guest stops within one check, wherever it is.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: std::sync::atomic::AtomicBool,
    /// The armed run this handle stops, while it runs.
    armed: std::sync::Mutex<Option<u64>>,
}

impl Cancel {
    /// A handle that has not been cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops the run (now if it is running, at its start if not yet).
    pub fn cancel(&self) {
        self.0.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(id) = *self.0.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            watchdog::fire(id);
        }
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ties the handle to the armed run `id` (or unties it, with None).
    fn attach(&self, id: Option<u64>) {
        let mut armed = self.0.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *armed = id;
        if let Some(id) = id
            && self.is_cancelled()
        {
            watchdog::fire(id);
        }
    }
}

/// Builds a [`Sandbox`].
#[derive(Clone, Debug)]
pub struct SandboxBuilder {
    cache_dir: Option<PathBuf>,
    backend: Backend,
}

impl SandboxBuilder {
    /// Where compiled modules are cached on disk. Default:
    /// [`cache::default_cache_dir`].
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Which backend compiles or interprets the guest. [`Backend::Winch`]
    /// makes [`SandboxBuilder::build`] fail (see
    /// [`engine::WINCH_UNSUPPORTED`]). Default: [`Backend::Cranelift`].
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Creates the engine, its linker and its cache.
    pub fn build(self) -> Result<Sandbox, RunError> {
        let engine = engine::new_engine(self.backend).map_err(|e| match self.backend {
            Backend::Winch => RunError::Engine(format!("the winch backend cannot run canon jobs: {}; wasmtime: {e:#}", engine::WINCH_UNSUPPORTED)),
            _ => RunError::Engine(format!("{e:#}")),
        })?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker).map_err(|e| RunError::Engine(format!("{e:#}")))?;
        let cache = ModuleCache::new(self.cache_dir, &engine::fingerprint(&engine));
        Ok(Sandbox { engine, linker, cache, backend: self.backend })
    }
}

/// Runs jobs. One sandbox can run many jobs, from many threads at once.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StoreData>,
    cache: ModuleCache,
    backend: Backend,
}

impl Sandbox {
    /// A sandbox with the default cache directory.
    pub fn new() -> Result<Sandbox, RunError> {
        Sandbox::builder().build()
    }

    /// A builder, with every option at its default.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder { cache_dir: cache::default_cache_dir(), backend: Backend::default() }
    }

    /// The backend this sandbox runs guests on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The engine (for tools that compile modules ahead of time).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Instruments and compiles (or loads from the cache, already
    /// instrumented) the module whose bytes are `module`.
    pub fn prepare(&self, module: &[u8], sha: &Digest) -> Result<(Module, CacheHit), RunError> {
        let instrument = |bytes: &[u8]| instrument::instrument(bytes).map_err(wasmtime::Error::new);
        self.cache.get(&self.engine, module, sha, instrument).map_err(|e| match e {
            CacheError::Compile(e) => RunError::Compile { module: *sha, message: format!("{e:#}") },
            other => RunError::Cache(other),
        })
    }

    /// Whether the module with SHA-256 `sha` is compiled already, in memory
    /// or in the disk cache (an entry exists; it is checked when loaded).
    pub fn is_compiled(&self, sha: &Digest) -> bool {
        self.cache.contains(sha)
    }

    /// With [`UnknownImports::Trap`], a copy of `linker` for `module` alone,
    /// in which every function import nobody provides is a stub of its
    /// declared type that traps with [`TrapKind::UnknownImport`] when called
    /// (`None` otherwise). The stubs stay out of the job's shared linker, so
    /// two modules may stub the same name, and a later preload may still be
    /// registered under a name an earlier module stubbed. `earlier` are the
    /// preloads instantiated before `module`: the only ones it may import
    /// from (as validation decided).
    fn with_stubs(
        &self,
        linker: &Linker<StoreData>,
        module: &Module,
        sha: &Digest,
        job: &Job,
        earlier: &[Preload],
    ) -> Result<Option<Linker<StoreData>>, RunError> {
        let link_err = |e: wasmtime::Error| RunError::Compile { module: *sha, message: format!("{e:#}") };
        if job.unknown_imports != UnknownImports::Trap {
            return Ok(None);
        }
        let mut linker = linker.clone();
        {
            let mut stubbed = std::collections::HashSet::new();
            for import in module.imports() {
                let ExternType::Func(ty) = import.ty() else { continue };
                // `canon.*` is the instrumentation's, defined per store.
                if import.module() == instrument::CANON_MODULE
                    || import_source(import.module(), import.name(), earlier.iter().map(|p| p.name.as_str())) != ImportSource::Unknown
                    || !stubbed.insert((import.module().to_string(), import.name().to_string()))
                {
                    continue;
                }
                linker
                    .func_new(import.module(), import.name(), ty, |_, _, _| Err(wasmtime::Error::new(Stop::Trap(TrapKind::UnknownImport))))
                    .map_err(link_err)?;
            }
        }
        Ok(Some(linker))
    }

    /// Runs `job` and returns its outcome.
    pub fn run(&self, job: &Job) -> Result<Outcome, RunError> {
        self.run_with(job, RunOptions::default())
    }

    /// Runs `job` with options that do not affect the outcome.
    ///
    /// The guest runs with [`engine::HOST_THREAD_STACK`] of native stack,
    /// whatever the caller's: in place on a thread made by [`guest_thread`]
    /// or [`guest_thread_pool`], otherwise on a thread of its own.
    pub fn run_with(&self, job: &Job, options: RunOptions) -> Result<Outcome, RunError> {
        if crate::job::is_threaded(&job.module) != job.threads.is_some() {
            return Err(RunError::Compile {
                module: job.module_sha256,
                message: "the job's thread settings do not match its module: a job has them exactly when its module is threaded".into(),
            });
        }
        if let Some(threads) = &job.threads {
            match self.backend {
                Backend::Pulley => return Err(RunError::Engine(engine::PULLEY_NO_THREADS.into())),
                Backend::Winch => return Err(RunError::Engine(format!("the winch backend cannot run canon jobs: {}", engine::WINCH_UNSUPPORTED))),
                Backend::Cranelift | Backend::CraneliftBaseline => {}
            }
            let (module, _) = self.prepare(&job.module, &job.module_sha256)?;
            return on_guest_thread(|| threads::run(self, job, &module, threads, options));
        }
        // Compile (or load) every module before anything runs.
        let mut modules = Vec::with_capacity(job.preloads.len() + 1);
        for p in &job.preloads {
            modules.push((Some(p.name.as_str()), self.prepare(&p.module, &p.module_sha256)?.0, p.module_sha256));
        }
        modules.push((None, self.prepare(&job.module, &job.module_sha256)?.0, job.module_sha256));

        on_guest_thread(|| self.run_modules(job, &modules, options))
    }

    fn run_modules(&self, job: &Job, modules: &[(Option<&str>, Module, Digest)], options: RunOptions) -> Result<Outcome, RunError> {
        let host_err = |e: wasmtime::Error| RunError::Host(format!("{e:#}"));
        let mut config = HostConfig::for_job(job);
        config.stream_stdio = options.stream_stdio;
        config.tap = options.tap.clone();
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(job.limits.memory_bytes).unwrap_or(usize::MAX))
            .table_elements(engine::MAX_TABLE_ELEMENTS)
            .instances(modules.len())
            .trap_on_grow_failure(false)
            .build();
        let limits = Limiter::new(limits, job.limits.memory_bytes);
        let linked = !job.preloads.is_empty();
        let wasi = std::sync::Arc::new(std::sync::Mutex::new(WasiHost::new(config)));
        let data = StoreData { wasi: wasi.clone(), limits, memory: None, linked, fuel: None, sched: None, shared_memory: None };
        let mut store = Store::new(&self.engine, data);
        // The instrumentation's counters and the watchdog's page: one of
        // each per store, imported by every instrumented module as
        // `canon.fuel`, `canon.depth` and `canon.watchdog`. Created before
        // the limiter is installed: the page is the host's, not the job's
        // memory. The fuel counter holds the whole budget, up to
        // `instrument::MAX_FUEL`.
        let budget = job.limits.fuel.min(instrument::MAX_FUEL);
        let fuel = Global::new(&mut store, GlobalType::new(ValType::I64, Mutability::Var), Val::I64(budget as i64)).map_err(host_err)?;
        let depth = i32::try_from(job.limits.call_depth).unwrap_or(i32::MAX);
        let depth = Global::new(&mut store, GlobalType::new(ValType::I32, Mutability::Var), Val::I32(depth)).map_err(host_err)?;
        let page = Memory::new(&mut store, MemoryType::new(1, Some(1))).map_err(host_err)?;
        store.limiter(|d| &mut d.limits);
        store.data_mut().fuel = Some(fuel);
        let mut linker = self.linker.clone();
        linker.define(&store, instrument::CANON_MODULE, instrument::FUEL_GLOBAL, fuel).map_err(host_err)?;
        linker.define(&store, instrument::CANON_MODULE, instrument::DEPTH_GLOBAL, depth).map_err(host_err)?;
        linker.define(&store, instrument::CANON_MODULE, instrument::WATCHDOG_MEMORY, page).map_err(host_err)?;

        // A timeout beyond what the clock can represent is no deadline.
        let armed = match Instant::now().checked_add(job.timeout) {
            // SAFETY: the memory is one 64 KiB page (minimum and maximum), so
            // it never moves or grows, and its base is page-aligned. It lives
            // as long as `store`, which outlives `armed` (dropped below,
            // before the store), and the host does not touch it meanwhile.
            #[allow(unsafe_code)]
            Some(deadline) => Some(
                unsafe { watchdog::arm(deadline, page.data_ptr(&store).cast()) }
                    .map_err(|e| RunError::Host(format!("cannot start the watchdog thread: {e}")))?,
            ),
            None => None,
        };
        if let Some(c) = &options.cancel {
            c.attach(armed.as_ref().map(Armed::id));
        }
        let checks = Checks { fuel, depth, armed: armed.as_ref(), cancel: options.cancel.as_ref() };
        let termination = self.instantiate_and_start(&mut store, linker, job, modules, &checks);
        if let Some(c) = &options.cancel {
            c.attach(None);
        }
        drop(armed);
        let termination = termination?;
        // Out of fuel means the whole budget: the block that did not fit is
        // not charged, but nothing more can run.
        let fuel_consumed = match termination {
            Termination::Trap(TrapKind::OutOfFuel) => job.limits.fuel,
            // Otherwise the counter as last stored to the global (see
            // docs/FUEL.md: exact at exits and host calls).
            _ => budget.saturating_sub(wasi::link::fuel_left(&mut store)),
        };
        drop(store);
        let wasi = std::sync::Arc::try_unwrap(wasi).map_err(|_| RunError::Host("internal: the WASI world outlived its store".into()))?;
        let wasi = wasi.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = wasi.output_tree();
        Ok(Outcome { termination, fuel_consumed, stdout: wasi.stdout, stderr: wasi.stderr, outputs })
    }

    /// Instantiates the preloads in order, registering each under its name
    /// (calling `_initialize` if it exports one), then the main module, and
    /// runs its `_start`. Returns how the guest ended.
    fn instantiate_and_start(
        &self,
        store: &mut Store<StoreData>,
        mut linker: Linker<StoreData>,
        job: &Job,
        modules: &[(Option<&str>, Module, Digest)],
        checks: &Checks<'_>,
    ) -> Result<Termination, RunError> {
        for (i, (name, module, sha)) in modules.iter().enumerate() {
            let stubbed = self.with_stubs(&linker, module, sha, job, &job.preloads[..i.min(job.preloads.len())])?;
            // A refusal recorded while an earlier module ran is not this
            // instantiation's.
            store.data_mut().limits.refused = false;
            let instance = match stubbed.as_ref().unwrap_or(&linker).instantiate(&mut *store, module) {
                // Only an instantiation can be refused by the limits as a whole.
                Err(e) => return classify(&e, job, store, checks, true),
                Ok(instance) => instance,
            };
            let Some(name) = *name else {
                let memory = instance.get_memory(&mut *store, "memory");
                store.data_mut().memory = memory;
                return Ok(match instance.get_typed_func::<(), ()>(&mut *store, "_start") {
                    Err(_) => Termination::Trap(TrapKind::NoEntryPoint),
                    Ok(start) => match start.call(&mut *store, ()) {
                        Ok(()) => Termination::Exit(0),
                        Err(e) => classify(&e, job, store, checks, false)?,
                    },
                });
            };
            // A WASI reactor initialises itself in `_initialize`.
            if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize")
                && let Err(e) = init.call(&mut *store, ())
            {
                return classify(&e, job, store, checks, false);
            }
            linker.instance(&mut *store, name, instance).map_err(|e| RunError::Compile { module: *sha, message: format!("{e:#}") })?;
        }
        Err(RunError::Host("internal: a job without a main module".into()))
    }
}

thread_local! {
    /// Whether this thread was made by [`guest_thread`] (or
    /// [`guest_thread_pool`]) and so has [`engine::HOST_THREAD_STACK`] of
    /// native stack.
    static GUEST_STACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A builder of threads that run guests in place: with
/// [`engine::HOST_THREAD_STACK`] of native stack, and marked so that
/// [`Sandbox::run_with`] called on them runs the guest right there instead
/// of on a thread of its own. A caller that runs many jobs (a worker's
/// slots, `canon run --nodes`) saves a thread per run this way: creating
/// one, mapping its stack and unmapping it again (with the TLB shootdowns
/// that brings) is most of an in-process `hello`.
pub fn guest_thread<F, T>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name.to_string()).stack_size(engine::HOST_THREAD_STACK).spawn(move || {
        GUEST_STACK.set(true);
        f()
    })
}

/// A rayon pool of `threads` threads (0: one per core) that run guests in
/// place, as [`guest_thread`]'s do. A thread waiting in a nested parallel
/// call may take another task of the pool onto its stack; that never puts
/// one guest's frames on another's, because guests make no such calls.
pub fn guest_thread_pool(threads: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(engine::HOST_THREAD_STACK)
        .thread_name(|i| format!("canon-guest-{i}"))
        .start_handler(|_| GUEST_STACK.set(true))
        .build()
}

/// Runs `f` where a guest may run: here, on a thread made by
/// [`guest_thread`] or [`guest_thread_pool`]; otherwise on a thread of its
/// own with [`engine::HOST_THREAD_STACK`], so that the caller's stack never
/// matters. A panic in `f` is [`RunError::Panicked`].
fn on_guest_thread<R: Send>(f: impl FnOnce() -> Result<R, RunError> + Send) -> Result<R, RunError> {
    if GUEST_STACK.get() {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| RunError::Panicked(panic_message(payload.as_ref())))?;
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("canon-guest".into())
            .stack_size(engine::HOST_THREAD_STACK)
            .spawn_scoped(scope, f)
            .map_err(|e| RunError::Host(format!("cannot start the guest thread: {e}")))?
            .join()
            .map_err(|payload| RunError::Panicked(panic_message(payload.as_ref())))?
    })
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_string(),
    }
}

/// What the host reads to tell why a run trapped at `unreachable`: the
/// instrumentation's checks trap there with a mark in the counters (see
/// [`instrument::FUEL_GLOBAL`] and [`instrument::DEPTH_EXCEEDED`]), and the
/// watchdog says whether the deadline passed.
struct Checks<'a> {
    fuel: Global,
    depth: Global,
    armed: Option<&'a Armed>,
    cancel: Option<&'a Cancel>,
}

impl Checks<'_> {
    /// Why the run stopped at an `unreachable`.
    fn unreachable(&self, store: &mut Store<StoreData>, job: &Job) -> Result<TrapKind, RunError> {
        // Past the deadline every check fails: no result, whatever stopped
        // the run.
        if self.armed.is_some_and(Armed::fired) {
            if self.cancel.is_some_and(Cancel::is_cancelled) {
                return Err(RunError::Cancelled);
            }
            return Err(RunError::Timeout(job.timeout));
        }
        // A failed fuel check stores the (negative) counter before it traps;
        // nothing else stores a negative value there.
        if self.fuel.get(&mut *store).i64().is_some_and(|f| f < 0) {
            return Ok(TrapKind::OutOfFuel);
        }
        if self.depth.get(&mut *store).i32() == Some(instrument::DEPTH_EXCEEDED) {
            return Ok(TrapKind::CallDepthExceeded);
        }
        Ok(TrapKind::Unreachable)
    }
}

/// Maps a wasmtime error to how the guest ended, or to "no result": only
/// what every node would see alike becomes an outcome.
fn classify(e: &wasmtime::Error, job: &Job, store: &mut Store<StoreData>, checks: &Checks<'_>, instantiating: bool) -> Result<Termination, RunError> {
    let limits = &store.data().limits;
    if limits.host_failed {
        return Err(RunError::Host(format!("the host could not provide memory the job is allowed: {e:#}")));
    }
    if let Some(stop) = e.downcast_ref::<Stop>() {
        return Ok(match *stop {
            Stop::Exit(code) => Termination::Exit(code),
            Stop::Trap(kind) => Termination::Trap(kind),
        });
    }
    // An exception nothing caught ends the guest like a trap: where and
    // whether it is thrown is a property of the job.
    if e.is::<wasmtime::ThrownException>() {
        return Ok(Termination::Trap(TrapKind::UncaughtException));
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        let kind = match trap {
            // Raised only by epoch interruption, which canon leaves off (see
            // `watchdog`); were it ever on, an interrupt is still the host's
            // timeout, never an outcome.
            Trap::Interrupt => return Err(RunError::Timeout(job.timeout)),
            // The native stack: machine-dependent, so no result.
            Trap::StackOverflow => return Err(RunError::NativeStackOverflow(job.limits.call_depth)),
            Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
            Trap::HeapMisaligned => TrapKind::UnalignedAtomic,
            Trap::TableOutOfBounds => TrapKind::TableOutOfBounds,
            Trap::IndirectCallToNull => TrapKind::IndirectCallToNull,
            Trap::BadSignature => TrapKind::IndirectCallTypeMismatch,
            Trap::IntegerOverflow => TrapKind::IntegerOverflow,
            Trap::IntegerDivisionByZero => TrapKind::IntegerDivideByZero,
            Trap::BadConversionToInteger => TrapKind::BadConversionToInteger,
            Trap::UnreachableCodeReached => checks.unreachable(store, job)?,
            Trap::NullReference => TrapKind::NullReference,
            _ => TrapKind::Other,
        };
        return Ok(Termination::Trap(kind));
    }
    if instantiating && limits.refused {
        // Instantiation refused by the job's limits: the module's initial
        // memory or table is larger than the job allows.
        return Ok(Termination::Trap(TrapKind::MemoryLimit));
    }
    Err(RunError::Host(format!("{e:#}")))
}
