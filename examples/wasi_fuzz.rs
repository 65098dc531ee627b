//! The WASI-call fuzzer over a range of seeds, one line per seed: each a
//! generated WASI-call program (`canon::fuzzing::wasi`, profile `Wasi`) run
//! by the differential harness on every backend, the line giving the
//! verdict, the outcome digest and the fuel. A finding (a host panic, a
//! divergence between backends) prints `FAIL` and fails the run.
//!
//! Built once as a debug and once as a release build of canon, the two
//! outputs must be identical: a guest integer that overflows in one build
//! and wraps in the other would make them differ. `scripts/test.sh` does
//! exactly that:
//!
//! ```text
//! cargo run --example wasi_fuzz -- 0 300 > debug.txt
//! cargo run --release --example wasi_fuzz -- 0 300 > release.txt
//! cmp debug.txt release.txt
//! ```

use std::process::ExitCode;

use canon::fuzzing::{Case, Profile};
use canon::sandbox::Backend;
use canon::sandbox::differential::{Differential, RunResult, Verdict};

fn main() -> ExitCode {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let [from, to] = args[..] else {
        eprintln!("usage: wasi_fuzz FROM TO   (seeds FROM..TO)");
        return ExitCode::from(2);
    };
    let mut diff = match Differential::new(&[Backend::Cranelift, Backend::CraneliftBaseline, Backend::Pulley]) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("wasi_fuzz: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed) = (0u64, 0u64);
    for seed in from..to {
        let case = Case::from_seed(seed, Profile::Wasi);
        let report = diff.check(&case.module, &case.job);
        let verdict = match &report.verdict {
            Verdict::Agree => "agree".to_string(),
            Verdict::AgreeNoResult => "agree-no-result".to_string(),
            Verdict::Invalid(e) => format!("invalid {e}"),
            Verdict::Fail(f) => format!("FAIL {f:?}"),
        };
        let outcome = match report.runs.first().map(|r| &r.result) {
            Some(RunResult::Outcome(s)) => format!("{} {} fuel {}", s.termination, s.outcome_digest, s.fuel_consumed),
            Some(other) => format!("{other:?}"),
            None => "no run".to_string(),
        };
        println!("seed {seed}: {verdict}: {outcome}");
        if report.verdict.is_pass() && !matches!(report.verdict, Verdict::Invalid(_)) {
            passed += 1;
        } else {
            eprintln!("seed {seed}:\n{report}");
            failed += 1;
        }
    }
    eprintln!("wasi_fuzz: {passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
