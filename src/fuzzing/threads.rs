//! Threaded programs: several guest threads racing over a few cells of one
//! shared memory, for differential runs of canon's scheduler.
//!
//! wasm-smith's modules never spawn a thread or wait on an address; these
//! do nothing else. A [`Program`] is 1 to [`MAX_BODIES`] thread *bodies*,
//! each a loop over a list of [`Op`]s on [`CELLS`] `i32` cells: racy
//! read-modify-writes (some with a `sched_yield` between the read and the
//! write, the classic lost update), atomic adds and compare-exchanges,
//! `memory.atomic.wait32` (on the cell's current value, so it really
//! blocks, or on another, so it returns at once; without a timeout, a short
//! one or a long one), `memory.atomic.notify`, yields, spins that use up
//! fuel slices, and spawns of more threads. `_start` spawns some threads,
//! runs body 0 itself, waits on a done counter that every body bumps and
//! notifies at its end (a bounded number of times, with or without a
//! timeout), then writes the cells to stdout and returns, which ends the
//! job whatever the other threads are doing.
//!
//! So an outcome covers the interleaving the scheduler chose (racy cells
//! differ by schedule), the fuel of every thread, and each way a threaded
//! job ends: exit 0, `deadlock` (every thread waiting, none with a
//! deadline), `out_of_fuel`, spawns refused at the thread limit. Every
//! backend that runs threads must give the same outcome and fuel for the
//! same job, twice; Pulley must refuse the job
//! ([`crate::sandbox::differential`]).

use arbitrary::Unstructured;
use wasm_encoder::{
    BlockType, CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection, Instruction as I, MemArg, MemoryType, Module,
    TypeSection, ValType,
};

use crate::abi::{THREAD_SPAWN, WASI_MODULE, WASI_THREADS_MODULE};
use crate::job::{MAX_SLICE, MIN_SLICE, Policy, Threads};

/// Cells the threads work on.
pub const CELLS: u32 = 16;
/// Where cell 0 is; cell `i` is at `CELL0 + 4 i`.
pub const CELL0: u32 = 1024;
/// The done counter: every body adds 1 at its end and notifies.
pub const DONE: u32 = CELL0 + 4 * CELLS;
/// Bytes `_start` prints: the cells and the done counter.
pub const DUMP_LEN: u32 = 4 * CELLS + 4;
/// Most bodies in a program.
pub const MAX_BODIES: usize = 4;
/// Most ops in a body.
pub const MAX_OPS: usize = 12;
/// Most spawns `_start` makes.
pub const MAX_MAIN_SPAWNS: usize = 6;

/// One step of a body. `cell` is a cell's index (taken modulo [`CELLS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `cell += k`, as a plain load and store: a data race on purpose.
    RacyAdd {
        /// The cell.
        cell: u32,
        /// What is added.
        k: i32,
    },
    /// `cell += k` with a `sched_yield` between the load and the store.
    RacyAddYield {
        /// The cell.
        cell: u32,
        /// What is added.
        k: i32,
    },
    /// `i32.atomic.rmw.add`.
    AtomicAdd {
        /// The cell.
        cell: u32,
        /// What is added.
        k: i32,
    },
    /// `i32.atomic.rmw.cmpxchg`.
    Cas {
        /// The cell.
        cell: u32,
        /// The value expected.
        expect: i32,
        /// The value stored if it was there.
        new: i32,
    },
    /// `memory.atomic.wait32`.
    Wait {
        /// The cell.
        cell: u32,
        /// Expect the cell's current value (so the wait blocks), rather
        /// than `expect`.
        current: bool,
        /// The value expected otherwise.
        expect: i32,
        /// The timeout in ns; negative for none.
        timeout: i64,
    },
    /// `memory.atomic.notify`.
    Notify {
        /// The cell.
        cell: u32,
        /// Most waiters woken.
        count: u32,
    },
    /// `sched_yield`.
    Yield,
    /// A loop doing nothing but using fuel.
    Spin {
        /// Its rounds.
        n: u32,
    },
    /// `thread-spawn`.
    Spawn {
        /// The body the new thread runs (modulo the number of bodies).
        body: u32,
    },
}

/// A threaded program and the scheduler settings it runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Each body's ops, run `iters` times.
    pub bodies: Vec<(u32, Vec<Op>)>,
    /// Bodies `_start` spawns before it runs body 0.
    pub spawns: Vec<u32>,
    /// Rounds `_start` waits for the done counter.
    pub rounds: u32,
    /// Its wait's timeout in ns, negative for none.
    pub main_timeout: i64,
    /// The job's scheduler settings.
    pub threads: Threads,
}

