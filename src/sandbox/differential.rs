//! Differential runs: one module, one small job, several backends.
//!
//! [`Differential::check`] validates a module as a job would
//! ([`crate::job::validate_module`]), runs it on every backend it was built
//! with — on the first backend twice — and says whether every run agreed
//! on the outcome digest (which covers fuel) and on how much fuel was used.
//! It is what the bounded differential test (`tests/differential.rs`) and
//! the `differential` fuzz target (`fuzz/`) are built on; the modules come
//! from `canon::fuzzing` (feature `fuzzing`), but any bytes will do.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use canon::sandbox::Backend;
//! use canon::sandbox::differential::{DiffJob, Differential};
//!
//! let mut diff = Differential::new(&[Backend::Cranelift, Backend::Pulley])?;
//! let module = std::fs::read("fixtures/hello.wasm")?;
//! let report = diff.check(&module, &DiffJob::default());
//! assert!(report.verdict.is_pass(), "{report}");
//! # Ok(()) }
//! ```
//!
//! # What counts as a finding
//!
//! - A host panic in any run, even if every backend panics alike: canon must
//!   turn every module into an outcome or a clear error.
//! - Two runs (on two backends, or twice on the same one) with different
//!   outcome digests or different fuel.
//! - One run with an outcome and another with none, or two runs without an
//!   outcome for different reasons.
//! - A module that validation accepted but that the engine refused to
//!   compile: validation promises a job that passes is not refused later.
//! - Any [`RunError::Timeout`]. The job's fuel bounds compute, and
//!   [`DiffJob::timeout`] is far above what the largest fuel budget takes on
//!   the slowest backend, so a run that reaches it has found work that fuel
//!   does not meter (or a host far too loaded to judge: rerun).
//!
//! Runs that all end with the same host error ([`RunError::Host`], such as
//! memory the host could not provide) agree on "no result": not a finding.
//!
//! There is no list of excused divergences: since canon meters fuel and
//! call depth itself (`docs/FUEL.md`), a deep recursion stops at the job's
//! `call_depth` on every backend, and every run must agree.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::engine::HOST_THREAD_STACK;
use super::{Backend, RunError, Sandbox};
use crate::digest::Digest;
use crate::job::{DEFAULT_EPOCH, Job, Limits, ModuleError, Mount, UnknownImports, validate_module};
use crate::outcome::{OutcomeSummary, Termination};
use crate::tree::{Node, Tree};

/// Checks made on a fresh set of sandboxes before they are rebuilt: each
/// sandbox keeps every compiled module in memory, so a long fuzzing run
/// would otherwise grow without bound.
pub const CHECKS_PER_SANDBOX: u32 = 64;

/// The job a module runs as: everything but the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffJob {
    /// `argv[1..]`. Default: none.
    pub args: Vec<String>,
    /// Environment, by name (sorted and deduplicated when the job is built).
    /// Default: none.
    pub env: Vec<(String, String)>,
    /// stdin. Default: empty.
    pub stdin: Vec<u8>,
    /// The guest's random seed. Default: 0.
    pub seed: u64,
    /// Fuel budget. Default: [`DiffJob::DEFAULT_FUEL`].
    pub fuel: u64,
    /// Memory limit in bytes. Default: [`DiffJob::DEFAULT_MEMORY`].
    pub memory_bytes: u64,
    /// Call-depth limit. Default: [`DiffJob::DEFAULT_CALL_DEPTH`].
    pub call_depth: u64,
    /// The wall-clock safety net: reaching it is a finding (see the module
    /// documentation). Default: [`DiffJob::DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Mount [`DiffJob::input_tree`] read-only at `/in` and writable at
    /// `/w`, so that file-system calls find files, directories and a
    /// symbolic link (preopens `/in` 3, `/w` 4, `/out` 5, `/tmp` 6; without
    /// inputs `/out` is 3 and `/tmp` 4). Default: false.
    pub inputs: bool,
    /// A threaded module's scheduler settings (`[threads]` and
    /// `limits.threads`); `None` for an unthreaded one. Default: none.
    pub threads: Option<crate::job::Threads>,
}

