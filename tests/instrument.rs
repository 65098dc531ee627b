//! canon's load-time instrumentation: the call-depth limit is exact on every
//! backend and restored on every way out of a function; fuel is canon's own
//! and the same on every backend; the reserved `canon` imports cannot be
//! reached by a guest; a native stack overflow is no result.

use std::path::{Path, PathBuf};

use canon::job::{Job, JobError, ModuleError};
use canon::outcome::{Outcome, Termination, TrapKind};
use canon::sandbox::{Backend, RunError, Sandbox};
use wasm_encoder::{
    BlockType, Catch, CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, GlobalType, ImportSection, Instruction as I,
    MemorySection, MemoryType, Module, TagKind, TagSection, TagType, TypeSection, ValType,
};

use crate::util::scratch;

/// The backends that run jobs.
const RUNNABLE: [Backend; 3] = [Backend::Cranelift, Backend::CraneliftBaseline, Backend::Pulley];

/// A command module: type 0 is `() -> ()`, type 1 `(i32) -> ()`, type 2
/// `(i32) -> i32`; function 0 is `_start`, the others follow; `memory` is
/// exported.
fn command(imports: impl FnOnce(&mut ImportSection), funcs: Vec<(u32, Function)>) -> Vec<u8> {
    build(imports, vec![], funcs)
}

/// [`command`] with a type 3, `(params) -> ()`.
fn command_with_type(params: Vec<ValType>, funcs: Vec<(u32, Function)>) -> Vec<u8> {
    build(|_| {}, params, funcs)
}

fn build(imports: impl FnOnce(&mut ImportSection), extra: Vec<ValType>, funcs: Vec<(u32, Function)>) -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    types.ty().function([ValType::I32], []);
    types.ty().function([ValType::I32], [ValType::I32]);
    types.ty().function(extra, []);
    m.section(&types);
    let mut imp = ImportSection::new();
    imports(&mut imp);
    if !imp.is_empty() {
        m.section(&imp);
    }
    let mut fs = FunctionSection::new();
    for (ty, _) in &funcs {
        fs.function(*ty);
    }
    m.section(&fs);
    let mut mem = MemorySection::new();
    mem.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
    m.section(&mem);
    let mut ex = ExportSection::new();
    ex.export("memory", ExportKind::Memory, 0);
    ex.export("_start", ExportKind::Func, 0);
    m.section(&ex);
    let mut code = CodeSection::new();
    for (_, f) in &funcs {
        code.function(f);
    }
    m.section(&code);
    m.finish()
}

