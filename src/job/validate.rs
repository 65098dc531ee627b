//! Module checks made before anything runs: is this a core WebAssembly
//! module that canon's engine accepts, and a WASI command that canon can link?
//!
//! [`validate_module`] checks, in order: the `\0asm` magic; that the bytes
//! are a core module, not a component; full validation by wasmparser with
//! [`CORE_FEATURES`]; that nothing is imported from the reserved module
//! `canon`; that every import is a function canon provides (see
//! [`crate::abi`]) with the signature canon provides it with; that
//! `_start: () -> ()` and a 32-bit unshared `memory` are exported.
//!
//! [`validate_module_for`] does the same under a [`Linking`] context: the
//! job's [`UnknownImports`] choice and the exports of the modules preloaded
//! before this one, which it may import from by their names; and for a
//! [`Role::Library`] (a preloaded module) it asks for no `_start`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use wasmparser::types::{CoreTypeId, TypesRef};
use wasmparser::{CompositeInnerType, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures};

use super::UnknownImports;
use super::error::ModuleError;
use crate::abi;
use crate::digest::Digest;

/// The WebAssembly proposals a job's module may use: exactly those the
/// engine enables (`deterministic_config`): WebAssembly 3.0 with exception
/// handling, without the GC proposal, threads or 64-bit memories. Checking
/// against the same set as the engine means a module that passes here is
/// not refused later by the compiler for a feature. (Differential fuzzing
/// found that `MEMORY64` was left in: a second, unexported 64-bit memory
/// passed validation and then failed to compile.)
pub const CORE_FEATURES: WasmFeatures = WasmFeatures::WASM3.difference(WasmFeatures::GC).difference(WasmFeatures::THREADS).difference(WasmFeatures::MEMORY64);

/// What a threaded module ([`super::is_threaded`]) may use besides:
/// [`CORE_FEATURES`] and the threads proposal (shared memories, atomics).
/// Its waits and notifies never reach wasmtime: canon rewrites them into
/// calls to its scheduler (`instrument::threads`).
pub const THREADED_FEATURES: WasmFeatures = CORE_FEATURES.union(WasmFeatures::THREADS);

/// The import a threaded module's shared memory comes from, as
/// wasm32-wasip1-threads (wasi-libc, Rust) names it: `env.memory`.
pub const SHARED_MEMORY_IMPORT: (&str, &str) = ("env", "memory");

const MAGIC: &[u8; 4] = b"\0asm";

/// Modules remembered as valid by [`validate_module_cached`]; the memo is
/// cleared when it reaches this size, so it never grows without bound.
pub const VALIDATED_MEMO_ENTRIES: usize = 4096;

/// What a module's export is, as a module that imports it must declare it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportType {
    /// A function, with its parameter and result types.
    Func {
        /// Parameter types.
        params: Vec<ValType>,
        /// Result types.
        results: Vec<ValType>,
    },
    /// A memory, table, global or tag (its name: `memory`, ...). Their
    /// types are checked by wasmtime when the modules are linked.
    Other(&'static str),
}

/// The exports of a valid module, by name.
pub type Exports = BTreeMap<String, ExportType>;

/// A module preloaded before the one being checked, which that one may
/// import from by `name`.
#[derive(Clone, Debug)]
pub struct LinkedModule {
    /// The name it is registered under (the import module name).
    pub name: String,
    /// SHA-256 of its bytes.
    pub sha256: Digest,
    /// What it exports.
    pub exports: Arc<Exports>,
}

/// What a module may import besides canon's WASI functions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Linking<'a> {
    /// What to do with a function import nobody provides.
    pub unknown_imports: UnknownImports,
    /// Modules instantiated before this one, in order.
    pub preloads: &'a [LinkedModule],
}

/// What a module is for in its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The job's main module: a WASI command, exporting `_start` and `memory`.
    Command,
    /// A preloaded module that later modules import from. It needs no
    /// `_start`; if it imports a WASI function it must export `memory`
    /// (WASI passes data through the caller's memory).
    Library,
}

