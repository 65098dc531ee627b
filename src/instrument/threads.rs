//! The threads pass: a threaded module's waits and notifies become calls
//! into canon's scheduler, so no guest thread ever executes a real
//! `memory.atomic.wait` (which would park an OS thread where nothing but a
//! notify reaches it, wasmtime#12809) and every wait and wake is decided
//! by the scheduler (`docs/THREADS.md`).
//!
//! A module that is not threaded ([`crate::job::is_threaded`]) passes
//! through unchanged, byte for byte. A threaded one gains four function
//! imports from [`super::CANON_MODULE`], appended after its own imports (so
//! its defined functions' indices move up by four), with four new types
//! appended to its type section:
//!
//! | import | type | replaces |
//! | --- | --- | --- |
//! | `canon.wait32` | `(addr i32, expected i32, timeout i64, offset i32) -> i32` | `memory.atomic.wait32` |
//! | `canon.wait64` | `(addr i32, expected i64, timeout i64, offset i32) -> i32` | `memory.atomic.wait64` |
//! | `canon.notify` | `(addr i32, count i32, offset i32) -> i32` | `memory.atomic.notify` |
//! | `canon.slice` | `() -> ()` | (called by the meter where a fuel check fails: the slice is used up) |
//!
//! Each wait or notify becomes `i32.const <memarg offset>` and a `call`:
//! the host adds the offset to the address, checks bounds and alignment as
//! the instruction would, and returns what it would (0 woken, 1 not equal,
//! 2 timed out; a notify, the number woken). This pass runs before the
//! meter, so the calls are metered and flushed like every call: a wait
//! costs the `call` instruction and what the scheduler charges.

use wasm_encoder::reencode::{Error, Reencode, utils};
use wasm_encoder::{EntityType, Function, Instruction, Module, SectionId, ValType};
use wasmparser::{Operator, Parser, Payload, TypeRef};

use super::{CANON_MODULE, InstrumentError};

/// `canon.wait32`, which `memory.atomic.wait32` becomes.
pub const WAIT32: &str = "wait32";
/// `canon.wait64`, which `memory.atomic.wait64` becomes.
pub const WAIT64: &str = "wait64";
/// `canon.notify`, which `memory.atomic.notify` becomes.
pub const NOTIFY: &str = "notify";
/// `canon.slice`, which the meter calls in a threaded module where a fuel
/// check fails (see [`super::meter`]).
pub const SLICE: &str = "slice";

/// The function imports this pass adds, in order.
pub const IMPORTS: [&str; 4] = [WAIT32, WAIT64, NOTIFY, SLICE];

/// Rewrites the waits and notifies of a threaded module; returns any
/// other module unchanged.
pub fn instrument(wasm: &[u8]) -> Result<Vec<u8>, InstrumentError> {
    if !crate::job::is_threaded(wasm) {
        return Ok(wasm.to_vec());
    }
    let mut pass = Pass { func_imports: 0, types: 0, types_done: false, imports_done: false };
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    pass.types += group.map_err(invalid)?.into_types().len() as u32;
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    if import.module == CANON_MODULE {
                        return Err(InstrumentError::Reserved { module: import.module.to_string(), name: import.name.to_string() });
                    }
                    if matches!(import.ty, TypeRef::Func(_) | TypeRef::FuncExact(_)) {
                        pass.func_imports += 1;
                    }
                }
            }
            _ => {}
        }
    }
    let mut module = Module::new();
    pass.parse_core_module(&mut module, Parser::new(0), wasm).map_err(|e| match e {
        Error::UserError(u) => u,
        other => invalid(other),
    })?;
    Ok(module.finish())
}

fn invalid(e: impl std::fmt::Display) -> InstrumentError {
    InstrumentError::Invalid(e.to_string())
}

struct Pass {
    /// The module's own function imports (the new ones follow them).
    func_imports: u32,
    /// The module's own types (the new ones follow them).
    types: u32,
    types_done: bool,
    imports_done: bool,
}

impl Pass {
    fn add_types(&mut self, types: &mut wasm_encoder::TypeSection) {
        use ValType::{I32, I64};
        types.ty().function([I32, I32, I64, I32], [I32]);
        types.ty().function([I32, I64, I64, I32], [I32]);
        types.ty().function([I32, I32, I32], [I32]);
        types.ty().function([], []);
        self.types_done = true;
    }

