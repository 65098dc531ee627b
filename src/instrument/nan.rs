//! Deterministic NaN bits at native speed: canonicalise NaNs only where a
//! guest can observe their bits.
//!
//! [`canonicalize_nans`] rewrites a core module so that every NaN whose bits
//! can leave the floating-point domain is the canonical NaN first — f32
//! `0x7fc0_0000`, f64 `0x7ff8_0000_0000_0000`, and the same in every lane of
//! a v128 — and leaves every other float instruction alone. With it, canon
//! runs with wasmtime's global `cranelift_nan_canonicalization` off, which
//! canonicalised the result of *every* float operation and made float-heavy
//! jobs several times slower.
//!
//! # What is rewritten
//!
//! | site | instructions | where |
//! | --- | --- | --- |
//! | scalar store | `f32.store`, `f64.store` | the stored value, before |
//! | reinterpret | `i32.reinterpret_f32`, `i64.reinterpret_f64` | the operand, before |
//! | sign source | `f32.copysign`, `f64.copysign` | the second (sign) operand, before |
//! | scalar into a vector | `f32x4.splat`, `f64x2.splat`, `f32x4.replace_lane`, `f64x2.replace_lane` | the scalar, before |
//! | vector float results | `f32x4`/`f64x2` `add sub mul div sqrt min max ceil floor trunc nearest`, `f32x4.demote_f64x2_zero`, `f64x2.promote_low_f32x4`, `relaxed_madd relaxed_nmadd relaxed_min relaxed_max` | the result, after |
//!
//! Canonicalising a scalar `x` on top of the stack is
//! `local.tee $t; fN.const nan; local.get $t; local.get $t; fN.eq; select`
//! (`x == x ? x : nan`); a vector is the same with `v128.const`, `fNxM.eq`
//! and `v128.bitselect`. Each function gets one scratch local per type it
//! needs (f32, f64, v128), appended after its own locals. Nothing else in
//! the module changes.
//!
//! # Why this is enough (the soundness argument)
//!
//! WebAssembly already makes every float result deterministic except the
//! bits of a NaN: when an arithmetic instruction returns a NaN, its sign and
//! payload may differ between CPUs and backends (x86 and Arm propagate
//! payloads differently, and Cranelift, its baseline lowering and Pulley
//! each pick instructions of their own). Everything else is bit-exact:
//! `f32.load`/`f64.load`, `fN.const`, `local.*`, `global.*`, `select`,
//! block parameters, branches, calls, returns, tables and exception
//! payloads move a float without touching its bits, and `neg`, `abs` and
//! `copysign` are defined on bits. So a nondeterministic NaN is born only
//! in float arithmetic, and the question is where its bits can be seen.
//!
//! *Scalars* (f32, f64). A scalar float can only be observed as bits by
//! 1. storing it to memory (`f32.store`, `f64.store`), after which any
//!    integer load reads the bits — canonicalised;
//! 2. reinterpreting it (`i32.reinterpret_f32`, `i64.reinterpret_f64`) —
//!    canonicalised;
//! 3. `copysign`, which moves the sign of its second operand, NaN or not,
//!    onto a possibly non-NaN first operand (`copysign(1, nan)` is ±1) —
//!    the sign operand is canonicalised;
//! 4. entering a v128 (`splat`, `replace_lane`), after which integer lane
//!    operations read the bits — canonicalised (see vectors below);
//! 5. crossing to the host: an import's float parameter, an export's float
//!    result, an exported float global. canon's host functions (its WASI
//!    preview 1 set, [`crate::abi`]) take and return only `i32`
//!    and `i64`; other imports are either exports of preloaded modules
//!    (wasm to wasm, instrumented alike) or, with `unknown_imports =
//!    "trap"`, stubs that trap without reading their arguments; canon calls
//!    only `_start` and `_initialize`, both `() -> ()`, and it never reads an
//!    exported global: no float crosses to the host.
//!
//! No other instruction turns a NaN's bits into anything observable:
//! - comparisons (`eq ne lt gt le ge`, scalar and lane-wise) give the same
//!   answer for every NaN (unordered);
//! - conversions to integers trap on every NaN (`trunc`) or give 0 for
//!   every NaN (`trunc_sat`, and `relaxed_trunc` with canon's deterministic
//!   relaxed SIMD); conversions from integers never produce a NaN;
//! - arithmetic, `min`/`max`, `sqrt`, rounding, `demote`/`promote`, `neg`,
//!   `abs` and `copysign`'s first operand produce a NaN from a NaN: still a
//!   float, observable only by the routes above;
//! - `select`, locals, globals, calls, `br_table`, `throw`/`catch` and the
//!   GC proposal's struct and array fields carry a float as a float (canon
//!   enables exceptions but refuses GC; in neither does an instruction read
//!   a float as bits); bulk memory (`memory.copy`, `memory.fill`,
//!   `memory.init`), atomics and table instructions only see bytes,
//!   integers and references that were deterministic already.
//!
//! *Vectors* (v128). A v128 is untyped: `v128.store`, `v128.store*_lane`,
//! `i*x*.extract_lane`, `bitmask`, `any_true`/`all_true` and every integer
//! lane operation read its bits. So the invariant is that every v128 value
//! is a deterministic function of the job. It holds inductively: v128s come
//! from `v128.const` and loads (deterministic); from scalars (`splat`,
//! `replace_lane`, whose float scalar is canonicalised first, and the
//! integer forms, deterministic); from integer and bitwise lane operations
//! on deterministic inputs (deterministic, with relaxed SIMD lowered one
//! fixed way); and from float lane operations. Of those, the ones that can
//! make a NaN — arithmetic, `sqrt`, `min`/`max`, rounding,
//! `demote`/`promote`, and the relaxed `madd`/`nmadd`/`min`/`max` — have
//! their result canonicalised. The rest cannot: `abs`/`neg` act on bits,
//! `pmin`/`pmax` are defined as a `select` between their operands
//! (`pmin(a, b) = b < a ? b : a`) and copy bits, comparisons give masks,
//! `convert` from integers is exact or rounded but never NaN, and
//! `f32x4.extract_lane`/`f64x2.extract_lane` give scalars (covered above).
//!
//! # What a guest sees
//!
//! Every NaN that reaches memory, an integer or a vector through a float
//! instruction is the positive canonical NaN — including a NaN the guest
//! made with bit operations (`neg`, `abs`, `copysign`) or loaded with a
//! payload: `f64.neg` of a NaN then `f64.store` stores `0x7ff8…0`, where
//! the WebAssembly specification (and wasmtime's global canonicalisation,
//! which leaves `neg`/`abs`/`copysign` and loads and stores alone) would
//! store `0xfff8…0`. Bits moved with integer instructions (`i64.load`,
//! `i64.store`, `memory.copy`) are never touched. In vectors, only the
//! results listed above are canonical; `f32x4.neg` of a canonical NaN is
//! `0xffc0_0000` in that lane, deterministically.

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{CodeSection, Function, Ieee32, Ieee64, Instruction, ValType};
use wasmparser::{CompositeInnerType, FunctionBody, Operator, Parser, Payload};