/// Why an import is linked as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportSource {
    /// A WASI preview 1 function of canon's host, with its parameter and
    /// result types.
    Wasi(&'static [abi::ValType], &'static [abi::ValType]),
    /// An export of the preloaded module of that index.
    Preload(usize),
    /// Nobody provides it: with [`UnknownImports::Trap`], a trapping stub.
    Unknown,
    /// A threaded module's shared memory ([`SHARED_MEMORY_IMPORT`]), which
    /// the sandbox creates.
    SharedMemory,
}

/// Where the import `module::name` comes from under `preloads`: the same
/// rule for validation and for the sandbox's linker. A preload registered
/// under a name shadows nothing: names are unique and never
/// `wasi_snapshot_preview1` (the spec refuses both).
pub fn import_source<'a>(module: &str, name: &str, mut preload_names: impl Iterator<Item = &'a str>) -> ImportSource {
    if let Some((_, params, results)) = abi::lookup(module, name) {
        return ImportSource::Wasi(params, results);
    }
    match preload_names.position(|p| p == module) {
        Some(i) => ImportSource::Preload(i),
        None => ImportSource::Unknown,
    }
}

type Memo = HashMap<Digest, Arc<Exports>>;
static VALIDATED: Mutex<Option<Memo>> = Mutex::new(None);

/// The version of what [`validate_module_for`] checks. It is part of every
/// key a [`ValidationStore`] is asked about, with canon's own version, so a
/// canon whose checks differ never takes another's record for its own.
/// Raise it with any change to what passes.
pub const VALIDATION_VERSION: u32 = 1;

/// Where a process finds the commands earlier processes validated, so that
/// a large module (Yosys: 69 MB, a fifth of a second of wasmparser) is
/// validated once per machine rather than once per process. A record says
/// only "this key passed": the key ([`stored_key`]) covers the module's
/// SHA-256, the linking context, [`VALIDATION_VERSION`] and canon's
/// version, all of which the result is a pure function of. Failures are
/// never recorded (they are checked again, and reported in full).
///
/// The sandbox's module cache keeps one on disk, in the same private
/// directory as compiled code (`sandbox::cache::ValidationRecords`): who can
/// forge a record there can as well replace the compiled code canon runs.
pub trait ValidationStore: Send + Sync {
    /// Whether a record says `key` passed.
    fn passed(&self, key: &Digest) -> bool;
    /// Records that `key` passed; failing to is only a cost in time.
    fn record(&self, key: &Digest);
}

static STORE: RwLock<Option<Arc<dyn ValidationStore>>> = RwLock::new(None);

/// Commands a [`ValidationStore`] said passed, by [`memo_key`], so that a
/// process loading one many times (a worker) asks the store once; cleared
/// at [`VALIDATED_MEMO_ENTRIES`] as the memo is.
static STORED_PASSED: Mutex<Option<std::collections::HashSet<Digest>>> = Mutex::new(None);

/// Makes [`validate_command_cached`] consult and fill `store` (or, with
/// `None`, stop doing so) for the rest of the process.
pub fn remember_validations(store: Option<Arc<dyn ValidationStore>>) {
    *STORE.write().unwrap_or_else(PoisonError::into_inner) = store;
}

