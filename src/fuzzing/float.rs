//! Float-heavy modules: random scalar and SIMD float expression trees over
//! NaNs with payloads, each result observed through a route by which its
//! bits can escape, and the observations written to stdout.
//!
//! This is the [`super::Profile::FloatHeavy`] generator (issue 5). Unlike
//! wasm-smith's random code, where a float result is nearly always dropped
//! or compared, every expression here ends in an escape route the NaN pass
//! must cover ([`crate::instrument::nan`]): `f32.store`/`f64.store`,
//! `i32.reinterpret_f32`/`i64.reinterpret_f64`, `copysign` taking the sign
//! of a NaN, a `v128` store, `i8x16.bitmask` and an integer lane extract.
//! Inputs are loaded from a pool in memory (so no compiler can fold them):
//! quiet NaNs with payloads and both signs, signalling NaNs, infinities,
//! zeros, subnormals and ordinary numbers. Relaxed SIMD operations are
//! among the operators, so a backend that computes them its own way (fused
//! or not) shows up as a divergence.
//!
//! Since [`FloatModule::slots`] says what each stdout byte is,
//! [`escaped_nans`] can check the pass's promise directly: every scalar NaN
//! that escapes is the canonical one. Agreement between backends alone is a
//! weaker check: backends that share a CPU can agree on the same wrong bits
//! (native and baseline Cranelift both use the host's SSE NaN), where an
//! ARM node would differ. Measured: with the NaN pass removed, 141 of the
//! bounded test's 150 float-heavy modules diverge between backends and 143
//! print a non-canonical NaN.

use arbitrary::Unstructured;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use wasm_encoder::{
    CodeSection, DataSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, Ieee32, Ieee64, ImportSection, Instruction as I, MemArg,
    MemorySection, MemoryType, Module, TypeSection, ValType,
};

use crate::abi::WASI_MODULE;
use crate::instrument::nan::{CANONICAL_F32, CANONICAL_F64};

/// The f64 inputs, loaded from memory at [`POOL_F64_AT`].
pub const F64_POOL: [u64; 12] = [
    0x7ff8_0000_0000_1234,
    0xfff8_0000_0000_5678,
    0x7ff0_0000_0000_0001, // signalling
    0xfff4_0000_0000_0000, // signalling, negative
    0x7ff0_0000_0000_0000, // +inf
    0xfff0_0000_0000_0000, // -inf
    0,
    0x8000_0000_0000_0000, // -0
    0x3ff0_0000_0000_0000, // 1
    0xbff0_0000_0000_0000, // -1
    0x4009_21fb_5444_2d18, // pi
    0x0000_0000_0000_0001, // smallest subnormal
];
/// The f32 inputs, loaded from memory at [`POOL_F32_AT`].
pub const F32_POOL: [u32; 10] = [0x7fc0_1234, 0xffc0_5678, 0x7f80_0001, 0x7f80_0000, 0xff80_0000, 0, 0x8000_0000, 0x3f80_0000, 0xbf80_0000, 0x4049_0fdb];
const POOL_F64_AT: u64 = 0;
const POOL_F32_AT: u64 = 128;
/// Where the iovec for `fd_write` goes.
const IOVEC_AT: i32 = 512;
/// Where the observations go; stdout is memory from here on.
const OUT_AT: u32 = 1024;
/// Most observations in one module: 16 bytes each at most, so they fit the
/// one page of memory with room to spare.
pub const MAX_OBSERVATIONS: usize = 64;
/// Depth of each expression tree.
const DEPTH: u32 = 4;

/// What a stretch of stdout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// An f32's bits (stored, or reinterpreted and stored as an i32).
    F32,
    /// An f64's bits.
    F64,
    /// A v128 whose lanes may mix shapes (f32x4 results bitselected with
    /// f64x2 ones): checked only for agreement between backends.
    V128,
    /// An integer that is not a float's bits (a bitmask, a lane as i64).
    Int,
}

impl Slot {
    /// Bytes the slot takes in stdout.
    pub fn bytes(self) -> usize {
        match self {
            Slot::F32 | Slot::Int => 4,
            Slot::F64 => 8,
            Slot::V128 => 16,
        }
    }
}

/// A generated module and the layout of what it prints.
#[derive(Clone, Debug)]
pub struct FloatModule {
    /// A WASI command: it imports only `fd_write`, exports `memory` and
    /// `_start`, and writes its observations to stdout.
    pub wasm: Vec<u8>,
    /// What each stretch of stdout is, in order.
    pub slots: Vec<Slot>,
}

impl FloatModule {
    /// A module of 1 to [`MAX_OBSERVATIONS`] observations, its choices taken
    /// from `u`. An exhausted `u` only makes expressions shallower.
    pub fn generate(u: &mut Unstructured<'_>) -> arbitrary::Result<FloatModule> {
        let n = u.int_in_range(1..=MAX_OBSERVATIONS)?;
        Ok(FloatModule::build(u, n))
    }

