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

pub mod abi;
pub mod cache;
pub mod differential;
pub mod engine;
pub mod limiter;
pub mod wasi;

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::{Engine, InstancePre, Linker, Store, StoreLimitsBuilder, Trap};

use crate::digest::Digest;
use crate::job::Job;
use crate::outcome::{Outcome, Termination, TrapKind};
pub use cache::CacheHit;
use cache::ModuleCache;
pub use engine::Backend;
use limiter::Limiter;
use wasi::{HostConfig, Stop, StoreData, WasiHost};

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
    /// The wall-clock safety net fired.
    #[error("the run exceeded its wall-clock safety timeout of {0:?}: no result")]
    Timeout(Duration),
    /// The host failed in a way that is not a property of the job.
    #[error("the host failed while running the guest: {0}")]
    Host(String),
}

/// Options for one run that do not change its outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Copy the guest's stdout and stderr to the host's as they are written
    /// (they are captured either way). Default: off.
    pub stream_stdio: bool,
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

    /// Creates the engine, its linker and its cache, and starts the watchdog.
    pub fn build(self) -> Result<Sandbox, RunError> {
        let engine = engine::new_engine(self.backend).map_err(|e| match self.backend {
            Backend::Winch => RunError::Engine(format!("the winch backend cannot run canon jobs: {}; wasmtime: {e:#}", engine::WINCH_UNSUPPORTED)),
            _ => RunError::Engine(format!("{e:#}")),
        })?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker).map_err(|e| RunError::Engine(format!("{e:#}")))?;
        engine::start_watchdog(&engine);
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

    /// Compiles (or loads from the cache) the module of `job`.
    pub fn prepare(&self, module: &[u8], sha: &Digest) -> Result<(InstancePre<StoreData>, CacheHit), RunError> {
        let compile_err = |e: wasmtime::Error| RunError::Compile { module: *sha, message: format!("{e:#}") };
        let (module, hit) = self.cache.get(&self.engine, module, sha).map_err(compile_err)?;
        let pre = self.linker.instantiate_pre(&module).map_err(compile_err)?;
        Ok((pre, hit))
    }

    /// Runs `job` and returns its outcome.
    pub fn run(&self, job: &Job) -> Result<Outcome, RunError> {
        self.run_with(job, RunOptions::default())
    }

    /// Runs `job` with options that do not affect the outcome.
    pub fn run_with(&self, job: &Job, options: RunOptions) -> Result<Outcome, RunError> {
        let (pre, _) = self.prepare(&job.module, &job.module_sha256)?;
        let mut config = HostConfig::for_job(job);
        config.stream_stdio = options.stream_stdio;
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(job.limits.memory_bytes).unwrap_or(usize::MAX))
            .table_elements(engine::MAX_TABLE_ELEMENTS)
            .instances(1)
            .trap_on_grow_failure(false)
            .build();
        let limits = Limiter::new(limits);
        let mut store = Store::new(&self.engine, StoreData { wasi: WasiHost::new(config), limits, memory: None });
        store.limiter(|d| &mut d.limits);
        store.set_fuel(job.limits.fuel).map_err(|e| RunError::Host(format!("{e:#}")))?;
        let ticks = job.timeout.as_millis().div_ceil(engine::WATCHDOG_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();

        let termination = match pre.instantiate(&mut store) {
            // Only an instantiation can be refused by the limits as a whole.
            Err(e) => classify(&e, job, &store.data().limits, true)?,
            Ok(instance) => {
                let memory = instance.get_memory(&mut store, "memory");
                store.data_mut().memory = memory;
                match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                    Err(_) => Termination::Trap(TrapKind::NoEntryPoint),
                    Ok(start) => match start.call(&mut store, ()) {
                        Ok(()) => Termination::Exit(0),
                        Err(e) => classify(&e, job, &store.data().limits, false)?,
                    },
                }
            }
        };
        let fuel_left = store.get_fuel().unwrap_or(0);
        let wasi = store.into_data().wasi;
        let outputs = wasi.output_tree();
        Ok(Outcome { termination, fuel_consumed: job.limits.fuel.saturating_sub(fuel_left), stdout: wasi.stdout, stderr: wasi.stderr, outputs })
    }
}

/// Maps a wasmtime error to how the guest ended, or to "no result": only
/// what every node would see alike becomes an outcome.
fn classify(e: &wasmtime::Error, job: &Job, limits: &Limiter, instantiating: bool) -> Result<Termination, RunError> {
    if limits.host_failed {
        return Err(RunError::Host(format!("the host could not provide memory the job is allowed: {e:#}")));
    }
    if let Some(stop) = e.downcast_ref::<Stop>() {
        return Ok(match *stop {
            Stop::Exit(code) => Termination::Exit(code),
            Stop::Trap(kind) => Termination::Trap(kind),
        });
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        let kind = match trap {
            Trap::Interrupt => return Err(RunError::Timeout(job.timeout)),
            Trap::StackOverflow => TrapKind::StackOverflow,
            Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
            Trap::HeapMisaligned => TrapKind::UnalignedAtomic,
            Trap::TableOutOfBounds => TrapKind::TableOutOfBounds,
            Trap::IndirectCallToNull => TrapKind::IndirectCallToNull,
            Trap::BadSignature => TrapKind::IndirectCallTypeMismatch,
            Trap::IntegerOverflow => TrapKind::IntegerOverflow,
            Trap::IntegerDivisionByZero => TrapKind::IntegerDivideByZero,
            Trap::BadConversionToInteger => TrapKind::BadConversionToInteger,
            Trap::UnreachableCodeReached => TrapKind::Unreachable,
            Trap::OutOfFuel => TrapKind::OutOfFuel,
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