fn func(locals: Vec<(u32, ValType)>, body: &[I<'_>]) -> Function {
    let mut f = Function::new(locals);
    for i in body {
        f.instruction(i);
    }
    f.instruction(&I::End);
    f
}

/// `_start` calls function 1 with `n`, `times` times.
fn start_calling(n: i32, times: usize) -> Function {
    let mut body = Vec::new();
    for _ in 0..times {
        body.extend([I::I32Const(n), I::Call(1)]);
    }
    func(vec![], &body)
}

/// `f(n)`: recurses to `f(n-1)` down to `f(0)`, so `f(n)` makes `n + 1`
/// frames. Each level leaves by another path, in turn: `br_if` to the
/// function's label (n = 0), `return` (odd n), `br_table` to the function's
/// label (even n).
fn recursive_f() -> Function {
    func(
        vec![],
        &[
            I::LocalGet(0),
            I::I32Eqz,
            I::BrIf(0),
            I::LocalGet(0),
            I::I32Const(1),
            I::I32Sub,
            I::Call(1),
            I::LocalGet(0),
            I::I32Const(1),
            I::I32And,
            I::If(BlockType::Empty),
            I::Return,
            I::End,
            I::Block(BlockType::Empty),
            I::LocalGet(0),
            I::BrTable(vec![1, 0].into(), 1),
            I::End,
        ],
    )
}

/// A job running `module` (written into `dir`) with more TOML `limits`.
fn job(dir: &Path, module: &[u8], limits: &str) -> Result<Job, JobError> {
    let wasm = dir.join("m.wasm");
    std::fs::write(&wasm, module).expect("write module");
    let spec: PathBuf = dir.join("job.toml");
    std::fs::write(&spec, format!("name = \"instrument\"\nmodule = \"m.wasm\"\n[limits]\n{limits}\n")).expect("write spec");
    Job::load(&spec)
}

fn run_on(backend: Backend, job: &Job) -> Result<Outcome, RunError> {
    Sandbox::builder().cache_dir(None).backend(backend).build().expect("sandbox").run(job)
}

/// Runs `job` on every runnable backend; all must agree on the outcome
/// digest (which covers fuel). Returns the outcome.
fn run_everywhere(job: &Job) -> Outcome {
    let mut first: Option<Outcome> = None;
    for backend in RUNNABLE {
        let o = run_on(backend, job).unwrap_or_else(|e| panic!("{backend}: no result: {e}"));
        if let Some(f) = &first {
            assert_eq!(
                (o.termination, o.fuel_consumed, o.summary().outcome_digest),
                (f.termination, f.fuel_consumed, f.summary().outcome_digest),
                "{backend} disagrees with cranelift"
            );
        } else {
            first = Some(o);
        }
    }
    first.expect("at least one backend")
}

#[test]
fn recursion_traps_at_exactly_the_call_depth_limit_on_every_backend() {
    const N: i32 = 3000;
    let module = command(|_| {}, vec![(0, start_calling(N, 1)), (1, recursive_f())]);
    let dir = scratch();
    // _start plus f(N) .. f(0): N + 2 frames.
    let enough = job(dir.path(), &module, &format!("call_depth = {}", N + 2)).expect("job");
    let ok = run_everywhere(&enough);
    assert_eq!(ok.termination, Termination::Exit(0));
    let short = job(dir.path(), &module, &format!("call_depth = {}", N + 1)).expect("job");
    let trapped = run_everywhere(&short);
    assert_eq!(trapped.termination, Termination::Trap(TrapKind::CallDepthExceeded));
    assert!(trapped.fuel_consumed < ok.fuel_consumed, "the trap fires before the deepest frame runs");
}

#[test]
fn every_way_out_of_a_function_restores_the_depth() {
    // Five deep recursions in a row, each leaving through br_if, return and
    // br_table: with a leak the later ones would trap under the exact limit.
    const N: i32 = 500;
    let module = command(|_| {}, vec![(0, start_calling(N, 5)), (1, recursive_f())]);
    let dir = scratch();
    let o = run_everywhere(&job(dir.path(), &module, &format!("call_depth = {}", N + 2)).expect("job"));
    assert_eq!(o.termination, Termination::Exit(0));
}

#[test]
fn tail_calls_do_not_deepen_the_stack() {
    // g(n) = if n == 0 then () else return_call g(n - 1): one frame however
    // deep, so a limit of 2 (_start and g) is enough for 100 000 calls.
    let g = func(vec![], &[I::LocalGet(0), I::I32Eqz, I::BrIf(0), I::LocalGet(0), I::I32Const(1), I::I32Sub, I::ReturnCall(1)]);
    let module = command(|_| {}, vec![(0, start_calling(100_000, 1)), (1, g)]);
    let dir = scratch();
    let o = run_everywhere(&job(dir.path(), &module, "call_depth = 2").expect("job"));
    assert_eq!(o.termination, Termination::Exit(0));
    let o = run_everywhere(&job(dir.path(), &module, "call_depth = 1").expect("job"));
    assert_eq!(o.termination, Termination::Trap(TrapKind::CallDepthExceeded));
}

#[test]
fn fuel_is_canons_own_and_exhaustion_is_exact_on_every_backend() {
    const N: i32 = 2000;
    let module = command(|_| {}, vec![(0, start_calling(N, 3)), (1, recursive_f())]);
    let dir = scratch();
    let full = run_everywhere(&job(dir.path(), &module, "").expect("job"));
    assert_eq!(full.termination, Termination::Exit(0));
    // Exactly the fuel it needs runs to the end; one less stops it.
    let exact = run_everywhere(&job(dir.path(), &module, &format!("fuel = {}", full.fuel_consumed)).expect("job"));
    assert_eq!((exact.termination, exact.fuel_consumed), (Termination::Exit(0), full.fuel_consumed));
    let less = run_everywhere(&job(dir.path(), &module, &format!("fuel = {}", full.fuel_consumed - 1)).expect("job"));
    assert_eq!((less.termination, less.fuel_consumed), (Termination::Trap(TrapKind::OutOfFuel), full.fuel_consumed - 1));
}

#[test]
fn frames_too_big_for_the_native_stack_give_no_result() {
    // f takes 300 i64 arguments and calls itself with all of them: every
    // frame passes 2.4 KB on the native stack, far more than 64 MiB at the
    // maximum depth of 100 000.
    let mut body = vec![I::LocalGet(0), I::I64Const(1), I::I64Add];
    body.extend((1..300).map(I::LocalGet));
    body.push(I::Call(1));
    let f = func(vec![], &body);
    let mut start = vec![I::I64Const(0); 300];
    start.push(I::Call(1));
    let module = command_with_type(vec![ValType::I64; 300], vec![(0, func(vec![], &start)), (3, f)]);
    let dir = scratch();
    let job = job(dir.path(), &module, "call_depth = 100000").expect("job");
    match run_on(Backend::Cranelift, &job) {
        Err(RunError::NativeStackOverflow(100_000)) => {}
        other => panic!("expected no result, got {:?}", other.map(|o| (o.termination, o.fuel_consumed))),
    }
}

#[test]
fn modules_that_reach_for_canons_counters_are_refused() {
    let dir = scratch();
    let global = |imp: &mut ImportSection| {
        imp.import("canon", "fuel", EntityType::Global(GlobalType { val_type: ValType::I64, mutable: true, shared: false }));
    };
    let memory = |imp: &mut ImportSection| {
        imp.import("canon", "watchdog", EntityType::Memory(MemoryType { minimum: 1, maximum: Some(1), memory64: false, shared: false, page_size_log2: None }));
    };
    let trap = |imp: &mut ImportSection| {
        imp.import("canon", "trap", EntityType::Function(1));
    };
    for (what, module) in [
        ("fuel", command(global, vec![(0, func(vec![], &[]))])),
        ("watchdog", command(memory, vec![(0, func(vec![], &[]))])),
        ("trap", command(trap, vec![(0, func(vec![], &[]))])),
    ] {
        let err = job(dir.path(), &module, "").expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains(&format!("canon::{what}")) && msg.contains("reserved"), "{msg}");
        assert!(matches!(&err, JobError::Module { source, .. } if matches!(**source, ModuleError::ReservedImport { .. })), "{err:?}");
    }
}

