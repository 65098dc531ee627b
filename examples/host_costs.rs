//! What WASI calls cost in wall time per unit of fuel, against plain
//! compute, in the build it runs in: the figures docs/FUEL.md quotes come
//! from `cargo run --release --example host_costs`.
//!
//! For every WASI function, an endless loop of it with the arguments that
//! make it do the most work (`canon::fuzzing::wasi::cost_probes`) runs
//! until its fuel is spent, as does `sha256chain` (plain compute), and the
//! example prints each call's nanoseconds per unit of fuel as a multiple of
//! compute's, measured just before it. It fails if any is above `BOUND` in
//! three measurements in a row (so that a job's wall time stays a function
//! of its fuel on every node, within that factor of what the same fuel of
//! compute takes). `scripts/test.sh` runs it in release.

use canon::fuzzing::wasi::{cost_probes, measure, ns_per_fuel};
use canon::job::Job;
use canon::sandbox::{Backend, Sandbox};
use std::process::ExitCode;

/// How much slower than compute, per unit of fuel, any host call may be:
/// loose enough for a loaded machine (the figures move by half between
/// runs here), tight enough to catch work that fuel does not pay for.
const BOUND: f64 = 16.0;

/// Fuel per measurement.
const FUEL: u64 = 50_000_000;

fn main() -> ExitCode {
    let sandbox = match Sandbox::builder().cache_dir(None).backend(Backend::Cranelift).build() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("host_costs: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Wall time on a shared machine drifts (compute alone moved 2x between
    // runs here), so each call is measured beside a fresh measurement of
    // compute, and a call over the bound is measured again, twice: only a
    // call over it every time fails. Work that fuel does not pay for is
    // over it every time; a moment's noise is not.
    let mut over = Vec::new();
    let mut shown_compute = false;
    for (name, program) in cost_probes() {
        let mut passed = None;
        let mut last = String::new();
        for _attempt in 0..3 {
            let compute = match compute_ns_per_fuel(&sandbox) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("host_costs: compute baseline: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if !shown_compute {
                println!("compute (sha256chain): {compute:.3} ns per unit of fuel");
                shown_compute = true;
            }
            match measure(&sandbox, &program, FUEL) {
                Ok(ns) => {
                    let r = ns / compute;
                    last = format!("{name:24} {ns:8.3} ns  {r:6.2}x compute");
                    if r <= BOUND {
                        passed = Some(last.clone());
                        break;
                    }
                }
                Err(e) => {
                    last = format!("{name:24} FAILED: {e}");
                    break;
                }
            }
        }
        match passed {
            Some(line) => println!("{line}"),
            None => {
                println!("{last}");
                over.push(name);
            }
        }
    }
    if over.is_empty() {
        println!("host_costs: every WASI call within {BOUND}x compute per unit of fuel");
        ExitCode::SUCCESS
    } else {
        println!("host_costs: past {BOUND}x compute per unit of fuel: {over:?}");
        ExitCode::FAILURE
    }
}

/// sha256chain's nanoseconds per unit of fuel, given far more rounds than
/// its fuel pays for (the fastest of three runs).
fn compute_ns_per_fuel(sandbox: &Sandbox) -> Result<f64, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jobs/sha256chain.toml");
    let mut job = Job::load(&path).map_err(|e| e.to_string())?;
    job.args = vec!["100000000".into()];
    job.limits.fuel = FUEL;
    ns_per_fuel(sandbox, &job).map(|(ns, _)| ns)
}
