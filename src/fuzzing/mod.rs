//! Generated WASI modules for differential fuzzing (feature `fuzzing`).
//!
//! A [`Case`] is a module made by wasm-smith plus the small job it runs as
//! ([`DiffJob`]); [`crate::sandbox::differential`] runs it on several
//! backends. [`Case::generate`] takes its choices from fuzzer bytes;
//! [`Case::from_seed`] from a ChaCha stream, so a `u64` names a case for
//! good (the bounded test uses a fixed list of seeds).
//!
//! Every module:
//! - imports every function of canon's WASI ([`crate::abi::WASI_FUNCTIONS`]),
//!   with canon's signatures, so generated code calls the real host;
//! - uses only the proposals of [`crate::job::CORE_FEATURES`]: wasm-smith's
//!   switches are derived from that one constant ([`smith_config`]), so
//!   enabling a proposal there enables it here;
//! - exports `memory` and `_start`. wasm-smith generates a function `body`;
//!   [`add_start`] appends `_start`, which calls `body` and then writes the
//!   first 64 KiB of memory (less 16 bytes it uses for the iovec) to
//!   stdout, so the outcome digest covers what the code left in memory — a
//!   float's bits stored there included.
//!
//! That is the [`Profile::General`] module. [`Profile::FloatHeavy`] modules
//! come from [`float`] instead (issue 5): expression trees over NaNs with
//! payloads, every result observed through a route by which float bits can
//! escape, with a layout of stdout ([`Case::layout`]) against which
//! [`float::escaped_nans`] checks that every escaped NaN is canonical.

use arbitrary::{Arbitrary, Unstructured};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, FunctionSection, ImportSection, Instruction, MemArg, MemorySection, MemoryType, RawSection,
    TypeSection, ValType,
};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, WasmFeatures};

use crate::abi::{self, WASI_FUNCTIONS, WASI_MODULE};
use crate::job::CORE_FEATURES;
use crate::sandbox::differential::{DiffJob, Report};

pub mod float;
pub mod threads;
pub mod wasi;

/// Bytes of memory `_start` writes to stdout after `body` returns (from
/// offset 16: offsets 0..16 hold its iovec and the count written).
pub const DUMP_BYTES: u32 = 64 << 10;

/// Bytes of ChaCha20 output behind [`Case::from_seed`].
pub const SEED_BYTES: usize = 64 << 10;

/// What kind of code to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Arbitrary)]
pub enum Profile {
    /// Anything canon accepts: control flow, calls (WASI too), tables,
    /// references, memory, SIMD; traps allowed; half the modules bounded by
    /// wasm-smith's own loop fuel, the rest by canon's.
    General,
    /// Scalar and SIMD float expression trees over NaNs with payloads
    /// (relaxed SIMD included), each observed through an escape route and
    /// printed ([`float`]).
    FloatHeavy,
    /// Sequences of WASI calls with boundary arguments over prepared
    /// memory and mounted inputs, everything the host wrote printed
    /// ([`wasi`]).
    Wasi,
    /// Threads racing, waiting and notifying over shared memory under a
    /// generated schedule policy, seed and slice ([`threads`]).
    Threads,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [Profile::General, Profile::FloatHeavy, Profile::Wasi, Profile::Threads];
}

/// A generated module and the job it runs as.
#[derive(Clone, Debug)]
pub struct Case {
    /// The profile it was generated with.
    pub profile: Profile,
    /// The module's bytes.
    pub module: Vec<u8>,
    /// The job, all but the module.
    pub job: DiffJob,
    /// For a [`Profile::FloatHeavy`] case, what each stretch of its stdout
    /// is (for [`float::escaped_nans`]); `None` for a general case.
    pub layout: Option<Vec<float::Slot>>,
}

