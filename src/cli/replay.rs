//! `canon replay`: run a threaded job following a schedule that `canon run
//! --trace` recorded, and say where the run first departs from it
//! (docs/THREADS.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use canon::job::Job;
use canon::sandbox::threads::trace::Trace;
use canon::sandbox::{Backend, RunError, RunOptions, Sandbox};

/// Run a threaded job along a recorded schedule.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job spec (TOML) the trace was recorded for.
    job: PathBuf,
    /// The trace (`canon/trace/v1`, from `canon run --trace`).
    trace: PathBuf,
    /// The backend: `cranelift` or `cranelift-baseline`.
    #[arg(long, value_name = "NAME", default_value_t = Backend::Cranelift)]
    backend: Backend,
}

/// Runs `canon replay`: exit status 0 when the run follows the trace to its
/// end, 1 when it departs (the step and how are printed).
pub fn run(args: Args) -> Result<ExitCode> {
    let job = Job::load(&args.job).context("invalid job")?;
    let bytes = std::fs::read(&args.trace).with_context(|| format!("cannot read {}", args.trace.display()))?;
    let trace = Trace::decode(&bytes).with_context(|| args.trace.display().to_string())?;
    if trace.job != job.digest() {
        bail!("{}: a trace of job {}, not of {} ({})", args.trace.display(), trace.job, job.digest(), args.job.display());
    }
    let sandbox = Sandbox::builder().backend(args.backend).build()?;
    let steps = trace.steps.len();
    let options = RunOptions { replay: Some(std::sync::Arc::new(trace.steps)), ..Default::default() };
    match sandbox.run_with(&job, options) {
        Ok(outcome) => {
            let s = outcome.summary();
            outln!("replayed {steps} steps: the run follows the trace")?;
            outln!("result   {} (fuel {})", outcome.termination, outcome.fuel_consumed)?;
            outln!("outcome  {}", s.outcome_digest)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ RunError::Departed { .. }) => {
            outln!("{e}")?;
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e).with_context(|| format!("{}: no result", args.job.display())),
    }
}
