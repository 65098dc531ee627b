//! `canon quorum`: tally receipts for one job and show how far to trust it.
//!
//! Reads receipt files, and every `*.json` file below each directory given
//! (recursively, in sorted order, symbolic links not followed). Prints a
//! table — one line per outcome group with its nodes, trust score and a bar —
//! the verdict, the dissenters and every receipt set aside with its reason;
//! or, with `--json`, the [`canon::quorum::Tally`] as JSON (schema in
//! `docs/ENCODINGS.md`, "Tally JSON"); with `--html FILE`, also a static
//! report that verifies the receipts in the browser. Exit status 0 when accepted, 1
//! otherwise, 125 on errors.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use canon::digest::JobDigest;
use canon::quorum::{Ledger, Policy, Tally, TallyOptions, Verdict};

/// Tally receipts for one job and show the trust in each outcome.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Receipt files, or directories searched recursively for `*.json`.
    #[arg(required = true, value_name = "RECEIPT|DIR")]
    inputs: Vec<PathBuf>,
    /// Trust policy (TOML). Without one, every node that signed a valid
    /// receipt is trusted with weight 1.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The job the receipts must be for; others are set aside as replays.
    /// Without it, the job with the most trusted weight behind it (nodes of
    /// weight 0 have no say).
    #[arg(long, value_name = "HEX")]
    job_digest: Option<JobDigest>,
    /// Print the tally as JSON.
    #[arg(long)]
    json: bool,
    /// Reputation ledger (JSON): read for credibility weights when the policy
    /// asks, and updated with this tally if it is accepted under a policy
    /// that gives unlisted nodes no weight (only listed nodes are recorded).
    #[arg(long, value_name = "FILE")]
    ledger: Option<PathBuf>,
    /// Also write the tally as one self-contained HTML page that embeds the
    /// receipts and verifies them itself in the browser (docs/WEB.md).
    /// Written atomically: FILE is replaced whole or not at all.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// Collects receipt files: files as given, `*.json` below directories.
