//! Backends as independent nodes: every fixture job on every backend,
//! compared with native Cranelift on the outcome digest, on what the guest
//! produced (the outcome without fuel) and on fuel.
//!
//! What does not agree is listed in [`KNOWN_DISAGREEMENTS`], by job, backend
//! and the exact way it differs; the test fails if a listed disagreement
//! goes away as well as if a new one appears. `cargo test backends --
//! --nocapture` prints the whole table.

use std::fmt::Write as _;
use std::path::PathBuf;

use canon::job::Job;
use canon::outcome::{Outcome, outcome_digest};
use canon::sandbox::engine::{self, HOST_THREAD_STACK, WINCH_UNSUPPORTED};
use canon::sandbox::{Backend, RunError, Sandbox};

use crate::util::{canon_bin, fixture, scratch};

/// The backends that run jobs, compared with the first (the reference).
const RUNNABLE: [Backend; 3] = [Backend::Cranelift, Backend::CraneliftBaseline, Backend::Pulley];

/// How a backend's run of a job differs from native Cranelift's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Agreement {
    /// Same exit code or trap kind, stdout, stderr and output tree.
    results: bool,
    /// Same fuel consumed.
    fuel: bool,
}

/// The only (job, backend) pairs that may differ from native Cranelift, and
/// how. The outcome digest covers fuel, so it agrees exactly when both
/// `results` and `fuel` do.
///
/// None since determinism ABI 2: `hostile-stackbomb` used to stop where the
/// fixed 1 MiB native stack ran out, which differed on Pulley (297 533 fuel
/// against 297 353); it now stops at the job's `call_depth`, enforced by
/// canon's instrumentation, and fuel is canon's own metering.
const KNOWN_DISAGREEMENTS: &[(&str, Backend, Agreement)] = &[];

/// The outcome's digest with fuel set to 0: what the guest produced.
fn results_digest(o: &Outcome) -> String {
    let s = o.summary();
    outcome_digest(&s.termination, 0, &s.stdout_sha256, &s.stderr_sha256, &s.manifest_digest).to_string()
}

fn jobs() -> Vec<PathBuf> {
    crate::determinism::fixture_jobs()
}

fn describe(o: &Result<Outcome, RunError>) -> String {
    match o {
        Ok(o) => format!("{:?} fuel {}", o.termination, o.fuel_consumed),
        Err(e) => format!("no result: {e}"),
    }
}

#[test]
fn every_job_agrees_with_native_cranelift_on_every_backend() {
    // Guests run on a thread with the stack canon gives guest threads.
    let run = std::thread::Builder::new().stack_size(HOST_THREAD_STACK).spawn(|| {
        let sandboxes: Vec<Sandbox> =
            RUNNABLE.iter().map(|b| Sandbox::builder().cache_dir(None).backend(*b).build().unwrap_or_else(|e| panic!("{b}: {e}"))).collect();
        let mut table = String::from("job | backend | digest | results | fuel | reference | this backend\n");
        let mut wrong = Vec::new();
        for path in jobs() {
            let mut job = Job::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // The timeout is the host's safety net, not part of the outcome;
            // the interpreter is slower than compiled code.
            job.timeout *= 10;
            let name = path.file_stem().expect("stem").to_string_lossy().into_owned();
            let reference = sandboxes[0].run(&job);
            let Ok(r) = &reference else { panic!("{name} on cranelift: {}", describe(&reference)) };
            for sandbox in &sandboxes[1..] {
                let b = sandbox.backend();
                let other = sandbox.run(&job);
                // Pulley implements no threads: it refuses threaded jobs,
                // saying so (docs/BACKENDS.md).
                if b == Backend::Pulley && job.threads.is_some() {
                    match &other {
                        Err(e) if e.to_string().contains(engine::PULLEY_NO_THREADS) => {
                            writeln!(table, "{name} | {b} | refused | - | - | {} | -", describe(&reference)).expect("write")
                        }
                        _ => wrong.push(format!("{name} on {b}: expected the refusal of threaded jobs, saw {}", describe(&other))),
                    }
                    continue;
                }
                let seen = match &other {
                    Ok(o) => Some(Agreement { results: results_digest(o) == results_digest(r), fuel: o.fuel_consumed == r.fuel_consumed }),
                    Err(_) => None,
                };
                let digest = other.as_ref().is_ok_and(|o| o.summary().outcome_digest == r.summary().outcome_digest);
                let yes = |x: Option<bool>| match x {
                    Some(true) => "same",
                    Some(false) => "DIFFERS",
                    None => "-",
                };
                writeln!(
                    table,
                    "{name} | {b} | {} | {} | {} | {} | {}",
                    yes(seen.map(|_| digest)),
                    yes(seen.map(|a| a.results)),
                    yes(seen.map(|a| a.fuel)),
                    describe(&reference),
                    describe(&other)
                )
                .expect("write");
                let expected =
                    KNOWN_DISAGREEMENTS.iter().find(|(j, kb, _)| *j == name && *kb == b).map_or(Agreement { results: true, fuel: true }, |(_, _, a)| *a);
                if seen != Some(expected) || digest != (expected.results && expected.fuel) {
                    wrong.push(format!("{name} on {b}: expected {expected:?}, saw {seen:?} ({})", describe(&other)));
                }
            }
        }
        (table, wrong)
    });
    let (table, wrong) = run.expect("spawn").join().expect("matrix thread");
    println!("{table}");
    assert!(wrong.is_empty(), "backends disagree with native Cranelift other than as known:\n{}\n\n{table}", wrong.join("\n"));
}

