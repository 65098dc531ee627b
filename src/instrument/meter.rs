//! canon's fuel metering and call-depth limit, by rewriting the module.
//!
//! The module gains three imports from [`CANON_MODULE`] (appended after its
//! own, so its own import indices do not move; its defined globals shift up
//! by two and its defined memories by one; function indices do not change):
//!
//! - `canon.fuel: (mut i64)`, the job's fuel not yet used;
//! - `canon.depth: (mut i32)`, how many more calls may be entered;
//! - `canon.watchdog`: a one-page memory of per-check *surcharges* (`i64`),
//!   0 until the job's wall-clock deadline passes.
//!
//! No check calls out of the module: a failed check traps (`unreachable`)
//! with a mark the host reads to tell it from the guest's own `unreachable`.
//! A call in a loop would make the compiler keep the loop's values in
//! registers a call preserves, or spill them, on every iteration even though
//! the call never runs (x86-64 has no callee-saved float registers): that
//! cost 1.1–1.3× on float-heavy loops, measured, where a trap costs nothing.
//!
//! **Fuel.** Each function body is cut into straight-line segments: a
//! segment starts at the function entry and after every instruction that
//! may transfer control or is a branch target (`loop`, `if`, `else`, `end`,
//! `br`, `br_if`, `br_table`, `return`, `unreachable`, `throw`,
//! `throw_ref`, `return_call`, `return_call_indirect`). Before a segment
//! runs, its whole static cost (the sum of [`cost`] over its instructions) is
//! subtracted from the fuel, which a function keeps in a local: loaded from
//! `canon.fuel` on entry, flushed back before every call, throw, return and
//! the end of the body, reloaded after calls and where catches land.
//! Exhaustion is checked at the start of every loop body, before bulk
//! instructions and before every flush: each check also subtracts a
//! surcharge it reads from the watchdog's page (0, or
//! [`super::DEADLINE_SURCHARGE`] once the job's wall-clock timeout has
//! passed) and fails when the local is below zero. A failed check stores
//! the local to `canon.fuel` and traps; the global is negative then and
//! only then (see [`super::WATCHDOG_MEMORY`]). Bulk memory and table
//! instructions (`memory.fill|copy|init`, `table.fill|copy|init`) are also
//! charged for their length just before they run: one unit per 64 bytes
//! ([`BULK_MEMORY_SHIFT`]), one per table element. So where a run stops and
//! how much fuel it used depend only on the module, never on the compiler
//! (`docs/FUEL.md` says what an outcome reports for each way a run ends).
//!
//! **Call depth.** On entry every function reads `canon.depth` into a new
//! local; if it is 0 it sets the counter to [`super::DEPTH_EXCEEDED`] and
//! traps (`call_depth_exceeded`), otherwise it stores one less. Every way
//! out of the function stores the saved value back: the end of the body (the
//! body is wrapped in a `block` with the function's results, so every branch
//! to the function's label lands there too), `return`, `return_call` and
//! `return_call_indirect`.
//! When an exception is caught (`try_table`), the branch lands at the
//! target label; there the counter is reset to the function's own value
//! (saved − 1), whatever the frames unwound had left in it. A trap ends the
//! run, so it needs no restore. With the job's limit `L`, `L` nested frames
//! run and the call that would make `L + 1` traps, on every backend. A
//! *leaf* (a function that makes no call of any kind and throws nothing)
//! only checks `canon.depth == 0` on entry and never writes it: no other
//! frame can run while it does, so the limit is the same.

use wasm_encoder::reencode::{Error, Reencode, utils};
use wasm_encoder::{BlockType, EntityType, Function, GlobalType, Instruction, MemArg, MemoryType, Module, SectionId, ValType};
use wasmparser::{CompositeInnerType, Operator, Parser, Payload, TypeRef};

use super::{CANON_MODULE, DEPTH_EXCEEDED, DEPTH_GLOBAL, FUEL_GLOBAL, InstrumentError, WATCHDOG_MEMORY};

/// Bulk memory instructions cost one unit per `1 << BULK_MEMORY_SHIFT`
/// bytes of their length, on top of their static cost.
pub const BULK_MEMORY_SHIFT: i64 = 6;