impl DiffJob {
    /// 5 million: small enough that hundreds of modules run in seconds on
    /// the interpreter, large enough for real loops.
    pub const DEFAULT_FUEL: u64 = 5_000_000;
    /// Largest fuel a caller should give: 10 million; [`DiffJob::DEFAULT_TIMEOUT`]
    /// is sized for it.
    pub const MAX_FUEL: u64 = 10_000_000;
    /// 16 MiB: room to grow, small enough to touch cheaply.
    pub const DEFAULT_MEMORY: u64 = 16 << 20;
    /// 1 000: deep enough for generated recursion to reach the limit
    /// quickly on every backend, far from the host's native stack.
    pub const DEFAULT_CALL_DEPTH: u64 = 1_000;
    /// 60 s: measured, Pulley runs 10 million fuel of generated code in
    /// well under a second, so this only fires on unmetered work.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// What [`DiffJob::inputs`] mounts: a file `f` (64 bytes), a directory
    /// `d` holding a file `e`, and a symbolic link `l` to `f`.
    pub fn input_tree() -> Tree {
        let mut d = Tree::new();
        d.entries.insert("e".into(), Node::File(Arc::new(b"e\n".to_vec())));
        let mut t = Tree::new();
        t.entries.insert("d".into(), Node::Dir(d));
        t.entries.insert("f".into(), Node::File(Arc::new((0..64u8).collect())));
        t.entries.insert("l".into(), Node::Symlink("f".into()));
        t
    }

    /// The job running `module`, with small caps on everything it writes.
    pub fn to_job(&self, module: &[u8]) -> Job {
        let mut env = self.env.clone();
        env.sort_by(|a, b| a.0.cmp(&b.0));
        env.dedup_by(|a, b| a.0 == b.0);
        Job {
            name: "differential".into(),
            module: Arc::new(module.to_vec()),
            module_sha256: Digest::of(module),
            module_path: "<generated>".into(),
            argv0: "differential".into(),
            args: self.args.clone(),
            env,
            stdin: self.stdin.clone(),
            mounts: if self.inputs {
                vec![Mount::new("/in".into(), false, DiffJob::input_tree(), None), Mount::new("/w".into(), true, DiffJob::input_tree(), None)]
            } else {
                Vec::new()
            },
            seed: self.seed,
            epoch: DEFAULT_EPOCH,
            limits: Limits {
                fuel: self.fuel.max(1),
                memory_bytes: self.memory_bytes,
                stdout_bytes: 1 << 20,
                stderr_bytes: 64 << 10,
                output_bytes: 1 << 20,
                output_files: 64,
                call_depth: self.call_depth.max(1),
            },
            timeout: self.timeout,
            commit: None,
            unknown_imports: UnknownImports::Refuse,
            preloads: Vec::new(),
            sandbox_dirs: true,
            threads: self.threads,
        }
    }
}

impl Default for DiffJob {
    fn default() -> DiffJob {
        DiffJob {
            args: Vec::new(),
            env: Vec::new(),
            stdin: Vec::new(),
            seed: 0,
            fuel: DiffJob::DEFAULT_FUEL,
            memory_bytes: DiffJob::DEFAULT_MEMORY,
            call_depth: DiffJob::DEFAULT_CALL_DEPTH,
            timeout: DiffJob::DEFAULT_TIMEOUT,
            inputs: false,
            threads: None,
        }
    }
}

/// What one run of the module ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// An outcome (its summary: digests, termination, fuel).
    Outcome(Box<OutcomeSummary>),
    /// The engine refused to compile or link the module.
    Compile(String),
    /// The wall-clock safety net fired.
    Timeout,
    /// The host's native stack ran out before the call-depth limit.
    NativeStackOverflow,
    /// The host failed (or could not build an engine).
    Host(String),
    /// The host panicked; the panic's message.
    Panic(String),
}

