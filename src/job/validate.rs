//! Module checks made before anything runs: is this a core WebAssembly
//! module that canon's engine accepts, and a WASI command that canon can link?
//!
//! [`validate_module`] checks, in order: the `\0asm` magic; that the bytes
//! are a core module, not a component; full validation by wasmparser with
//! [`CORE_FEATURES`]; that every import is a function canon provides (see
//! [`crate::sandbox::abi`]) with the signature canon provides it with; that
//! `_start: () -> ()` and a 32-bit unshared `memory` are exported.

use wasmparser::types::{CoreTypeId, TypesRef};
use wasmparser::{CompositeInnerType, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures};

use super::error::ModuleError;
use crate::sandbox::abi;

/// The WebAssembly proposals a job's module may use: those wasmtime 48
/// enables by default for core modules, as built for canon (without its
/// `gc` and `threads` crate features, so no GC types, exceptions or shared
/// memories). Checking against the same set as the engine means a module
/// that passes here is not refused later by the compiler for a feature.
pub const CORE_FEATURES: WasmFeatures = WasmFeatures::WASM3.difference(WasmFeatures::GC).difference(WasmFeatures::THREADS);

const MAGIC: &[u8; 4] = b"\0asm";

/// Modules remembered as valid by [`validate_module_cached`]; the memo is
/// cleared when it reaches this size, so it never grows without bound.
pub const VALIDATED_MEMO_ENTRIES: usize = 4096;

static VALIDATED: std::sync::Mutex<Option<std::collections::HashSet<crate::digest::Digest>>> = std::sync::Mutex::new(None);

/// [`validate_module`], remembering which module digests passed: validation
/// is a pure function of the bytes, and it is most of the cost of loading a
/// job whose module the process has seen before. `sha256` must be the
/// digest of `bytes`.
pub fn validate_module_cached(bytes: &[u8], sha256: &crate::digest::Digest) -> Result<(), ModuleError> {
    if let Ok(memo) = VALIDATED.lock()
        && memo.as_ref().is_some_and(|m| m.contains(sha256))
    {
        return Ok(());
    }
    validate_module(bytes)?;
    if let Ok(mut memo) = VALIDATED.lock() {
        let set = memo.get_or_insert_with(Default::default);
        if set.len() >= VALIDATED_MEMO_ENTRIES {
            set.clear();
        }
        set.insert(*sha256);
    }
    Ok(())
}

/// Checks that `bytes` is a WASI preview 1 command canon can run.
///
/// Used for job specs and for ad-hoc modules given to `canon exec`. Checks,
/// in order, returning the first failure: the `\0asm` magic; a core module,
/// not a component; full validation with [`CORE_FEATURES`]; every import a
/// function of [`crate::sandbox::abi::WASI_FUNCTIONS`] with its signature;
/// `_start: () -> ()` exported; a 32-bit unshared `memory` exported.
pub fn validate_module(bytes: &[u8]) -> Result<(), ModuleError> {
    if !bytes.starts_with(MAGIC) {
        return Err(ModuleError::NotWasm);
    }
    // The 4 bytes after the magic are a u16 version and a u16 layer; layer 1
    // is a component. A core module is version 1, layer 0.
    if bytes.len() >= 8 && bytes[6..8] != [0, 0] {
        return Err(ModuleError::Component);
    }
    let owned_types = Validator::new_with_features(CORE_FEATURES).validate_all(bytes).map_err(invalid)?;
    let types = owned_types.as_ref();

    let mut start = None;
    let mut memory = None;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    check_import(&types, import.map_err(invalid)?)?;
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
                }
            }
            _ => {}
        }
    }

    match start {
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
            if ty.shared {
                return Err(ModuleError::MemoryKind { found: "a shared memory" });
            }
        }
        _ => return Err(ModuleError::MissingMemory),
    }
    Ok(())
}

fn invalid(e: wasmparser::BinaryReaderError) -> ModuleError {
    ModuleError::Invalid { message: e.message().to_string(), offset: e.offset() }
}

fn check_import(types: &TypesRef<'_>, import: wasmparser::Import<'_>) -> Result<(), ModuleError> {
    let (module, name) = (import.module.to_string(), import.name.to_string());
    let type_index = match import.ty {
        TypeRef::Func(i) | TypeRef::FuncExact(i) => i,
        TypeRef::Memory(_) => return Err(ModuleError::NonFunctionImport { module, name, kind: "memory" }),
        TypeRef::Table(_) => return Err(ModuleError::NonFunctionImport { module, name, kind: "table" }),
        TypeRef::Global(_) => return Err(ModuleError::NonFunctionImport { module, name, kind: "global" }),
        TypeRef::Tag(_) => return Err(ModuleError::NonFunctionImport { module, name, kind: "tag" }),
    };
    let Some((_, params, results)) = abi::lookup(import.module, import.name) else {
        return Err(ModuleError::UnknownImport { module, name });
    };
    let found = func_type(types, types.core_type_at_in_module(type_index));
    let matches = found.is_some_and(|ty| same(ty.params(), params) && same(ty.results(), results));
    if !matches {
        return Err(ModuleError::ImportSignature {
            module,
            name,
            expected: signature(params.iter().map(abi_name), results.iter().map(abi_name)),
            found: describe(found),
        });
    }
    Ok(())
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
        let sha = crate::digest::Digest::of(&bad);
        assert!(validate_module_cached(&bad, &sha).is_err());
        assert!(validate_module_cached(&bad, &sha).is_err(), "a failure must not be remembered");
    }
}
