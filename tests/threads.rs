//! Deterministic threads (docs/THREADS.md): the threaded guest
//! (`guest/threads`, built for wasm32-wasip1-threads) under canon's
//! scheduler. Each job gives one outcome run after run and on both
//! Cranelift backends; the racy counter is one count per seed and several
//! over many seeds; the mutex counter is always exact; a deadlock is a
//! trap; thread bombs and spinners end at the job's limits; Pulley refuses.

use std::collections::BTreeSet;

use canon::job::{Job, Policy, Threads};
use canon::outcome::{Outcome, Termination, TrapKind};
use canon::sandbox::engine::{HOST_THREAD_STACK, PULLEY_NO_THREADS};
use canon::sandbox::{Backend, Sandbox};

use crate::util::{fixture, job_spec, scratch};

/// The threaded fixture jobs.
const JOBS: [&str; 7] =
    ["threads-racy", "threads-mutex", "threads-pipeline", "threads-deadlock", "threads-condvar", "hostile-thread-bomb", "hostile-thread-spin"];

fn load(name: &str) -> Job {
    Job::load(&fixture(&format!("jobs/{name}.toml"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn sandbox(backend: Backend) -> Sandbox {
    Sandbox::builder().cache_dir(None).backend(backend).build().expect("sandbox")
}

/// Runs `f` on a thread with the stack canon gives guest threads.
fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(HOST_THREAD_STACK).spawn(f).expect("spawn").join().expect("join")
}

fn run(sandbox: &Sandbox, job: &Job) -> Outcome {
    sandbox.run(job).unwrap_or_else(|e| panic!("{}: {e}", job.name))
}

fn stdout(o: &Outcome) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn with_seed(job: &Job, seed: u64, policy: Policy) -> Job {
    let mut job = job.clone();
    let t = job.threads.expect("a threaded job");
    job.threads = Some(Threads { seed: Some(seed), policy, ..t });
    job
}

#[test]
fn threaded_jobs_are_threaded_and_others_are_not() {
    for name in JOBS {
        assert!(load(name).threads.is_some(), "{name}");
    }
    assert!(load("hello").threads.is_none());
}

#[test]
fn every_threaded_job_gives_one_outcome_in_twenty_runs_on_both_cranelifts() {
    on_big_stack(|| {
        let native = sandbox(Backend::Cranelift);
        let baseline = sandbox(Backend::CraneliftBaseline);
        for name in JOBS {
            let job = load(name);
            let want = run(&native, &job).summary().outcome_digest;
            for i in 0..20 {
                let s = if i % 2 == 0 { &native } else { &baseline };
                assert_eq!(run(s, &job).summary().outcome_digest, want, "{name}: run {i} on {}", s.backend());
            }
        }
    });
}

#[test]
fn threaded_guests_print_what_they_compute() {
    on_big_stack(|| {
        let s = sandbox(Backend::Cranelift);
        let mutex = run(&s, &load("threads-mutex"));
        assert_eq!((mutex.termination, stdout(&mutex).as_str()), (Termination::Exit(0), "mutex counter 8000 of 8000\n"));
        // Σ (i² + 1) for i < 2000.
        let pipeline = run(&s, &load("threads-pipeline"));
        assert_eq!((pipeline.termination, stdout(&pipeline).as_str()), (Termination::Exit(0), "pipeline 2000 items, sum 2664669000\n"));
        let condvar = run(&s, &load("threads-condvar"));
        assert_eq!(condvar.termination, Termination::Exit(0), "{}", stdout(&condvar));
        assert_eq!(
            stdout(&condvar),
            "wait_timeout with nobody to notify: timed out true\nlogical time passed at least 250 ms: true\nwait_timeout with a notifier: ready true, timed out false\n"
        );
        let racy = run(&s, &load("threads-racy"));
        assert_eq!(racy.termination, Termination::Exit(0));
        assert!(stdout(&racy).starts_with("racy counter ") && stdout(&racy).ends_with(" of 8000\n"), "{}", stdout(&racy));
    });
}

#[test]
fn the_racy_counter_is_one_count_per_seed_and_several_over_fifty_seeds() {
    on_big_stack(|| {
        let s = sandbox(Backend::Cranelift);
        let job = load("threads-racy");
        let mut counts = BTreeSet::new();
        for seed in 0..50 {
            let j = with_seed(&job, seed, Policy::Random);
            let (a, b) = (run(&s, &j), run(&s, &j));
            assert_eq!(a.summary().outcome_digest, b.summary().outcome_digest, "seed {seed}");
            counts.insert(stdout(&a));
        }
        assert!(counts.len() > 1, "50 seeds, one count: the scheduler does not interleave ({counts:?})");
    });
}

#[test]
fn the_mutex_counter_is_exact_under_every_policy() {
    on_big_stack(|| {
        let s = sandbox(Backend::Cranelift);
        let job = load("threads-mutex");
        for policy in [Policy::Random, Policy::RoundRobin, Policy::Pct { depth: 3 }] {
            for seed in 0..8 {
                let o = run(&s, &with_seed(&job, seed, policy));
                assert_eq!(stdout(&o), "mutex counter 8000 of 8000\n", "{policy} seed {seed}");
            }
        }
    });
}

#[test]
fn the_deadlock_guest_ends_with_the_deadlock_trap_under_every_policy() {
    on_big_stack(|| {
        let s = sandbox(Backend::Cranelift);
        let job = load("threads-deadlock");
        for policy in [Policy::Random, Policy::RoundRobin, Policy::Pct { depth: 3 }] {
            for seed in 0..8 {
                let o = run(&s, &with_seed(&job, seed, policy));
                assert_eq!(o.termination, Termination::Trap(TrapKind::Deadlock), "{policy} seed {seed}: {}", stdout(&o));
                assert!(o.fuel_consumed < job.limits.fuel, "within its fuel budget");
                assert!(stdout(&o).contains("each now takes the other's"));
            }
        }
    });
}

#[test]
fn a_thread_bomb_stops_at_the_thread_limit() {
    on_big_stack(|| {
        let s = sandbox(Backend::Cranelift);
        let job = load("hostile-thread-bomb");
        // The default limit, 32, the main thread included.
        let o = run(&s, &job);
        assert_eq!(o.termination, Termination::Exit(3), "{}", stdout(&o));
        assert!(stdout(&o).starts_with("spawned 31 threads, then: "), "{}", stdout(&o));
        let mut four = job.clone();
        four.threads = Some(Threads { max_threads: 4, ..job.threads.expect("threaded") });
        let o = run(&s, &four);
        assert_eq!(o.termination, Termination::Exit(3), "{}", stdout(&o));
        assert!(stdout(&o).starts_with("spawned 3 threads, then: "), "{}", stdout(&o));
    });
}

#[test]
fn a_thread_that_spins_forever_while_others_wait_ends_by_fuel() {
    on_big_stack(|| {
        let s = sandbox(Backend::Cranelift);
        let job = load("hostile-thread-spin");
        let o = run(&s, &job);
        assert_eq!(o.termination, Termination::Trap(TrapKind::OutOfFuel));
        assert_eq!(o.fuel_consumed, job.limits.fuel);
    });
}

#[test]
fn the_watchdog_stops_a_threaded_job_with_no_result() {
    on_big_stack(|| {
        let s = sandbox(Backend::Cranelift);
        let mut job = load("hostile-thread-spin");
        job.limits.fuel = 1 << 50;
        job.timeout = std::time::Duration::from_secs(1);
        let e = s.run(&job).expect_err("a timeout has no result");
        assert!(matches!(e, canon::sandbox::RunError::Timeout(_)), "{e}");
    });
}

#[test]
fn pulley_refuses_threaded_jobs_with_a_clear_error() {
    let s = sandbox(Backend::Pulley);
    let e = s.run(&load("threads-mutex")).expect_err("pulley cannot run threads");
    assert!(e.to_string().contains(PULLEY_NO_THREADS), "{e}");
}

#[test]
fn thread_settings_are_checked_and_refused_for_unthreaded_modules() {
    let dir = scratch();
    let threads_wasm = "threads.wasm";
    let hello = "hello.wasm";
    let cases = [
        (hello, "[threads]\npolicy = \"random\"\n", "threads"),
        (hello, "[limits]\nthreads = 4\n", "threads"),
        (threads_wasm, "[threads]\npolicy = \"fifo\"\n", "threads.policy"),
        (threads_wasm, "[threads]\nslice = 1\n", "threads.slice"),
        (threads_wasm, "[threads]\npolicy = \"pct\"\ndepth = 0\n", "threads.depth"),
        (threads_wasm, "[threads]\ndepth = 2\n", "threads.depth"),
        (threads_wasm, "[limits]\nthreads = 0\n", "limits.threads"),
        (threads_wasm, "[limits]\nthreads = 100000\n", "limits.threads"),
    ];
    for (i, (module, body, field)) in cases.into_iter().enumerate() {
        let spec = job_spec(dir.path(), &format!("j{i}.toml"), module, body);
        let e = Job::load(&spec).expect_err(body).to_string();
        assert!(e.contains(field), "{body:?}: {e}");
    }
    let spec = job_spec(dir.path(), "ok.toml", "threads.wasm", "[threads]\npolicy = \"pct\"\ndepth = 5\nseed = 9\nslice = 777\n[limits]\nthreads = 7\n");
    let t = Job::load(&spec).expect("valid").threads.expect("threaded");
    assert_eq!(t, Threads { policy: Policy::Pct { depth: 5 }, seed: Some(9), slice: 777, max_threads: 7 });
}

/// The schedule is the job's: another seed or slice is another job, and
/// (for the racy counter) may be another outcome; the same settings spelled
/// in a spec or defaulted give the same digest.
#[test]
fn scheduler_settings_are_in_the_job_digest() {
    let job = load("threads-racy");
    let t = job.threads.expect("threaded");
    assert_eq!(t, Threads::default());
    let mut other = job.clone();
    other.threads = Some(Threads { slice: t.slice + 1, ..t });
    assert_ne!(job.digest(), other.digest());
    assert_ne!(job.digest(), with_seed(&job, 1, Policy::Random).digest());
}

#[test]
fn explore_finds_the_race_and_says_how_to_reproduce_it() {
    let explore = |job: &str, n: &str| {
        std::process::Command::new(crate::util::canon_bin())
            .args(["explore", "--schedules", n])
            .arg(fixture(&format!("jobs/{job}.toml")))
            .env("CANON_CACHE_DIR", scratch().path())
            .output()
            .expect("spawn canon explore")
    };
    let racy = explore("threads-racy", "12");
    let text = String::from_utf8_lossy(&racy.stdout);
    assert_eq!(racy.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&racy.stderr));
    assert!(text.contains("12 schedules, policy pct (depth 3)") && text.matches("\nresult ").count() >= 2, "{text}");
    assert!(text.contains("seed = <its first seed>"), "{text}");
    let mutex = explore("threads-mutex", "6");
    let text = String::from_utf8_lossy(&mutex.stdout);
    assert_eq!(mutex.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&mutex.stderr));
    assert!(text.contains("1 distinct result\n"), "{text}");
    let plain = explore("hello", "2");
    assert_eq!(plain.status.code(), Some(125), "{}", String::from_utf8_lossy(&plain.stderr));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("not a threaded job"));
}