#[test]
fn call_depth_is_checked_and_in_the_digest() {
    let module = command(|_| {}, vec![(0, func(vec![], &[]))]);
    let dir = scratch();
    for bad in ["0", "100001"] {
        let err = job(dir.path(), &module, &format!("call_depth = {bad}")).expect_err("out of range");
        assert!(err.to_string().contains("call_depth"), "{err}");
    }
    let a = job(dir.path(), &module, "call_depth = 10").expect("job");
    let b = job(dir.path(), &module, "call_depth = 11").expect("job");
    assert_ne!(a.digest(), b.digest());
    assert_eq!(job(dir.path(), &module, "").expect("job").limits.call_depth, 10_000);
}

/// `_start` counts to 1000 in a loop whose back edge is not in the loop
/// header's segment (an empty `block` ends it), then runs `tail`.
fn counting_loop(tail: &[I<'_>]) -> Function {
    let mut body = vec![
        I::Loop(BlockType::Empty),
        I::Block(BlockType::Empty),
        I::End,
        I::LocalGet(0),
        I::I32Const(1),
        I::I32Add,
        I::LocalTee(0),
        I::I32Const(1000),
        I::I32LtU,
        I::BrIf(0),
        I::End,
    ];
    body.extend_from_slice(tail);
    func(vec![(1, ValType::I32)], &body)
}

#[test]
fn fuel_checked_at_loop_headers_and_exits_is_exact_without_calls() {
    let dir = scratch();
    // No call anywhere: the checks at the loop header and at the exit
    // still make exhaustion exact.
    let module = command(|_| {}, vec![(0, counting_loop(&[]))]);
    let full = run_everywhere(&job(dir.path(), &module, "").expect("job"));
    assert_eq!(full.termination, Termination::Exit(0));
    assert_eq!(full.fuel_consumed, 7 * 1000, "seven instructions per iteration");
    let exact = run_everywhere(&job(dir.path(), &module, &format!("fuel = {}", full.fuel_consumed)).expect("job"));
    assert_eq!((exact.termination, exact.fuel_consumed), (Termination::Exit(0), full.fuel_consumed));
    let less = run_everywhere(&job(dir.path(), &module, &format!("fuel = {}", full.fuel_consumed - 1)).expect("job"));
    assert_eq!((less.termination, less.fuel_consumed), (Termination::Trap(TrapKind::OutOfFuel), full.fuel_consumed - 1));

    // An endless loop whose header segment costs nothing still stops.
    let endless = command(|_| {}, vec![(0, func(vec![], &[I::Loop(BlockType::Empty), I::Block(BlockType::Empty), I::End, I::Br(0), I::End]))]);
    let o = run_everywhere(&job(dir.path(), &endless, "fuel = 100000").expect("job"));
    assert_eq!((o.termination, o.fuel_consumed), (Termination::Trap(TrapKind::OutOfFuel), 100_000));

    // A budget above canon's cap (2^62 - 1) is the cap: the run is not mistaken for
    // an exhausted one.
    let mut huge = job(dir.path(), &module, "").expect("job");
    huge.limits.fuel = u64::MAX;
    let huge = run_everywhere(&huge);
    assert_eq!((huge.termination, huge.fuel_consumed), (Termination::Exit(0), full.fuel_consumed));
}

#[test]
fn other_traps_report_the_fuel_as_last_stored() {
    let dir = scratch();
    // The loop's fuel lives in the function's local; `unreachable` traps
    // before any call or exit stores it, so the outcome reports 0, on
    // every backend.
    let module = command(|_| {}, vec![(0, counting_loop(&[I::Unreachable]))]);
    let o = run_everywhere(&job(dir.path(), &module, "").expect("job"));
    assert_eq!((o.termination, o.fuel_consumed), (Termination::Trap(TrapKind::Unreachable), 0));
}

#[test]
fn leaf_functions_count_against_the_depth_limit() {
    // _start → g → h, three times; h makes no call, so it only checks the
    // counter: it must still need the third level, and not leak one.
    let g = func(vec![], &[I::LocalGet(0), I::Call(2)]);
    let h = func(vec![], &[I::LocalGet(0), I::Drop]);
    let module = command(|_| {}, vec![(0, start_calling(0, 3)), (1, g), (1, h)]);
    let dir = scratch();
    let o = run_everywhere(&job(dir.path(), &module, "call_depth = 3").expect("job"));
    assert_eq!(o.termination, Termination::Exit(0));
    let o = run_everywhere(&job(dir.path(), &module, "call_depth = 2").expect("job"));
    assert_eq!(o.termination, Termination::Trap(TrapKind::CallDepthExceeded));
}

/// A command module with one exception tag (type `() -> ()`): function 0 is
/// `_start` (`start`), 1 is [`recursive_f`], 2 is `throw_at_bottom(n)`,
/// which recurses down to `n = 0` and throws there.
fn with_exceptions(start: Function) -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    types.ty().function([ValType::I32], []);
    m.section(&types);
    let mut fs = FunctionSection::new();
    fs.function(0).function(1).function(1);
    m.section(&fs);
    let mut mem = MemorySection::new();
    mem.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
    m.section(&mem);
    let mut tags = TagSection::new();
    tags.tag(TagType { kind: TagKind::Exception, func_type_idx: 0 });
    m.section(&tags);
    let mut ex = ExportSection::new();
    ex.export("memory", ExportKind::Memory, 0);
    ex.export("_start", ExportKind::Func, 0);
    m.section(&ex);
    let thrower =
        func(vec![], &[I::LocalGet(0), I::I32Eqz, I::If(BlockType::Empty), I::Throw(0), I::End, I::LocalGet(0), I::I32Const(1), I::I32Sub, I::Call(2)]);
    let mut code = CodeSection::new();
    code.function(&start).function(&recursive_f()).function(&thrower);
    m.section(&code);
    m.finish()
}

