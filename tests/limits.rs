//! Limits are outcomes: fuel, memory, stdout/stderr and output caps each end
//! the run the same way on every run, with a named trap kind; the wall-clock
//! safety net yields no result at all.

use canon::job::Job;
use canon::outcome::{Outcome, Termination, TrapKind};
use canon::sandbox::{RunError, Sandbox};

use crate::util::{FOREVER, job_spec, scratch};

/// Writes a job spec for fixture module `module` with extra TOML `body`,
/// loads it, and runs it twice, checking both runs agree.
fn run_twice(module: &str, body: &str) -> (Job, Outcome) {
    let dir = scratch();
    let spec = job_spec(dir.path(), "limits.toml", module, body);
    let job = Job::load(&spec).unwrap_or_else(|e| panic!("job: {e}"));
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let a = sandbox.run(&job).expect("first run");
    let b = sandbox.run(&job).expect("second run");
    assert_eq!(a.summary().outcome_digest, b.summary().outcome_digest, "two runs of one job differ");
    (job, a)
}

#[test]
fn fuel_exhaustion_traps_at_the_budget() {
    let (job, o) = run_twice("sha256chain.wasm", "args = [\"100000000\"]\n[limits]\nfuel = 1000000");
    assert_eq!(o.termination, Termination::Trap(TrapKind::OutOfFuel));
    assert_eq!(o.fuel_consumed, job.limits.fuel);
}

#[test]
fn memory_growth_is_refused_at_the_limit() {
    let (_, o) = run_twice("probe.wasm", "args = [\"memgrow\"]\n[limits]\nmemory = 16777216");
    assert_eq!(o.termination, Termination::Exit(0), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("final_pages 256"), "16 MiB is 256 pages: {stdout}");
}

#[test]
fn initial_memory_over_the_limit_is_a_memory_limit_trap() {
    // The probe's initial memory is larger than one page.
    let (_, o) = run_twice("probe.wasm", "args = [\"hashmap\"]\n[limits]\nmemory = 65536");
    assert_eq!(o.termination, Termination::Trap(TrapKind::MemoryLimit));
}

#[test]
fn stdout_cap_is_a_trap() {
    let (_, o) = run_twice("hello.wasm", "[limits]\nstdout = 4");
    assert_eq!(o.termination, Termination::Trap(TrapKind::StdoutLimit));
    assert!(o.stdout.len() <= 4);
}

#[test]
fn output_file_cap_is_a_trap() {
    let (_, o) = run_twice("probe.wasm", "args = [\"manyfiles\", \"200\"]\n[limits]\noutput_files = 50");
    assert_eq!(o.termination, Termination::Trap(TrapKind::OutputLimit));
}

#[test]
fn output_byte_cap_is_a_trap() {
    let (_, o) = run_twice("probe.wasm", "args = [\"manyfiles\", \"200\"]\n[limits]\noutput_bytes = 100");
    assert_eq!(o.termination, Termination::Trap(TrapKind::OutputLimit));
}

#[test]
fn exit_codes_and_traps_are_outcomes() {
    let (_, o) = run_twice("probe.wasm", "args = [\"exit\", \"7\"]");
    assert_eq!(o.termination, Termination::Exit(7));
    let (_, o) = run_twice("probe.wasm", "args = [\"trap\"]");
    assert_eq!(o.termination, Termination::Trap(TrapKind::Unreachable));
}

