//! `canon inspect`: show a job spec as canon resolved it, and its digest.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use canon::job::Job;

/// Print the resolved job spec and its job digest.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job spec (TOML).
    job: PathBuf,
}

/// Runs `canon inspect`.
pub fn run(args: Args) -> Result<ExitCode> {
    let job = Job::load(&args.job).context("invalid job")?;
    outln!("job_digest    {}", job.digest())?;
    outln!("name          {}", job.name)?;
    outln!("module        {} sha256 {} ({} bytes)", job.module_path.display(), job.module_sha256, job.module.len())?;
    for p in &job.preloads {
        outln!("preload       {} = {} sha256 {} ({} bytes)", p.name, p.module_path.display(), p.module_sha256, p.module.len())?;
    }
    outln!("imports       unknown ones: {}", job.unknown_imports)?;
    outln!("argv          {:?}", std::iter::once(&job.argv0).chain(&job.args).collect::<Vec<_>>())?;
    for (k, v) in &job.env {
        outln!("env           {k}={v}")?;
    }
    outln!("stdin         {} bytes sha256 {}", job.stdin.len(), canon::digest::Digest::of(&job.stdin))?;
    for m in &job.mounts {
        let access = if m.writable { "rw" } else { "ro" };
        let src = m.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        outln!("mount         {} {access} manifest {} (from {src})", m.guest, m.manifest_digest())?;
    }
    if job.adds_sandbox_dirs() {
        outln!("sandbox_dirs  true: /out (unless mounted) and /tmp after the mounts")?;
    } else {
        outln!("sandbox_dirs  false: the guest sees the mounts and nothing else")?;
    }
    outln!("seed          {}", job.seed)?;
    outln!("epoch         {}", job.epoch)?;
    let l = &job.limits;
    outln!(
        "limits        fuel {} memory {} stdout {} stderr {} output_bytes {} output_files {}",
        l.fuel,
        l.memory_bytes,
        l.stdout_bytes,
        l.stderr_bytes,
        l.output_bytes,
        l.output_files
    )?;
    if let Some(t) = &job.threads {
        let seed = t.seed.map_or_else(|| format!("{} (derived)", t.effective_seed(job.seed)), |s| s.to_string());
        outln!("threads       policy {} seed {seed} slice {} limit {}", t.policy, t.slice, t.max_threads)?;
    }
    outln!("timeout       {}s (not part of the digest)", job.timeout.as_secs())?;
    if let Some(c) = &job.commit {
        outln!("commit        {c}")?;
    }
    Ok(ExitCode::SUCCESS)
}