    fn add_imports(&mut self, imports: &mut wasm_encoder::ImportSection) {
        for (k, name) in IMPORTS.iter().enumerate() {
            imports.import(CANON_MODULE, name, EntityType::Function(self.types + k as u32));
        }
        self.imports_done = true;
    }

    /// The index of the `k`-th added import.
    fn import(&self, k: u32) -> u32 {
        self.func_imports + k
    }
}

impl Reencode for Pass {
    type Error = InstrumentError;

    fn function_index(&mut self, func: u32) -> Result<u32, Error<InstrumentError>> {
        Ok(if func >= self.func_imports { func + IMPORTS.len() as u32 } else { func })
    }

    fn parse_type_section(&mut self, types: &mut wasm_encoder::TypeSection, section: wasmparser::TypeSectionReader<'_>) -> Result<(), Error<InstrumentError>> {
        utils::parse_type_section(self, types, section)?;
        self.add_types(types);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), Error<InstrumentError>> {
        utils::parse_import_section(self, imports, section)?;
        self.add_imports(imports);
        Ok(())
    }

    fn intersperse_section_hook(&mut self, module: &mut Module, _after: Option<SectionId>, before: Option<SectionId>) -> Result<(), Error<InstrumentError>> {
        if before != Some(SectionId::Type) && !self.types_done {
            let mut types = wasm_encoder::TypeSection::new();
            self.add_types(&mut types);
            module.section(&types);
        }
        if before != Some(SectionId::Type) && before != Some(SectionId::Import) && !self.imports_done {
            let mut imports = wasm_encoder::ImportSection::new();
            self.add_imports(&mut imports);
            module.section(&imports);
        }
        Ok(())
    }

    fn parse_custom_section(&mut self, _module: &mut Module, _section: wasmparser::CustomSectionReader<'_>) -> Result<(), Error<InstrumentError>> {
        // Function indices in a name section would be stale; the meter
        // drops custom sections anyway.
        Ok(())
    }

    fn parse_function_body(&mut self, code: &mut wasm_encoder::CodeSection, func: wasmparser::FunctionBody<'_>) -> Result<(), Error<InstrumentError>> {
        let mut locals = Vec::new();
        for pair in func.get_locals_reader()? {
            let (n, ty) = pair?;
            locals.push((n, self.val_type(ty)?));
        }
        let mut f = Function::new(locals);
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            let (memarg, k) = match &op {
                Operator::MemoryAtomicWait32 { memarg } => (memarg, 0),
                Operator::MemoryAtomicWait64 { memarg } => (memarg, 1),
                Operator::MemoryAtomicNotify { memarg } => (memarg, 2),
                _ => {
                    let ins = self.instruction(op)?;
                    f.instruction(&ins);
                    continue;
                }
            };
            if memarg.memory != 0 {
                return Err(Error::UserError(InstrumentError::Unsupported(format!("a wait or notify on memory {} (canon schedules memory 0)", memarg.memory))));
            }
            let offset = u32::try_from(memarg.offset).map_err(|_| Error::UserError(invalid("a wait or notify offset above 2^32")))?;
            f.instruction(&Instruction::I32Const(offset as i32));
            f.instruction(&Instruction::Call(self.import(k)));
        }
        code.function(&f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)).expect("fixture")
    }

    fn count_waits(wasm: &[u8]) -> usize {
        let mut n = 0;
        for payload in Parser::new(0).parse_all(wasm) {
            if let Ok(Payload::CodeSectionEntry(body)) = payload {
                let mut r = body.get_operators_reader().expect("operators");
                while !r.eof() {
                    let op = r.read().expect("operator");
                    n += usize::from(matches!(
                        op,
                        Operator::MemoryAtomicWait32 { .. } | Operator::MemoryAtomicWait64 { .. } | Operator::MemoryAtomicNotify { .. }
                    ));
                }
            }
        }
        n
    }

    #[test]
    fn unthreaded_modules_pass_through_unchanged() {
        let hello = fixture("hello.wasm");
        assert_eq!(instrument(&hello).expect("instrument"), hello);
    }

    #[test]
    fn threaded_modules_lose_every_wait_and_notify_and_still_validate() {
        let wasm = fixture("threads.wasm");
        assert!(count_waits(&wasm) > 0, "the fixture has waits to rewrite");
        let out = instrument(&wasm).expect("instrument");
        assert_eq!(count_waits(&out), 0);
        wasmparser::Validator::new_with_features(crate::job::THREADED_FEATURES).validate_all(&out).expect("valid");
    }
}