/// The static cost of one instruction: 0 for instructions that do no work
/// at run time (`nop`, `drop`, `block`, `loop`, `try_table`, `else`, `end`,
/// `return`, `unreachable`), 1 for every other. (The same zero list as
/// wasmtime's own fuel, so figures stay comparable.)
pub fn cost(op: &Operator<'_>) -> u64 {
    match op {
        Operator::Nop
        | Operator::Drop
        | Operator::Block { .. }
        | Operator::Loop { .. }
        | Operator::TryTable { .. }
        | Operator::Else
        | Operator::End
        | Operator::Return
        | Operator::Unreachable => 0,
        _ => 1,
    }
}

/// How an instruction hands control out of its function's frame, if it does.
/// The one list of calls, returns and throws that segments, settling and
/// leaf detection all read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaves {
    /// `call`, `call_indirect`, `call_ref`: control comes back.
    Call,
    /// `return_call`, `return_call_indirect`, `return_call_ref`.
    TailCall,
    /// `return`.
    Return,
    /// `throw`, `throw_ref`.
    Throw,
}

fn leaves(op: &Operator<'_>) -> Option<Leaves> {
    Some(match op {
        Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. } => Leaves::Call,
        Operator::ReturnCall { .. } | Operator::ReturnCallIndirect { .. } | Operator::ReturnCallRef { .. } => Leaves::TailCall,
        Operator::Return => Leaves::Return,
        Operator::Throw { .. } | Operator::ThrowRef => Leaves::Throw,
        _ => return None,
    })
}

/// Does a new segment start after `op`?
fn ends_segment(op: &Operator<'_>) -> bool {
    matches!(leaves(op), Some(Leaves::TailCall | Leaves::Return | Leaves::Throw))
        || matches!(
            op,
            Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::Else
                | Operator::End
                | Operator::Br { .. }
                | Operator::BrIf { .. }
                | Operator::BrTable { .. }
                | Operator::BrOnNull { .. }
                | Operator::BrOnNonNull { .. }
                | Operator::Unreachable
        )
}

/// Surcharge slots in the watchdog's page (one wasm page), one per `i64`:
/// the first this many fuel checks of a function each read their own, so
/// that no compiler can reuse one check's reading for another.
pub const SURCHARGE_SLOTS: u32 = 65536 / 8;

/// Instruments `wasm` with fuel metering and the call-depth check.
pub fn instrument(wasm: &[u8]) -> Result<Vec<u8>, InstrumentError> {
    let info = scan(wasm)?;
    let mut meter = Meter::new(info);
    let mut module = Module::new();
    meter.parse_core_module(&mut module, Parser::new(0), wasm).map_err(user)?;
    Ok(module.finish())
}

fn user(e: Error<InstrumentError>) -> InstrumentError {
    match e {
        Error::UserError(u) => u,
        other => InstrumentError::Invalid(other.to_string()),
    }
}

fn invalid(e: impl std::fmt::Display) -> InstrumentError {
    InstrumentError::Invalid(e.to_string())
}

type Sig = (Vec<wasmparser::ValType>, Vec<wasmparser::ValType>);

/// What the rewrite needs to know before it starts.
struct Info {
    /// Every type, by index (`None`: not a function type).
    types: Vec<Option<Sig>>,
    /// Imported globals and memories.
    global_imports: u32,
    memory_imports: u32,
    /// Imported functions so far (while scanning), and the index of
    /// `canon.slice` if the threads pass added it: then the module is
    /// threaded, a failed fuel check calls it instead of trapping, and the
    /// watchdog's page is a shared memory (one for all the job's threads).
    func_imports: u32,
    slice: Option<u32>,
    /// The type of each defined function.
    defined: Vec<u32>,
}

