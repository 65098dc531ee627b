//! Differential fuzzing of canon's backends: each input becomes a generated
//! WASI module (`canon::fuzzing`: general, float-heavy, WASI-call or threaded profile) and a
//! small job; `canon::sandbox::differential` runs it twice on native
//! Cranelift and once each on baseline Cranelift and Pulley, and this
//! target aborts (a libFuzzer crash) on any finding: outcome digests or fuel
//! that differ, a host panic, a timeout, or a module validation accepts
//! but the engine refuses, a native stack overflow before the job's
//! call-depth limit, and a float-heavy module printing a NaN that is not
//! canonical. There are no excused divergences.
//!
//! Run (`docs/FUZZING.md`):
//! `cargo fuzz run differential --sanitizer none -- -max_total_time=600`

#![no_main]

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Unstructured;
use canon::fuzzing::{Case, Profile};
use canon::sandbox::Backend;
use canon::sandbox::differential::{Differential, Verdict};
use libfuzzer_sys::fuzz_target;

static HARNESS: Mutex<Option<Differential>> = Mutex::new(None);
static RUN: AtomicU64 = AtomicU64::new(0);
static INVALID: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(profile) = u.arbitrary::<Profile>() else { return };
    let Ok(case) = Case::generate(&mut u, profile) else { return };
    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let diff = guard.get_or_insert_with(|| Differential::new(&[Backend::Cranelift, Backend::CraneliftBaseline, Backend::Pulley]).expect("sandboxes"));
    let report = diff.check(&case.module, &case.job);
    let n = RUN.fetch_add(1, Ordering::Relaxed) + 1;
    // A float-heavy module must print only canonical NaNs, whatever the
    // backends agree on.
    if let Err(e) = case.escaped_nans(&report) {
        keep(&format!("NonCanonicalNan-{n}"), &case, profile, &report);
        panic!("{e} ({profile:?} profile)\n{report}");
    }
    match &report.verdict {
        Verdict::Fail(finding) => {
            keep(&format!("{finding:?}-{n}"), &case, profile, &report);
            panic!("{finding:?} ({profile:?} profile)\n{report}");
        }
        Verdict::Invalid(_) => {
            INVALID.fetch_add(1, Ordering::Relaxed);
        }
        Verdict::Agree | Verdict::AgreeNoResult => {}
    }
    if n.is_power_of_two() || n % 10_000 == 0 {
        eprintln!("canon-differential: {n} modules checked, {} invalid", INVALID.load(Ordering::Relaxed));
    }
});

/// Keeps a failing module and its report under `$CANON_FUZZ_FINDINGS`, if set.
fn keep(name: &str, case: &Case, profile: Profile, report: &canon::sandbox::differential::Report) {
    if let Ok(dir) = std::env::var("CANON_FUZZ_FINDINGS") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(format!("{dir}/{name}.wasm"), &case.module);
        let _ = std::fs::write(format!("{dir}/{name}.txt"), format!("{profile:?} {:?}\n{report}", case.job));
    }
}