/// The canonical f32 NaN: positive, quiet, zero payload.
pub const CANONICAL_F32: u32 = 0x7fc0_0000;

/// The canonical f64 NaN: positive, quiet, zero payload.
pub const CANONICAL_F64: u64 = 0x7ff8_0000_0000_0000;

/// Why a module could not be rewritten.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NanPassError {
    /// The bytes are not a well-formed core module.
    #[error("NaN pass: the module could not be parsed: {0}")]
    Parse(String),
    /// A function body whose type is not a function type, or is missing.
    #[error("NaN pass: defined function {0} has no function type")]
    NoFunctionType(u32),
    /// The module could not be re-encoded.
    #[error("NaN pass: the module could not be re-encoded: {0}")]
    Reencode(String),
}

/// How many sites [`canonicalize_nans_counted`] rewrote, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NanSites {
    /// `f32.store`, `f64.store`.
    pub stores: usize,
    /// `i32.reinterpret_f32`, `i64.reinterpret_f64`.
    pub reinterprets: usize,
    /// Sign operands of `f32.copysign`, `f64.copysign`.
    pub copysigns: usize,
    /// Scalars entering a v128: `splat`, `replace_lane`.
    pub into_vector: usize,
    /// Results of float lane operations that can make a NaN.
    pub vector_results: usize,
}

impl NanSites {
    /// All sites together.
    pub fn total(&self) -> usize {
        self.stores + self.reinterprets + self.copysigns + self.into_vector + self.vector_results
    }
}

/// The shape of the value to canonicalise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    F32,
    F64,
    F32x4,
    F64x2,
}

impl Shape {
    /// The scratch local's type, as an index into [`Scratch`].
    fn slot(self) -> usize {
        match self {
            Shape::F32 => 0,
            Shape::F64 => 1,
            Shape::F32x4 | Shape::F64x2 => 2,
        }
    }
}

/// Where, relative to the instruction, the canonicalisation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    /// On the operand on top of the stack, before the instruction.
    Before,
    /// On the instruction's result, after it.
    After,
}