fn store() -> Option<Arc<dyn ValidationStore>> {
    STORE.read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The key a [`ValidationStore`] holds for a command under `linking`.
pub fn stored_key(sha256: &Digest, linking: &Linking<'_>) -> Digest {
    let mut e = crate::encoding::Encoder::new("canon/validated-command");
    e.str(env!("CARGO_PKG_VERSION")).u32(VALIDATION_VERSION).digest(&memo_key(sha256, Role::Command, linking));
    e.digest_of()
}

/// Checks that `bytes` (whose SHA-256 is `sha256`) is a command canon can
/// run under `linking`, as [`validate_module_for`] does, unless this process
/// or, through the [`ValidationStore`] set by [`remember_validations`], an
/// earlier one found it valid already.
pub fn validate_command_cached(bytes: &[u8], sha256: &Digest, linking: &Linking<'_>) -> Result<(), ModuleError> {
    let memo = memo_key(sha256, Role::Command, linking);
    if VALIDATED.lock().is_ok_and(|m| m.as_ref().is_some_and(|m| m.contains_key(&memo)))
        || STORED_PASSED.lock().is_ok_and(|p| p.as_ref().is_some_and(|p| p.contains(&memo)))
    {
        return Ok(());
    }
    let stored = store().map(|s| (stored_key(sha256, linking), s));
    if let Some((key, s)) = &stored
        && s.passed(key)
    {
        if let Ok(mut passed) = STORED_PASSED.lock() {
            let set = passed.get_or_insert_with(Default::default);
            if set.len() >= VALIDATED_MEMO_ENTRIES {
                set.clear();
            }
            set.insert(memo);
        }
        return Ok(());
    }
    validate_module_cached_for(bytes, sha256, Role::Command, linking)?;
    if let Some((key, s)) = stored {
        s.record(&key);
    }
    Ok(())
}

/// [`validate_module`], remembering which module digests passed: validation
/// is a pure function of the bytes, and it is most of the cost of loading a
/// job whose module the process has seen before. `sha256` must be the
/// digest of `bytes`.
pub fn validate_module_cached(bytes: &[u8], sha256: &Digest) -> Result<(), ModuleError> {
    validate_command_cached(bytes, sha256, &Linking::default())
}

/// [`validate_module_for`], remembering what passed: the key is the
/// module's digest with the role and the linking context (the unknown-imports
/// choice and each preload's name and digest), of which the result is a pure
/// function. Returns the module's exports.
pub fn validate_module_cached_for(bytes: &[u8], sha256: &Digest, role: Role, linking: &Linking<'_>) -> Result<Arc<Exports>, ModuleError> {
    let key = memo_key(sha256, role, linking);
    if let Ok(memo) = VALIDATED.lock()
        && let Some(exports) = memo.as_ref().and_then(|m| m.get(&key))
    {
        return Ok(exports.clone());
    }
    let exports = Arc::new(validate_module_for(bytes, role, linking)?);
    if let Ok(mut memo) = VALIDATED.lock() {
        let map = memo.get_or_insert_with(Default::default);
        if map.len() >= VALIDATED_MEMO_ENTRIES {
            map.clear();
        }
        map.insert(key, exports.clone());
    }
    Ok(exports)
}

fn memo_key(sha256: &Digest, role: Role, linking: &Linking<'_>) -> Digest {
    if role == Role::Command && linking.unknown_imports == UnknownImports::Refuse && linking.preloads.is_empty() {
        return *sha256;
    }
    let mut e = crate::encoding::Encoder::new("canon/validation-memo");
    e.digest(sha256).u8(u8::from(role == Role::Library)).u8(linking.unknown_imports.code()).count(linking.preloads.len());
    for p in linking.preloads {
        e.str(&p.name).digest(&p.sha256);
    }
    e.digest_of()
}

/// Checks that `bytes` is a WASI preview 1 command canon can run.
///
/// Used for job specs and for ad-hoc modules given to `canon exec`. Checks,
/// in order, returning the first failure: the `\0asm` magic; a core module,
/// not a component; full validation with [`CORE_FEATURES`]; every import a
/// function of [`crate::abi::WASI_FUNCTIONS`] with its signature;
/// `_start: () -> ()` exported; a 32-bit unshared `memory` exported.
pub fn validate_module(bytes: &[u8]) -> Result<(), ModuleError> {
    validate_module_for(bytes, Role::Command, &Linking::default()).map(drop)
}

/// Checks that `bytes` is a module canon can run in `role` and link under
/// `linking`, and returns its exports. The checks of [`validate_module`],
/// except that an import may also name an export of a preloaded module (it
/// must exist, be of the same kind and, for a function, of the same type:
/// [`ModuleError::MissingExport`], [`ModuleError::ImportSignature`]), and
/// that with [`UnknownImports::Trap`] a function import nobody provides is
/// accepted.
pub fn validate_module_for(bytes: &[u8], role: Role, linking: &Linking<'_>) -> Result<Exports, ModuleError> {
    if !bytes.starts_with(MAGIC) {
        return Err(ModuleError::NotWasm);
    }
    // The 4 bytes after the magic are a u16 version and a u16 layer; layer 1
    // is a component. A core module is version 1, layer 0.
    if bytes.len() >= 8 && bytes[6..8] != [0, 0] {
        return Err(ModuleError::Component);
    }
    let threaded = super::is_threaded(bytes);
    let features = if threaded { THREADED_FEATURES } else { CORE_FEATURES };
    let owned_types = Validator::new_with_features(features).validate_all(bytes).map_err(invalid)?;
    let types = owned_types.as_ref();

    let mut start = None;
    let mut memory = None;
    let mut imports_wasi = false;
    let mut shared_import = false;
    let mut exports = Exports::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let source = check_import(&types, import.map_err(invalid)?, linking, threaded)?;
                    imports_wasi |= matches!(source, ImportSource::Wasi(..));
                    shared_import |= source == ImportSource::SharedMemory;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    match export.name {
                        "_start" => start = Some((export.kind, export.index)),
                        "memory" => memory = Some((export.kind, export.index)),
                        _ => {}
                    }
                    let ty = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => match func_type(&types, types.core_function_at(export.index)) {
                            Some(f) => ExportType::Func { params: f.params().to_vec(), results: f.results().to_vec() },
                            None => ExportType::Other("function"),
                        },
                        kind => ExportType::Other(kind_name(kind)),
                    };
                    exports.insert(export.name.to_string(), ty);
                }
            }
            _ => {}
        }
    }

    if threaded && !shared_import {
        return Err(ModuleError::ThreadedMemory);
    }
    match start {
        None if role == Role::Library => {}
        None => return Err(ModuleError::MissingStart),
        Some((ExternalKind::Func, index)) => {
            let found = func_type(&types, types.core_function_at(index));
            match found {
                Some(ty) if ty.params().is_empty() && ty.results().is_empty() => {}
                other => return Err(ModuleError::StartSignature { found: describe(other) }),
            }
        }
        Some((kind, _)) => return Err(ModuleError::StartSignature { found: format!("a {}", kind_name(kind)) }),
    }

    match memory {
        Some((ExternalKind::Memory, index)) => {
            let ty = types.memory_at(index);
            if ty.memory64 {
                return Err(ModuleError::MemoryKind { found: "a 64-bit memory" });
            }
            if ty.shared && !threaded {
                return Err(ModuleError::MemoryKind { found: "a shared memory" });
            }
        }
        // A library that never calls WASI needs no memory of its own.
        None if role == Role::Library && !imports_wasi => {}
        _ => return Err(ModuleError::MissingMemory),
    }
    Ok(exports)
}

