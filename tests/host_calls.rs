//! The WASI host under hostile arguments, and what its calls cost.
//!
//! Each program is a `canon::fuzzing::wasi::Program`: a list of WASI calls
//! with literal arguments whose errnos the program prints. The regressions
//! here are the sizes and offsets that made the host panic (or, in a
//! release build, wrap into a different outcome); the cost tests pin the
//! fuel table of docs/FUEL.md and check that fuel bounds a job's wall time
//! whatever host calls it makes.

use canon::fuzzing::wasi::{Call, MEMORY_BYTES, Program, SCRATCH_LEN, at, cost_probes, measure};
use canon::job::Job;
use canon::outcome::{Outcome, Termination, TrapKind};
use canon::sandbox::differential::DiffJob;
use canon::sandbox::wasi::cost;
use canon::sandbox::{Backend, Sandbox};

const EBADF: i32 = 8;
const EFBIG: i32 = 22;
const EINVAL: i32 = 28;
const EFAULT: i32 = 21;
const ENAMETOOLONG: i32 = 37;

/// Preopens of a job with no inputs: /out is 3, /tmp is 4, so the first
/// file a program opens is 5.
const OUT: i64 = 3;
const FIRST_FD: i64 = 5;

/// `path_open(/out, "new", O_CREAT, read|write)` with the new fd at `at::OUT`.
fn create_new() -> Call {
    let new = 32 * 7; // PATHS[7] == "new"
    Call::new("path_open", &[OUT, 0, new, 3, 1, (1 << 1) | (1 << 6), 0, 0, i64::from(at::OUT)])
}

fn job(program: &Program, inputs: bool) -> Job {
    let module = program.encode().expect("a valid program");
    DiffJob { inputs, ..DiffJob::default() }.to_job(&module)
}

fn run(program: &Program) -> Outcome {
    Sandbox::builder().cache_dir(None).build().expect("sandbox").run(&job(program, false)).expect("an outcome")
}