/// Which counter of [`NanSites`] a site adds to.
type Counter = fn(&mut NanSites) -> &mut usize;

/// The escape site `op` is, if any: when to canonicalise, what, and which
/// counter it adds to. This match is the whole policy; the module doc says
/// why every other instruction is left alone.
fn site(op: &Operator<'_>) -> Option<(When, Shape, Counter)> {
    use Operator as O;
    let stores: Counter = |s| &mut s.stores;
    let reinterprets: Counter = |s| &mut s.reinterprets;
    let copysigns: Counter = |s| &mut s.copysigns;
    let into_vector: Counter = |s| &mut s.into_vector;
    let vector_results: Counter = |s| &mut s.vector_results;
    Some(match op {
        O::F32Store { .. } => (When::Before, Shape::F32, stores),
        O::F64Store { .. } => (When::Before, Shape::F64, stores),
        O::I32ReinterpretF32 => (When::Before, Shape::F32, reinterprets),
        O::I64ReinterpretF64 => (When::Before, Shape::F64, reinterprets),
        O::F32Copysign => (When::Before, Shape::F32, copysigns),
        O::F64Copysign => (When::Before, Shape::F64, copysigns),
        O::F32x4Splat | O::F32x4ReplaceLane { .. } => (When::Before, Shape::F32, into_vector),
        O::F64x2Splat | O::F64x2ReplaceLane { .. } => (When::Before, Shape::F64, into_vector),
        O::F32x4Add
        | O::F32x4Sub
        | O::F32x4Mul
        | O::F32x4Div
        | O::F32x4Sqrt
        | O::F32x4Min
        | O::F32x4Max
        | O::F32x4Ceil
        | O::F32x4Floor
        | O::F32x4Trunc
        | O::F32x4Nearest
        | O::F32x4DemoteF64x2Zero
        | O::F32x4RelaxedMadd
        | O::F32x4RelaxedNmadd
        | O::F32x4RelaxedMin
        | O::F32x4RelaxedMax => (When::After, Shape::F32x4, vector_results),
        O::F64x2Add
        | O::F64x2Sub
        | O::F64x2Mul
        | O::F64x2Div
        | O::F64x2Sqrt
        | O::F64x2Min
        | O::F64x2Max
        | O::F64x2Ceil
        | O::F64x2Floor
        | O::F64x2Trunc
        | O::F64x2Nearest
        | O::F64x2PromoteLowF32x4
        | O::F64x2RelaxedMadd
        | O::F64x2RelaxedNmadd
        | O::F64x2RelaxedMin
        | O::F64x2RelaxedMax => (When::After, Shape::F64x2, vector_results),
        _ => return None,
    })
}

/// Rewrites `wasm` so that NaN bits are canonical wherever a guest can
/// observe them (see the module doc). The output is a valid module whenever
/// the input is; an input that does not parse is an error, never a panic.
pub fn canonicalize_nans(wasm: &[u8]) -> Result<Vec<u8>, NanPassError> {
    canonicalize_nans_counted(wasm).map(|(bytes, _)| bytes)
}

/// [`canonicalize_nans`], also saying how many sites it rewrote.
pub fn canonicalize_nans_counted(wasm: &[u8]) -> Result<(Vec<u8>, NanSites), NanPassError> {
    let mut pass = Pass::scan(wasm)?;
    let mut module = wasm_encoder::Module::new();
    pass.parse_core_module(&mut module, Parser::new(0), wasm).map_err(|e| match e {
        reencode::Error::ParseError(e) => NanPassError::Parse(e.to_string()),
        reencode::Error::UserError(e) => e,
        other => NanPassError::Reencode(other.to_string()),
    })?;
    Ok((module.finish(), pass.sites))
}

/// Scratch local indices of one function: f32, f64, v128.
type Scratch = [Option<u32>; 3];

/// The re-encoder: a round trip, except for function bodies.
struct Pass {
    /// Parameter count of each type index (`None`: not a function type).
    params: Vec<Option<u32>>,
    /// Type index of each function defined in the module, in order.
    defined: Vec<u32>,
    /// Index (among defined functions) of the next body.
    next: u32,
    sites: NanSites,
}

