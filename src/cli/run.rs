//! `canon run`: validate a job spec, run it, write its results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use canon::digest::{Digest, JobDigest, OutcomeDigest};
use canon::job::Job;
use canon::node::NodeKey;
use canon::outcome::{Outcome, OutcomeSummary, TrapKind};
use canon::quorum::{Policy, Verdict};
use canon::receipt::Timestamp;
use canon::sandbox::{Backend, Sandbox};
use canon::tree::ManifestEntry;

/// Validate and run a job; print a summary (or JSON) and optionally write
/// stdout, stderr and the output tree to a directory.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job spec (TOML).
    job: PathBuf,
    /// Write `stdout`, `stderr`, `outcome.json` and the output tree (guest
    /// `/out/a` as `DIR/out/a`) here. DIR must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print one JSON object instead of the summary (with --nodes: the tally).
    #[arg(long)]
    json: bool,
    /// Record a threaded job's schedule (which thread ran each slice, and
    /// why the scheduler switched) to FILE, in `canon/trace/v1`; `canon
    /// replay` follows it.
    #[arg(long, value_name = "FILE", conflicts_with = "nodes")]
    trace: Option<PathBuf>,
    /// Sign a receipt with this node key (OpenSSH ed25519) and write it to
    /// `DIR/receipt.json`.
    #[arg(long, value_name = "KEY", requires = "out", conflicts_with = "nodes")]
    key: Option<PathBuf>,
    /// Run on N independent local nodes, each with its own key, and tally
    /// their receipts. With --out, each node's results and receipt go to
    /// `DIR/node-I/`, and the tally to `DIR/tally.json`.
    #[arg(long, value_name = "N")]
    nodes: Option<usize>,
    /// Make the last F of the nodes byzantine: they flip a byte of stdout,
    /// sign for another job, or sign two outcomes, in turn.
    #[arg(long, value_name = "F", default_value_t = 0, requires = "nodes")]
    faulty: usize,
    /// Where the local nodes' keys are kept (created on first use). Default:
    /// `$CANON_KEYS_DIR`, else `$XDG_DATA_HOME/canon/keys`, else
    /// `~/.local/share/canon/keys`.
    #[arg(long, value_name = "DIR", requires = "nodes")]
    keys: Option<PathBuf>,
    /// Trust policy for the tally (TOML). Default: the N local keys, weight 1
    /// each, threshold 2/3.
    #[arg(long, value_name = "FILE", requires = "nodes")]
    policy: Option<PathBuf>,
    /// Backend: cranelift (native CPU features), cranelift-baseline (x86-64
    /// SSE2 only), pulley (interpreter) or winch (refused: it lacks relaxed
    /// SIMD). Recorded in receipts.
    #[arg(long, value_name = "NAME", default_value_t = Backend::Cranelift)]
    backend: Backend,
    /// Show a spinner with the elapsed time on stderr while a module
    /// compiles (the default when stderr is a terminal).
    #[arg(long)]
    progress: bool,
}

/// The JSON form of a run's result (`canon run --json`, `outcome.json`).
#[derive(Debug, Serialize)]
pub struct RunReport<'a> {
    /// The job digest.
    pub job_digest: JobDigest,
    /// The outcome digest.
    pub outcome_digest: OutcomeDigest,
    /// Exit code, or null if the guest trapped.
    pub exit_code: Option<u32>,
    /// Trap kind, or null if the guest exited.
    pub trap: Option<TrapKind>,
    /// Fuel consumed.
    pub fuel_consumed: u64,
    /// SHA-256 of stdout.
    pub stdout_sha256: Digest,
    /// SHA-256 of stderr.
    pub stderr_sha256: Digest,
    /// Digest of the output manifest.
    pub manifest_digest: Digest,
    /// The output manifest.
    pub outputs: &'a [ManifestEntry],
}