impl RunResult {
    fn from_error(e: RunError) -> RunResult {
        match e {
            RunError::Compile { message, .. } => RunResult::Compile(message),
            RunError::Timeout(_) => RunResult::Timeout,
            RunError::NativeStackOverflow(_) => RunResult::NativeStackOverflow,
            RunError::Panicked(message) => RunResult::Panic(message),
            e @ (RunError::Host(_) | RunError::Engine(_) | RunError::Cache(_) | RunError::Cancelled | RunError::Departed { .. }) => {
                RunResult::Host(e.to_string())
            }
        }
    }

    /// The termination, if the run had an outcome.
    pub fn termination(&self) -> Option<Termination> {
        match self {
            RunResult::Outcome(s) => Some(s.termination),
            _ => None,
        }
    }

    /// Whether two runs agree: same outcome digest and fuel, or no outcome
    /// for the same reason.
    fn agrees_with(&self, other: &RunResult) -> bool {
        match (self, other) {
            (RunResult::Outcome(a), RunResult::Outcome(b)) => a.outcome_digest == b.outcome_digest && a.fuel_consumed == b.fuel_consumed,
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunResult::Outcome(s) => write!(
                f,
                "{} fuel {} stdout {} stderr {} outputs {} digest {}",
                s.termination, s.fuel_consumed, s.stdout_sha256, s.stderr_sha256, s.manifest_digest, s.outcome_digest
            ),
            RunResult::Compile(m) => write!(f, "refused by the engine: {m}"),
            RunResult::Timeout => write!(f, "timeout"),
            RunResult::NativeStackOverflow => write!(f, "native stack overflow before the call-depth limit"),
            RunResult::Host(m) => write!(f, "host error: {m}"),
            RunResult::Panic(m) => write!(f, "HOST PANIC: {m}"),
        }
    }
}

/// One run: where, and what it ended with.
#[derive(Clone, Debug)]
pub struct Run {
    /// The backend.
    pub backend: Backend,
    /// What it ended with.
    pub result: RunResult,
    /// The guest's stdout, if the run had an outcome (for checks on what a
    /// module printed, such as `canon::fuzzing::float::escaped_nans` (feature `fuzzing`)).
    pub stdout: Vec<u8>,
    /// Wall-clock time of the run (compilation included the first time).
    pub elapsed: Duration,
}

/// Something the harness exists to find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A run panicked in the host.
    HostPanic,
    /// Runs on different backends disagree.
    BackendsDiffer,
    /// Two runs on the same backend disagree.
    RepeatDiffers,
    /// Validation accepted the module; the engine refused it.
    RefusedAfterValidation,
    /// A run reached the wall-clock safety net.
    Timeout,
    /// The native stack ran out before the job's call-depth limit: with the
    /// harness's small `call_depth`, a frame size canon did not foresee.
    NativeStackOverflow,
    /// A backend without threads (Pulley) did not refuse a threaded job
    /// with [`crate::sandbox::engine::PULLEY_NO_THREADS`].
    ThreadsNotRefused,
}

/// The verdict on one module.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Validation refused the module; nothing ran.
    Invalid(ModuleError),
    /// Every run agreed.
    Agree,
    /// Every run agreed on "no result" through the same host error.
    AgreeNoResult,
    /// A finding.
    Fail(Finding),
}

impl Verdict {
    /// Whether this verdict passes: anything but [`Verdict::Fail`].
    pub fn is_pass(&self) -> bool {
        !matches!(self, Verdict::Fail(_))
    }
}

/// A module's verdict with every run behind it.
#[derive(Clone, Debug)]
pub struct Report {
    /// The verdict.
    pub verdict: Verdict,
    /// The runs, in order: the first backend twice, then each other once.
    pub runs: Vec<Run>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "verdict: {:?}", self.verdict)?;
        for r in &self.runs {
            writeln!(f, "  {:<18} {:>8.1?}  {}", r.backend.as_str(), r.elapsed, r.result)?;
        }
        Ok(())
    }
}