/// The errno each call returned, from the program's report.
fn errnos(o: &Outcome, calls: usize) -> Vec<i32> {
    assert_eq!(o.termination, Termination::Exit(0), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let report = &o.stdout[o.stdout.len() - 4 * calls..];
    assert_eq!(o.stdout.len(), (SCRATCH_LEN as usize) + 4 * calls, "the report is scratch then errnos");
    report.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Regression: `fd_filestat_set_size(fd, -1)` on a file in /out made the
/// host panic (a capacity overflow resizing the file), so the run had no
/// result. A size past `off_t` is EINVAL, as Linux's ftruncate answers a
/// negative length; sizes within it that pass the output cap trap
/// `output_limit`.
#[test]
fn a_file_size_past_off_t_is_einval_not_a_panic() {
    for size in [-1, i64::MIN, i64::MIN + 1] {
        let p = Program { calls: vec![create_new(), Call::new("fd_filestat_set_size", &[FIRST_FD, size])], patches: vec![], forever: false };
        assert_eq!(errnos(&run(&p), 2), [0, EINVAL], "size {size}");
    }
    for size in [i64::MAX, 1 << 40] {
        let p = Program { calls: vec![create_new(), Call::new("fd_filestat_set_size", &[FIRST_FD, size])], patches: vec![], forever: false };
        assert_eq!(run(&p).termination, Termination::Trap(TrapKind::OutputLimit), "size {size}");
    }
}

/// The same arithmetic through `fd_allocate`, `fd_pwrite` at a huge
/// offset, and `fd_seek(INT64_MAX)` followed by `fd_write`: each an errno
/// (EINVAL for an offset or length past `off_t`, EFBIG for an end past it),
/// never a panic and never a wrap.
#[test]
fn offsets_and_lengths_past_off_t_are_errnos_on_every_path() {
    let iov = i64::from(at::IOVECS);
    let out = i64::from(at::OUT) + 8;
    let calls = vec![
        create_new(),
        Call::new("fd_allocate", &[FIRST_FD, 0, -1]),
        Call::new("fd_allocate", &[FIRST_FD, -1, 1]),
        Call::new("fd_allocate", &[FIRST_FD, i64::MAX, 1]),
        Call::new("fd_allocate", &[FIRST_FD, 1 << 62, 1 << 62]),
        Call::new("fd_allocate", &[FIRST_FD, 0, 0]),
        Call::new("fd_pwrite", &[FIRST_FD, iov, 1, -1, out]),
        Call::new("fd_pwrite", &[FIRST_FD, iov, 1, i64::MAX, out]),
        Call::new("fd_pwrite", &[FIRST_FD, iov, 1, i64::MAX - 63, out]),
        Call::new("fd_pread", &[FIRST_FD, iov, 1, -1, out]),
        Call::new("fd_seek", &[FIRST_FD, i64::MAX, 0, out]),
        Call::new("fd_write", &[FIRST_FD, iov, 1, out]),
        Call::new("fd_seek", &[FIRST_FD, 1, 1, out]),
        Call::new("fd_seek", &[FIRST_FD, i64::MIN, 0, out]),
        // More iovecs than Linux's IOV_MAX, and an array that ends past
        // the memory (and past 2^32).
        Call::new("fd_write", &[1, iov, 1025, out]),
        Call::new("fd_write", &[1, i64::from(MEMORY_BYTES) - 4, 1, out]),
        Call::new("fd_write", &[1, -4, 1, out]),
        Call::new("fd_fdstat_get", &[1, -1]),
        Call::new("fd_filestat_get", &[1, -8]),
        Call::new("fd_prestat_get", &[OUT, -4]),
        Call::new("poll_oneoff", &[i64::from(at::SUBSCRIPTIONS), -16, 1, out]),
        Call::new("args_get", &[-4, 0]),
        Call::new("fd_close", &[-1]),
        // A path length past PATH_MAX is refused before it is read.
        Call::new("path_filestat_get", &[OUT, 0, 0, (1 << 31) - 1, i64::from(at::OUT)]),
    ];
    let want = [
        0, EINVAL, EINVAL, EFBIG, EFBIG, EINVAL, EINVAL, EFBIG, EFBIG, EINVAL, 0, EFBIG, EINVAL, EINVAL, EINVAL, EFAULT, EFAULT, EFAULT, EFAULT, EFAULT,
        EFAULT, EFAULT, EBADF, EFAULT,
    ];
    let n = calls.len();
    let got = errnos(&run(&Program { calls, patches: vec![], forever: false }), n);
    assert_eq!(got, want);
    // Within the memory, a path past PATH_MAX is ENAMETOOLONG.
    let p = Program { calls: vec![Call::new("path_filestat_get", &[OUT, 0, 0, 5000, i64::from(at::OUT)])], patches: vec![], forever: false };
    assert_eq!(errnos(&run(&p), 1), [ENAMETOOLONG]);
}

/// The fuel a program uses, run to its end.
fn fuel(calls: Vec<Call>) -> u64 {
    let o = run(&Program { calls, patches: vec![], forever: false });
    assert_eq!(o.termination, Termination::Exit(0));
    o.fuel_consumed
}

/// The cost table of docs/FUEL.md, pinned: a call costs `cost::CALL` plus
/// what it moves. Each difference below is between two programs that differ
/// only in one argument, so it is the host's charge alone.
#[test]
fn host_calls_charge_the_cost_table() {
    let buf = i64::from(at::BUFFER);
    assert_eq!(fuel(vec![Call::new("random_get", &[buf, 256])]) - fuel(vec![Call::new("random_get", &[buf, 0])]), cost::random(256));
    assert_eq!(cost::random(256), 512);
    // The same call made twice costs its figure twice, the CALL part too.
    let once = fuel(vec![Call::new("sched_yield", &[])]);
    let twice = fuel(vec![Call::new("sched_yield", &[]), Call::new("sched_yield", &[])]);
    assert_eq!(twice - once, cost::CALL + 3, "CALL plus the call's three instructions (store address, call, store)");
    // Writing 256 bytes of stdout through one iovec, against 64.
    let iov = i64::from(at::IOVECS);
    let out = i64::from(at::OUT);
    let big = fuel(vec![Call::new("fd_write", &[1, iov + 32, 1, out])]); // the 256-byte iovec
    let small = fuel(vec![Call::new("fd_write", &[1, iov, 1, out])]); // 64 bytes
    assert_eq!(big - small, cost::bytes(256) - cost::bytes(64));
    // A path is charged its bytes and a step per component resolved: in
    // /in (fd 3 of a job with inputs), "f" is one step, "d/e" two, and
    // "d/../d/e", patched over "f/" (`PATHS[10]`), four.
    let inputs = |calls: Vec<Call>, patches: Vec<(u32, Vec<u8>)>| {
        let o = Sandbox::builder().cache_dir(None).build().expect("sandbox").run(&job(&Program { calls, patches, forever: false }, true)).expect("run");
        assert_eq!(errnos(&o, 1), [0]);
        o.fuel_consumed
    };
    let stat = |path: i64, len: i64| vec![Call::new("path_filestat_get", &[3, 0, path, len, out])];
    let f = inputs(stat(0, 1), vec![]);
    let de = inputs(stat(32 * 2, 3), vec![]);
    let climbing = inputs(stat(32 * 10, 8), vec![(32 * 10, b"d/../d/e".to_vec())]);
    assert_eq!(de - f, cost::steps(1) + cost::path(3) - cost::path(1));
    assert_eq!(climbing - f, cost::steps(3) + cost::path(8) - cost::path(1));
}

/// Fuel bounds wall time whatever host calls a job makes: for every WASI
/// function, an endless loop of it with the arguments that make it do the
/// most work (`canon::fuzzing::wasi::cost_probes`) takes at most `BOUND`
/// times as long per unit of fuel as an endless loop of the plainest call
/// (`sched_yield`, which costs `cost::CALL` and does nothing), measured in
/// the same run. Before host calls were charged for their work, `random_get`
/// of 64 KiB cost what `sched_yield` costs, a thousand times the bound.
/// This runs in the tests' build, where canon's own code is unoptimised and
/// some host work is slower than on a node by more than other work: the
/// bound is loose, and catches work that fuel does not pay for at all. The
/// release build's figures, against plain compute, are what
/// `examples/host_costs.rs` checks and docs/FUEL.md quotes.
#[test]
fn wall_time_per_unit_of_fuel_is_bounded_for_every_wasi_function() {
    const BOUND: f64 = 25.0;
    const FUEL: u64 = 20_000_000;
    let sandbox = Sandbox::builder().cache_dir(None).backend(Backend::Cranelift).build().expect("sandbox");
    let plain = measure(&sandbox, &Program { calls: vec![Call::new("sched_yield", &[])], patches: vec![], forever: true }, FUEL).expect("sched_yield");
    let mut report = Vec::new();
    let mut over = Vec::new();
    for (name, program) in cost_probes() {
        let r = measure(&sandbox, &program, FUEL).unwrap_or_else(|e| panic!("{name}: {e}")) / plain;
        report.push(format!("{name}: {r:.2}x"));
        if r > BOUND {
            over.push(name);
        }
    }
    eprintln!("wall time per unit of fuel against sched_yield ({plain:.3} ns):\n  {}", report.join("\n  "));
    assert!(over.is_empty(), "past {BOUND}x sched_yield per unit of fuel: {over:?}\n{}", report.join("\n"));
    // Every function but proc_exit is probed.
    let probed: std::collections::BTreeSet<&str> = cost_probes().iter().map(|(n, _)| n.split(' ').next().unwrap_or(n)).collect();
    let all: std::collections::BTreeSet<&str> = canon::sandbox::abi::WASI_FUNCTIONS.iter().map(|s| s.0).filter(|n| *n != "proc_exit").collect();
    assert_eq!(probed, all);
}

/// The generated programs' prelude opens what the generator's small
/// descriptor numbers are meant to name (7, 8 and 9), so the fuzzer's calls
/// reach open files and directories rather than EBADF.
#[test]
fn the_fuzzers_prelude_opens_files_at_the_descriptors_it_draws() {
    let mut calls = Program::prelude();
    calls.push(Call::new("fd_fdstat_get", &[7, i64::from(at::OUT)]));
    calls.push(Call::new("fd_fdstat_get", &[8, i64::from(at::OUT) + 24]));
    calls.push(Call::new("fd_fdstat_get", &[9, i64::from(at::OUT) + 48]));
    let o = Sandbox::builder().cache_dir(None).build().expect("sandbox").run(&job(&Program { calls, patches: vec![], forever: false }, true)).expect("run");
    assert_eq!(errnos(&o, 6), [0; 6]);
    let filetype = |k: usize| o.stdout[at::OUT as usize + 24 * k];
    assert_eq!([filetype(0), filetype(1), filetype(2)], [4, 4, 3], "regular file, regular file, directory");
}