impl Case {
    /// A case from fuzzer bytes.
    pub fn generate(u: &mut Unstructured<'_>, profile: Profile) -> arbitrary::Result<Case> {
        if profile == Profile::Wasi {
            let program = wasi::Program::generate(u)?;
            // Generated programs name only WASI functions with their arities.
            let module = program.encode().map_err(|_| arbitrary::Error::IncorrectFormat)?;
            let job = DiffJob {
                args: (0..u.int_in_range(0..=2)?).map(|_| short_string(u)).collect::<arbitrary::Result<_>>()?,
                env: (0..u.int_in_range(0..=2)?).map(|_| Ok((short_string(u)?, short_string(u)?))).collect::<arbitrary::Result<_>>()?,
                stdin: (0..u.int_in_range(0..=64)?).map(|_| u.arbitrary()).collect::<arbitrary::Result<_>>()?,
                seed: u.arbitrary()?,
                inputs: true,
                ..DiffJob::default()
            };
            return Ok(Case { profile, module, job, layout: None });
        }
        if profile == Profile::Threads {
            let program = threads::Program::generate(u)?;
            let job = DiffJob { seed: u.arbitrary()?, fuel: u.int_in_range(10_000..=DiffJob::MAX_FUEL)?, threads: Some(program.threads), ..DiffJob::default() };
            return Ok(Case { profile, module: program.encode(), job, layout: None });
        }
        if profile == Profile::FloatHeavy {
            let m = float::FloatModule::generate(u)?;
            let job = DiffJob { seed: u.arbitrary()?, ..DiffJob::default() };
            return Ok(Case { profile, module: m.wasm, job, layout: Some(m.slots) });
        }
        let minimum = u.int_in_range(0..=2)?;
        let maximum = if u.arbitrary()? { Some(minimum + u64::from(u.int_in_range(0u8..=64)?)) } else { None };
        let memory = MemoryType { minimum, maximum, memory64: false, shared: false, page_size_log2: None };
        let mut config = smith_config();
        config.module_shape = Some(shape_module(memory));
        let mut module = wasm_smith::Module::new(config, u)?;
        if u.arbitrary()? {
            let loops = u.int_in_range(1..=10_000)?;
            // Fails only for raw (unparsed) function bodies, never generated here.
            module.ensure_termination(loops).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        }
        #[allow(clippy::expect_used)]
        let module = add_start(&module.to_bytes()).expect("wasm-smith's module has the shape it was given");
        let job = DiffJob {
            args: (0..u.int_in_range(0..=3)?).map(|_| short_string(u)).collect::<arbitrary::Result<_>>()?,
            env: (0..u.int_in_range(0..=3)?).map(|_| Ok((short_string(u)?, short_string(u)?))).collect::<arbitrary::Result<_>>()?,
            stdin: (0..u.int_in_range(0..=64)?).map(|_| u.arbitrary()).collect::<arbitrary::Result<_>>()?,
            seed: u.arbitrary()?,
            fuel: u.int_in_range(1..=DiffJob::MAX_FUEL)?,
            memory_bytes: u64::from(u.int_in_range(1u32..=256)?) << 16,
            call_depth: u.int_in_range(1..=DiffJob::DEFAULT_CALL_DEPTH)?,
            timeout: DiffJob::DEFAULT_TIMEOUT,
            inputs: false,
            threads: None,
        };
        Ok(Case { profile, module, job, layout: None })
    }

    /// The case named by `seed`: [`Case::generate`] over [`SEED_BYTES`] of
    /// ChaCha20 keyed by the seed (stable across platforms and releases).
    pub fn from_seed(seed: u64, profile: Profile) -> Case {
        let mut bytes = vec![0u8; SEED_BYTES];
        ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        // Generation takes what it needs from the stream and falls back to
        // defaults when it runs out; it cannot fail on well-formed choices.
        #[allow(clippy::expect_used)]
        Case::generate(&mut Unstructured::new(&bytes), profile).expect("generation from a seed")
    }
}

impl Case {
    /// For a float-heavy case, how many scalar NaNs the runs of `report`
    /// printed, or the first that is not canonical (every run's stdout is
    /// read, even where runs already disagree). 0 for a general case.
    pub fn escaped_nans(&self, report: &Report) -> Result<usize, float::NonCanonicalNan> {
        let Some(layout) = &self.layout else { return Ok(0) };
        let mut nans = 0;
        for run in &report.runs {
            nans += float::escaped_nans(&run.stdout, layout)?;
        }
        Ok(nans)
    }
}

fn short_string(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let n = u.int_in_range(0..=12)?;
    (0..n).map(|_| Ok(char::from(u.int_in_range(b'a'..=b'z')?))).collect()
}