/// Runs modules on several backends and compares. Sandboxes are built once
/// and reused for [`CHECKS_PER_SANDBOX`] checks.
pub struct Differential {
    backends: Vec<Backend>,
    sandboxes: Vec<Sandbox>,
    checks: u32,
}

impl Differential {
    /// A harness comparing `backends` (at least two; the first runs twice).
    pub fn new(backends: &[Backend]) -> Result<Differential, RunError> {
        if backends.len() < 2 {
            return Err(RunError::Engine("a differential check needs at least two backends".into()));
        }
        Ok(Differential { backends: backends.to_vec(), sandboxes: build(backends)?, checks: 0 })
    }

    /// The backends compared, the first run twice.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Validates `module`, runs it as `job` on every backend (the first
    /// twice), each run on a thread with [`HOST_THREAD_STACK`], and judges.
    pub fn check(&mut self, module: &[u8], job: &DiffJob) -> Report {
        if let Err(e) = validate_module(module) {
            return Report { verdict: Verdict::Invalid(e), runs: Vec::new() };
        }
        if self.checks >= CHECKS_PER_SANDBOX {
            // Failing to rebuild keeps the old sandboxes: only memory grows.
            if let Ok(fresh) = build(&self.backends) {
                self.sandboxes = fresh;
                self.checks = 0;
            }
        }
        self.checks += 1;
        let job = job.to_job(module);
        let order: Vec<usize> = std::iter::once(0).chain(0..self.sandboxes.len()).collect();
        let sandboxes = &self.sandboxes;
        let runs = std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("canon-differential".into())
                .stack_size(HOST_THREAD_STACK)
                .spawn_scoped(s, || order.iter().map(|&i| run_once(&sandboxes[i], &job)).collect::<Vec<Run>>());
            match worker {
                Ok(handle) => handle.join().unwrap_or_else(|p| vec![panic_run(self.backends[0], &p)]),
                Err(e) => vec![Run {
                    backend: self.backends[0],
                    result: RunResult::Host(format!("could not spawn: {e}")),
                    stdout: Vec::new(),
                    elapsed: Duration::ZERO,
                }],
            }
        });
        let verdict = if crate::job::is_threaded(module) { judge_threaded(&runs) } else { judge(&runs) };
        Report { verdict, runs }
    }
}

/// The verdict on a threaded module's runs: those on backends that run
/// threads are judged as any others; a backend that cannot (Pulley) must
/// have refused the job, naming why, and nothing else.
fn judge_threaded(runs: &[Run]) -> Verdict {
    let (able, unable): (Vec<Run>, Vec<Run>) = runs.iter().cloned().partition(|r| r.backend != Backend::Pulley);
    let refused = |r: &Run| matches!(&r.result, RunResult::Host(m) if m.contains(super::engine::PULLEY_NO_THREADS));
    if let Some(bad) = unable.iter().find(|r| !refused(r)) {
        return if matches!(bad.result, RunResult::Panic(_)) { Verdict::Fail(Finding::HostPanic) } else { Verdict::Fail(Finding::ThreadsNotRefused) };
    }
    judge(&able)
}

fn build(backends: &[Backend]) -> Result<Vec<Sandbox>, RunError> {
    backends.iter().map(|b| Sandbox::builder().cache_dir(None).backend(*b).build()).collect()
}

fn run_once(sandbox: &Sandbox, job: &Job) -> Run {
    let start = Instant::now();
    let (result, stdout) = match catch_unwind(AssertUnwindSafe(|| sandbox.run(job))) {
        Ok(Ok(o)) => (RunResult::Outcome(Box::new(o.summary())), o.stdout),
        Ok(Err(e)) => (RunResult::from_error(e), Vec::new()),
        Err(p) => return panic_run(sandbox.backend(), &p),
    };
    Run { backend: sandbox.backend(), result, stdout, elapsed: start.elapsed() }
}