#[test]
fn a_caught_exception_restores_the_depth_on_every_backend() {
    const N: i32 = 1000;
    // Throw from N + 1 frames deep, catch in _start, then recurse to exactly
    // the limit: it fits only if the catch gave the unwound frames back.
    let start = func(
        vec![],
        &[
            I::Block(BlockType::Empty),
            I::TryTable(BlockType::Empty, vec![Catch::All { label: 0 }].into()),
            I::I32Const(N),
            I::Call(2),
            I::End,
            I::End,
            I::I32Const(N),
            I::Call(1),
        ],
    );
    let module = with_exceptions(start);
    let dir = scratch();
    let exact = job(dir.path(), &module, &format!("call_depth = {}", N + 2)).expect("job");
    assert_eq!(run_everywhere(&exact).termination, Termination::Exit(0));
    let short = job(dir.path(), &module, &format!("call_depth = {}", N + 1)).expect("job");
    assert_eq!(run_everywhere(&short).termination, Termination::Trap(TrapKind::CallDepthExceeded));
}

#[test]
fn an_uncaught_exception_is_an_outcome_on_every_backend() {
    let module = with_exceptions(func(vec![], &[I::I32Const(5), I::Call(2)]));
    let dir = scratch();
    let job = job(dir.path(), &module, "").expect("job");
    assert_eq!(run_everywhere(&job).termination, Termination::Trap(TrapKind::UncaughtException));
}

