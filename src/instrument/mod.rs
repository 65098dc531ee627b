//! Load-time instrumentation: the rewrites every module goes through before
//! it is compiled, so that what a guest may do is defined by canon rather
//! than by a compiler.
//!
//! [`instrument`] runs [`PASSES`] in a fixed order, each taking the bytes
//! the previous one produced. It runs once per module on a cache miss; the
//! instrumented module is what gets compiled and cached, under an engine
//! fingerprint that includes [`VERSION`] (through
//! [`crate::abi::DETERMINISM_ABI`]), so a warm run never
//! instruments again.
//!
//! The passes:
//!
//! 0. [`threads`]: in a threaded module only, `memory.atomic.wait*` and
//!    `memory.atomic.notify` become calls into canon's scheduler, and a
//!    `canon.slice` import is added for the meter (docs/THREADS.md). Any
//!    other module passes through unchanged. It runs first so that its
//!    calls are metered like every call.
//! 1. [`meter`]: canon's fuel metering (the cost table is in
//!    `docs/FUEL.md`) and the job's call-depth limit. The counters are
//!    mutable globals the module imports from the reserved module
//!    [`CANON_MODULE`], with the watchdog's one-page memory; a failed check
//!    traps, and the host reads the counters to say why. The host defines
//!    them once per store, so several modules linked into one store
//!    (preloads) share one fuel counter and one depth counter. In a
//!    threaded module a failed check calls `canon.slice` instead of
//!    trapping: the scheduler then switches threads or ends the job.
//! 2. [`nan`]: NaN canonicalisation only where float bits can escape
//!    ([`nan::canonicalize_nans`]; the soundness argument is in its module
//!    docs). It runs after metering, so its own code is not metered and
//!    fuel stays a function of the guest's code.
//!
//! A guest module may not import anything from [`CANON_MODULE`]: such a
//! module is refused at validation and here.

pub mod meter;
pub mod nan;
pub mod threads;

use std::borrow::Cow;

/// Version of the instrumentation as a whole: the passes, their order and
/// their cost table. Any change that can alter an outcome (a cost, where a
/// check goes) bumps it, and with it [`crate::abi::DETERMINISM_ABI`].
///
/// - 6: the threads pass (threaded modules only; every other module is
///   instrumented as under 5).
pub const VERSION: u32 = 6;

/// The reserved import module through which instrumented code reaches the
/// host's counters. Guest modules may not import from it.
pub use crate::abi::CANON_MODULE;

/// `canon.fuel`: mutable `i64` global, the job's fuel not yet used. The
/// host sets it to the job's budget before the module runs. Instrumented
/// code keeps the fuel in a local and stores it here before every call,
/// throw and return, and at a failed check: it is negative only when a
/// fuel check failed (`out_of_fuel`), which is how the host tells that trap
/// from the guest's own `unreachable`.
pub const FUEL_GLOBAL: &str = "fuel";

/// `canon.depth`: mutable `i32` global, how many more calls may be entered.
/// The host sets it to the job's call-depth limit before the module runs.
pub const DEPTH_GLOBAL: &str = "depth";

/// `canon.watchdog`: a memory of one page (minimum and maximum) of 8 192
/// little-endian `i64` *surcharges*, one per fuel check (see
/// [`meter::SURCHARGE_SLOTS`]). Every check subtracts its surcharge along
/// with its segment's cost and fails when the fuel is below zero. The host
/// creates the page zeroed, so checks fail exactly when the fuel runs out;
/// when the job's wall-clock timeout passes, the host's watchdog thread
/// sets every surcharge to [`DEADLINE_SURCHARGE`] and the next check fails
/// whatever the fuel: the run stops within one loop iteration or call, and
/// has no result. A memory rather than globals because another thread can
/// write it while the guest runs.
pub const WATCHDOG_MEMORY: &str = "watchdog";

/// The surcharge once the deadline has passed: 2⁶². The host caps the fuel
/// a guest holds at [`MAX_FUEL`], so one check's subtraction takes any fuel
/// below zero and cannot wrap around.
pub const DEADLINE_SURCHARGE: i64 = 1 << 62;

/// The most fuel a run holds: 2⁶² − 1 (146 years at 10⁹ units a second). A
/// larger `limits.fuel` counts as this.
pub const MAX_FUEL: u64 = (1 << 62) - 1;

/// What a failed depth check stores in `canon.depth` before it traps: a
/// value the counter never holds otherwise (it only counts down to 0 and is
/// restored to saved values), so the host can tell `call_depth_exceeded`
/// from the guest's own `unreachable`.
pub const DEPTH_EXCEEDED: i32 = -1;