fn panic_run(backend: Backend, payload: &Box<dyn std::any::Any + Send>) -> Run {
    let msg =
        payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_else(|| "(no message)".into());
    Run { backend, result: RunResult::Panic(msg), stdout: Vec::new(), elapsed: Duration::ZERO }
}

/// The verdict on a set of runs, the first two on the same backend.
fn judge(runs: &[Run]) -> Verdict {
    let results: Vec<&RunResult> = runs.iter().map(|r| &r.result).collect();
    if results.iter().any(|r| matches!(r, RunResult::Panic(_))) {
        return Verdict::Fail(Finding::HostPanic);
    }
    if results.iter().any(|r| matches!(r, RunResult::Timeout)) {
        return Verdict::Fail(Finding::Timeout);
    }
    if results.iter().any(|r| matches!(r, RunResult::NativeStackOverflow)) {
        return Verdict::Fail(Finding::NativeStackOverflow);
    }
    let Some((first, rest)) = results.split_first() else { return Verdict::Fail(Finding::HostPanic) };
    if results.iter().all(|r| matches!(r, RunResult::Compile(_))) {
        return Verdict::Fail(Finding::RefusedAfterValidation);
    }
    let finding = if rest.first().is_some_and(|r| !first.agrees_with(r)) {
        Some(Finding::RepeatDiffers)
    } else if rest.iter().any(|r| !first.agrees_with(r)) {
        Some(Finding::BackendsDiffer)
    } else {
        None
    };
    match finding {
        Some(f) => Verdict::Fail(f),
        None if matches!(first, RunResult::Outcome(_)) => Verdict::Agree,
        None => Verdict::AgreeNoResult,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;

    fn outcome(termination: Termination, fuel: u64) -> RunResult {
        let o = Outcome { termination, fuel_consumed: fuel, stdout: Vec::new(), stderr: Vec::new(), outputs: Default::default() };
        RunResult::Outcome(Box::new(o.summary()))
    }

    fn runs(results: &[RunResult]) -> Vec<Run> {
        results.iter().map(|r| Run { backend: Backend::Cranelift, result: r.clone(), stdout: Vec::new(), elapsed: Duration::ZERO }).collect()
    }

    #[test]
    fn the_judge_names_each_kind_of_finding() {
        let exit = outcome(Termination::Exit(0), 10);
        let v = |rs: &[RunResult]| judge(&runs(rs));
        assert!(matches!(v(&[exit.clone(), exit.clone(), exit.clone()]), Verdict::Agree));
        assert!(matches!(v(&[exit.clone(), outcome(Termination::Exit(0), 11), exit.clone()]), Verdict::Fail(Finding::RepeatDiffers)));
        assert!(matches!(v(&[exit.clone(), exit.clone(), outcome(Termination::Exit(1), 10)]), Verdict::Fail(Finding::BackendsDiffer)));
        assert!(matches!(v(&[exit.clone(), exit.clone(), RunResult::Panic("p".into())]), Verdict::Fail(Finding::HostPanic)));
        let panic = RunResult::Panic("same".into());
        assert!(matches!(v(&[panic.clone(), panic.clone(), panic.clone()]), Verdict::Fail(Finding::HostPanic)), "alike panics still fail");
        assert!(matches!(v(&[exit.clone(), exit.clone(), RunResult::Timeout]), Verdict::Fail(Finding::Timeout)));
        let refused = RunResult::Compile("no".into());
        assert!(matches!(v(&[refused.clone(), refused.clone(), refused.clone()]), Verdict::Fail(Finding::RefusedAfterValidation)));
        assert!(matches!(v(&[exit.clone(), exit.clone(), refused]), Verdict::Fail(Finding::BackendsDiffer)));
        let host = RunResult::Host("h".into());
        assert!(matches!(v(&[host.clone(), host.clone(), host.clone()]), Verdict::AgreeNoResult));
        assert!(matches!(v(&[exit.clone(), exit, host]), Verdict::Fail(Finding::BackendsDiffer)));
    }
}
