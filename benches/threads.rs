//! Threaded jobs: what determinism costs against real OS threads.
//!
//! - `pipeline/*`: the threads guest's 3-stage channel pipeline
//!   (`fixtures/threads.wasm pipeline 20000`: a producer thread, a squaring
//!   thread, the main thread summing) under canon (one guest thread at a
//!   time on one host thread, switching by the job's seeded schedule) and
//!   under plain wasmtime with real OS threads: a small wasi-threads host
//!   here, as wasmtime 46's `wasmtime-wasi-threads` was (an OS thread per
//!   `thread-spawn`, each with its own store and instance of the module
//!   over one shared memory, wasmtime-wasi preview 1 for the rest, and
//!   `memory.atomic.wait` parking the OS thread). Both compile the module
//!   ahead of the measurement; both run it to the end, the plain host
//!   joining every thread it spawned.
//! - `ratio/pipeline`: the same two interleaved run by run, reported as
//!   canon ÷ plain in seconds (read 1.8 s as 1.8×).
//! - `switch/*`: `pingpong 100000` (two threads that `sched_yield` in turn)
//!   under canon's round-robin policy: 200 000 switches, so the time per
//!   iteration ÷ 200 000 is one switch — the guest's yield, the host call,
//!   the scheduler's decision and two fiber swaps. Beside it, the same
//!   module on OS threads, where a yield is a real `sched_yield` and the
//!   two threads run on two cores at once.
//!
//! Run: `cargo bench --bench threads`. Figures and the reading of them:
//! docs/THREADS.md, "What it costs".

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

mod common;
use common::ratio;
use wasmtime::{Config, Engine, ExternType, InstancePre, Linker, Module, SharedMemory, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use canon::job::Job;
use canon::sandbox::Sandbox;

fn load(spec: &str, args: &[&str]) -> Job {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs").join(spec);
    let mut job = Job::load(&path).expect("fixture job loads");
    job.args = args.iter().map(|a| a.to_string()).collect();
    job
}

/// Plain wasmtime running a `wasm32-wasip1-threads` module on OS threads.
struct OsThreads {
    engine: Engine,
    /// wasmtime-wasi preview 1, without the per-run imports.
    wasi: Linker<WasiP1Ctx>,
}

/// What one run's `thread-spawn` needs.
struct Run {
    engine: Engine,
    pre: OnceLock<InstancePre<WasiP1Ctx>>,
    argv: Vec<String>,
    next_tid: AtomicI32,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl OsThreads {
    fn new() -> OsThreads {
        let mut config = Config::new();
        config.wasm_threads(true).shared_memory(true);
        let engine = Engine::new(&config).expect("engine with threads");
        let mut wasi = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut wasi, |c| c).expect("link wasi");
        OsThreads { engine, wasi }
    }

    fn compile(&self, job: &Job) -> Module {
        Module::new(&self.engine, job.module.as_slice()).expect("compile")
    }

    /// Runs `module`'s `_start` with `args` and waits for every thread.
    fn run(&self, module: &Module, args: &[String]) {
        self.run_into(module, args, None);
    }

    /// [`OsThreads::run`], the main thread's stdout into `stdout` if given.
    fn run_into(&self, module: &Module, args: &[String], stdout: Option<MemoryOutputPipe>) {
        let memory_type = module
            .imports()
            .find_map(|i| match (i.module(), i.name(), i.ty()) {
                ("env", "memory", ExternType::Memory(m)) => Some(m),
                _ => None,
            })
            .expect("a threaded module imports env.memory");
        let memory = SharedMemory::new(&self.engine, memory_type).expect("shared memory");
        let mut argv = vec!["threads.wasm".to_string()];
        argv.extend(args.iter().cloned());
        let run = Arc::new(Run { engine: self.engine.clone(), pre: OnceLock::new(), argv, next_tid: AtomicI32::new(1), threads: Mutex::new(Vec::new()) });

        let mut linker = self.wasi.clone();
        let mut main_ctx = WasiCtxBuilder::new();
        main_ctx.args(&run.argv);
        if let Some(out) = stdout {
            main_ctx.stdout(out);
        }
        let store = Store::new(&self.engine, main_ctx.build_p1());
        linker.define(&store, "env", "memory", memory).expect("define memory");
        let spawner = run.clone();
        linker
            .func_wrap("wasi", "thread-spawn", move |start_arg: i32| -> i32 {
                let tid = spawner.next_tid.fetch_add(1, Ordering::Relaxed);
                let r = spawner.clone();
                let handle = std::thread::Builder::new()
                    .stack_size(8 << 20)
                    .spawn(move || {
                        let pre = r.pre.get().expect("set before _start");
                        let mut store = Store::new(&r.engine, ctx(&r.argv));
                        let instance = pre.instantiate(&mut store).expect("instantiate a thread");
                        let start = instance.get_typed_func::<(i32, i32), ()>(&mut store, "wasi_thread_start").expect("wasi_thread_start");
                        if let Err(e) = start.call(&mut store, (tid, start_arg)) {
                            let exit = e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|e| e.0);
                            assert_eq!(exit, Some(0), "a guest thread failed: {e:#}");
                        }
                    })
                    .expect("spawn an OS thread");
                spawner.threads.lock().expect("threads").push(handle);
                tid
            })
            .expect("define thread-spawn");
        let pre = linker.instantiate_pre(module).expect("link the module");
        assert!(run.pre.set(pre.clone()).is_ok());

        let mut store = store;
        let instance = pre.instantiate(&mut store).expect("instantiate");
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start").expect("_start");
        if let Err(e) = start.call(&mut store, ()) {
            let exit = e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|e| e.0);
            assert_eq!(exit, Some(0), "guest failed: {e:#}");
        }
        // Threads may spawn threads: join until none is left.
        loop {
            let Some(t) = run.threads.lock().expect("threads").pop() else { break };
            t.join().expect("a guest thread panicked the host");
        }
    }
}