#[test]
fn each_backend_has_its_own_engine_fingerprint() {
    let mut seen = std::collections::BTreeSet::new();
    for b in RUNNABLE {
        let sandbox = Sandbox::builder().cache_dir(None).backend(b).build().expect("sandbox");
        assert!(seen.insert(engine::fingerprint(sandbox.engine())), "{b} shares a fingerprint");
    }
}

#[test]
fn backend_names_round_trip() {
    for b in Backend::ALL {
        assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
    }
    assert_eq!(Backend::default(), Backend::Cranelift);
    assert!("Cranelift".parse::<Backend>().is_err());
}

#[test]
fn winch_is_refused_naming_what_it_lacks() {
    let Err(e) = Sandbox::builder().cache_dir(None).backend(Backend::Winch).build() else {
        panic!("winch built an engine: if it now supports relaxed SIMD, add it to RUNNABLE")
    };
    let msg = e.to_string();
    assert!(msg.contains("winch backend cannot run canon jobs") && msg.contains(WINCH_UNSUPPORTED), "{msg}");
    // wasmtime's own reason, which WINCH_UNSUPPORTED explains.
    assert!(msg.contains("wasm_relaxed_simd"), "{msg}");
}

#[test]
fn the_cli_takes_a_backend_and_refuses_winch_and_unknown_names() {
    let hello = fixture("jobs/hello.toml");
    let cache = scratch();
    let out = |backend: &str| {
        std::process::Command::new(canon_bin())
            .args(["run", "--json", "--backend", backend])
            .arg(&hello)
            .env("CANON_CACHE_DIR", cache.path())
            .output()
            .expect("spawn canon")
    };
    let digest = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["outcome_digest"].as_str().expect("digest").to_string()
    };
    let native = digest(&out("cranelift"));
    assert_eq!(digest(&out("pulley")), native);
    assert_eq!(digest(&out("cranelift-baseline")), native);
    let winch = out("winch");
    assert!(!winch.status.success());
    assert!(String::from_utf8_lossy(&winch.stderr).contains("relaxed-SIMD"), "{}", String::from_utf8_lossy(&winch.stderr));
    let bogus = out("llvm");
    assert_eq!(bogus.status.code(), Some(2), "{}", String::from_utf8_lossy(&bogus.stderr));
    assert!(String::from_utf8_lossy(&bogus.stderr).contains("unknown backend"));
    let exec = |backend: &str| {
        std::process::Command::new(canon_bin())
            .args(["exec", "--backend", backend])
            .arg(fixture("hello.wasm"))
            .env("CANON_CACHE_DIR", cache.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("spawn canon exec")
    };
    let pulley = exec("pulley");
    assert!(pulley.status.success() && pulley.stdout.starts_with(b"hello from canon"), "{}", String::from_utf8_lossy(&pulley.stderr));
    assert!(String::from_utf8_lossy(&exec("winch").stderr).contains("relaxed-SIMD"));
}

#[test]
fn a_receipt_records_the_backend_it_ran_on() {
    let dir = scratch();
    let key = dir.path().join("node.key");
    let k = std::process::Command::new(canon_bin()).args(["keygen", "--out"]).arg(&key).output().expect("keygen");
    assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
    let out = dir.path().join("out");
    let r = std::process::Command::new(canon_bin())
        .args(["run", "--backend", "pulley", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&out)
        .arg(fixture("jobs/hello.toml"))
        .env("CANON_CACHE_DIR", dir.path().join("cache"))
        .output()
        .expect("spawn canon");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let receipt = std::fs::read(out.join("receipt.json")).expect("receipt");
    let v = canon::receipt::verify_envelope(&receipt).expect("valid receipt");
    assert_eq!(v.statement.predicate.engine.backend, "pulley");
}

/// The baseline is not native Cranelift under another name: on a host with
/// SSE4.1 or AVX, the same module compiles to different machine code (the
/// text section, not the artifact, whose metadata names the flags anyway).
#[test]
#[cfg(target_arch = "x86_64")]
fn the_baseline_compiles_differently_on_a_host_with_newer_features() {
    if !(std::arch::is_x86_feature_detected!("sse4.1") || std::arch::is_x86_feature_detected!("avx")) {
        return;
    }
    let wasm = std::fs::read(fixture("nbody.wasm")).expect("nbody.wasm");
    let code = |b: Backend| {
        let sandbox = Sandbox::builder().cache_dir(None).backend(b).build().expect("sandbox");
        wasmtime::Module::new(sandbox.engine(), &wasm).expect("compile").text().to_vec()
    };
    assert_ne!(code(Backend::Cranelift), code(Backend::CraneliftBaseline));
}
