//! The determinism suite: every fixture job gives one outcome digest, run
//! after run, in process and through the real binary under perturbed hosts
//! (time zone, locale, HOME, working directory, extra environment, a busy
//! second core, thread-pool size, cold and warm module cache).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use canon::job::Job;
use canon::sandbox::Sandbox;

use crate::util::{Perturbation, canon_bin, fixture, host_perturbations, scratch};

/// Every job spec under fixtures/jobs/.
pub fn fixture_jobs() -> Vec<PathBuf> {
    let mut jobs: Vec<PathBuf> = std::fs::read_dir(fixture("jobs"))
        .expect("fixtures/jobs exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    jobs.sort();
    assert!(jobs.len() >= 10, "expected the probe jobs under fixtures/jobs, found {jobs:?}");
    jobs
}

fn in_process_digests(sandbox: &Sandbox, spec: &Path, runs: usize) -> Vec<String> {
    let job = Job::load(spec).unwrap_or_else(|e| panic!("{}: {e}", spec.display()));
    (0..runs).map(|_| sandbox.run(&job).unwrap_or_else(|e| panic!("{}: {e}", spec.display())).summary().outcome_digest.to_string()).collect()
}

#[test]
fn every_fixture_job_gives_one_outcome_in_ten_runs() {
    let cache = scratch();
    let sandbox = Sandbox::builder().cache_dir(Some(cache.path().to_path_buf())).build().expect("sandbox");
    for spec in fixture_jobs() {
        let digests = in_process_digests(&sandbox, &spec, 10);
        assert!(digests.windows(2).all(|w| w[0] == w[1]), "{}: outcomes differ across runs: {digests:?}", spec.display());
    }
}

fn run_json(spec: &Path, p: &Perturbation, cache: &Path) -> serde_json::Value {
    let mut cmd = Command::new(canon_bin());
    cmd.arg("run").arg("--json").arg(spec).env("CANON_CACHE_DIR", cache);
    let out = p.output(&mut cmd);
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(1), "{} under {}: canon failed ({code:?}): {}", spec.display(), p.name, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{} under {}: bad JSON ({e}): {}", spec.display(), p.name, String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn perturbed_hosts_agree_with_in_process_runs() {
    let cold = scratch();
    let other_cache = scratch();
    let home = scratch();
    let cwd = scratch();
    let mut perturbations = vec![Perturbation::none("cold cache"), Perturbation::none("warm cache")];
    perturbations.extend(host_perturbations(home.path(), cwd.path()));
    let sandbox = Sandbox::builder().cache_dir(Some(other_cache.path().to_path_buf())).build().expect("sandbox");
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for spec in fixture_jobs() {
        let want = in_process_digests(&sandbox, &spec, 1).remove(0);
        let want_job = Job::load(&spec).expect("load").digest().to_string();
        for p in &perturbations {
            // Absolute spec path, so a changed working directory still finds it.
            let json = run_json(&spec.canonicalize().expect("abs"), p, cold.path());
            assert_eq!(json["outcome_digest"].as_str(), Some(want.as_str()), "{} under {}: outcome differs", spec.display(), p.name);
            assert_eq!(json["job_digest"].as_str(), Some(want_job.as_str()), "{} under {}: job digest differs", spec.display(), p.name);
        }
        seen.insert(spec.display().to_string(), want);
    }
    // Different jobs are different: no two probes collapse to one outcome.
    let distinct: std::collections::BTreeSet<_> = seen.values().collect();
    assert!(distinct.len() >= seen.len() - 1, "suspiciously few distinct outcomes: {seen:#?}");
}

/// The wall-clock watchdog never changes an outcome: every light fixture
/// job gives the same outcome with no deadline at all, with its own
/// deadline, and while other runs on other threads keep the watchdog
/// firing (their endless guests time out every half second or so).
#[test]
fn the_watchdog_never_changes_an_outcome() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let jobs: Vec<(std::path::PathBuf, Job)> =
        fixture_jobs().into_iter().map(|spec| (spec.clone(), Job::load(&spec).unwrap_or_else(|e| panic!("{}: {e}", spec.display())))).collect();
    let endless = {
        let dir = tempfile::tempdir().expect("scratch");
        let spec = crate::util::job_spec(dir.path(), "forever.toml", "sha256chain.wasm", crate::util::FOREVER);
        Job::load(&spec).expect("forever")
    };
    let done = AtomicBool::new(false);
    let checked = std::thread::scope(|scope| {
        // Two threads whose runs the watchdog stops, over and over.
        let firing: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut fired = 0;
                    while !done.load(Ordering::Relaxed) {
                        match sandbox.run(&endless) {
                            Err(canon::sandbox::RunError::Timeout(_)) => fired += 1,
                            other => panic!("the endless job ended otherwise: {:?}", other.map(|o| o.termination)),
                        }
                    }
                    fired
                })
            })
            .collect();
        let mut checked = 0;
        for (spec, job) in &jobs {
            let mut unarmed = job.clone();
            unarmed.timeout = std::time::Duration::MAX;
            let want = sandbox.run(&unarmed).unwrap_or_else(|e| panic!("{}: {e}", spec.display()));
            if want.fuel_consumed > 200_000_000 {
                continue;
            }
            checked += 1;
            let got = sandbox.run(job).unwrap_or_else(|e| panic!("{} with its deadline: {e}", spec.display()));
            assert_eq!(got.summary(), want.summary(), "{} with its deadline, the watchdog busy", spec.display());
        }
        done.store(true, Ordering::Relaxed);
        let fired: usize = firing.into_iter().map(|t| t.join().expect("firing thread")).sum();
        assert!(fired >= 2, "the watchdog fired only {fired} times meanwhile");
        checked
    });
    assert!(checked >= 10, "only {checked} light jobs");
}