impl<'a> RunReport<'a> {
    /// The report for a job digest and an outcome summary.
    pub fn new(job_digest: JobDigest, s: &'a OutcomeSummary) -> RunReport<'a> {
        RunReport {
            job_digest,
            outcome_digest: s.outcome_digest,
            exit_code: s.termination.exit_code(),
            trap: s.termination.trap(),
            fuel_consumed: s.fuel_consumed,
            stdout_sha256: s.stdout_sha256,
            stderr_sha256: s.stderr_sha256,
            manifest_digest: s.manifest_digest,
            outputs: &s.manifest.entries,
        }
    }
}

/// Runs `canon run`.
pub fn run(args: Args) -> Result<ExitCode> {
    let job = Job::load(&args.job).context("invalid job")?;
    if args.out.is_some() {
        check_out_layout(&job)?;
    }
    if let Some(n) = args.nodes {
        // Compile once, with progress, into the disk cache the nodes share.
        super::progress::precompile(&Sandbox::builder().backend(args.backend).build()?, &job, super::progress::wanted(args.progress))?;
        return run_on_nodes(&args, &job, n);
    }
    let key = args.key.as_deref().map(NodeKey::load).transpose()?;
    let staged = args.out.as_deref().map(|out| super::outdir::Staged::new(out, mounted(&job))).transpose()?;
    let started = Timestamp::now();
    let sandbox = Sandbox::builder().backend(args.backend).build()?;
    super::progress::precompile(&sandbox, &job, super::progress::wanted(args.progress))?;
    if args.trace.is_some() && job.threads.is_none() {
        anyhow::bail!("{}: --trace: not a threaded job, so it has no schedule to record", args.job.display());
    }
    let sink = args.trace.as_ref().map(|_| canon::sandbox::TraceSink::default());
    let options = canon::sandbox::RunOptions { trace: sink.clone(), ..Default::default() };
    let outcome = sandbox.run_with(&job, options).with_context(|| format!("{}: no result", args.job.display()))?;
    if let (Some(path), Some(sink)) = (&args.trace, sink) {
        let steps = std::mem::take(&mut *sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let trace = canon::sandbox::threads::trace::Trace { job: job.digest(), steps };
        std::fs::write(path, trace.encode()).with_context(|| format!("cannot write the trace to {}", path.display()))?;
    }
    let summary = outcome.summary();
    let job_digest = job.digest();
    let report = RunReport::new(job_digest, &summary);
    if let Some(staged) = staged {
        write_results(staged.path(), &outcome, &report)?;
        if let Some(key) = &key {
            let receipt = super::nodes::sign(key, job_digest, &summary, args.backend, started)?;
            std::fs::write(staged.path().join("receipt.json"), receipt).context("cannot write receipt.json")?;
        }
        staged.commit()?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_summary(&job, &outcome, &report)?;
    }
    Ok(if outcome.termination.exit_code() == Some(0) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `canon run --nodes N`: run on N local nodes, write, tally, print.
fn run_on_nodes(args: &Args, job: &Job, n: usize) -> Result<ExitCode> {
    let keys_dir = match &args.keys {
        Some(d) => d.clone(),
        None => super::nodes::default_keys_dir()?,
    };
    let staged = args.out.as_deref().map(|out| super::outdir::Staged::new(out, mounted(job))).transpose()?;
    let runs = super::nodes::run_nodes(job, n, args.faulty, args.backend, &keys_dir)?;
    let policy = match &args.policy {
        Some(p) => Policy::load(p)?,
        None => super::nodes::local_policy(&runs),
    };
    let job_digest = job.digest();
    let tally = super::nodes::tally(&runs, job_digest, policy);
    let tally_json = serde_json::to_string_pretty(&tally).context("cannot serialise the tally")?;
    if let Some(staged) = staged {
        for r in &runs {
            let dir = staged.path().join(format!("node-{}", r.index));
            std::fs::create_dir(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            write_results(&dir, &r.outcome, &RunReport::new(r.claimed_job, &r.summary))?;
            for (k, receipt) in r.receipts.iter().enumerate() {
                let path = staged.path().join(super::nodes::receipt_name(r.index, k));
                std::fs::write(&path, receipt).with_context(|| format!("{}: cannot write", path.display()))?;
            }
        }
        std::fs::write(staged.path().join("tally.json"), tally_json.clone() + "\n").context("cannot write tally.json")?;
        staged.commit()?;
    }
    if args.json {
        outln!("{tally_json}")?;
    } else {
        outln!("job      {} {}", job.name, job_digest)?;
        out!("{}", super::nodes::describe(&runs))?;
        outln!()?;
        out!("{}", super::quorum::render(&tally))?;
    }
    Ok(if tally.verdict == Verdict::Accepted { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The files `--out` holds beside the output tree (in `DIR`, or in each
/// `DIR/node-I`).
const RESULT_FILES: [&str; 4] = ["stdout", "stderr", "outcome.json", "receipt.json"];

/// Refuses, before anything runs, a job whose output tree would land on one
/// of canon's own files in `--out` (a writable mount at `/stdout`, say, or
/// at `/`, whose top-level names the guest chooses).
fn check_out_layout(job: &Job) -> Result<()> {
    for m in job.mounts.iter().filter(|m| m.writable) {
        if m.guest == "/" {
            anyhow::bail!(
                "the writable mount / would be written into --out beside canon's own {}; make it read-only and write to a mount such as /out, or run without --out",
                RESULT_FILES.join(", ")
            );
        }
        let top = m.guest.trim_start_matches('/').split('/').next().unwrap_or_default();
        if RESULT_FILES.contains(&top) {
            anyhow::bail!(
                "the writable mount {} would be written where --out keeps canon's own `{top}`; give it another guest path, or run without --out",
                m.guest
            );
        }
    }
    Ok(())
}

/// The host directories `job` mounts: never modified, so never an output
/// directory or inside one.
fn mounted(job: &Job) -> impl Iterator<Item = &Path> {
    job.mounts.iter().filter_map(|m| m.source.as_deref())
}

/// Writes stdout, stderr, outcome.json and the output tree into `dir`.
pub fn write_results(dir: &Path, outcome: &Outcome, report: &RunReport) -> Result<()> {
    std::fs::write(dir.join("stdout"), &outcome.stdout).context("cannot write stdout")?;
    std::fs::write(dir.join("stderr"), &outcome.stderr).context("cannot write stderr")?;
    let json = serde_json::to_string_pretty(report)? + "\n";
    std::fs::write(dir.join("outcome.json"), json).context("cannot write outcome.json")?;
    outcome.write_outputs(dir).context("cannot write the output tree")?;
    Ok(())
}

fn print_summary(job: &Job, outcome: &Outcome, r: &RunReport) -> std::io::Result<()> {
    let files = r.outputs.iter().filter(|e| e.kind == canon::tree::Kind::File).count();
    outln!("job      {} {}", job.name, r.job_digest)?;
    outln!("result   {} (fuel {})", outcome.termination, r.fuel_consumed)?;
    outln!("outcome  {}", r.outcome_digest)?;
    outln!("stdout   {} bytes {}", outcome.stdout.len(), r.stdout_sha256)?;
    outln!("stderr   {} bytes {}", outcome.stderr.len(), r.stderr_sha256)?;
    outln!("outputs  {files} files, manifest {}", r.manifest_digest)?;
    Ok(())
}
