//! `canon run --nodes N`: the main job on one machine. N independent
//! executors run the job in parallel, each with its own key and its own
//! sandbox, sign receipts, and the receipts are tallied.
//!
//! `--faulty F` makes the last F nodes byzantine, cycling through three
//! documented behaviours ([`Fault`]). Flipping nodes all flip the same byte,
//! so they collude on one wrong outcome — the hardest case for a quorum.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use canon::digest::{Digest, JobDigest};
use canon::job::Job;
use canon::node::{NodeId, NodeKey};
use canon::outcome::{Outcome, OutcomeSummary};
use canon::quorum::policy::TrustedNode;
use canon::quorum::{Policy, Tally, TallyOptions};
use canon::receipt::{Engine, RunFacts, RunId, Statement, Timestamp};
use canon::sandbox::{Backend, Sandbox};

/// Most local nodes one `canon run --nodes` will start.
pub const MAX_NODES: usize = 64;

/// How a byzantine node lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Flips the lowest bit of the first byte of stdout (an empty stdout
    /// becomes the single byte 0x01), then signs that outcome as its own.
    FlipByte,
    /// Signs the honest outcome but for another job (a replayed receipt).
    OtherJob,
    /// Signs twice: the honest outcome and a flipped one (equivocation).
    SignTwice,
}

impl Fault {
    /// The fault of the `i`-th faulty node (0-based): the three in turn.
    pub fn nth(i: usize) -> Fault {
        [Fault::FlipByte, Fault::OtherJob, Fault::SignTwice][i % 3]
    }

    fn name(self) -> &'static str {
        match self {
            Fault::FlipByte => "flips a byte of stdout",
            Fault::OtherJob => "signs for another job",
            Fault::SignTwice => "signs two outcomes",
        }
    }
}

/// Where node keys live when `--keys` is not given: `$CANON_KEYS_DIR`, else
/// `$XDG_DATA_HOME/canon/keys`, else `~/.local/share/canon/keys`.
pub fn default_keys_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("CANON_KEYS_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(d).join("canon/keys"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/canon/keys")),
        None => bail!("no --keys DIR given and neither CANON_KEYS_DIR, XDG_DATA_HOME nor HOME is set"),
    }
}

/// The key of local node `i` (1-based) in `dir`, created on first use.
fn node_key(dir: &Path, i: usize) -> Result<NodeKey> {
    let path = dir.join(format!("node-{i}.key"));
    if path.exists() {
        return NodeKey::load(&path).with_context(|| format!("node {i}"));
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("{}: cannot create the keys directory", dir.display()))?;
    let key = NodeKey::generate();
    key.save_new(&path).with_context(|| format!("node {i}"))?;
    Ok(key)
}

/// One node's result: what it writes and the receipts it signed.
pub struct NodeRun {
    /// 1-based index.
    pub index: usize,
    /// Its node id.
    pub node: NodeId,
    /// How it misbehaved, if it did.
    pub fault: Option<Fault>,
    /// The outcome it claims (for a flipping node, the flipped one).
    pub outcome: Outcome,
    /// That outcome's digests, as signed.
    pub summary: OutcomeSummary,
    /// The job digest its (first) receipt names.
    pub claimed_job: JobDigest,
    /// Signed envelopes, as JSON.
    pub receipts: Vec<Vec<u8>>,
}

fn flip(outcome: &Outcome) -> Outcome {
    let mut o = outcome.clone();
    match o.stdout.first_mut() {
        Some(b) => *b ^= 1,
        None => o.stdout.push(1),
    }
    o
}

/// The job digest a node that "signs for another job" names.
fn other_job(job: JobDigest) -> JobDigest {
    let mut tag = b"canon/faulty/other-job\n".to_vec();
    tag.extend_from_slice(job.digest().as_bytes());
    JobDigest::new(Digest::of(&tag))
}

/// Signs the outcome `summary` for `job` as `key`, run on `backend`.
pub fn sign(key: &NodeKey, job: JobDigest, summary: &OutcomeSummary, backend: Backend, started: Timestamp) -> Result<Vec<u8>> {
    let facts = RunFacts {
        job_digest: job,
        run_id: RunId::new_v4(),
        engine: Engine::current(backend.as_str()),
        outcome: summary.clone(),
        started,
        finished: Timestamp::now(),
    };
    let envelope = Statement::new(key.node_id(), facts).sign(key).context("cannot sign the receipt")?;
    Ok(envelope.to_json_pretty().into_bytes())
}

