//! A load benchmark of the pool on loopback, beside its in-process
//! baseline measured in the same run (docs/PERFORMANCE.md, "The pool under
//! load").
//!
//!     cargo build --release --bin canon --example pool_load
//!     target/release/examples/pool_load                  # 10 000 jobs
//!     POOL_LOAD_JOBS=100000 target/release/examples/pool_load
//!
//! It starts a release `canon serve` (a fresh data directory, one tenant,
//! `replicas = 3`, a policy trusting the four workers with weight 1 each)
//! and four `canon worker` processes, then submits `POOL_LOAD_JOBS` jobs
//! through the library client from several submitter threads. Every job is
//! `fixtures/jobs/hello.toml` with its second argument replaced by the
//! job's number, so each has its own job digest and stdout (no two jobs
//! share a result) while all share one module. At most
//! `POOL_LOAD_WINDOW` jobs are unfinished at once (a closed loop): the
//! latency it reports is what a client sees with that many jobs in flight,
//! not the depth of a queue filled as fast as the submitters can.
//!
//! One thread follows the tenant's event stream (`GET /v1/events`); a job
//! counts when its `job.succeeded` event arrives, and its latency is from
//! just before its submit request to that moment. After the last job it
//! reads the coordinator's resident memory (`VmRSS` and `VmHWM` of
//! /proc/PID/status), checks a sample of jobs for an `accepted` verdict,
//! and stops the pool.
//!
//! The baseline, with the pool stopped: the same jobs in this process, as
//! `canon run --nodes 3` does each (three node keys, each run in a sandbox
//! and signed, then the three receipts tallied under a policy of those
//! three nodes), but with the three sandboxes built once and reused, and
//! jobs run on a rayon pool with one thread per core — the most this
//! machine does of the same work without the pool's processes and HTTP.
//!
//! Environment (defaults in brackets): `POOL_LOAD_JOBS` [10000],
//! `POOL_LOAD_BASELINE_JOBS` [3000], `POOL_LOAD_WORKERS` [4],
//! `POOL_LOAD_CONCURRENCY` (each worker's `--concurrency`) [4],
//! `POOL_LOAD_SUBMITTERS` [4], `POOL_LOAD_WINDOW` [64], `POOL_LOAD_CANON`
//! (the `canon` binary) [`target/release/canon` beside this example],
//! `POOL_LOAD_KEEP` (keep the data directory and logs, and print where).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use canon::job::Job;
use canon::node::NodeKey;
use canon::pool::api::{GroupMode, JobState, SubmitRequest};
use canon::pool::bundle::Bundle;
use canon::pool::client::{Auth, Client};
use canon::quorum::policy::TrustedNode;
use canon::quorum::{Policy, TallyOptions, Verdict};
use canon::receipt::{Engine, RunFacts, RunId, Statement, Timestamp};
use canon::sandbox::Sandbox;
use rayon::prelude::*;

const TOKEN: &str = "pool-load-token";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// The `n`-th job: hello.toml with its second argument `job-N`.
fn nth_job(base: &Job, n: usize) -> Job {
    let mut j = base.clone();
    j.args = vec!["world".into(), format!("job-{n}")];
    j
}