/// wasm-smith's configuration for [`Profile::General`]. Every proposal switch is read
/// from [`CORE_FEATURES`] (what validation accepts), so generated modules
/// never use a proposal canon refuses; a test checks that the features the
/// configuration needs are a subset of it.
pub fn smith_config() -> wasm_smith::Config {
    let f = CORE_FEATURES;
    wasm_smith::Config {
        saturating_float_to_int_enabled: f.contains(WasmFeatures::SATURATING_FLOAT_TO_INT),
        sign_extension_ops_enabled: f.contains(WasmFeatures::SIGN_EXTENSION),
        reference_types_enabled: f.contains(WasmFeatures::REFERENCE_TYPES),
        multi_value_enabled: f.contains(WasmFeatures::MULTI_VALUE),
        bulk_memory_enabled: f.contains(WasmFeatures::BULK_MEMORY),
        simd_enabled: f.contains(WasmFeatures::SIMD),
        relaxed_simd_enabled: f.contains(WasmFeatures::RELAXED_SIMD),
        exceptions_enabled: f.contains(WasmFeatures::EXCEPTIONS),
        memory64_enabled: f.contains(WasmFeatures::MEMORY64),
        tail_call_enabled: f.contains(WasmFeatures::TAIL_CALL),
        gc_enabled: f.contains(WasmFeatures::GC) && f.contains(WasmFeatures::FUNCTION_REFERENCES),
        threads_enabled: f.contains(WasmFeatures::THREADS),
        shared_everything_threads_enabled: f.contains(WasmFeatures::SHARED_EVERYTHING_THREADS),
        custom_page_sizes_enabled: f.contains(WasmFeatures::CUSTOM_PAGE_SIZES),
        extended_const_enabled: f.contains(WasmFeatures::EXTENDED_CONST),
        wide_arithmetic_enabled: f.contains(WasmFeatures::WIDE_ARITHMETIC),
        custom_descriptors_enabled: f.contains(WasmFeatures::CUSTOM_DESCRIPTORS),
        max_memories: if f.contains(WasmFeatures::MULTI_MEMORY) { 2 } else { 1 },
        max_tables: if f.contains(WasmFeatures::REFERENCE_TYPES) { 2 } else { 1 },
        // Small enough that hundreds of modules compile in seconds, and that
        // memories and tables fit a small job.
        max_funcs: 60,
        max_instructions: 150,
        max_memory32_bytes: 1 << 20,
        max_memory64_bytes: 1 << 20,
        max_table_elements: 1_000,
        max_data_segments: 20,
        max_element_segments: 20,
        max_elements: 50,
        ..wasm_smith::Config::default()
    }
}

/// The module whose imports and exports every generated module copies:
/// every WASI function canon provides, a function `body: () -> ()` and a
/// memory `memory` of type `memory`.
pub fn shape_module(memory: MemoryType) -> Vec<u8> {
    let wasm = |t: &abi::ValType| match t {
        abi::ValType::I32 => ValType::I32,
        abi::ValType::I64 => ValType::I64,
    };
    let mut types = TypeSection::new();
    let mut imports = ImportSection::new();
    for (i, (name, params, results)) in WASI_FUNCTIONS.iter().enumerate() {
        types.ty().function(params.iter().map(wasm), results.iter().map(wasm));
        imports.import(WASI_MODULE, name, EntityType::Function(i as u32));
    }
    let body_type = WASI_FUNCTIONS.len() as u32;
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    funcs.function(body_type);
    let mut memories = MemorySection::new();
    memories.memory(memory);
    let mut exports = ExportSection::new();
    exports.export("body", ExportKind::Func, WASI_FUNCTIONS.len() as u32);
    exports.export("memory", ExportKind::Memory, 0);
    let mut code = CodeSection::new();
    let mut f = wasm_encoder::Function::new([]);
    f.instruction(&Instruction::End);
    code.function(&f);
    let mut m = wasm_encoder::Module::new();
    m.section(&types).section(&imports).section(&funcs).section(&memories).section(&exports).section(&code);
    m.finish()
}

/// Why [`add_start`] could not wrap a module.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// The bytes do not parse.
    #[error("not a module: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    /// Something [`shape_module`] promises is missing.
    #[error("the module has no {0}")]
    Missing(&'static str),
}