/// Runs `job` on `n` local nodes on `backend`, the last `faulty` of them
/// byzantine.
pub fn run_nodes(job: &Job, n: usize, faulty: usize, backend: Backend, keys_dir: &Path) -> Result<Vec<NodeRun>> {
    if n == 0 || n > MAX_NODES {
        bail!("--nodes {n}: expected 1 to {MAX_NODES}");
    }
    if faulty > n {
        bail!("--faulty {faulty}: more faulty nodes than --nodes {n}");
    }
    let keys: Vec<NodeKey> = (1..=n).map(|i| node_key(keys_dir, i)).collect::<Result<_>>()?;
    let job_digest = job.digest();
    let bar = ProgressBar::new(n as u64);
    bar.set_style(ProgressStyle::with_template("{spinner} running on {pos}/{len} nodes {wide_bar} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let pool = canon::sandbox::guest_thread_pool(0).context("cannot start the node threads")?;
    let runs: Vec<Result<NodeRun>> = pool.install(|| {
        keys.par_iter()
            .enumerate()
            .map(|(i, key)| {
                let index = i + 1;
                let fault = (index > n - faulty).then(|| Fault::nth(index - 1 - (n - faulty)));
                let started = Timestamp::now();
                // Each node is its own executor: its own engine and in-memory
                // module cache (the disk cache is shared, as on one machine).
                let sandbox = Sandbox::builder().backend(backend).build()?;
                let honest = sandbox.run(job).with_context(|| format!("node {index}: no result"))?;
                let (outcome, claimed_job) = match fault {
                    Some(Fault::FlipByte) => (flip(&honest), job_digest),
                    Some(Fault::OtherJob) => (honest, other_job(job_digest)),
                    None | Some(Fault::SignTwice) => (honest, job_digest),
                };
                let summary = outcome.summary();
                let mut receipts = vec![sign(key, claimed_job, &summary, backend, started)?];
                if fault == Some(Fault::SignTwice) {
                    receipts.push(sign(key, job_digest, &flip(&outcome).summary(), backend, started)?);
                }
                bar.inc(1);
                Ok(NodeRun { index, node: key.node_id(), fault, outcome, summary, claimed_job, receipts })
            })
            .collect()
    });
    bar.finish_and_clear();
    runs.into_iter().collect()
}

/// The policy `--nodes` uses without `--policy`: its own N keys, weight 1
/// each, named `node-1`…, unknown nodes weight 0, default quorum rules.
pub fn local_policy(runs: &[NodeRun]) -> Policy {
    let mut policy = Policy::implicit();
    policy.implicit = false;
    policy.unknown_weight = 0.0;
    policy.nodes = runs.iter().map(|r| TrustedNode { id: r.node, name: Some(format!("node-{}", r.index)), weight: 1.0 }).collect();
    policy
}

/// Tallies every receipt of `runs` for `job`.
pub fn tally(runs: &[NodeRun], job: JobDigest, policy: Policy) -> Tally {
    let mut receipts = Vec::new();
    for r in runs {
        for (k, bytes) in r.receipts.iter().enumerate() {
            receipts.push((receipt_name(r.index, k), bytes.clone()));
        }
    }
    canon::quorum::tally(&receipts, &TallyOptions { policy, expected_job: Some(job), ledger: None })
}

/// `node-3/receipt.json`, and `node-3/receipt-2.json` for a second receipt.
pub fn receipt_name(index: usize, k: usize) -> String {
    if k == 0 { format!("node-{index}/receipt.json") } else { format!("node-{index}/receipt-{}.json", k + 1) }
}

/// One line per node for the summary.
pub fn describe(runs: &[NodeRun]) -> String {
    let mut s = String::new();
    for r in runs {
        let role = r.fault.map(|f| format!("byzantine: {}", f.name())).unwrap_or_else(|| "honest".into());
        s.push_str(&format!("node-{:<3} {}  {}  {}\n", r.index, r.node.short(), r.outcome.termination, role));
    }
    s
}