#[test]
fn a_recorded_trace_replays_exactly_and_a_tampered_one_departs_where_it_was_changed() {
    use canon::sandbox::threads::trace::{Reason, Trace};
    let dir = scratch();
    let cache = dir.path().join("cache");
    let canon = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(crate::util::canon_bin()).args(args).env("CANON_CACHE_DIR", &cache).output().expect("spawn canon")
    };
    let job = fixture("jobs/threads-pipeline.toml");
    let path = dir.path().join("pipeline.trace");
    let run = canon(&["run".as_ref(), "--json".as_ref(), "--trace".as_ref(), path.as_os_str(), job.as_os_str()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    let trace = Trace::decode(&std::fs::read(&path).expect("trace")).expect("a valid trace");
    assert_eq!(trace.job, load("threads-pipeline").digest());
    assert!(trace.steps.len() > 20, "{} steps", trace.steps.len());
    assert_eq!(trace.steps[0].reason, Reason::Start);

    let replay = |t: &Trace| {
        let p = dir.path().join("t.trace");
        std::fs::write(&p, t.encode()).expect("write");
        canon(&["replay".as_ref(), job.as_os_str(), p.as_os_str()])
    };
    let same = replay(&trace);
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(same.status.success(), "{text}{}", String::from_utf8_lossy(&same.stderr));
    assert!(text.contains(report["outcome_digest"].as_str().expect("digest")), "{text}");

    let mut bad_thread = trace.clone();
    bad_thread.steps[10].thread = 99;
    let out = replay(&bad_thread);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("departs from the trace at step 10: the trace runs thread 99 next"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mut bad_reason = trace.clone();
    let k = 15;
    bad_reason.steps[k].reason = if bad_reason.steps[k].reason == Reason::Yield { Reason::Spawn } else { Reason::Yield };
    let out = replay(&bad_reason);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("at step {k}:")), "{}", String::from_utf8_lossy(&out.stdout));

    let mut short = trace.clone();
    short.steps.truncate(5);
    let out = replay(&short);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("at step 5: the trace ends after 5 steps"), "{}", String::from_utf8_lossy(&out.stdout));

    let other = canon(&["replay".as_ref(), fixture("jobs/threads-mutex.toml").as_os_str(), path.as_os_str()]);
    assert_eq!(other.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&other.stderr).contains("a trace of job"), "{}", String::from_utf8_lossy(&other.stderr));
}

