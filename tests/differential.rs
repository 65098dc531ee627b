//! The bounded differential fuzz test: a fixed list of seeds, each a
//! generated WASI module and job (`canon::fuzzing`, every profile), run by
//! `canon::sandbox::differential` twice on native Cranelift and once each on
//! baseline Cranelift and Pulley (which must refuse threaded ones). Any finding fails the test with the
//! seed, the profile and every run; `cargo test differential -- --nocapture`
//! prints the tallies. The open-ended version is the `differential` fuzz
//! target under fuzz/ (`docs/FUZZING.md`).

use std::collections::BTreeMap;
use std::time::Instant;

use canon::fuzzing::{Case, Profile};
use canon::sandbox::Backend;
use canon::sandbox::differential::{Differential, Verdict};

/// Modules per profile. Seeds are `0..SEEDS` (general) and the same for
/// float-heavy: a case is named by (profile, seed) for good.
const SEEDS: u64 = 150;

/// The bounded test's fuel cap: generated jobs ask for up to 10 million;
/// most modules loop until fuel runs out, and 1 million keeps the
/// interpreter's share of the test to seconds.
const FUEL_CAP: u64 = 1_000_000;

#[test]
fn generated_modules_agree_on_every_backend() {
    let mut diff = Differential::new(&[Backend::Cranelift, Backend::CraneliftBaseline, Backend::Pulley]).expect("sandboxes");
    let started = Instant::now();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut endings: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut dumped = 0;
    let mut nans = 0;
    for profile in Profile::ALL {
        for seed in 0..SEEDS {
            let mut case = Case::from_seed(seed, profile);
            case.job.fuel = case.job.fuel.min(FUEL_CAP);
            let report = diff.check(&case.module, &case.job);
            let key = match &report.verdict {
                Verdict::Invalid(_) => "invalid".to_string(),
                Verdict::Agree => "agree".to_string(),
                Verdict::AgreeNoResult => "agree on no result".to_string(),
                Verdict::Fail(f) => format!("FAIL {f:?}"),
            };
            *tally.entry(format!("{profile:?}: {key}")).or_default() += 1;
            if let Some(t) = report.runs.first().and_then(|r| r.result.termination()) {
                *endings.entry(format!("{profile:?}: {t}")).or_default() += 1;
            }
            if profile == Profile::General
                && let Some(canon::sandbox::differential::RunResult::Outcome(s)) = report.runs.first().map(|r| &r.result)
                && s.termination == canon::outcome::Termination::Exit(0)
            {
                dumped += 1;
            }
            if !report.verdict.is_pass() || matches!(report.verdict, Verdict::Invalid(_)) {
                failures.push(format!("{profile:?} seed {seed}: {report}"));
            }
            // Float-heavy: every NaN that escapes is the canonical one, the
            // pass's promise, which agreement alone does not check (backends
            // that share a CPU can agree on the same wrong bits).
            match case.escaped_nans(&report) {
                Ok(n) => nans += n,
                Err(e) => failures.push(format!("{profile:?} seed {seed}: {e}\n{report}")),
            }
        }
    }
    let elapsed = started.elapsed();
    let modules = Profile::ALL.len() as u64 * SEEDS;
    println!("{modules} modules in {elapsed:.1?} ({:.1} modules/s, 4 runs each); {nans} escaped NaNs", modules as f64 / elapsed.as_secs_f64());
    for (k, v) in &tally {
        println!("  {k}: {v}");
    }
    for (k, v) in &endings {
        println!("  ended {k}: {v}");
    }
    assert!(failures.is_empty(), "{} of {modules} generated modules diverge or fail:\n{}", failures.len(), failures.join("\n"));
    // The test is only worth something if the modules run: most must get
    // as far as an outcome, and many as far as the memory dump.
    assert!(dumped * 5 >= SEEDS as usize, "only {dumped} of {SEEDS} general modules returned from `body`: the generator has drifted");
    assert_eq!(tally.get("FloatHeavy: agree").copied(), Some(SEEDS as usize), "every float-heavy module runs to an outcome: {tally:?}");
    assert!(nans > 2_000, "only {nans} escaped NaNs over 4 runs of {SEEDS} float-heavy modules: the generator has drifted");
    // Threaded modules run to outcomes (Pulley refusing each, as checked by
    // the verdict), and end in more than one way: exit, deadlock, fuel.
    assert!(tally.get("Threads: agree").copied().unwrap_or(0) * 10 >= SEEDS as usize * 9, "most threaded modules run to an outcome: {tally:?}");
    let threaded: Vec<&String> = endings.keys().filter(|k| k.starts_with("Threads: ")).collect();
    assert!(threaded.iter().any(|k| k.ends_with("exit 0")) && threaded.len() >= 3, "threaded modules end in several ways: {threaded:?}");
}

/// The threaded profile is worth running only if its outcomes depend on
/// the schedule: the same module and job under another scheduler seed
/// often gives another outcome (and the same seed, the same one).
#[test]
fn threaded_cases_depend_on_the_schedule() {
    use canon::sandbox::Sandbox;
    let sandbox = Sandbox::builder().cache_dir(None).build().expect("sandbox");
    let digest = |case: &Case, seed: u64| {
        let mut job = case.job.clone();
        job.fuel = job.fuel.min(FUEL_CAP);
        if let Some(t) = &mut job.threads {
            t.seed = Some(seed);
        }
        sandbox.run(&job.to_job(&case.module)).map(|o| o.summary().outcome_digest.to_string()).unwrap_or_else(|e| format!("no result: {e}"))
    };
    let mut depends = 0;
    for seed in 0..40 {
        let case = Case::from_seed(seed, Profile::Threads);
        let outcomes: std::collections::BTreeSet<String> = (0..4).map(|s| digest(&case, s)).collect();
        assert_eq!(digest(&case, 0), digest(&case, 0), "seed {seed}: one schedule, one outcome");
        if outcomes.len() > 1 {
            depends += 1;
        }
    }
    assert!(depends >= 8, "only {depends} of 40 threaded cases change outcome with the schedule: the generator has drifted");
}
