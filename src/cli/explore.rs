//! `canon explore`: run a threaded job under many scheduler seeds and
//! report the distinct results it found (exit or trap, stdout, stderr,
//! output tree: the outcome without its fuel, which every schedule
//! changes), each with the first seed that gives it. Every seed is one fixed schedule, so a seed reproduces its
//! outcome on any node: a race finder for threaded WASI programs
//! (docs/THREADS.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use canon::job::{DEFAULT_PCT_DEPTH, Job, Policy, Threads};
use canon::outcome::outcome_digest;
use canon::sandbox::{Backend, Sandbox};

/// Run a threaded job under N schedules and report its distinct results.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job spec (TOML) of a threaded job.
    job: PathBuf,
    /// How many schedules to run: scheduler seeds 0, 1, … N − 1.
    #[arg(long, default_value_t = 100)]
    schedules: u64,
    /// The policy: `pct` (the default), `random` or `round-robin`.
    #[arg(long, default_value = "pct")]
    policy: String,
    /// PCT's depth (with `--policy pct`).
    #[arg(long, default_value_t = DEFAULT_PCT_DEPTH)]
    depth: u32,
    /// The backend: `cranelift` or `cranelift-baseline` (Pulley runs no
    /// threaded jobs).
    #[arg(long, value_name = "NAME", default_value_t = Backend::Cranelift)]
    backend: Backend,
}

/// One distinct result and the schedules that gave it.
struct Found {
    termination: String,
    stdout: String,
    first_seed: u64,
    count: u64,
}

/// Runs `canon explore`. Exit status 0 when every schedule gave one
/// result, 1 when they gave more than one.
pub fn run(args: Args) -> Result<ExitCode> {
    let job = Job::load(&args.job).context("invalid job")?;
    let Some(threads) = job.threads else {
        bail!("{}: not a threaded job (its module imports neither wasi::thread-spawn nor a shared memory)", args.job.display())
    };
    let policy = match args.policy.as_str() {
        "pct" => Policy::Pct { depth: args.depth },
        "random" => Policy::Random,
        "round-robin" => Policy::RoundRobin,
        other => bail!("--policy {other:?}: expected pct, random or round-robin"),
    };
    if args.schedules == 0 {
        bail!("--schedules 0: expected at least 1");
    }
    let sandbox = Sandbox::builder().backend(args.backend).build()?;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for seed in 0..args.schedules {
        let mut j = job.clone();
        j.threads = Some(Threads { policy, seed: Some(seed), ..threads });
        let outcome = sandbox.run(&j).with_context(|| format!("schedule {seed}"))?;
        // What the guest produced: the outcome digest with fuel 0.
        let s = outcome.summary();
        let digest = outcome_digest(&s.termination, 0, &s.stdout_sha256, &s.stderr_sha256, &s.manifest_digest).to_string();
        let entry = found.entry(digest).or_insert_with(|| Found {
            termination: outcome.termination.to_string(),
            stdout: String::from_utf8_lossy(&outcome.stdout).lines().next().unwrap_or("").chars().take(60).collect(),
            first_seed: seed,
            count: 0,
        });
        entry.count += 1;
    }
    let mut rows: Vec<(&String, &Found)> = found.iter().collect();
    rows.sort_by_key(|(_, f)| f.first_seed);
    outln!("job       {} {}", job.name, args.job.display())?;
    outln!("explored  {} schedules, policy {policy}: {} distinct result{}", args.schedules, rows.len(), if rows.len() == 1 { "" } else { "s" })?;
    for (digest, f) in &rows {
        outln!("result    {digest}  {:>5} schedules  first seed {:>5}  {}  {:?}", f.count, f.first_seed, f.termination, f.stdout)?;
    }
    if rows.len() > 1 {
        let depth = if let Policy::Pct { depth } = policy { format!(", depth = {depth}") } else { String::new() };
        outln!("reproduce one: [threads] policy = \"{}\"{depth}, seed = <its first seed>", policy.as_str())?;
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