fn ctx(argv: &[String]) -> WasiP1Ctx {
    WasiCtxBuilder::new().args(argv).build_p1()
}

fn threads(c: &mut Criterion) {
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let plain = OsThreads::new();

    let pipeline = load("threads-pipeline.toml", &["pipeline", "20000"]);
    sandbox.prepare(&pipeline.module, &pipeline.module_sha256).expect("compile");
    let module = plain.compile(&pipeline);
    // Both sides print the same sum, or the comparison is of nothing.
    let canon_out = sandbox.run(&pipeline).expect("canon run");
    assert_eq!(canon_out.summary().termination, canon::outcome::Termination::Exit(0));
    let plain_out = MemoryOutputPipe::new(1 << 20);
    plain.run_into(&module, &pipeline.args, Some(plain_out.clone()));
    assert_eq!(String::from_utf8_lossy(&plain_out.contents()), String::from_utf8_lossy(&canon_out.stdout), "canon and OS threads print the same");

    let mut group = c.benchmark_group("pipeline");
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    group.bench_function("20000/canon", |b| b.iter(|| sandbox.run(&pipeline).expect("run")));
    group.bench_function("20000/wasmtime-os-threads", |b| b.iter(|| plain.run(&module, &pipeline.args)));
    group.finish();

    let mut group = c.benchmark_group("ratio");
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(15));
    group.bench_function("pipeline/canon", |b| {
        b.iter_custom(|iters| ratio(iters, || drop(sandbox.run(&pipeline).expect("run")), || plain.run(&module, &pipeline.args)))
    });
    group.finish();

    let mut pingpong = load("threads-pipeline.toml", &["pingpong", "100000"]);
    pingpong.threads = Some(canon::job::Threads { policy: canon::job::Policy::RoundRobin, ..canon::job::Threads::default() });
    let mut group = c.benchmark_group("switch");
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(15));
    group.bench_function("pingpong-200000-switches/canon", |b| b.iter(|| sandbox.run(&pingpong).expect("run")));
    group.bench_function("pingpong-200000-yields/wasmtime-os-threads", |b| b.iter(|| plain.run(&module, &pingpong.args)));
    group.finish();
}

criterion_group!(benches, threads);
criterion_main!(benches);
