//! `canon verify`: check receipts one by one.
//!
//! Each receipt gets one line: `ok` with its node, job and outcome, or
//! `FAIL` with the reason. Exit status 0 if every receipt verified, 1 if any
//! failed, 125 if a file could not be read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use canon::digest::JobDigest;
use canon::receipt::{self, ReceiptError, VerifiedReceipt};

/// Verify receipts: signature, consistency, and optionally job and artifacts.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Receipt files (DSSE envelope JSON).
    #[arg(required = true)]
    receipts: Vec<PathBuf>,
    /// Require every receipt to be for this job (its spec is loaded and
    /// validated, and its digest computed).
    #[arg(long, value_name = "JOB.toml", conflicts_with = "job_digest")]
    job: Option<PathBuf>,
    /// Require every receipt to be for this job digest (64 hex digits).
    #[arg(long, value_name = "HEX")]
    job_digest: Option<JobDigest>,
    /// Check the artifacts in DIR (as written by `canon run --out DIR`:
    /// DIR/stdout, DIR/stderr, DIR/out/...) against each receipt.
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
}

fn check(args: &Args, bytes: &[u8]) -> Result<VerifiedReceipt, ReceiptError> {
    let r = receipt::verify_envelope(bytes)?;
    if let Some(job) = &args.job_digest {
        r.check_job(job)?;
    }
    if let Some(dir) = &args.artifacts {
        r.check_artifacts(dir)?;
    }
    Ok(r)
}

/// Runs `canon verify`.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    if let Some(spec) = &args.job {
        let job = canon::job::Job::load(spec).context("invalid job")?;
        args.job_digest = Some(job.digest());
    }
    let mut failed = 0usize;
    for path in &args.receipts {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read receipt {}", path.display()))?;
        match check(&args, &bytes) {
            Ok(r) => {
                let o = &r.statement.predicate.outcome;
                outln!(
                    "ok    {}  node {}  job {}  outcome {} ({}, fuel {})",
                    path.display(),
                    r.node(),
                    r.job().short(),
                    r.outcome_digest().short(),
                    o.termination,
                    o.fuel_consumed
                )?;
            }
            Err(e) => {
                failed += 1;
                outln!("FAIL  {}  {}: {e}", path.display(), e.code())?;
            }
        }
    }
    if let Some(dir) = &args.artifacts
        && failed == 0
    {
        outln!("artifacts in {} match", dir.display())?;
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
