//! The Yosys example end to end (examples/yosys: a 69 MB module synthesising
//! a small counter), canon against plain wasmtime in the same run:
//!
//! - `yosys/instrument`: canon's load-time passes alone (fuel metering, call
//!   depth, NaN canonicalisation), part of canon's cold compile.
//! - `yosys/compile-cold/*`: compiling the module from its bytes — canon's
//!   sandbox with no cache, and the wasmtime crate's `Module::new` with its
//!   default configuration. A compile takes about a minute on a 2-core
//!   machine and criterion needs at least 10 samples, so these are timed
//!   once each (printed as `one-shot`); `CANON_BENCH_COLD_RUNS=N` repeats
//!   them N times and prints every figure.
//! - `yosys/load-warm/*`: a new sandbox loading the module from canon's disk
//!   cache, and `Module::deserialize_file` on `Module::serialize` output
//!   (the wasmtime CLI's precompiled `.cwasm` path).
//! - `yosys/run/*`: instantiating and running the job to completion with
//!   the module already loaded — canon's sandbox (fuel, epoch watchdog, NaN
//!   canonicalisation, its in-memory WASI host, the outcome digest), and
//!   wasmtime + wasmtime-wasi with the same directories preopened.
//!
//! The module is not committed: run `scripts/fetch-examples.sh` first; the
//! benchmark says so and does nothing without it.
//!
//! Run: `cargo bench --bench yosys`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use canon::job::Job;
use canon::sandbox::{CacheHit, Sandbox};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Plain wasmtime: default configuration (exceptions on), wasmtime-wasi
/// preview 1.
struct Plain {
    engine: Engine,
    linker: Linker<WasiP1Ctx>,
}

impl Plain {
    fn new() -> Plain {
        let engine = Engine::default();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).expect("link wasi");
        Plain { engine, linker }
    }

    /// Runs Yosys as docs/EXAMPLES.md's `wasmtime run` command does, writing /out
    /// and /tmp into fresh directories.
    fn run(&self, module: &Module, argv: &[String]) {
        let out = tempfile::tempdir().expect("out dir");
        let tmp = tempfile::tempdir().expect("tmp dir");
        let mut wasi = WasiCtxBuilder::new();
        wasi.args(argv);
        let dirs: [(&Path, &str); 4] = [
            (&root().join("target/examples/yosys/share"), "/share"),
            (&root().join("examples/yosys/design"), "/design"),
            (out.path(), "/out"),
            (tmp.path(), "/tmp"),
        ];
        for (host, guest) in dirs {
            wasi.preopened_dir(host, guest, FsPerms::ReadWrite).expect("preopen");
        }
        let mut store = Store::new(&self.engine, wasi.build_p1());
        let instance = self.linker.instantiate(&mut store, module).expect("instantiate");
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start").expect("_start");
        if let Err(e) = start.call(&mut store, ()) {
            let exit = e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|e| e.0);
            assert_eq!(exit, Some(0), "yosys failed: {e:#}");
        }
        assert!(out.path().join("counter.json").is_file(), "yosys wrote no netlist");
    }
}

/// Times `f` once per requested cold run and prints each figure.
fn one_shot(name: &str, mut f: impl FnMut()) {
    let runs: usize = std::env::var("CANON_BENCH_COLD_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let times: Vec<String> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            format!("{:.2} s", t.elapsed().as_secs_f64())
        })
        .collect();
    println!("{name:<40} one-shot: {}", times.join(", "));
}

fn yosys(c: &mut Criterion) {
    let spec = root().join("examples/yosys/job.toml");
    if !root().join("target/examples/yosys/yosys.wasm").is_file() {
        eprintln!("yosys bench skipped: target/examples/yosys/yosys.wasm is missing; run scripts/fetch-examples.sh");
        return;
    }
    let job = Job::load(&spec).expect("examples/yosys/job.toml loads");
    let plain = Plain::new();
    let mut argv = vec![job.argv0.clone()];
    argv.extend(job.args.iter().cloned());

    // Cold compiles: once each (see the module doc). First the part of
    // canon's that is not Cranelift: instrumenting the module.
    one_shot("yosys/instrument", || drop(canon::instrument::instrument(&job.module).expect("instrument")));
    one_shot("yosys/compile-cold/canon", || {
        let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
        sandbox.prepare(&job.module, &job.module_sha256).expect("compile");
    });
    let mut compiled = None;
    one_shot("yosys/compile-cold/wasmtime", || compiled = Some(Module::new(&plain.engine, job.module.as_slice()).expect("compile plain")));
    let compiled = compiled.expect("compiled once");

    let scratch = tempfile::tempdir().expect("scratch");
    let cache = scratch.path().join("canon-cache");
    let sandbox = Sandbox::builder().cache_dir(Some(cache.clone())).build().expect("sandbox");
    sandbox.prepare(&job.module, &job.module_sha256).expect("fill canon's cache");
    let cwasm = scratch.path().join("yosys.cwasm");
    std::fs::write(&cwasm, compiled.serialize().expect("serialize")).expect("write cwasm");

    let mut group = c.benchmark_group("yosys");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    group.bench_function("load-warm/canon", |b| {
        b.iter(|| {
            let s = Sandbox::builder().cache_dir(Some(cache.clone())).build().expect("sandbox");
            let (_, hit) = s.prepare(&job.module, &job.module_sha256).expect("load");
            assert_eq!(hit, CacheHit::Disk);
        })
    });
    group.bench_function("load-warm/wasmtime", |b| {
        b.iter(|| {
            // SAFETY: the file is `Module::serialize` output of this very
            // engine configuration, written above and not modified since.
            #[allow(unsafe_code)]
            let m = unsafe { Module::deserialize_file(&plain.engine, &cwasm) };
            m.expect("deserialize")
        })
    });
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("run/canon", |b| {
        b.iter(|| {
            let outcome = sandbox.run(&job).expect("run");
            assert_eq!(outcome.summary().termination, canon::outcome::Termination::Exit(0));
        })
    });
    group.bench_function("run/wasmtime", |b| b.iter(|| plain.run(&compiled, &argv)));
    group.finish();
}

criterion_group!(benches, yosys);
criterion_main!(benches);