/// Through the real binary, 4 runs under each of the determinism suite's
/// host perturbations (plus a cold and a warm cache): 24 runs of every
/// threaded job, one outcome digest, the in-process one.
#[test]
fn threaded_jobs_agree_over_twenty_four_runs_under_perturbed_hosts() {
    use crate::util::{Perturbation, canon_bin, host_perturbations};
    let (cache, home, cwd) = (scratch(), scratch(), scratch());
    let mut perturbations = vec![Perturbation::none("cold cache"), Perturbation::none("warm cache")];
    perturbations.extend(host_perturbations(home.path(), cwd.path()));
    for name in JOBS {
        let spec = fixture(&format!("jobs/{name}.toml")).canonicalize().expect("absolute spec");
        let job = load(name);
        let want = on_big_stack({
            let job = job.clone();
            move || run(&sandbox(Backend::Cranelift), &job).summary().outcome_digest.to_string()
        });
        let mut runs = 0;
        for p in &perturbations {
            for _ in 0..4 {
                let mut cmd = std::process::Command::new(canon_bin());
                cmd.arg("run").arg("--json").arg(&spec).env("CANON_CACHE_DIR", cache.path());
                let out = p.output(&mut cmd);
                assert!(matches!(out.status.code(), Some(0 | 1)), "{name} under {}: {}", p.name, String::from_utf8_lossy(&out.stderr));
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
                assert_eq!(v["outcome_digest"].as_str(), Some(want.as_str()), "{name} under {}", p.name);
                runs += 1;
            }
        }
        assert!(runs >= 20);
    }
}