fn collect(path: &Path, out: &mut Vec<PathBuf>, top: bool) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() || (top && fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false)) {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot list {}", path.display()))?;
        entries.sort();
        for e in entries {
            let m = fs::symlink_metadata(&e).with_context(|| format!("cannot read {}", e.display()))?;
            if m.is_dir() || (m.is_file() && e.extension().is_some_and(|x| x == "json")) {
                collect(&e, out, false)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Runs `canon quorum`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = match &args.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::implicit(),
    };
    let ledger = match &args.ledger {
        Some(p) => Some(Ledger::load(p)?),
        None => None,
    };
    let mut files = Vec::new();
    for input in &args.inputs {
        collect(input, &mut files, true)?;
    }
    let mut receipts = Vec::with_capacity(files.len());
    for f in &files {
        let bytes = fs::read(f).with_context(|| format!("cannot read receipt {}", f.display()))?;
        receipts.push((f.display().to_string(), bytes));
    }
    let options = TallyOptions { policy, expected_job: args.job_digest, ledger };
    let tally = canon::quorum::tally(&receipts, &options);
    if let Some(path) = &args.html {
        let page = canon::web::report::report_html(&receipts, &options, &tally);
        canon::web::report::write_atomic(path, page.as_bytes()).with_context(|| format!("cannot write the report {}", path.display()))?;
    }

    if let (Some(path), Some(mut ledger)) = (&args.ledger, options.ledger) {
        match ledger.record(&tally) {
            Ok(0) => {}
            Ok(_) => ledger.save(path)?,
            Err(why) => eprintln!("canon: ledger {} not updated: {why}", path.display()),
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&tally).context("cannot serialise the tally")?)?;
    } else {
        out!("{}", render(&tally))?;
    }
    Ok(if tally.verdict == Verdict::Accepted { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A bar of ten cells for a score in [0, 1].
fn bar(score: f64) -> String {
    let filled = (score.clamp(0.0, 1.0) * 10.0).round() as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(10 - filled))
}

/// How many distinct engines the tally's votes ran on.
fn engines(t: &Tally) -> usize {
    t.groups.iter().flat_map(|g| &g.engines).collect::<std::collections::BTreeSet<_>>().len()
}

/// The table a person reads.
pub fn render(t: &Tally) -> String {
    let mut s = String::new();
    let job = match (t.job, t.job_chosen_by) {
        (Some(j), canon::quorum::tally::JobChoice::Expected) => format!("{j}"),
        (Some(j), _) => format!("{j} (the most trusted weight names it; pin it with --job-digest)"),
        (None, _) => "none (no valid receipt)".to_string(),
    };
    let _ = writeln!(s, "job      {job}");
    let p = &t.policy;
    if p.implicit {
        let _ = writeln!(s, "policy   none given: trusting every node that signed a valid receipt, weight 1 each");
    }
    let _ = writeln!(
        s,
        "quorum   min_quorum {}, threshold {:.2} of total trusted weight {:.2}{}",
        p.min_quorum,
        p.threshold,
        t.total_weight,
        if p.credibility { ", weighted by credibility" } else { "" }
    );
    let _ = writeln!(s);
    if t.groups.is_empty() {
        let _ = writeln!(s, "  (no valid votes)");
    } else {
        let _ = writeln!(s, "    {:<12}  {:<22}  {:<18}  {:<28}  trust", "outcome", "termination", "engine", "nodes");
    }
    for g in &t.groups {
        let mark = if t.accepted == Some(g.outcome) { "✔" } else { " " };
        let engines: Vec<String> = g.engines.iter().map(|e| format!("canon {} ABI {}", e.canon, e.determinism_abi)).collect();
        let nodes: Vec<String> = g.votes.iter().map(|v| if v.weight > 0.0 { v.label() } else { format!("{} (weight 0)", v.label()) }).collect();
        let _ = writeln!(
            s,
            "  {mark} {:<12}  {:<22}  {:<18}  {:<28}  {} {:.2}",
            g.outcome.short(),
            g.termination,
            engines.join(", "),
            nodes.join(", "),
            bar(g.score),
            g.score
        );
    }
    let _ = writeln!(s);
    let verdict = match (t.verdict, t.accepted_group()) {
        (Verdict::Accepted, Some(g)) => format!("ACCEPTED: outcome {} ({} agreeing, trust {:.2} >= {:.2})", g.outcome.short(), g.counted, g.score, p.threshold),
        (Verdict::Disputed, _) => "DISPUTED: trusted nodes on the same engine got different outcomes, and none reaches the threshold".to_string(),
        (Verdict::Insufficient, _) if engines(t) > 1 => {
            "INSUFFICIENT: not enough trusted weight agrees yet (nodes ran different engines; outcomes are compared within one)".to_string()
        }
        (Verdict::Insufficient, _) => "INSUFFICIENT: not enough trusted weight agrees yet".to_string(),
        (Verdict::Nondeterministic, _) => {
            "NONDETERMINISTIC: a trusted node signed different outcomes for this job on one engine, and no outcome is accepted".to_string()
        }
        (Verdict::Accepted, None) => "ACCEPTED".to_string(),
    };
    let _ = writeln!(s, "verdict  {verdict}");
    if !t.dissenters.is_empty() {
        let names: Vec<String> = t.dissenters.iter().map(|d| d.label()).collect();
        let _ = writeln!(s, "dissent  {}", names.join(", "));
    }
    if !t.equivocators.is_empty() {
        let names: Vec<String> = t.equivocators.iter().map(|d| d.label()).collect();
        let _ = writeln!(s, "equivocated  {} (signed different outcomes on one engine; votes void)", names.join(", "));
    }
    if !t.set_aside.is_empty() {
        let _ = writeln!(s, "set aside ({} of {} receipts):", t.set_aside.len(), t.receipts);
        for a in &t.set_aside {
            let node = a.node.map(|n| n.short()).unwrap_or_else(|| "-".to_string());
            let _ = writeln!(s, "  {}  {}  {}: {}", a.source, node, a.reason.code(), a.reason);
        }
    }
    s
}
