//! The one place where wasmtime is configured for determinism.
//!
//! Every knob that could let the host leak into an outcome is set here, each
//! with its reason. Nothing else in canon builds a `wasmtime::Config`.

use std::hash::{Hash, Hasher};

use wasmtime::{Config, Engine, OptLevel};

/// Most bytes of native stack wasm code may use: 64 MiB. This is the
/// host's own guard, above the job's deterministic call-depth limit (see
/// [`crate::instrument`]): it holds [`crate::job::MAX_CALL_DEPTH`] frames of
/// up to about 670 bytes. Where it fires depends on the backend and the
/// machine, so a run that hits it (`Trap::StackOverflow`) has no result.
pub const MAX_WASM_STACK: usize = 64 << 20;

/// Native stack for threads that run guests: the wasm stack plus room for
/// the host's own frames. [`super::Sandbox::run_with`] runs every guest on a
/// thread of its own with this stack, whatever thread calls it.
pub const HOST_THREAD_STACK: usize = MAX_WASM_STACK + (8 << 20);

/// Most table elements a guest may hold (a table-growth bomb stops here).
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

pub use crate::abi::{DETERMINISM_ABI, WASMTIME_VERSION};

/// How a node turns wasm into something that runs. Every backend gets the
/// same determinism configuration ([`deterministic_config`]); only the code
/// generator or interpreter differs, so a job's outcome must not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Cranelift with every CPU feature the host has.
    #[default]
    Cranelift,
    /// Cranelift limited to baseline x86-64 (SSE2 only: no SSE3/SSSE3,
    /// SSE4.1+, AVX, AVX-512, FMA, POPCNT, BMI or LZCNT), as on an old CPU.
    /// On other architectures, the same as [`Backend::Cranelift`].
    CraneliftBaseline,
    /// wasmtime's portable interpreter, Pulley (`pulley64`).
    Pulley,
    /// wasmtime's baseline compiler, Winch. It cannot run canon jobs: see
    /// [`WINCH_UNSUPPORTED`].
    Winch,
}

/// Why [`Backend::Pulley`] refuses threaded jobs.
pub const PULLEY_NO_THREADS: &str = "the pulley backend cannot run threaded jobs: wasmtime's Pulley interpreter implements \
     neither shared memories nor atomics (wasm threads are a tier-2 feature of wasmtime's compilers only); \
     run the job on cranelift or cranelift-baseline";

/// Why [`Backend::Winch`] is refused: what canon needs that Winch lacks.
/// (Under determinism ABI 1 Winch's wasmtime fuel also differed from
/// Cranelift's on 31 of 37 fixture jobs; since ABI 2 fuel is canon's own
/// instrumentation, so that no longer applies, but the SIMD gap does.)
pub const WINCH_UNSUPPORTED: &str = "Winch does not implement the relaxed-SIMD proposal, which canon \
     enables (with its deterministic lowering) for every job, and implements SIMD only in part; \
     a Winch node would refuse or fail jobs that other nodes run, so it cannot be an \
     independent node for the same jobs";

impl Backend {
    /// Every backend, the default first.
    pub const ALL: [Backend; 4] = [Backend::Cranelift, Backend::CraneliftBaseline, Backend::Pulley, Backend::Winch];