fn invalid(e: wasmparser::BinaryReaderError) -> ModuleError {
    ModuleError::Invalid { message: e.message().to_string(), offset: e.offset() }
}

fn check_import(types: &TypesRef<'_>, import: wasmparser::Import<'_>, linking: &Linking<'_>, threaded: bool) -> Result<ImportSource, ModuleError> {
    let (module, name) = (import.module.to_string(), import.name.to_string());
    if import.module == crate::abi::CANON_MODULE {
        return Err(ModuleError::ReservedImport { module, name });
    }
    // A threaded module's one shared memory, which the host creates.
    if let TypeRef::Memory(m) = import.ty
        && threaded
        && m.shared
        && !m.memory64
        && (import.module, import.name) == SHARED_MEMORY_IMPORT
    {
        return Ok(ImportSource::SharedMemory);
    }
    let (kind, type_index) = match import.ty {
        TypeRef::Func(i) | TypeRef::FuncExact(i) => ("function", Some(i)),
        TypeRef::Memory(_) => ("memory", None),
        TypeRef::Table(_) => ("table", None),
        TypeRef::Global(_) => ("global", None),
        TypeRef::Tag(_) => ("tag", None),
    };
    let found = type_index.and_then(|i| func_type(types, types.core_type_at_in_module(i)));
    // What the module declares, for messages.
    let declared = || if type_index.is_some() { describe(found) } else { format!("a {kind}") };
    let source = import_source(import.module, import.name, linking.preloads.iter().map(|p| p.name.as_str()));
    match source {
        ImportSource::Wasi(params, results) => {
            let matches = found.is_some_and(|ty| same(ty.params(), params) && same(ty.results(), results));
            if !matches {
                return Err(ModuleError::ImportSignature {
                    module,
                    name,
                    expected: signature(params.iter().map(abi_name), results.iter().map(abi_name)),
                    found: declared(),
                });
            }
        }
        ImportSource::Preload(i) => {
            let Some(export) = linking.preloads[i].exports.get(import.name) else {
                return Err(ModuleError::MissingExport { module, name });
            };
            match (export, found) {
                (ExportType::Func { params, results }, Some(ty)) => {
                    if ty.params() != params.as_slice() || ty.results() != results.as_slice() {
                        return Err(ModuleError::ImportSignature {
                            module,
                            name,
                            expected: signature(params.iter().map(ValType::to_string), results.iter().map(ValType::to_string)),
                            found: describe(found),
                        });
                    }
                }
                (ExportType::Other(other), None) if *other == kind => {}
                (export, _) => {
                    let expected = match export {
                        ExportType::Func { params, results } => signature(params.iter().map(ValType::to_string), results.iter().map(ValType::to_string)),
                        ExportType::Other(k) => format!("a {k}"),
                    };
                    return Err(ModuleError::ImportSignature { module, name, expected, found: declared() });
                }
            }
        }
        ImportSource::Unknown => {
            if type_index.is_none() {
                return Err(ModuleError::NonFunctionImport { module, name, kind });
            }
            if linking.unknown_imports == UnknownImports::Refuse {
                return Err(ModuleError::UnknownImport { module, name });
            }
        }
        // Returned above, before the source is looked up.
        ImportSource::SharedMemory => {}
    }
    Ok(source)
}