impl Program {
    /// A program from fuzzer bytes.
    pub fn generate(u: &mut Unstructured<'_>) -> arbitrary::Result<Program> {
        let n = u.int_in_range(1..=MAX_BODIES)?;
        let mut bodies = Vec::with_capacity(n);
        for _ in 0..n {
            let iters = u.int_in_range(1..=64)?;
            let ops = (0..u.int_in_range(1..=MAX_OPS)?).map(|_| op(u, n as u32)).collect::<arbitrary::Result<_>>()?;
            bodies.push((iters, ops));
        }
        let spawns = (0..u.int_in_range(0..=MAX_MAIN_SPAWNS)?).map(|_| u.int_in_range(0..=n as u32 - 1)).collect::<arbitrary::Result<_>>()?;
        let policy = match u.int_in_range(0..=2)? {
            0 => Policy::Random,
            1 => Policy::RoundRobin,
            _ => Policy::Pct { depth: u.int_in_range(1..=4)? },
        };
        let slice = *u.choose(&[MIN_SLICE, 150, 1_000, 10_000, MAX_SLICE.min(1 << 20)])?;
        let threads = Threads { policy, seed: Some(u.arbitrary()?), slice, max_threads: u.int_in_range(1..=8)? };
        Ok(Program { bodies, spawns, rounds: u.int_in_range(1..=8)?, main_timeout: timeout(u)?, threads })
    }

    /// The module.
    pub fn encode(&self) -> Vec<u8> {
        let k = self.bodies.len() as u32;
        let (fd_write, sched_yield, spawn) = (0, 1, 2);
        let body_fn = |b: u32| 3 + b % k;
        let thread_start = 3 + k;
        let start = 4 + k;

        let mut types = TypeSection::new();
        types.ty().function([ValType::I32; 4], [ValType::I32]);
        types.ty().function([], [ValType::I32]);
        types.ty().function([ValType::I32], [ValType::I32]);
        types.ty().function([], []);
        types.ty().function([ValType::I32; 2], []);
        let mut imports = ImportSection::new();
        imports.import(WASI_MODULE, "fd_write", EntityType::Function(0));
        imports.import(WASI_MODULE, "sched_yield", EntityType::Function(1));
        imports.import(WASI_THREADS_MODULE, THREAD_SPAWN, EntityType::Function(2));
        let memory = MemoryType { minimum: 1, maximum: Some(1), memory64: false, shared: true, page_size_log2: None };
        imports.import("env", "memory", EntityType::Memory(memory));
        let mut funcs = FunctionSection::new();
        for _ in 0..k {
            funcs.function(3);
        }
        funcs.function(4);
        funcs.function(3);
        let mut exports = ExportSection::new();
        exports.export("wasi_thread_start", ExportKind::Func, thread_start);
        exports.export("_start", ExportKind::Func, start);
        exports.export("memory", ExportKind::Memory, 0);

        let mem = MemArg { offset: 0, align: 2, memory_index: 0 };
        let cell = |c: u32| (CELL0 + 4 * (c % CELLS)) as i32;
        let mut code = CodeSection::new();
        for (iters, ops) in &self.bodies {
            // Locals: 0 the rounds left, 1 scratch.
            let mut f = Function::new([(2, ValType::I32)]);
            f.instructions().i32_const(*iters as i32).local_set(0);
            f.instruction(&I::Block(BlockType::Empty)).instruction(&I::Loop(BlockType::Empty));
            f.instructions().local_get(0).i32_eqz().br_if(1);
            for op in ops {
                match *op {
                    Op::RacyAdd { cell: c, k } => {
                        f.instructions().i32_const(cell(c)).i32_const(cell(c)).i32_load(mem).i32_const(k).i32_add().i32_store(mem);
                    }
                    Op::RacyAddYield { cell: c, k } => {
                        f.instructions().i32_const(cell(c)).i32_load(mem).local_set(1).call(sched_yield).drop();
                        f.instructions().i32_const(cell(c)).local_get(1).i32_const(k).i32_add().i32_store(mem);
                    }
                    Op::AtomicAdd { cell: c, k } => {
                        f.instructions().i32_const(cell(c)).i32_const(k).i32_atomic_rmw_add(mem).drop();
                    }
                    Op::Cas { cell: c, expect, new } => {
                        f.instructions().i32_const(cell(c)).i32_const(expect).i32_const(new).i32_atomic_rmw_cmpxchg(mem).drop();
                    }
                    Op::Wait { cell: c, current, expect, timeout } => {
                        f.instructions().i32_const(cell(c));
                        if current {
                            f.instructions().i32_const(cell(c)).i32_atomic_load(mem);
                        } else {
                            f.instructions().i32_const(expect);
                        }
                        f.instructions().i64_const(timeout).memory_atomic_wait32(mem).drop();
                    }
                    Op::Notify { cell: c, count } => {
                        f.instructions().i32_const(cell(c)).i32_const(count as i32).memory_atomic_notify(mem).drop();
                    }
                    Op::Yield => {
                        f.instructions().call(sched_yield).drop();
                    }
                    Op::Spin { n } => {
                        f.instructions().i32_const(n as i32).local_set(1);
                        f.instruction(&I::Loop(BlockType::Empty));
                        f.instructions().local_get(1).i32_const(1).i32_sub().local_tee(1).br_if(0);
                        f.instruction(&I::End);
                    }
                    Op::Spawn { body } => {
                        f.instructions().i32_const(body as i32).call(spawn).drop();
                    }
                }
            }
            f.instructions().local_get(0).i32_const(1).i32_sub().local_set(0).br(0);
            f.instruction(&I::End).instruction(&I::End);
            // Done: count it and wake whoever waits for it.
            f.instructions().i32_const(DONE as i32).i32_const(1).i32_atomic_rmw_add(mem).drop();
            f.instructions().i32_const(DONE as i32).i32_const(-1).memory_atomic_notify(mem).drop();
            f.instruction(&I::End);
            code.function(&f);
        }
        // wasi_thread_start(tid, arg): the body `arg` names.
        let mut f = Function::new([]);
        for b in 0..k {
            f.instructions().local_get(1).i32_const(k as i32).i32_rem_u().i32_const(b as i32).i32_eq();
            f.instruction(&I::If(BlockType::Empty));
            f.instructions().call(body_fn(b));
            f.instruction(&I::End);
        }
        f.instruction(&I::End);
        code.function(&f);
        // _start. Locals: 0 threads spawned, 1 rounds left.
        let mut f = Function::new([(2, ValType::I32)]);
        for &b in &self.spawns {
            f.instructions().i32_const(b as i32).call(spawn).i32_const(0).i32_gt_s().local_get(0).i32_add().local_set(0);
        }
        f.instructions().call(body_fn(0));
        f.instructions().i32_const(self.rounds as i32).local_set(1);
        f.instruction(&I::Block(BlockType::Empty)).instruction(&I::Loop(BlockType::Empty));
        f.instructions().local_get(1).i32_eqz().br_if(1);
        f.instructions().i32_const(DONE as i32).i32_atomic_load(mem).local_get(0).i32_const(1).i32_add().i32_ge_u().br_if(1);
        f.instructions().i32_const(DONE as i32).i32_const(DONE as i32).i32_atomic_load(mem).i64_const(self.main_timeout).memory_atomic_wait32(mem).drop();
        f.instructions().local_get(1).i32_const(1).i32_sub().local_set(1).br(0);
        f.instruction(&I::End).instruction(&I::End);
        // The report: an iovec at 0 over the cells and the counter.
        f.instructions().i32_const(0).i32_const(CELL0 as i32).i32_store(mem);
        f.instructions().i32_const(4).i32_const(DUMP_LEN as i32).i32_store(mem);
        f.instructions().i32_const(1).i32_const(0).i32_const(1).i32_const(8).call(fd_write).drop();
        f.instruction(&I::End);
        code.function(&f);

        let mut m = Module::new();
        m.section(&types).section(&imports).section(&funcs).section(&exports).section(&code);
        m.finish()
    }
}