    /// The canonical name (`cranelift`, `cranelift-baseline`, `pulley`,
    /// `winch`), as given to `--backend` and recorded in receipts.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Cranelift => "cranelift",
            Backend::CraneliftBaseline => "cranelift-baseline",
            Backend::Pulley => "pulley",
            Backend::Winch => "winch",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`Backend`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{0}`: expected cranelift, cranelift-baseline, pulley or winch")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        Backend::ALL.into_iter().find(|b| b.as_str() == s).ok_or_else(|| UnknownBackend(s.to_string()))
    }
}

/// x86-64 features [`Backend::CraneliftBaseline`] turns off (Cranelift's
/// flag names), leaving SSE2, the x86-64 baseline.
const X86_64_ABOVE_BASELINE: &[&str] = &[
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_avx",
    "has_avx2",
    "has_fma",
    "has_avx_vnni",
    "has_avx512bitalg",
    "has_avx512dq",
    "has_avx512vl",
    "has_avx512vbmi",
    "has_avx512f",
    "has_avx512vnni",
    "has_popcnt",
    "has_bmi1",
    "has_bmi2",
    "has_lzcnt",
];

/// The configuration every canon engine uses, for `backend`.
pub fn deterministic_config(backend: Backend) -> wasmtime::Result<Config> {
    let mut c = Config::new();
    // NaN bit patterns differ between CPUs, but canon's NaN pass
    // (`crate::instrument::nan`, run on every module before it compiles)
    // canonicalises them wherever a guest can see them. Canonicalising every
    // float result as well would only cost time (5-7x on float code).
    c.cranelift_nan_canonicalization(false);
    // Relaxed SIMD results may differ between CPUs: lower them one fixed way.
    c.wasm_relaxed_simd(true);
    c.relaxed_simd_deterministic(true);
    // Threads: shared memories and atomics, for threaded jobs only (job
    // validation refuses them in any other module). Every guest thread
    // runs under canon's scheduler, one at a time, and no guest ever
    // executes a real wait: the instrumentation rewrites waits and
    // notifies into scheduler calls (docs/THREADS.md). Pulley implements
    // neither, so its engine leaves them off and canon refuses threaded
    // jobs there. The shared-everything proposal stays off.
    let threads = !matches!(backend, Backend::Pulley | Backend::Winch);
    c.wasm_threads(threads);
    c.shared_memory(threads);
    c.wasm_shared_everything_threads(false);
    // No wasmtime fuel: canon meters fuel itself, by instrumenting the
    // module (crate::instrument), so the figure is defined by canon's cost
    // table and not by a compiler; so is the call-depth limit.
    c.consume_fuel(false);
    // No epoch interruption: canon's watchdog raises the surcharge that
    // every fuel check subtracts (`super::watchdog`). An epoch check at every
    // loop header as well cost 1.1-1.3x on compute guests, measured: its
    // slow path is a call, which makes the loop keep its values where a call
    // preserves them.
    c.epoch_interruption(false);
    // The host's guard on native stack, above the job's call-depth limit.
    c.max_wasm_stack(MAX_WASM_STACK);
    // The async stack: each guest thread of a threaded job runs on a fiber
    // of this size (unthreaded jobs run synchronously); wasmtime requires
    // it to be at least the wasm stack.
    c.async_stack_size(MAX_WASM_STACK + (1 << 20));
    // Traps are classified by kind only; backtraces carry host addresses.
    c.wasm_backtrace_max_frames(None);
    // Exception handling (real toolchains emit it: clang's -fwasm-exceptions,
    // as in the YoWASP builds). The instrumentation restores the depth and
    // fuel counters where a catch lands. wasmtime needs its `gc` feature for
    // exception objects; the GC proposal itself stays off.
    c.wasm_exceptions(true);
    c.wasm_gc(false);
    // Proposals canon does not offer (yet): refused at validation.
    c.wasm_memory64(false);
    c.wasm_stack_switching(false);
    c.wasm_component_model(false);
    // Compiled code quality does not change results, only speed.
    c.cranelift_opt_level(OptLevel::Speed);
    // The backend: only how code is generated, never what it computes.
    match backend {
        Backend::Cranelift => {}
        Backend::CraneliftBaseline => {
            if cfg!(target_arch = "x86_64") {
                for flag in X86_64_ABOVE_BASELINE {
                    // SAFETY: these flags only turn CPU features off; code
                    // that uses fewer features than the host has is valid.
                    #[allow(unsafe_code)]
                    unsafe {
                        c.cranelift_flag_set(flag, "false");
                    }
                }
            }
        }
        Backend::Pulley => {
            c.target("pulley64")?;
        }
        Backend::Winch => {
            c.strategy(wasmtime::Strategy::Winch);
        }
    }
    Ok(c)
}

/// A new engine with the deterministic configuration for `backend`.
pub fn new_engine(backend: Backend) -> wasmtime::Result<Engine> {
    Engine::new(&deterministic_config(backend)?)
}

/// A short hex fingerprint of everything that makes compiled code
/// compatible: wasmtime's version, its configuration and the host target,
/// canon's determinism ABI and the instrumentation version (cached modules
/// are instrumented ones). Compiled modules are cached under it.
pub fn fingerprint(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    DETERMINISM_ABI.hash(&mut h);
    crate::instrument::VERSION.hash(&mut h);
    format!("wasmtime-{WASMTIME_VERSION}-{:016x}", h.finish())
}
