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
    println!("job_digest    {}", job.digest());
    println!("name          {}", job.name);
    println!("module        {} sha256 {} ({} bytes)", job.module_path.display(), job.module_sha256, job.module.len());
    println!("argv          {:?}", std::iter::once(&job.argv0).chain(&job.args).collect::<Vec<_>>());
    for (k, v) in &job.env {
        println!("env           {k}={v}");
    }
    println!("stdin         {} bytes sha256 {}", job.stdin.len(), canon::digest::Digest::of(&job.stdin));
    for m in &job.mounts {
        let access = if m.writable { "rw" } else { "ro" };
        let src = m.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        println!("mount         {} {access} manifest {} (from {src})", m.guest, m.tree.manifest().digest());
    }
    println!("seed          {}", job.seed);
    println!("epoch         {}", job.epoch);
    let l = &job.limits;
    println!(
        "limits        fuel {} memory {} stdout {} stderr {} output_bytes {} output_files {}",
        l.fuel, l.memory_bytes, l.stdout_bytes, l.stderr_bytes, l.output_bytes, l.output_files
    );
    println!("timeout       {}s (not part of the digest)", job.timeout.as_secs());
    if let Some(c) = &job.commit {
        println!("commit        {c}");
    }
    Ok(ExitCode::SUCCESS)
}