impl Pass {
    /// Reads what rewriting bodies needs: each defined function's parameter
    /// count (its scratch locals are numbered after its params and locals).
    fn scan(wasm: &[u8]) -> Result<Pass, NanPassError> {
        let parse = |e: wasmparser::BinaryReaderError| NanPassError::Parse(e.to_string());
        let mut params = Vec::new();
        let mut defined = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.map_err(parse)? {
                Payload::TypeSection(reader) => {
                    for group in reader {
                        for ty in group.map_err(parse)?.into_types() {
                            params.push(match &ty.composite_type.inner {
                                CompositeInnerType::Func(f) => u32::try_from(f.params().len()).ok(),
                                _ => None,
                            });
                        }
                    }
                }
                Payload::FunctionSection(reader) => {
                    for ty in reader {
                        defined.push(ty.map_err(parse)?);
                    }
                }
                _ => {}
            }
        }
        Ok(Pass { params, defined, next: 0, sites: NanSites::default() })
    }

    /// Emits the canonicalisation of the `shape` value on top of the stack,
    /// using scratch local `t`.
    fn canonicalise(f: &mut Function, shape: Shape, t: u32) {
        f.instruction(&Instruction::LocalTee(t));
        match shape {
            Shape::F32 => f.instruction(&Instruction::F32Const(Ieee32::new(CANONICAL_F32))),
            Shape::F64 => f.instruction(&Instruction::F64Const(Ieee64::new(CANONICAL_F64))),
            Shape::F32x4 => f.instruction(&Instruction::V128Const(i128::from_le_bytes(u128::from(CANONICAL_F32).wrapping_mul(SPLAT_32X4).to_le_bytes()))),
            Shape::F64x2 => f.instruction(&Instruction::V128Const(i128::from_le_bytes(u128::from(CANONICAL_F64).wrapping_mul(SPLAT_64X2).to_le_bytes()))),
        };
        f.instruction(&Instruction::LocalGet(t));
        f.instruction(&Instruction::LocalGet(t));
        // `x == x` is false exactly for NaN: keep `x` where it holds.
        match shape {
            Shape::F32 => f.instruction(&Instruction::F32Eq).instruction(&Instruction::Select),
            Shape::F64 => f.instruction(&Instruction::F64Eq).instruction(&Instruction::Select),
            Shape::F32x4 => f.instruction(&Instruction::F32x4Eq).instruction(&Instruction::V128Bitselect),
            Shape::F64x2 => f.instruction(&Instruction::F64x2Eq).instruction(&Instruction::V128Bitselect),
        };
    }
}

/// Multiplying a 32-bit value by this repeats it in all four lanes.
const SPLAT_32X4: u128 = 1 | 1 << 32 | 1 << 64 | 1 << 96;
/// Multiplying a 64-bit value by this repeats it in both lanes.
const SPLAT_64X2: u128 = 1 | 1 << 64;

impl Reencode for Pass {
    type Error = NanPassError;

    fn parse_function_body(&mut self, code: &mut CodeSection, func: FunctionBody<'_>) -> Result<(), reencode::Error<NanPassError>> {
        let index = self.next;
        self.next += 1;
        let params = usize::try_from(index)
            .ok()
            .and_then(|i| self.defined.get(i))
            .and_then(|&ty| self.params.get(usize::try_from(ty).ok()?).copied().flatten())
            .ok_or(reencode::Error::UserError(NanPassError::NoFunctionType(index)))?;

        let mut locals = Vec::new();
        let mut count = u64::from(params);
        for pair in func.get_locals_reader()? {
            let (n, ty) = pair?;
            count += u64::from(n);
            locals.push((n, self.val_type(ty)?));
        }
        let mut ops = Vec::new();
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            ops.push(reader.read()?);
        }

        // One scratch local per type the body needs, after all others.
        let mut scratch: Scratch = [None; 3];
        for (_, shape, _) in ops.iter().filter_map(site) {
            scratch[shape.slot()] = Some(0);
        }
        for (slot, ty) in [ValType::F32, ValType::F64, ValType::V128].into_iter().enumerate() {
            if scratch[slot].is_some() {
                let local =
                    u32::try_from(count).map_err(|_| reencode::Error::UserError(NanPassError::Reencode(format!("function {index} has too many locals"))))?;
                scratch[slot] = Some(local);
                locals.push((1, ty));
                count += 1;
            }
        }

        let mut f = Function::new(locals);
        for op in ops {
            let at = site(&op);
            let instruction = self.instruction(op)?;
            match at {
                None => {
                    f.instruction(&instruction);
                }
                Some((when, shape, counter)) => {
                    *counter(&mut self.sites) += 1;
                    let t = scratch[shape.slot()].unwrap_or_default();
                    if when == When::Before {
                        Pass::canonicalise(&mut f, shape, t);
                        f.instruction(&instruction);
                    } else {
                        f.instruction(&instruction);
                        Pass::canonicalise(&mut f, shape, t);
                    }
                }
            }
        }
        code.function(&f);
        Ok(())
    }
}