fn timeout(u: &mut Unstructured<'_>) -> arbitrary::Result<i64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => -1,
        1 => u.int_in_range(0..=1_000)?,
        2 => u.int_in_range(1_000..=1_000_000)?,
        _ => u.int_in_range(1_000_000..=1_000_000_000)?,
    })
}

fn op(u: &mut Unstructured<'_>, bodies: u32) -> arbitrary::Result<Op> {
    let cell = |u: &mut Unstructured<'_>| u.int_in_range(0..=CELLS - 1);
    Ok(match u.int_in_range(0..=9)? {
        0 | 1 => Op::RacyAdd { cell: cell(u)?, k: u.int_in_range(1..=3)? },
        2 => Op::RacyAddYield { cell: cell(u)?, k: u.int_in_range(1..=3)? },
        3 => Op::AtomicAdd { cell: cell(u)?, k: u.int_in_range(1..=3)? },
        4 => Op::Cas { cell: cell(u)?, expect: u.int_in_range(0..=4)?, new: u.int_in_range(0..=9)? },
        5 => Op::Wait { cell: cell(u)?, current: u.arbitrary()?, expect: u.int_in_range(0..=2)?, timeout: timeout(u)? },
        6 => Op::Notify { cell: cell(u)?, count: *u.choose(&[0, 1, 2, u32::MAX])? },
        7 => Op::Yield,
        8 => Op::Spin { n: u.int_in_range(1..=2_000)? },
        _ => Op::Spawn { body: u.int_in_range(0..=bodies - 1)? },
    })
}