    /// The module of `n` observations (at most [`MAX_OBSERVATIONS`]) named by
    /// `seed` (ChaCha20, stable across platforms and releases).
    pub fn from_seed(seed: u64, n: usize) -> FloatModule {
        let mut bytes = vec![0u8; 64 << 10];
        ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        FloatModule::build(&mut Unstructured::new(&bytes), n.min(MAX_OBSERVATIONS))
    }

    fn build(u: &mut Unstructured<'_>, n: usize) -> FloatModule {
        let mut g = Gen { u };
        let mut f = Function::new([]);
        let mut slots = Vec::with_capacity(n);
        let mut at = OUT_AT;
        for _ in 0..n {
            let slot = g.observe(&mut f, at);
            at += slot.bytes() as u32;
            slots.push(slot);
        }
        // iovec { OUT_AT, len } at IOVEC_AT; fd_write(1, iovec, 1, IOVEC_AT + 8).
        for (addr, v) in [(IOVEC_AT, OUT_AT), (IOVEC_AT + 4, at - OUT_AT)] {
            f.instruction(&I::I32Const(addr));
            f.instruction(&I::I32Const(v as i32));
            f.instruction(&I::I32Store(mem(0, 2)));
        }
        for i in [I::I32Const(1), I::I32Const(IOVEC_AT), I::I32Const(1), I::I32Const(IOVEC_AT + 8), I::Call(0), I::Drop, I::End] {
            f.instruction(&i);
        }
        FloatModule { wasm: module(&f), slots }
    }
}

/// A scalar NaN in a float module's stdout that is not the canonical one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("non-canonical NaN {bits:#x} ({slot:?}) at stdout byte {at}")]
pub struct NonCanonicalNan {
    /// The slot's kind.
    pub slot: Slot,
    /// Its offset in stdout.
    pub at: usize,
    /// Its bits.
    pub bits: u64,
}

/// How many scalar NaNs `stdout` (laid out as `slots`) holds, or the first
/// that is not canonical. A short stdout (a run that stopped early) is read
/// as far as it goes.
pub fn escaped_nans(stdout: &[u8], slots: &[Slot]) -> Result<usize, NonCanonicalNan> {
    let mut nans = 0;
    let mut at = 0;
    for &slot in slots {
        let Some(bytes) = stdout.get(at..at + slot.bytes()) else { break };
        let (nan, canonical, bits) = match slot {
            Slot::F32 => {
                let b = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                (f32::from_bits(b).is_nan(), b == CANONICAL_F32, u64::from(b))
            }
            Slot::F64 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(bytes);
                let b = u64::from_le_bytes(a);
                (f64::from_bits(b).is_nan(), b == CANONICAL_F64, b)
            }
            Slot::V128 | Slot::Int => (false, true, 0),
        };
        if nan {
            if !canonical {
                return Err(NonCanonicalNan { slot, at, bits });
            }
            nans += 1;
        }
        at += slot.bytes();
    }
    Ok(nans)
}

fn mem(offset: u64, align: u32) -> MemArg {
    MemArg { offset, align, memory_index: 0 }
}

/// The module around `start`: `fd_write` imported, one page of memory with
/// the pools, `_start` exported.
fn module(start: &Function) -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    types.ty().function([], []);
    m.section(&types);
    let mut imports = ImportSection::new();
    imports.import(WASI_MODULE, "fd_write", EntityType::Function(0));
    m.section(&imports);
    let mut funcs = FunctionSection::new();
    funcs.function(1);
    m.section(&funcs);
    let mut mems = MemorySection::new();
    mems.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
    m.section(&mems);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("_start", ExportKind::Func, 1);
    m.section(&exports);
    let mut code = CodeSection::new();
    code.function(start);
    m.section(&code);
    let mut pool = Vec::new();
    pool.extend(F64_POOL.iter().flat_map(|b| b.to_le_bytes()));
    pool.resize(POOL_F32_AT as usize, 0);
    pool.extend(F32_POOL.iter().flat_map(|b| b.to_le_bytes()));
    let mut data = DataSection::new();
    data.active(0, &wasm_encoder::ConstExpr::i32_const(0), pool);
    m.section(&data);
    m.finish()
}