/// Kills the pool's processes on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Resident and peak resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/PID/stat (1-based),
    // so 12 and 13 after the state field.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct PoolResult {
    jobs: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    rss_kib: (u64, u64),
    rss_start_kib: u64,
    coordinator_cpu: f64,
    workers_cpu: f64,
    driver_cpu: f64,
    db_bytes: u64,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pool_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let jobs = env_usize("POOL_LOAD_JOBS", 10_000);
    let baseline_jobs = env_usize("POOL_LOAD_BASELINE_JOBS", 3_000);
    let workers = env_usize("POOL_LOAD_WORKERS", 4);
    let concurrency = env_usize("POOL_LOAD_CONCURRENCY", 4);
    let submitters = env_usize("POOL_LOAD_SUBMITTERS", 4).max(1);
    let window = env_usize("POOL_LOAD_WINDOW", 64).max(1);
    let canon_bin = match std::env::var_os("POOL_LOAD_CANON") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            exe.parent().and_then(Path::parent).map(|d| d.join("canon")).ok_or("cannot find target/release/canon")?
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let base = Job::load(&root.join("fixtures/jobs/hello.toml")).map_err(|e| e.to_string())?;
    println!(
        "pool_load: {jobs} jobs (hello, each its own digest), R = 3, {workers} workers x --concurrency {concurrency}, {submitters} submitters, window {window}; canon {}",
        canon_bin.display()
    );
    let pool = run_pool(&canon_bin, &base, jobs, workers, concurrency, submitters, window)?;
    let baseline = run_baseline(&base, baseline_jobs)?;
    report(&pool, baseline, baseline_jobs);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_pool(canon_bin: &Path, base: &Job, jobs: usize, workers: usize, concurrency: usize, submitters: usize, window: usize) -> Result<PoolResult, String> {
    let dir = tempfile::Builder::new().prefix("pool-load-").tempdir().map_err(|e| e.to_string())?;
    let keys: Vec<NodeKey> = (0..workers).map(|i| NodeKey::from_seed(&[i as u8 + 1; 32])).collect();
    let policy: String = keys.iter().enumerate().map(|(i, k)| format!("[[node]]\nid = \"{}\"\nname = \"w{i}\"\n", k.node_id())).collect();
    std::fs::write(dir.path().join("policy.toml"), policy).map_err(|e| e.to_string())?;
    let config = dir.path().join("coordinator.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nreplicas = 3\npolicy = \"policy.toml\"\nmax_unfinished = {}\n\
             [[tenant]]\nname = \"load\"\ntoken = \"{TOKEN}\"\nmax_unfinished = {}\n",
            jobs + 1000,
            jobs + 1000
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = |name: &str| std::fs::File::create(dir.path().join(name)).map(Stdio::from).map_err(|e| e.to_string());
    let mut coordinator = Command::new(canon_bin)
        .args(["serve", "--data"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(log("coordinator.log")?)
        .spawn()
        .map_err(|e| format!("{}: {e}", canon_bin.display()))?;
    let coordinator_pid = coordinator.id();
    let mut line = String::new();
    BufReader::new(coordinator.stdout.take().ok_or("no stdout")?).read_line(&mut line).map_err(|e| e.to_string())?;
    let url = line.trim().strip_prefix("listening on ").ok_or_else(|| format!("the coordinator said {line:?}"))?.to_string();
    let mut procs = Procs(vec![coordinator]);
    let mut worker_pids = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let key = dir.path().join(format!("worker-{i}.key"));
        k.save_new(&key).map_err(|e| e.to_string())?;
        let child = Command::new(canon_bin)
            .args(["worker", "--coordinator", &url, "--concurrency", &concurrency.to_string(), "--key"])
            .arg(&key)
            .arg("--cache")
            .arg(dir.path().join(format!("cache-{i}")))
            .stdout(Stdio::null())
            .stderr(log(&format!("worker-{i}.log"))?)
            .spawn()
            .map_err(|e| e.to_string())?;
        worker_pids.push(child.id());
        procs.0.push(child);
    }
    let client = Client::new(&url, Auth::Token(TOKEN.into()))?;
    // The module once, as `canon submit` would upload it.
    let (_, blobs) = Bundle::of(base);
    for d in client.missing(blobs.keys().copied().collect()).map_err(|e| e.to_string())? {
        client.put_blob(&d, blobs[&d].to_vec()).map_err(|e| e.to_string())?;
    }
    let rss_start_kib = rss_kib(coordinator_pid).0;
    let cpu_start = cpu_secs(coordinator_pid);
    let workers_cpu_start: f64 = worker_pids.iter().map(|p| cpu_secs(*p)).sum();
    let driver_cpu_start = cpu_secs(std::process::id());

    // Jobs finished (by id, when), and how many are unfinished.
    struct Shared {
        finished: HashMap<String, Instant>,
        failed: Vec<String>,
        in_flight: usize,
    }
    let shared = Arc::new((Mutex::new(Shared { finished: HashMap::with_capacity(jobs), failed: Vec::new(), in_flight: 0 }), Condvar::new()));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (shared, done, url) = (shared.clone(), done.clone(), url.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let client = Client::new(&url, Auth::Token(TOKEN.into()))?;
            let mut last = 0;
            while !done.load(Ordering::SeqCst) {
                let r = client.events(None, Some(last), &mut |ev| {
                    last = ev.seq;
                    let end = match ev.kind.as_str() {
                        "job.succeeded" => Some(true),
                        "job.failed" | "job.timed_out" | "job.cancelled" => Some(false),
                        _ => None,
                    };
                    if let Some(ok) = end {
                        let (lock, cv) = &*shared;
                        let mut s = lock.lock().expect("lock");
                        if ok {
                            s.finished.insert(ev.job, Instant::now());
                        } else {
                            s.failed.push(ev.job);
                        }
                        s.in_flight = s.in_flight.saturating_sub(1);
                        cv.notify_all();
                    }
                    !done.load(Ordering::SeqCst)
                });
                if let Err(e) = r
                    && !done.load(Ordering::SeqCst)
                {
                    eprintln!("pool_load: event stream: {e}; reconnecting");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Ok(())
        })
    };
    // Give the event stream time to connect before the first job.
    std::thread::sleep(Duration::from_millis(300));

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..submitters {
        let (shared, next, url, base) = (shared.clone(), next.clone(), url.clone(), base.clone());
        handles.push(std::thread::spawn(move || -> Result<Vec<(String, Instant)>, String> {
            let client = Client::new(&url, Auth::Token(TOKEN.into()))?;
            let mut mine = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= jobs {
                    return Ok(mine);
                }
                let (bundle, _) = Bundle::of(&nth_job(&base, n));
                let req = SubmitRequest { mode: GroupMode::Enqueue, ..SubmitRequest::of(&bundle) };
                {
                    let (lock, cv) = &*shared;
                    let mut s = lock.lock().map_err(|_| "lock")?;
                    while s.in_flight >= window {
                        s = cv.wait(s).map_err(|_| "lock")?;
                    }
                    s.in_flight += 1;
                }
                let t0 = Instant::now();
                let r = client.submit(&req).map_err(|e| e.to_string())?;
                mine.push((r.id, t0));
            }
        }));
    }
    let mut submitted: Vec<(String, Instant)> = Vec::with_capacity(jobs);
    for h in handles {
        submitted.extend(h.join().map_err(|_| "a submitter panicked")??);
    }
    // Wait for every verdict.
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(jobs as u64 * 20);
    let mut last_report = Instant::now();
    loop {
        let (lock, _) = &*shared;
        let (n, failed) = {
            let s = lock.lock().map_err(|_| "lock")?;
            (s.finished.len(), s.failed.len())
        };
        if n + failed >= jobs {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{n} of {jobs} jobs succeeded and {failed} failed before the deadline; logs in {}", dir.keep().display()));
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("pool_load: {n} jobs done after {:.0} s", started.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (lock, _) = &*shared;
    let s = lock.lock().map_err(|_| "lock")?;
    let end = s.finished.values().max().copied().unwrap_or_else(Instant::now);
    let wall = end - started;
    if !s.failed.is_empty() {
        return Err(format!("{} jobs failed, e.g. {}; logs in {}", s.failed.len(), s.failed[0], dir.keep().display()));
    }
    let rss = rss_kib(coordinator_pid);
    let coordinator_cpu = cpu_secs(coordinator_pid) - cpu_start;
    let workers_cpu: f64 = worker_pids.iter().map(|p| cpu_secs(*p)).sum::<f64>() - workers_cpu_start;
    let driver_cpu = cpu_secs(std::process::id()) - driver_cpu_start;
    let mut latencies: Vec<Duration> = submitted.iter().filter_map(|(id, t0)| s.finished.get(id).map(|t1| t1.saturating_duration_since(*t0))).collect();
    drop(s);
    if latencies.len() != jobs {
        return Err(format!("{} of {jobs} submitted jobs have a verdict", latencies.len()));
    }
    latencies.sort();
    // A sample of jobs: each accepted by the quorum, from 3 receipts.
    for (id, _) in submitted.iter().step_by((jobs / 20).max(1)) {
        let v = client.status(id).map_err(|e| e.to_string())?;
        if v.state != JobState::Succeeded || v.verdict.as_deref() != Some("accepted") || v.runs.succeeded < 3 {
            return Err(format!("job {id}: {} verdict {:?}, {} receipts", v.state, v.verdict, v.runs.succeeded));
        }
    }
    done.store(true, Ordering::SeqCst);
    let db_bytes = ["canon.db", "canon.db-wal"].iter().filter_map(|f| std::fs::metadata(dir.path().join("data").join(f)).ok()).map(|m| m.len()).sum();
    drop(procs);
    // The event stream ends with the coordinator.
    let _ = watcher.join();
    if std::env::var_os("POOL_LOAD_KEEP").is_some() {
        println!("pool_load: data and logs kept in {}", dir.keep().display());
    }
    Ok(PoolResult { jobs, wall, latencies, rss_kib: rss, rss_start_kib, coordinator_cpu, workers_cpu, driver_cpu, db_bytes })
}

/// The same jobs in process, as `canon run --nodes 3` does each: returns
/// the wall time of `n` jobs and the CPU time they took.
fn run_baseline(base: &Job, n: usize) -> Result<(Duration, f64), String> {
    let keys: Vec<NodeKey> = (0..3).map(|i| NodeKey::from_seed(&[i as u8 + 50; 32])).collect();
    let sandboxes: Vec<Sandbox> = (0..3).map(|_| Sandbox::builder().build().map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    let mut policy = Policy::implicit();
    policy.implicit = false;
    policy.unknown_weight = 0.0;
    policy.nodes = keys.iter().enumerate().map(|(i, k)| TrustedNode { id: k.node_id(), name: Some(format!("node-{}", i + 1)), weight: 1.0 }).collect();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let pool = canon::sandbox::guest_thread_pool(threads).map_err(|e| e.to_string())?;
    let one = |i: usize| -> Result<(), String> {
        let job = nth_job(base, i);
        let digest = job.digest();
        let mut receipts = Vec::with_capacity(3);
        for (k, (key, sandbox)) in keys.iter().zip(&sandboxes).enumerate() {
            let started = Timestamp::now();
            let outcome = sandbox.run(&job).map_err(|e| e.to_string())?;
            let facts = RunFacts {
                job_digest: digest,
                run_id: RunId::new_v4(),
                engine: Engine::current(sandbox.backend().as_str()),
                outcome: outcome.summary(),
                started,
                finished: Timestamp::now(),
            };
            let env = Statement::new(key.node_id(), facts).sign(key).map_err(|e| e.to_string())?;
            receipts.push((format!("node-{}/receipt.json", k + 1), env.to_json_pretty().into_bytes()));
        }
        let tally = canon::quorum::tally(&receipts, &TallyOptions { policy: policy.clone(), expected_job: Some(digest), ledger: None });
        if tally.verdict != Verdict::Accepted {
            return Err(format!("baseline job {i}: {}", tally.verdict));
        }
        Ok(())
    };
    // Warm: compile the module into the sandboxes' caches.
    one(usize::MAX)?;
    let (t, cpu) = (Instant::now(), cpu_secs(std::process::id()));
    pool.install(|| (0..n).into_par_iter().try_for_each(one))?;
    Ok((t.elapsed(), cpu_secs(std::process::id()) - cpu))
}

fn report(p: &PoolResult, (baseline, baseline_cpu): (Duration, f64), baseline_jobs: usize) {
    let pool_rate = p.jobs as f64 / p.wall.as_secs_f64();
    let base_rate = baseline_jobs as f64 / baseline.as_secs_f64();
    let l = &p.latencies;
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| pool: jobs with an accepted verdict | {} in {:.1} s |", p.jobs, p.wall.as_secs_f64());
    println!("| pool: throughput | **{pool_rate:.0} jobs/s** ({:.0} runs/s) |", pool_rate * 3.0);
    println!(
        "| pool: submit-to-verdict latency | p50 **{:.1} ms**, p90 {:.1} ms, p99 **{:.1} ms**, max {:.1} ms |",
        ms(percentile(l, 0.5)),
        ms(percentile(l, 0.9)),
        ms(percentile(l, 0.99)),
        ms(percentile(l, 1.0))
    );
    println!(
        "| pool: coordinator RSS after {} jobs | **{:.1} MiB** (peak {:.1} MiB; {:.1} MiB before the first job) |",
        p.jobs,
        p.rss_kib.0 as f64 / 1024.0,
        p.rss_kib.1 as f64 / 1024.0,
        p.rss_start_kib as f64 / 1024.0
    );
    println!("| pool: database on disk | {:.1} MiB |", p.db_bytes as f64 / (1 << 20) as f64);
    let per_job = |cpu: f64, n: usize| cpu * 1000.0 / n as f64;
    let pool_cpu = per_job(p.coordinator_cpu + p.workers_cpu + p.driver_cpu, p.jobs);
    let base_cpu = per_job(baseline_cpu, baseline_jobs);
    println!(
        "| pool: CPU per job | **{pool_cpu:.2} ms**: coordinator {:.2} ms, workers {:.2} ms, submitters and event stream {:.2} ms |",
        per_job(p.coordinator_cpu, p.jobs),
        per_job(p.workers_cpu, p.jobs),
        per_job(p.driver_cpu, p.jobs),
    );
    println!(
        "| baseline: in process, 3 nodes per job, sandboxes reused | {baseline_jobs} jobs in {:.2} s: **{base_rate:.0} jobs/s** |",
        baseline.as_secs_f64()
    );
    println!("| baseline: CPU per job | **{base_cpu:.2} ms** |");
    println!("| pool / baseline, jobs/s | **{:.1}%** |", 100.0 * pool_rate / base_rate);
    println!("| pool / baseline, jobs per CPU-second | **{:.1}%** |", 100.0 * base_cpu / pool_cpu);
}
