//! `canon diff`: which parts of two receipts' outcomes differ.
//!
//! Both receipts are verified first. Prints the job, termination, fuel,
//! stdout, stderr and every file added, removed or changed between A and B.
//! Exit status 0 when the outcomes are identical, 1 when they differ (like
//! diff(1)), 125 on errors (including a receipt that does not verify).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use canon::receipt::{self, VerifiedReceipt};
use canon::tree::Change;

/// Show which parts of two receipts' outcomes differ.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The first receipt.
    a: PathBuf,
    /// The second receipt.
    b: PathBuf,
}

fn load(path: &PathBuf) -> anyhow::Result<VerifiedReceipt> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read receipt {}", path.display()))?;
    receipt::verify_envelope(&bytes).with_context(|| format!("{} does not verify", path.display()))
}

fn line<T: PartialEq + std::fmt::Display>(out: &mut String, what: &str, a: T, b: T) -> bool {
    if a == b {
        let _ = writeln!(out, "  {what:<12} same       {a}");
        false
    } else {
        let _ = writeln!(out, "  {what:<12} DIFFERS    A {a}  B {b}");
        true
    }
}

/// Runs `canon diff`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ra = load(&args.a)?;
    let rb = load(&args.b)?;
    let (pa, pb) = (&ra.statement.predicate, &rb.statement.predicate);
    let (oa, ob) = (&pa.outcome, &pb.outcome);
    let mut out = String::new();
    let _ = writeln!(out, "A  {}  node {}  outcome {}", args.a.display(), pa.node, oa.outcome_digest);
    let _ = writeln!(out, "B  {}  node {}  outcome {}", args.b.display(), pb.node, ob.outcome_digest);
    let _ = writeln!(out);
    line(&mut out, "job", pa.job_digest.short(), pb.job_digest.short());
    line(
        &mut out,
        "engine",
        format!("canon {} wasmtime {} {} abi {}", pa.engine.canon, pa.engine.wasmtime, pa.engine.backend, pa.engine.determinism_abi),
        format!("canon {} wasmtime {} {} abi {}", pb.engine.canon, pb.engine.wasmtime, pb.engine.backend, pb.engine.determinism_abi),
    );
    let mut differs = false;
    differs |= line(&mut out, "termination", oa.termination, ob.termination);
    differs |= line(&mut out, "fuel", oa.fuel_consumed, ob.fuel_consumed);
    differs |= line(&mut out, "stdout", oa.stdout_sha256.short(), ob.stdout_sha256.short());
    differs |= line(&mut out, "stderr", oa.stderr_sha256.short(), ob.stderr_sha256.short());
    let files: Vec<String> = oa
        .manifest
        .changes(&ob.manifest)
        .into_iter()
        .map(|change| match change {
            Change::Removed(a) => format!("    - {}  (only in A)", a.path),
            Change::Added(b) => format!("    + {}  (only in B)", b.path),
            Change::Changed(a, b) => {
                format!("    ~ {}  {:?} {} bytes {} -> {:?} {} bytes {}", a.path, a.kind, a.size, a.sha256.short(), b.kind, b.size, b.sha256.short())
            }
        })
        .collect();
    if files.is_empty() {
        let _ = writeln!(out, "  {:<12} same       {} entries", "files", oa.manifest.entries.len());
    } else {
        differs = true;
        let _ = writeln!(out, "  {:<12} DIFFERS    {} of {} entries", "files", files.len(), oa.manifest.entries.len().max(ob.manifest.entries.len()));
        for f in files {
            let _ = writeln!(out, "{f}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", if differs { "outcomes differ" } else { "outcomes are identical" });
    out!("{out}")?;
    Ok(if differs { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