/// Endless loops that only the wall-clock safety net can stop, each with a
/// budget of centuries: the watchdog must reach every one of them on every
/// backend, and the run has no result.
#[test]
fn the_watchdog_stops_endless_loops_of_every_shape_on_every_backend() {
    let spin = |body: &[I<'static>]| {
        let mut b = vec![I::Loop(BlockType::Empty)];
        b.extend_from_slice(body);
        b.extend([I::Br(0), I::End]);
        b
    };
    // An inner loop with no store, no call and no memory access, inside an
    // outer loop: the compiler must not reuse the outer check's reading of
    // the surcharge inside the inner loop.
    let mut nested = vec![I::Loop(BlockType::Empty), I::LocalGet(0), I::I32Const(1), I::I32Add, I::LocalSet(0)];
    nested.extend(spin(&[I::LocalGet(0), I::I32Const(3), I::I32Mul, I::LocalSet(0)]));
    nested.extend([I::Br(0), I::End]);
    // Two loops one after the other, the second endless.
    let mut sequential =
        vec![I::Loop(BlockType::Empty), I::LocalGet(0), I::I32Const(1), I::I32Add, I::LocalTee(0), I::I32Const(10), I::I32LtU, I::BrIf(0), I::End];
    sequential.extend(spin(&[I::LocalGet(0), I::I32Const(1), I::I32Add, I::LocalSet(0)]));
    // The same after more checks than the watchdog's page has surcharge
    // slots (every call is a check), so that the loops' checks read a slot
    // another check of the function reads too.
    let mut crowded: Vec<I<'static>> = (0..canon::instrument::meter::SURCHARGE_SLOTS + 100).flat_map(|_| [I::I32Const(0), I::Call(1)]).collect();
    crowded.extend(nested.iter().cloned());
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        ("one loop", command(|_| {}, vec![(0, func(vec![(1, ValType::I32)], &spin(&[])))])),
        ("nested loops", command(|_| {}, vec![(0, func(vec![(1, ValType::I32)], &nested))])),
        ("nested loops after many checks", command(|_| {}, vec![(0, func(vec![(1, ValType::I32)], &crowded)), (1, func(vec![], &[]))])),
        ("sequential loops", command(|_| {}, vec![(0, func(vec![(1, ValType::I32)], &sequential))])),
        // No loop at all: a function that tail-calls itself.
        (
            "tail recursion",
            command(|_| {}, vec![(0, func(vec![], &[I::I32Const(0), I::ReturnCall(1)])), (1, func(vec![], &[I::LocalGet(0), I::ReturnCall(1)]))]),
        ),
        // A loop that calls a function on every iteration.
        ("loop with calls", command(|_| {}, vec![(0, func(vec![], &spin(&[I::I32Const(1), I::Call(1)]))), (1, func(vec![], &[]))])),
    ];
    let dir = scratch();
    for (shape, module) in shapes {
        let job = job(dir.path(), &module, "fuel = 1000000000000000000\ntimeout = 1").expect("job");
        for backend in RUNNABLE {
            // On a thread of its own, so that a watchdog that never fires
            // fails the test instead of hanging it.
            let (tx, rx) = std::sync::mpsc::channel();
            let run = job.clone();
            std::thread::spawn(move || tx.send(run_on(backend, &run).map(|o| o.termination)));
            match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(Err(RunError::Timeout(_))) => {}
                Ok(other) => panic!("{shape} on {backend}: expected a timeout, got {other:?}"),
                Err(_) => panic!("{shape} on {backend}: the watchdog did not stop the run within 30 s"),
            }
        }
    }
}

/// The guest's own `unreachable` is not mistaken for a failed check, with
/// fuel left or not, at depth 1 or deeper.
#[test]
fn a_guests_own_unreachable_is_not_a_check() {
    let dir = scratch();
    // `_start` calls f, which traps at once; f also calls itself, so it
    // takes a level of the depth counter: with `call_depth = 2` the
    // counter is 0 when f traps.
    let deep = command(|_| {}, vec![(0, func(vec![], &[I::I32Const(0), I::Call(1)])), (1, func(vec![], &[I::Unreachable, I::I32Const(0), I::Call(1)]))]);
    for limits in ["", "call_depth = 2", "fuel = 2"] {
        let o = run_everywhere(&job(dir.path(), &deep, limits).expect("job"));
        assert_eq!(o.termination, Termination::Trap(TrapKind::Unreachable), "limits {limits:?}");
    }
}