/// `module` (from wasm-smith, shaped by [`shape_module`]) with a new last
/// function exported as `_start` (the export `body` removed): it calls
/// `body`, then writes memory `[16, min(size, DUMP_BYTES))` to stdout
/// with `fd_write`, using offsets 0..16 for the iovec and the count.
/// Appending the function shifts no index, so every other section is
/// copied byte for byte.
pub fn add_start(module: &[u8]) -> Result<Vec<u8>, ShapeError> {
    let mut imported_funcs = 0u32;
    let mut fd_write = None;
    let mut func_types = Vec::new();
    let mut body = None;
    let mut memory = None;
    for payload in Parser::new(0).parse_all(module) {
        match payload? {
            Payload::ImportSection(r) => {
                for import in r.into_imports() {
                    let import = import?;
                    if let TypeRef::Func(_) = import.ty {
                        if import.module == WASI_MODULE && import.name == "fd_write" {
                            fd_write = Some(imported_funcs);
                        }
                        imported_funcs += 1;
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    func_types.push(t?);
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e?;
                    match (e.name, e.kind) {
                        ("body", ExternalKind::Func) => body = Some(e.index),
                        ("memory", ExternalKind::Memory) => memory = Some(e.index),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let fd_write = fd_write.ok_or(ShapeError::Missing("fd_write import"))?;
    let body = body.ok_or(ShapeError::Missing("`body` export"))?;
    let memory = memory.ok_or(ShapeError::Missing("`memory` export"))?;
    let body_type = body.checked_sub(imported_funcs).and_then(|i| func_types.get(i as usize)).copied().ok_or(ShapeError::Missing("defined `body`"))?;
    let start = imported_funcs + func_types.len() as u32;

    let mut out = wasm_encoder::Module::new();
    let mut code = CodeSection::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload?;
        match &payload {
            Payload::FunctionSection(_) => {
                let mut s = FunctionSection::new();
                for t in &func_types {
                    s.function(*t);
                }
                s.function(body_type);
                out.section(&s);
            }
            Payload::ExportSection(r) => {
                let mut s = ExportSection::new();
                for e in r.clone() {
                    let e = e?;
                    let kind = match e.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
                        ExternalKind::Table => ExportKind::Table,
                        ExternalKind::Memory => ExportKind::Memory,
                        ExternalKind::Global => ExportKind::Global,
                        ExternalKind::Tag => ExportKind::Tag,
                    };
                    if e.name != "body" {
                        s.export(e.name, kind, e.index);
                    }
                }
                s.export("_start", ExportKind::Func, start);
                out.section(&s);
            }
            Payload::CodeSectionEntry(f) => {
                code.raw(f.as_bytes());
            }
            Payload::CodeSectionStart { .. } => {}
            p => {
                if let Some((id, range)) = p.as_section() {
                    if id == wasm_encoder::SectionId::Data as u8 && !code.is_empty() {
                        flush_code(&mut out, &mut code, start_function(body, fd_write, memory));
                    }
                    out.section(&RawSection { id, data: &module[range] });
                }
            }
        }
    }
    if !code.is_empty() {
        flush_code(&mut out, &mut code, start_function(body, fd_write, memory));
    }
    Ok(out.finish())
}

fn flush_code(out: &mut wasm_encoder::Module, code: &mut CodeSection, start: wasm_encoder::Function) {
    code.function(&start);
    out.section(code);
    *code = CodeSection::new();
}

fn start_function(body: u32, fd_write: u32, memory: u32) -> wasm_encoder::Function {
    use Instruction as I;
    let arg = MemArg { offset: 0, align: 2, memory_index: memory };
    let n = 0;
    let mut f = wasm_encoder::Function::new([(1, ValType::I32)]);
    for i in [
        I::Call(body),
        // n = min(memory bytes, DUMP_BYTES); a 4 GiB memory wraps to 0.
        I::MemorySize(memory),
        I::I32Const(16),
        I::I32Shl,
        I::LocalSet(n),
        I::LocalGet(n),
        I::I32Const(DUMP_BYTES as i32),
        I::I32GtU,
        I::If(wasm_encoder::BlockType::Empty),
        I::I32Const(DUMP_BYTES as i32),
        I::LocalSet(n),
        I::End,
        // Nothing to write past the iovec: return.
        I::LocalGet(n),
        I::I32Const(16),
        I::I32LeU,
        I::BrIf(0),
        // iovec { buf: 16, len: n - 16 } at 0; the count written goes to 8.
        I::I32Const(0),
        I::I32Const(16),
        I::I32Store(arg),
        I::I32Const(4),
        I::LocalGet(n),
        I::I32Const(16),
        I::I32Sub,
        I::I32Store(arg),
        I::I32Const(1),
        I::I32Const(0),
        I::I32Const(1),
        I::I32Const(8),
        I::Call(fd_write),
        I::Drop,
        I::End,
    ] {
        f.instruction(&i);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_asks_only_for_features_canon_accepts() {
        let needs = smith_config().features();
        assert!(CORE_FEATURES.contains(needs), "the generator needs {:?}", needs.difference(CORE_FEATURES));
    }

    #[test]
    fn generated_modules_validate_as_jobs_and_are_reproducible() {
        for p in Profile::ALL {
            for seed in 0..4 {
                let case = Case::from_seed(seed, p);
                crate::job::validate_module(&case.module).unwrap_or_else(|e| panic!("{p:?} seed {seed}: {e}"));
                assert_eq!(case.module, Case::from_seed(seed, p).module);
            }
        }
    }
}
