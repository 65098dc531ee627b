//! The one place where wasmtime is configured for determinism.
//!
//! Every knob that could let the host leak into an outcome is set here, each
//! with its reason. Nothing else in canon builds a `wasmtime::Config`.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use wasmtime::{Config, Engine, OptLevel};

/// Most bytes of native stack wasm code may use before it traps with
/// `stack_overflow`. Fixed, so the limit does not depend on the thread that
/// runs the guest; threads that run guests are given at least
/// [`HOST_THREAD_STACK`].
pub const MAX_WASM_STACK: usize = 1 << 20;

/// Native stack for threads that run guests: the wasm stack plus room for
/// the host's own frames.
pub const HOST_THREAD_STACK: usize = 8 << 20;

/// How often the wall-clock watchdog ticks the engine's epoch.
pub const WATCHDOG_TICK: Duration = Duration::from_millis(10);

/// Most table elements a guest may hold (a table-growth bomb stops here).
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Version of canon's determinism ABI: the rules of this file and of the
/// WASI host. Any change that can alter an outcome bumps it; it is recorded
/// in receipts.
pub const DETERMINISM_ABI: u32 = 1;

/// The wasmtime version canon is built against.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The configuration every canon engine uses.
pub fn deterministic_config() -> Config {
    let mut c = Config::new();
    // NaN bit patterns differ between CPUs: canonicalise every float result.
    c.cranelift_nan_canonicalization(true);
    // Relaxed SIMD results may differ between CPUs: lower them one fixed way.
    c.wasm_relaxed_simd(true);
    c.relaxed_simd_deterministic(true);
    // No threads or shared memory: one guest thread, no OS scheduling.
    // (wasmtime is built without its `threads` feature, so shared memories
    // and atomics waits are refused at validation.)
    c.wasm_shared_everything_threads(false);
    // Fuel bounds compute deterministically: the same job stops at the same
    // instruction on every node, and logical time is derived from it.
    c.consume_fuel(true);
    // The wall-clock safety net for the host: an epoch deadline that yields
    // "no result", never a signed outcome.
    c.epoch_interruption(true);
    // A fixed stack limit, whatever the host thread's stack.
    c.max_wasm_stack(MAX_WASM_STACK);
    // Traps are classified by kind only; backtraces carry host addresses.
    c.wasm_backtrace_max_frames(None);
    // Proposals canon does not offer (yet): refused at validation. (GC,
    // function references and exceptions are compiled out of wasmtime.)
    c.wasm_memory64(false);
    c.wasm_stack_switching(false);
    c.wasm_component_model(false);
    // Compiled code quality does not change results, only speed.
    c.cranelift_opt_level(OptLevel::Speed);
    c
}

/// A new engine with the deterministic configuration.
pub fn new_engine() -> wasmtime::Result<Engine> {
    Engine::new(&deterministic_config())
}

/// A short hex fingerprint of everything that makes compiled code
/// compatible: wasmtime's version, its configuration and the host target.
/// Compiled modules are cached under it.
pub fn fingerprint(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    DETERMINISM_ABI.hash(&mut h);
    format!("wasmtime-{WASMTIME_VERSION}-{:016x}", h.finish())
}

/// Starts a thread that ticks `engine`'s epoch every [`WATCHDOG_TICK`] until
/// the engine is dropped.
pub fn start_watchdog(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("canon-watchdog".into()).spawn(move || {
        loop {
            std::thread::sleep(WATCHDOG_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        }
    });
    // Without the thread, timeouts never fire; runs still end by fuel.
    drop(spawned);
}