/// Why a module could not be instrumented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentError {
    /// wasmparser or wasm-encoder rejected the module.
    #[error("cannot instrument the module: {0}")]
    Invalid(String),
    /// The module imports from the reserved module [`CANON_MODULE`].
    #[error("the module imports `{module}::{name}`: the import module `canon` is reserved for canon's instrumentation")]
    Reserved {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
    },
    /// An instruction the instrumentation does not handle (from a proposal
    /// canon does not enable).
    #[error("cannot instrument the module: unsupported instruction `{0}`")]
    Unsupported(String),
}

/// One instrumentation pass: module bytes in, module bytes out.
pub type Pass = fn(&[u8]) -> Result<Vec<u8>, InstrumentError>;

/// The passes, in the order they run. Part of the determinism ABI: the
/// order is fixed and versioned by [`VERSION`].
pub const PASSES: &[(&str, Pass)] = &[("threads", threads::instrument), ("meter", meter::instrument), ("nan", nan_pass)];

fn nan_pass(wasm: &[u8]) -> Result<Vec<u8>, InstrumentError> {
    nan::canonicalize_nans(wasm).map_err(|e| InstrumentError::Invalid(e.to_string()))
}

/// Runs every pass of [`PASSES`] over `wasm`, in order.
pub fn instrument(wasm: &[u8]) -> Result<Vec<u8>, InstrumentError> {
    let mut bytes = Cow::Borrowed(wasm);
    for (_, pass) in PASSES {
        bytes = Cow::Owned(pass(&bytes)?);
    }
    Ok(bytes.into_owned())
}

#[cfg(test)]
mod tests {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, GlobalSection, GlobalType, Instruction as I, Module, TypeSection, ValType,
    };

    use super::*;

    fn validate(bytes: &[u8]) {
        wasmparser::Validator::new_with_features(crate::job::CORE_FEATURES).validate_all(bytes).expect("instrumented module validates");
    }

    /// A function with several results (the body's wrapper block needs a
    /// new type), a defined global (its index moves up by two) and no
    /// import section (one is added) still validates after instrumenting.
    #[test]
    fn multi_value_bodies_and_moved_indices_validate() {
        let mut m = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], [ValType::I32, ValType::I64]);
        types.ty().function([], []);
        m.section(&types);
        let mut funcs = FunctionSection::new();
        funcs.function(0).function(1);
        m.section(&funcs);
        let mut globals = GlobalSection::new();
        globals.global(GlobalType { val_type: ValType::I32, mutable: true, shared: false }, &wasm_encoder::ConstExpr::i32_const(3));
        m.section(&globals);
        let mut exports = ExportSection::new();
        exports.export("_start", ExportKind::Func, 1).export("g", ExportKind::Global, 0);
        m.section(&exports);
        let mut code = CodeSection::new();
        let mut two = Function::new([]);
        for i in [I::GlobalGet(0), I::I64Const(1), I::I32Const(1), I::BrIf(0), I::Drop, I::Drop, I::GlobalGet(0), I::I64Const(2), I::End] {
            two.instruction(&i);
        }
        code.function(&two);
        let mut start = Function::new([]);
        for i in [I::Call(0), I::Drop, I::GlobalSet(0), I::End] {
            start.instruction(&i);
        }
        code.function(&start);
        m.section(&code);
        let wasm = m.finish();
        validate(&wasm);
        let out = instrument(&wasm).expect("instrument");
        validate(&out);
        // The guest's global is now index 2, after canon.fuel and canon.depth;
        // function indices do not move.
        let exported: Vec<(String, u32)> = wasmparser::Parser::new(0)
            .parse_all(&out)
            .filter_map(|p| match p {
                Ok(wasmparser::Payload::ExportSection(r)) => {
                    Some(r.into_iter().map(|e| e.map(|e| (e.name.to_string(), e.index))).collect::<Result<Vec<_>, _>>().ok()?)
                }
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(exported, vec![("_start".to_string(), 1), ("g".to_string(), 2)]);
    }

    #[test]
    fn every_fixture_instruments_to_a_valid_module() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        for name in ["hello", "probe", "sha256chain", "nbody", "fswalk", "wasi-conformance", "hostile"] {
            let wasm = std::fs::read(dir.join(format!("{name}.wasm"))).expect("fixture");
            validate(&instrument(&wasm).unwrap_or_else(|e| panic!("{name}: {e}")));
        }
    }
}