fn scan(wasm: &[u8]) -> Result<Info, InstrumentError> {
    let mut info = Info { types: Vec::new(), global_imports: 0, memory_imports: 0, func_imports: 0, slice: None, defined: Vec::new() };
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group.map_err(invalid)?.into_types() {
                        info.types.push(match &sub.composite_type.inner {
                            CompositeInnerType::Func(f) => Some((f.params().to_vec(), f.results().to_vec())),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    let func = matches!(import.ty, TypeRef::Func(_) | TypeRef::FuncExact(_));
                    // Only the threads pass's own imports (guest modules
                    // importing from `canon` are refused before it runs).
                    if import.module == CANON_MODULE && !(func && super::threads::IMPORTS.contains(&import.name)) {
                        return Err(InstrumentError::Reserved { module: import.module.to_string(), name: import.name.to_string() });
                    }
                    if import.module == CANON_MODULE && import.name == super::threads::SLICE {
                        info.slice = Some(info.func_imports);
                    }
                    match import.ty {
                        TypeRef::Global(_) => info.global_imports += 1,
                        TypeRef::Memory(_) => info.memory_imports += 1,
                        _ if func => info.func_imports += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    info.defined.push(ty.map_err(invalid)?);
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// The rewriter: wasm-encoder's reencoder with the index shifts, the added
/// types and imports, and the new function bodies.
struct Meter {
    info: Info,
    /// Appended `[] -> results` types for multi-value function bodies.
    block_types: Vec<Vec<wasmparser::ValType>>,
    types_done: bool,
    imports_done: bool,
    next_func: usize,
}

impl Meter {
    fn new(info: Info) -> Meter {
        let mut block_types: Vec<Vec<wasmparser::ValType>> = Vec::new();
        for ty in &info.defined {
            if let Some(Some((_, results))) = info.types.get(*ty as usize)
                && results.len() > 1
                && !block_types.contains(results)
            {
                block_types.push(results.clone());
            }
        }
        Meter { info, block_types, types_done: false, imports_done: false, next_func: 0 }
    }

    fn fuel_global(&self) -> u32 {
        self.info.global_imports
    }
    fn depth_global(&self) -> u32 {
        self.info.global_imports + 1
    }
    fn watchdog_memory(&self) -> u32 {
        self.info.memory_imports
    }

    fn add_types(&mut self, types: &mut wasm_encoder::TypeSection) -> Result<(), Error<InstrumentError>> {
        for results in self.block_types.clone() {
            let results = results.into_iter().map(|t| self.val_type(t)).collect::<Result<Vec<_>, _>>()?;
            types.ty().function([], results);
        }
        self.types_done = true;
        Ok(())
    }

    fn add_imports(&mut self, imports: &mut wasm_encoder::ImportSection) {
        let global = |val_type| EntityType::Global(GlobalType { val_type, mutable: true, shared: false });
        imports.import(CANON_MODULE, FUEL_GLOBAL, global(ValType::I64));
        imports.import(CANON_MODULE, DEPTH_GLOBAL, global(ValType::I32));
        let shared = self.info.slice.is_some();
        let page = MemoryType { minimum: 1, maximum: Some(1), memory64: false, shared, page_size_log2: None };
        imports.import(CANON_MODULE, WATCHDOG_MEMORY, EntityType::Memory(page));
        self.imports_done = true;
    }

    fn wrapper_type(&mut self, results: &[wasmparser::ValType]) -> Result<BlockType, Error<InstrumentError>> {
        Ok(match results {
            [] => BlockType::Empty,
            [t] => BlockType::Result(self.val_type(*t)?),
            many => {
                let k = self.block_types.iter().position(|r| r == many).ok_or_else(|| Error::UserError(invalid("missing block type")))?;
                BlockType::FunctionType((self.info.types.len() + k) as u32)
            }
        })
    }
}

/// Locals the rewrite adds to each function, after its own.
struct Locals {
    saved: u32,
    len: u32,
    cost: u32,
    fuel: u32,
    /// The function has `try_table` catch landings: every charge also
    /// stores the global, so reloading it where a catch lands loses nothing.
    write_through: bool,
    /// The function makes no call and throws nothing: its depth check only
    /// reads the counter (see [`is_leaf`]).
    leaf: bool,
    /// Fuel checks emitted so far in this function.
    checks: std::cell::Cell<u32>,
}

impl Meter {
    /// Subtracts a segment's static cost from the fuel local; with `check`,
    /// traps if the local went below zero (see [`Meter::charge_and_check`]).
    /// In write-through functions the global follows the local at every
    /// charge, so every charge is also checked there: the global never holds
    /// a negative value.
    fn charge_static(&self, f: &mut Function, l: &Locals, cost: u64, check: bool) {
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        if check || l.write_through {
            self.charge_and_check(f, l, cost);
        } else {
            f.instruction(&Instruction::LocalGet(l.fuel));
            f.instruction(&Instruction::I64Const(cost));
            f.instruction(&Instruction::I64Sub);
            f.instruction(&Instruction::LocalSet(l.fuel));
        }
        if l.write_through {
            self.flush_fuel(f, l);
        }
    }

    /// Charges for the `i32` length on top of the stack (left there), and
    /// checks before the bulk instruction runs.
    fn charge_length(&self, f: &mut Function, l: &Locals, shift: i64) {
        f.instruction(&Instruction::LocalTee(l.len));
        f.instruction(&Instruction::I64ExtendI32U);
        if shift > 0 {
            f.instruction(&Instruction::I64Const(shift));
            f.instruction(&Instruction::I64ShrU);
        }
        f.instruction(&Instruction::LocalSet(l.cost));
        f.instruction(&Instruction::LocalGet(l.fuel));
        f.instruction(&Instruction::LocalGet(l.cost));
        f.instruction(&Instruction::I64Sub);
        f.instruction(&Instruction::LocalSet(l.fuel));
        self.check_fuel(f, l);
        if l.write_through {
            self.flush_fuel(f, l);
        }
        // The length was consumed by `local.tee … i64.extend`: put it back.
        f.instruction(&Instruction::LocalGet(l.len));
    }

    /// Checks the fuel without charging a static cost (see
    /// [`Meter::charge_and_check`]).
    fn check_fuel(&self, f: &mut Function, l: &Locals) {
        self.charge_and_check(f, l, 0);
    }

    /// Subtracts `cost` and this check's surcharge from the fuel local, and
    /// if it went below zero, stores it and traps. The trap path holds no
    /// call, so nothing has to be kept across it.
    ///
    /// The surcharge is read from the watchdog's page: 0 until the job's
    /// deadline, [`super::DEADLINE_SURCHARGE`] after it, when the check
    /// fails whatever the fuel. Reading it costs a load; subtracting a value
    /// that is not a constant also keeps the compiler from computing the
    /// charge twice (once for the compare, once for the loop's next
    /// iteration), which a constant invites.
    ///
    /// No two checks in a function read the same place, so a compiler
    /// cannot reuse one check's reading for another (no store comes between
    /// them, and the watchdog's write is invisible to it): otherwise a loop
    /// inside another loop might never see the watchdog
    /// (`tests/instrument.rs` has that shape). The first [`SURCHARGE_SLOTS`]
    /// checks each read their own slot; later ones read slot
    /// `((fuel >> 63) & 8) / 8` (0 while the fuel is not negative, 1 when
    /// it is, and then the check fails either way), an address value no
    /// other check computes.
    fn charge_and_check(&self, f: &mut Function, l: &Locals, cost: i64) {
        let site = l.checks.get();
        l.checks.set(site.saturating_add(1));
        f.instruction(&Instruction::LocalGet(l.fuel));
        let memory_index = self.watchdog_memory();
        if site < SURCHARGE_SLOTS {
            f.instruction(&Instruction::I32Const(0));
            f.instruction(&Instruction::I64Load(MemArg { offset: u64::from(site) * 8, align: 3, memory_index }));
        } else {
            f.instruction(&Instruction::LocalGet(l.fuel));
            f.instruction(&Instruction::I64Const(63));
            f.instruction(&Instruction::I64ShrS);
            f.instruction(&Instruction::I64Const(8));
            f.instruction(&Instruction::I64And);
            f.instruction(&Instruction::I32WrapI64);
            f.instruction(&Instruction::I64Load(MemArg { offset: 0, align: 3, memory_index }));
        }
        if cost != 0 {
            f.instruction(&Instruction::I64Const(cost));
            f.instruction(&Instruction::I64Add);
        }
        f.instruction(&Instruction::I64Sub);
        f.instruction(&Instruction::LocalTee(l.fuel));
        f.instruction(&Instruction::I64Const(0));
        f.instruction(&Instruction::I64LtS);
        f.instruction(&Instruction::If(BlockType::Empty));
        self.flush_fuel(f, l);
        match self.info.slice {
            // A threaded module: the slice is used up (or the job's fuel);
            // the scheduler switches threads or ends the job, and hands
            // back a new slice in the global.
            Some(slice) => {
                f.instruction(&Instruction::Call(slice));
                self.reload_fuel(f, l);
            }
            None => {
                f.instruction(&Instruction::Unreachable);
            }
        }
        f.instruction(&Instruction::End);
    }

    /// Stores the fuel local into `canon.fuel`.
    fn flush_fuel(&self, f: &mut Function, l: &Locals) {
        f.instruction(&Instruction::LocalGet(l.fuel));
        f.instruction(&Instruction::GlobalSet(self.fuel_global()));
    }

    /// Loads `canon.fuel` into the fuel local.
    fn reload_fuel(&self, f: &mut Function, l: &Locals) {
        f.instruction(&Instruction::GlobalGet(self.fuel_global()));
        f.instruction(&Instruction::LocalSet(l.fuel));
    }

    /// Before control leaves the frame (a call, a throw, a return): check,
    /// then flush, so the global never holds a negative value.
    fn settle_fuel(&self, f: &mut Function, l: &Locals) {
        self.check_fuel(f, l);
        if !l.write_through {
            self.flush_fuel(f, l);
        }
    }

    /// If the `i32` on the stack is not zero: mark `canon.depth` as
    /// [`DEPTH_EXCEEDED`] and trap.
    fn depth_trap_if(&self, f: &mut Function) {
        f.instruction(&Instruction::If(BlockType::Empty));
        f.instruction(&Instruction::I32Const(DEPTH_EXCEEDED));
        f.instruction(&Instruction::GlobalSet(self.depth_global()));
        f.instruction(&Instruction::Unreachable);
        f.instruction(&Instruction::End);
    }

    fn restore_depth(&self, f: &mut Function, l: &Locals) {
        if l.leaf {
            return;
        }
        f.instruction(&Instruction::LocalGet(l.saved));
        f.instruction(&Instruction::GlobalSet(self.depth_global()));
    }

    fn own_depth(&self, f: &mut Function, l: &Locals) {
        if l.leaf {
            return;
        }
        f.instruction(&Instruction::LocalGet(l.saved));
        f.instruction(&Instruction::I32Const(1));
        f.instruction(&Instruction::I32Sub);
        f.instruction(&Instruction::GlobalSet(self.depth_global()));
    }
}

impl Reencode for Meter {
    type Error = InstrumentError;

    fn memory_index(&mut self, memory: u32) -> Result<u32, Error<InstrumentError>> {
        Ok(if memory >= self.info.memory_imports { memory + 1 } else { memory })
    }

    fn global_index(&mut self, global: u32) -> Result<u32, Error<InstrumentError>> {
        Ok(if global >= self.info.global_imports { global + 2 } else { global })
    }

    fn parse_type_section(&mut self, types: &mut wasm_encoder::TypeSection, section: wasmparser::TypeSectionReader<'_>) -> Result<(), Error<InstrumentError>> {
        utils::parse_type_section(self, types, section)?;
        self.add_types(types)
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
        // Modules without a type or import section get one here, in order.
        if before != Some(SectionId::Type) && !self.types_done {
            let mut types = wasm_encoder::TypeSection::new();
            self.add_types(&mut types)?;
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
        // Custom sections (names, producers, DWARF) do not affect a run, and
        // code offsets in them would be wrong after the rewrite: dropped.
        Ok(())
    }

    fn parse_function_body(&mut self, code: &mut wasm_encoder::CodeSection, func: wasmparser::FunctionBody<'_>) -> Result<(), Error<InstrumentError>> {
        let index = self.next_func;
        self.next_func += 1;
        let sig = self.info.defined.get(index).and_then(|t| self.info.types.get(*t as usize)).cloned().flatten();
        let Some((params, results)) = sig else {
            return Err(Error::UserError(invalid(format!("function {index} has no function type"))));
        };

        let mut locals = Vec::new();
        let mut count = params.len() as u32;
        for pair in func.get_locals_reader()? {
            let (n, ty) = pair?;
            count += n;
            locals.push((n, self.val_type(ty)?));
        }
        let mut reader = func.get_operators_reader()?;
        let mut ops = Vec::new();
        while !reader.eof() {
            ops.push(reader.read()?);
        }
        let plan = plan(&ops)?;
        let write_through = plan.reset_after.iter().any(|r| *r);
        let leaf = is_leaf(&ops);
        let l = Locals { saved: count, len: count + 1, cost: count + 2, fuel: count + 3, write_through, leaf, checks: std::cell::Cell::new(0) };
        locals.push((2, ValType::I32));
        locals.push((2, ValType::I64));

        let mut f = Function::new(locals);
        // The fuel lives in a local while the function runs.
        self.reload_fuel(&mut f, &l);
        // Depth check on entry.
        f.instruction(&Instruction::GlobalGet(self.depth_global()));
        if !l.leaf {
            f.instruction(&Instruction::LocalTee(l.saved));
        }
        f.instruction(&Instruction::I32Eqz);
        self.depth_trap_if(&mut f);
        self.own_depth(&mut f, &l);
        let wrapper = self.wrapper_type(&results)?;
        f.instruction(&Instruction::Block(wrapper));

        let last = ops.len().saturating_sub(1);
        for (i, op) in ops.into_iter().enumerate() {
            if plan.charge[i] > 0 {
                self.charge_static(&mut f, &l, plan.charge[i], plan.check[i]);
            } else if plan.check[i] {
                self.check_fuel(&mut f, &l);
            }
            let leaving = leaves(&op);
            let calls = leaving == Some(Leaves::Call);
            match &op {
                _ if matches!(leaving, Some(Leaves::Return | Leaves::TailCall)) => {
                    self.settle_fuel(&mut f, &l);
                    self.restore_depth(&mut f, &l);
                }
                _ if leaving.is_some() => self.settle_fuel(&mut f, &l),
                Operator::MemoryFill { .. } | Operator::MemoryCopy { .. } | Operator::MemoryInit { .. } => self.charge_length(&mut f, &l, BULK_MEMORY_SHIFT),
                Operator::TableFill { .. } | Operator::TableCopy { .. } | Operator::TableInit { .. } => self.charge_length(&mut f, &l, 0),
                _ => {}
            }
            if i == last {
                // The function's own `end`: close the wrapper, settle, restore, end.
                f.instruction(&Instruction::End);
                self.settle_fuel(&mut f, &l);
                self.restore_depth(&mut f, &l);
                f.instruction(&Instruction::End);
                break;
            }
            let ins = self.instruction(op)?;
            f.instruction(&ins);
            if calls {
                // The callee (and the host) charged the global.
                self.reload_fuel(&mut f, &l);
            }
            if plan.reset_after[i] {
                self.own_depth(&mut f, &l);
                self.reload_fuel(&mut f, &l);
            }
        }
        code.function(&f);
        Ok(())
    }
}

/// A leaf makes no call and throws nothing, so no other frame can see the
/// depth counter while it runs: it only needs to trap where its frame would
/// exceed the limit (`canon.depth == 0`), and never writes the counter.
fn is_leaf(ops: &[Operator<'_>]) -> bool {
    !ops.iter().any(|op| matches!(leaves(op), Some(Leaves::Call | Leaves::TailCall | Leaves::Throw)))
}

/// Where charges and depth resets go in one function body.
struct Plan {
    /// The static cost charged just before instruction `i` (0: none).
    charge: Vec<u64>,
    /// Reset the depth counter to the function's own value after `i` (a
    /// `catch` of a `try_table` lands there).
    reset_after: Vec<bool>,
    /// Check the fuel (after the charge, if any) before instruction `i`:
    /// the first instruction of every loop body.
    check: Vec<bool>,
}

fn plan(ops: &[Operator<'_>]) -> Result<Plan, Error<InstrumentError>> {
    let mut charge = vec![0u64; ops.len() + 1];
    let mut reset_after = vec![false; ops.len()];
    let mut caught = vec![false; ops.len()];
    let mut check = vec![false; ops.len() + 1];
    // Open frames by the index of the instruction that opened them; `None`
    // is the function's own frame.
    let mut frames: Vec<Option<usize>> = vec![None];
    let mut segment = 0;
    for (i, op) in ops.iter().enumerate() {
        charge[segment] = charge[segment].saturating_add(cost(op));
        if ends_segment(op) {
            segment = i + 1;
        }
        if matches!(op, Operator::Loop { .. }) {
            check[i + 1] = true;
        }
        match op {
            Operator::Try { .. } | Operator::Catch { .. } | Operator::CatchAll | Operator::Delegate { .. } | Operator::Rethrow { .. } => {
                return Err(Error::UserError(InstrumentError::Unsupported("legacy exception handling".into())));
            }
            Operator::TryTable { try_table } => {
                for catch in &try_table.catches {
                    let label = match catch {
                        wasmparser::Catch::One { label, .. }
                        | wasmparser::Catch::OneRef { label, .. }
                        | wasmparser::Catch::All { label }
                        | wasmparser::Catch::AllRef { label } => *label,
                    };
                    // Catch labels are relative to the frames outside the try_table.
                    let at = frames.len().checked_sub(1 + label as usize).ok_or_else(|| Error::UserError(invalid("catch label out of range")))?;
                    if let Some(start) = frames[at] {
                        caught[start] = true;
                    }
                }
                frames.push(Some(i));
            }
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => frames.push(Some(i)),
            Operator::End => {
                if let Some(Some(start)) = frames.pop()
                    && caught[start]
                {
                    // A catch branching to a loop lands at its start;
                    // to any other frame, after its end.
                    if matches!(ops[start], Operator::Loop { .. }) {
                        reset_after[start] = true;
                    } else {
                        reset_after[i] = true;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Plan { charge, reset_after, check })
}
