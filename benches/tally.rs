//! Benchmark: verify and tally 100,000 receipts, as `canon quorum` does
//! (JSON parsing, base64, ed25519 `verify_strict` of each signature, statement checks,
//! grouping), in parallel with rayon.
//!
//! Run with `cargo bench --bench tally`. The input is 100,000 receipts for
//! one job from 100,000 distinct nodes (a node votes once per job), 1% of
//! them dissenting, under the implicit policy.

use std::hint::black_box;
use std::time::Duration;

use canon::digest::{Digest, JobDigest};
use canon::node::NodeKey;
use canon::outcome::{Outcome, Termination};
use canon::quorum::{TallyOptions, Verdict, tally};
use canon::receipt::{Engine, RunFacts, RunId, Statement, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

const RECEIPTS: usize = 100_000;

fn receipts() -> Vec<(String, Vec<u8>)> {
    let job = JobDigest::new(Digest::of(b"bench job"));
    let now = Timestamp::now();
    (0..RECEIPTS)
        .into_par_iter()
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let key = NodeKey::from_seed(&seed);
            let stdout = if i % 100 == 0 { "wrong\n" } else { "right\n" };
            let outcome = Outcome {
                termination: Termination::Exit(0),
                fuel_consumed: 1_000_000,
                stdout: stdout.as_bytes().to_vec(),
                stderr: Vec::new(),
                outputs: Default::default(),
            };
            let facts = RunFacts {
                job_digest: job,
                run_id: RunId::new_v4(),
                engine: Engine::current("cranelift"),
                outcome: outcome.summary(),
                started: now,
                finished: now,
            };
            let env = Statement::new(key.node_id(), facts).sign(&key).map(|e| e.to_json()).unwrap_or_default();
            (format!("r{i}.json"), env)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let input = receipts();
    let options = TallyOptions::default();
    let t = tally(&input, &options);
    assert_eq!(t.verdict, Verdict::Accepted);
    assert!(t.set_aside.is_empty());
    let mut g = c.benchmark_group("tally");
    g.throughput(Throughput::Elements(RECEIPTS as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("verify_and_tally_100k", |b| b.iter(|| black_box(tally(black_box(&input), &options))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