fn func_type<'a>(types: &'a TypesRef<'_>, id: CoreTypeId) -> Option<&'a FuncType> {
    match &types[id].composite_type.inner {
        CompositeInnerType::Func(f) => Some(f),
        _ => None,
    }
}

fn same(wasm: &[ValType], abi: &[abi::ValType]) -> bool {
    wasm.len() == abi.len()
        && wasm.iter().zip(abi).all(|(w, a)| match a {
            abi::ValType::I32 => *w == ValType::I32,
            abi::ValType::I64 => *w == ValType::I64,
        })
}

fn abi_name(t: &abi::ValType) -> String {
    match t {
        abi::ValType::I32 => "i32".to_string(),
        abi::ValType::I64 => "i64".to_string(),
    }
}

fn signature(params: impl Iterator<Item = String>, results: impl Iterator<Item = String>) -> String {
    let params: Vec<_> = params.collect();
    let results: Vec<_> = results.collect();
    format!("({}) -> ({})", params.join(", "), results.join(", "))
}

fn describe(ty: Option<&FuncType>) -> String {
    match ty {
        Some(ty) => signature(ty.params().iter().map(|t| t.to_string()), ty.results().iter().map(|t| t.to_string())),
        None => "a non-function type".to_string(),
    }
}

fn kind_name(kind: ExternalKind) -> &'static str {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => "function",
        ExternalKind::Table => "table",
        ExternalKind::Memory => "memory",
        ExternalKind::Global => "global",
        ExternalKind::Tag => "tag",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_remembers_only_valid_modules() {
        let bad = b"\0asm\x01\0\0\0\x7f".to_vec();
        let sha = Digest::of(&bad);
        assert!(validate_module_cached(&bad, &sha).is_err());
        assert!(validate_module_cached(&bad, &sha).is_err(), "a failure must not be remembered");
    }
}