#[test]
fn wall_clock_timeout_gives_no_result() {
    let dir = scratch();
    let spec = job_spec(dir.path(), "forever.toml", "sha256chain.wasm", FOREVER);
    let job = Job::load(&spec).expect("job");
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let started = std::time::Instant::now();
    match sandbox.run(&job) {
        Err(RunError::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the watchdog fired late");
}

/// A timeout too large for the clock to represent (`canon exec --timeout`
/// takes any u64) means no deadline, not one already past: the run
/// completes.
#[test]
fn an_unrepresentable_timeout_is_no_deadline() {
    let mut job = Job::load(&crate::util::fixture("jobs/hello.toml")).expect("hello");
    job.timeout = std::time::Duration::MAX;
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let o = sandbox.run(&job).expect("a result");
    assert_eq!(o.termination, Termination::Exit(0));
}

/// A run stopped through its `Cancel` handle ends at once with no result,
/// whether cancelled while it runs or before it starts, and a handle that
/// is never cancelled changes nothing.
#[test]
fn a_cancelled_run_stops_with_no_result_and_an_uncancelled_one_is_unchanged() {
    use canon::sandbox::{Cancel, RunOptions};
    let dir = scratch();
    // Would run for days; the job's own safety timeout is an hour.
    let spec = job_spec(dir.path(), "forever.toml", "sha256chain.wasm", &FOREVER.replace("timeout = 1", "timeout = 3600"));
    let job = Job::load(&spec).expect("job");
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let cancel = Cancel::new();
    let stopper = cancel.clone();
    let started = std::time::Instant::now();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        stopper.cancel();
    });
    let r = sandbox.run_with(&job, RunOptions { cancel: Some(cancel), ..RunOptions::default() });
    t.join().expect("join");
    assert!(matches!(r, Err(RunError::Cancelled)), "{r:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "cancel did not stop the run");

    let early = Cancel::new();
    early.cancel();
    assert!(matches!(sandbox.run_with(&job, RunOptions { cancel: Some(early), ..RunOptions::default() }), Err(RunError::Cancelled)));

    let hello = Job::load(&crate::util::fixture("jobs/hello.toml")).expect("hello");
    let plain = sandbox.run(&hello).expect("run");
    let with_handle = sandbox.run_with(&hello, RunOptions { cancel: Some(Cancel::new()), ..RunOptions::default() }).expect("run");
    assert_eq!(plain.summary().outcome_digest, with_handle.summary().outcome_digest);
}

/// A stdio tap sees exactly the bytes the outcome captures, in order, and
/// the outcome is the same with and without it.
#[test]
fn a_stdio_tap_sees_the_captured_bytes_and_changes_nothing() {
    use canon::sandbox::{RunOptions, StdioTap};
    use std::sync::{Arc, Mutex};
    let job = Job::load(&crate::util::fixture("jobs/mixed.toml")).expect("job");
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let seen: Arc<Mutex<(Vec<u8>, Vec<u8>)>> = Arc::default();
    let s = seen.clone();
    let tap = StdioTap(Arc::new(move |stream: u32, bytes: &[u8]| {
        let mut g = s.lock().expect("lock");
        if stream == 1 { g.0.extend_from_slice(bytes) } else { g.1.extend_from_slice(bytes) }
    }));
    let tapped = sandbox.run_with(&job, RunOptions { tap: Some(tap), ..RunOptions::default() }).expect("run");
    let plain = sandbox.run(&job).expect("run");
    assert_eq!(tapped.summary().outcome_digest, plain.summary().outcome_digest);
    let g = seen.lock().expect("lock");
    assert!(!tapped.stdout.is_empty());
    assert_eq!((&g.0, &g.1), (&tapped.stdout, &tapped.stderr));
}

/// A thread made by `sandbox::guest_thread` runs guests in place, with no
/// thread of their own: the deepest recursion a job may ask for, a threaded
/// job and a plain one end exactly as they do on a thread of their own.
#[test]
fn a_guest_thread_runs_guests_in_place_with_the_same_outcomes() {
    use std::sync::Arc;
    let sandbox = Arc::new(Sandbox::builder().cache_dir(None).build().expect("sandbox"));
    let mut deep = Job::load(&crate::util::fixture("jobs/hostile-stackbomb.toml")).expect("stackbomb");
    deep.limits.call_depth = canon::job::MAX_CALL_DEPTH;
    let jobs = vec![
        deep,
        Job::load(&crate::util::fixture("jobs/threads-pipeline.toml")).expect("pipeline"),
        Job::load(&crate::util::fixture("jobs/hello.toml")).expect("hello"),
    ];
    let spawned: Vec<String> = jobs.iter().map(|j| sandbox.run(j).expect("run").summary().outcome_digest.to_string()).collect();
    let (sb, js) = (sandbox.clone(), jobs.clone());
    let in_place: Vec<String> =
        canon::sandbox::guest_thread("test", move || js.iter().map(|j| sb.run(j).expect("run").summary().outcome_digest.to_string()).collect())
            .expect("guest thread")
            .join()
            .expect("no panic");
    assert_eq!(spawned, in_place);
    // The recursion runs until the guest's own stack in its linear memory
    // is gone, deeper than any native stack margin would allow by luck.
    let o = sandbox.run(&jobs[0]).expect("run");
    assert_eq!(o.termination, Termination::Trap(TrapKind::MemoryOutOfBounds));
}