const F64_BINARY: [I<'static>; 7] = [I::F64Add, I::F64Sub, I::F64Mul, I::F64Div, I::F64Min, I::F64Max, I::F64Copysign];
const F64_UNARY: [I<'static>; 7] = [I::F64Sqrt, I::F64Neg, I::F64Abs, I::F64Ceil, I::F64Floor, I::F64Trunc, I::F64Nearest];
const F32_BINARY: [I<'static>; 7] = [I::F32Add, I::F32Sub, I::F32Mul, I::F32Div, I::F32Min, I::F32Max, I::F32Copysign];
const F32_UNARY: [I<'static>; 7] = [I::F32Sqrt, I::F32Neg, I::F32Abs, I::F32Ceil, I::F32Floor, I::F32Trunc, I::F32Nearest];
const V128_BINARY: [I<'static>; 18] = [
    I::F32x4Add,
    I::F32x4Sub,
    I::F32x4Mul,
    I::F32x4Div,
    I::F32x4Min,
    I::F32x4Max,
    I::F32x4PMin,
    I::F32x4PMax,
    I::F64x2Add,
    I::F64x2Sub,
    I::F64x2Mul,
    I::F64x2Div,
    I::F64x2Min,
    I::F64x2Max,
    I::F32x4RelaxedMin,
    I::F32x4RelaxedMax,
    I::F64x2RelaxedMin,
    I::F64x2RelaxedMax,
];
const V128_UNARY: [I<'static>; 14] = [
    I::F32x4Sqrt,
    I::F32x4Neg,
    I::F32x4Nearest,
    I::F64x2Sqrt,
    I::F64x2Abs,
    I::F64x2Ceil,
    I::F32x4DemoteF64x2Zero,
    I::F64x2PromoteLowF32x4,
    I::F32x4ConvertI32x4S,
    I::I32x4TruncSatF32x4S,
    I::I32x4RelaxedTruncF32x4S,
    I::I32x4RelaxedTruncF32x4U,
    I::I32x4RelaxedTruncF64x2SZero,
    I::I32x4RelaxedTruncF64x2UZero,
];
const V128_TERNARY: [I<'static>; 4] = [I::F32x4RelaxedMadd, I::F32x4RelaxedNmadd, I::F64x2RelaxedMadd, I::F64x2RelaxedNmadd];

struct Gen<'a, 'b> {
    u: &'a mut Unstructured<'b>,
}

impl Gen<'_, '_> {
    /// A choice in `0..n`; 0 once the bytes run out.
    fn pick(&mut self, n: usize) -> usize {
        self.u.choose_index(n).unwrap_or(0)
    }

    fn one_of(&mut self, f: &mut Function, ops: &[I<'_>]) {
        f.instruction(&ops[self.pick(ops.len())]);
    }

    fn f64(&mut self, f: &mut Function, depth: u32) {
        if depth == 0 || self.pick(4) == 0 {
            f.instruction(&I::I32Const(0));
            f.instruction(&I::F64Load(mem(POOL_F64_AT + 8 * self.pick(F64_POOL.len()) as u64, 3)));
            return;
        }
        let d = depth - 1;
        match self.pick(10) {
            0..=3 => {
                self.f64(f, d);
                self.f64(f, d);
                self.one_of(f, &F64_BINARY);
            }
            4 | 5 => {
                self.f64(f, d);
                self.one_of(f, &F64_UNARY);
            }
            6 => {
                self.f32(f, d);
                f.instruction(&I::F64PromoteF32);
            }
            7 => {
                self.v128(f, d);
                f.instruction(&I::F64x2ExtractLane(self.pick(2) as u8));
            }
            8 => {
                self.f64(f, d);
                self.f64(f, d);
                self.f64(f, d);
                self.f64(f, d);
                f.instruction(&I::F64Lt);
                f.instruction(&I::Select);
            }
            _ => {
                // A NaN's bits moved through an integer and back.
                self.f64(f, d);
                f.instruction(&I::I64ReinterpretF64);
                f.instruction(&I::F64ReinterpretI64);
            }
        }
    }

    fn f32(&mut self, f: &mut Function, depth: u32) {
        if depth == 0 || self.pick(4) == 0 {
            f.instruction(&I::I32Const(0));
            f.instruction(&I::F32Load(mem(POOL_F32_AT + 4 * self.pick(F32_POOL.len()) as u64, 2)));
            return;
        }
        let d = depth - 1;
        match self.pick(8) {
            0..=3 => {
                self.f32(f, d);
                self.f32(f, d);
                self.one_of(f, &F32_BINARY);
            }
            4 | 5 => {
                self.f32(f, d);
                self.one_of(f, &F32_UNARY);
            }
            6 => {
                self.f64(f, d);
                f.instruction(&I::F32DemoteF64);
            }
            _ => {
                self.v128(f, d);
                f.instruction(&I::F32x4ExtractLane(self.pick(4) as u8));
            }
        }
    }

    /// A v128 (lanes f32x4 or f64x2, mixed freely: v128 is untyped).
    fn v128(&mut self, f: &mut Function, depth: u32) {
        if depth == 0 || self.pick(4) == 0 {
            f.instruction(&I::I32Const(0));
            let at = [POOL_F64_AT, POOL_F64_AT + 16, POOL_F64_AT + 32, POOL_F32_AT, POOL_F32_AT + 16][self.pick(5)];
            f.instruction(&I::V128Load(mem(at, 4)));
            return;
        }
        let d = depth - 1;
        match self.pick(8) {
            0..=2 => {
                self.v128(f, d);
                self.v128(f, d);
                self.one_of(f, &V128_BINARY);
            }
            3 => {
                self.v128(f, d);
                self.one_of(f, &V128_UNARY);
            }
            4 => {
                self.v128(f, d);
                self.v128(f, d);
                self.v128(f, d);
                self.one_of(f, &V128_TERNARY);
            }
            5 => {
                if self.pick(2) == 0 {
                    self.f32(f, d);
                    f.instruction(&I::F32x4Splat);
                } else {
                    self.f64(f, d);
                    f.instruction(&I::F64x2Splat);
                }
            }
            6 => {
                self.v128(f, d);
                if self.pick(2) == 0 {
                    self.f32(f, d);
                    f.instruction(&I::F32x4ReplaceLane(self.pick(4) as u8));
                } else {
                    self.f64(f, d);
                    f.instruction(&I::F64x2ReplaceLane(self.pick(2) as u8));
                }
            }
            _ => {
                self.v128(f, d);
                self.v128(f, d);
                self.v128(f, d);
                f.instruction(&I::V128Bitselect);
            }
        }
    }

    /// One expression, observed through an escape route, written at `at`.
    fn observe(&mut self, f: &mut Function, at: u32) -> Slot {
        f.instruction(&I::I32Const(at as i32));
        match self.pick(9) {
            0 => {
                self.f64(f, DEPTH);
                f.instruction(&I::F64Store(mem(0, 3)));
                Slot::F64
            }
            1 => {
                self.f64(f, DEPTH);
                f.instruction(&I::I64ReinterpretF64);
                f.instruction(&I::I64Store(mem(0, 3)));
                Slot::F64
            }
            2 => {
                self.f32(f, DEPTH);
                f.instruction(&I::F32Store(mem(0, 2)));
                Slot::F32
            }
            3 => {
                self.f32(f, DEPTH);
                f.instruction(&I::I32ReinterpretF32);
                f.instruction(&I::I32Store(mem(0, 2)));
                Slot::F32
            }
            4 => {
                // The sign of a NaN, through copysign, onto 1.0.
                f.instruction(&I::F64Const(Ieee64::new(1f64.to_bits())));
                self.f64(f, DEPTH);
                f.instruction(&I::F64Copysign);
                f.instruction(&I::F64Store(mem(0, 3)));
                Slot::F64
            }
            5 => {
                f.instruction(&I::F32Const(Ieee32::new(1f32.to_bits())));
                self.f32(f, DEPTH);
                f.instruction(&I::F32Copysign);
                f.instruction(&I::I32ReinterpretF32);
                f.instruction(&I::I32Store(mem(0, 2)));
                Slot::F32
            }
            6 => {
                self.v128(f, DEPTH);
                f.instruction(&I::V128Store(mem(0, 4)));
                Slot::V128
            }
            7 => {
                self.v128(f, DEPTH);
                f.instruction(&I::I8x16Bitmask);
                f.instruction(&I::I32Store(mem(0, 2)));
                Slot::Int
            }
            _ => {
                self.v128(f, DEPTH);
                f.instruction(&I::I64x2ExtractLane(self.pick(2) as u8));
                f.instruction(&I::I64Store(mem(0, 3)));
                Slot::Int
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_validate_and_are_named_by_their_seed() {
        for seed in 0..8 {
            let m = FloatModule::from_seed(seed, MAX_OBSERVATIONS);
            crate::job::validate_module(&m.wasm).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(m.slots.len(), MAX_OBSERVATIONS);
            assert_eq!(m.wasm, FloatModule::from_seed(seed, MAX_OBSERVATIONS).wasm);
        }
    }

    #[test]
    fn escaped_nans_counts_canonical_nans_and_names_the_first_other() {
        let slots = [Slot::F32, Slot::V128, Slot::F64, Slot::Int];
        let mut out = Vec::new();
        out.extend(CANONICAL_F32.to_le_bytes());
        out.extend([0xff; 16]);
        out.extend(CANONICAL_F64.to_le_bytes());
        out.extend(0x7fc0_0001u32.to_le_bytes()); // an Int slot: not a float
        assert_eq!(escaped_nans(&out, &slots), Ok(2));
        out[20..28].copy_from_slice(&0xfff8_0000_0000_0000u64.to_le_bytes());
        assert_eq!(escaped_nans(&out, &slots), Err(NonCanonicalNan { slot: Slot::F64, at: 20, bits: 0xfff8_0000_0000_0000 }));
        assert_eq!(escaped_nans(&out[..4], &slots), Ok(1), "a short stdout is read as far as it goes");
    }
}
