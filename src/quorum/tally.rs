//! Counting receipts for one job into a verdict.
//!
//! 1. Verify every receipt ([`crate::receipt::verify_many`]); invalid ones
//!    are set aside with their reason.
//! 2. Fix the job: the expected job digest if given, else the job with the
//!    most trusted weight behind it, each node counted once (ties: more
//!    nodes of positive weight, then the smallest digest). Never the number
//!    of signers: a key costs nothing to make, so nodes of weight 0 have no
//!    say in which job is tallied. Receipts for any other job are set aside
//!    as replays.
//! 3. One vote per node. The *engine* of a receipt is the canon version,
//!    wasmtime version and determinism ABI it names (not the backend: every
//!    backend of one engine must give the same bytes). A node that signed
//!    different outcomes for the job on one engine has all its receipts
//!    voided and is named an equivocator. Otherwise its vote is its receipt
//!    from its newest engine (by ABI, then canon version, then wasmtime
//!    version); its receipts from older engines are set aside as
//!    `superseded` (another outcome: an upgraded node, not a liar) or as
//!    duplicates (the same outcome), like repeated receipts on one engine.
//! 4. Group votes by outcome digest. A vote weighs the policy's weight for
//!    the node (`unknown_weight` for unlisted nodes), times its credibility
//!    when the policy asks. The *total trusted weight* is the weight of every
//!    node the policy lists, voted or not, plus that of every unlisted node
//!    that sent a valid receipt for the job (so under the implicit policy it
//!    is the number of distinct valid signers). A group's trust score is its
//!    weight divided by the total, in [0, 1].
//! 5. Verdict. Only votes of positive weight are *counted*. Outcomes are
//!    compared only within an engine: an outcome may change from one canon
//!    version or determinism ABI to the next, so votes on different engines
//!    never contradict each other. The first rule that applies:
//!    - `accepted`: exactly one group reaches `threshold` with at least
//!      `min_quorum` counted votes. Its dissenters are named: the trusted
//!      nodes, and those of positive weight, that voted for another outcome
//!      on an engine on which such a node voted for the accepted one.
//!    - `nondeterministic`: a node of positive weight signed different
//!      outcomes for the job on one engine (an equivocator). Its own
//!      receipts show the same job on the same engine giving two outcomes:
//!      its runtime is not deterministic, or it lies, and no tally can tell
//!      which. Never a mere disagreement between nodes.
//!    - `disputed`: counted votes on one engine are for different outcomes,
//!      and none (or more than one, a tie) has enough weight. One node
//!      against another is a dispute, not evidence of nondeterminism.
//!    - `insufficient`: otherwise — too few counted votes, too little trusted
//!      weight on one outcome, or outcomes that differ only between engines.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Serialize, Serializer};

use crate::digest::{JobDigest, OutcomeDigest};
use crate::node::NodeId;
use crate::quorum::policy::{Policy, TrustedNode};
use crate::quorum::reputation::Ledger;
use crate::receipt::{self, Engine, ReceiptError, RunId, VerifiedReceipt};

/// The version of the tally's JSON ([`Tally::version`]).
pub const TALLY_VERSION: u32 = 2;

/// Slack for comparing a score with the threshold, so that 2 of 3 equal
/// weights meets a threshold of 2/3 despite rounding.
const SCORE_EPSILON: f64 = 1e-9;

/// What the tally concludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// One outcome has enough agreeing trusted weight.
    Accepted,
    /// Nodes of positive weight on one engine got different outcomes, and
    /// none has enough weight (or several tie).
    Disputed,
    /// Too few receipts, or too little trusted weight on one outcome, to say
    /// anything yet.
    Insufficient,
    /// Not accepted, and a node of positive weight signed two different
    /// outcomes for the job on one engine: its runs of this job are not
    /// deterministic, or it lies.
    Nondeterministic,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Accepted => "accepted",
            Verdict::Disputed => "disputed",
            Verdict::Insufficient => "insufficient",
            Verdict::Nondeterministic => "nondeterministic",
        })
    }
}

/// What to tally against.
#[derive(Clone, Debug, Default)]
pub struct TallyOptions {
    /// Whom to trust. The default value is [`Policy::implicit`].
    pub policy: Policy,
    /// The job the receipts must be for. The default value is `None`: the
    /// job with the most trusted weight behind it.
    pub expected_job: Option<JobDigest>,
    /// Reputation history, used when `policy.credibility` is set. The
    /// default value is `None` (every node is new).
    pub ledger: Option<Ledger>,
}

/// The engine a receipt was made on: what the outcome is a function of,
/// besides the job. Ordered oldest first: by determinism ABI, then canon
/// version, then wasmtime version (semantic versions; text that is none
/// sorts first).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct EngineVersion {
    /// canon's version.
    pub canon: String,
    /// wasmtime's version.
    pub wasmtime: String,
    /// The determinism ABI version.
    pub determinism_abi: u32,
}

impl EngineVersion {
    /// The engine of a receipt (its backend left out).
    pub fn of(engine: &Engine) -> EngineVersion {
        EngineVersion { canon: engine.canon.clone(), wasmtime: engine.wasmtime.clone(), determinism_abi: engine.determinism_abi }
    }

    fn sort_key(&self) -> (u32, Option<semver::Version>, &str, Option<semver::Version>, &str) {
        (self.determinism_abi, semver::Version::parse(&self.canon).ok(), &self.canon, semver::Version::parse(&self.wasmtime).ok(), &self.wasmtime)
    }
}

impl Ord for EngineVersion {
    fn cmp(&self, other: &EngineVersion) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for EngineVersion {
    fn partial_cmp(&self, other: &EngineVersion) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for EngineVersion {
    /// `canon 0.1.0 (ABI 2, wasmtime 48.0.8)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "canon {} (ABI {}, wasmtime {})", self.canon, self.determinism_abi, self.wasmtime)
    }
}

/// One counted vote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vote {
    /// The node.
    pub node: NodeId,
    /// Its name in the policy.
    pub name: Option<String>,
    /// Whether the policy lists it (always true under the implicit policy).
    pub trusted: bool,
    /// What its vote weighs (policy weight × credibility).
    pub weight: f64,
    /// Where its receipt came from (a file name, for people).
    pub source: String,
    /// The run it reports.
    pub run_id: RunId,
    /// The engine it ran on.
    pub engine: EngineVersion,
    /// The engine's backend (`cranelift`, `winch`, `pulley`), for people.
    pub backend: String,
}

impl Vote {
    /// The name, or the short node id.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.node.short())
    }

    /// Whether the node is trusted or its vote weighs something: only then
    /// can it be named a dissenter. A stranger of weight 0 is listed in its
    /// group and nowhere else.
    pub fn has_say(&self) -> bool {
        self.trusted || self.weight > 0.0
    }
}

/// Votes for one outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    /// The outcome digest.
    pub outcome: OutcomeDigest,
    /// How the run ended, e.g. `exit 0` or `trap out_of_fuel`.
    pub termination: String,
    /// Fuel consumed.
    pub fuel_consumed: u64,
    /// The engines its votes ran on, oldest first.
    pub engines: Vec<EngineVersion>,
    /// The votes, heaviest first.
    pub votes: Vec<Vote>,
    /// Sum of the votes' weights.
    pub weight: f64,
    /// `weight / total trusted weight`, in [0, 1].
    pub score: f64,
    /// Votes of positive weight.
    pub counted: usize,
}

/// A node named in a verdict (a dissenter or an equivocator).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeRef {
    /// The node.
    pub node: NodeId,
    /// Its name in the policy.
    pub name: Option<String>,
    /// Whether the policy lists it (always true under the implicit policy).
    pub trusted: bool,
}

impl NodeRef {
    /// The name, or the short node id.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.node.short())
    }
}

/// Why a receipt was not counted.
#[derive(Clone, Debug, PartialEq)]
pub enum SetAsideReason {
    /// It failed verification.
    Invalid(ReceiptError),
    /// Valid, but for another job than the one tallied (a replay).
    WrongJob {
        /// The job tallied.
        expected: JobDigest,
        /// The job in the receipt.
        found: JobDigest,
    },
    /// The node already voted for the same outcome; counted once.
    Duplicate {
        /// The receipt that was counted.
        counted: String,
    },
    /// The node signed different outcomes for this job on one engine; all
    /// its votes are void.
    Equivocation {
        /// The outcome of this receipt.
        outcome: OutcomeDigest,
    },
    /// The node also signed this job on a newer engine, with another
    /// outcome; that receipt is its vote.
    Superseded {
        /// The engine of this receipt.
        engine: EngineVersion,
        /// The receipt that was counted.
        counted: String,
    },
}

impl SetAsideReason {
    /// A stable short code: a [`ReceiptError::code`], or `wrong_job`,
    /// `duplicate`, `equivocation`, `superseded`.
    pub fn code(&self) -> &'static str {
        match self {
            SetAsideReason::Invalid(e) => e.code(),
            SetAsideReason::WrongJob { .. } => "wrong_job",
            SetAsideReason::Duplicate { .. } => "duplicate",
            SetAsideReason::Equivocation { .. } => "equivocation",
            SetAsideReason::Superseded { .. } => "superseded",
        }
    }
}

impl std::fmt::Display for SetAsideReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetAsideReason::Invalid(e) => write!(f, "{e}"),
            SetAsideReason::WrongJob { expected, found } => {
                write!(f, "receipt is for job {}, not the tallied job {} (replay?)", found.short(), expected.short())
            }
            SetAsideReason::Duplicate { counted } => write!(f, "same node, same outcome as {counted}; counted once"),
            SetAsideReason::Equivocation { outcome } => {
                write!(f, "node signed different outcomes for this job on one engine (this one {}); all its votes are void", outcome.short())
            }
            SetAsideReason::Superseded { engine, counted } => {
                write!(f, "made on {engine}; the same node's receipt from a newer engine, {counted}, is its vote")
            }
        }
    }
}

/// A receipt that was not counted, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct SetAside {
    /// Where it came from.
    pub source: String,
    /// Its signer, when known.
    pub node: Option<NodeId>,
    /// Why.
    pub reason: SetAsideReason,
}

impl Serialize for SetAside {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            source: &'a str,
            node: Option<NodeId>,
            code: &'static str,
            reason: String,
        }
        Wire { source: &self.source, node: self.node, code: self.reason.code(), reason: self.reason.to_string() }.serialize(s)
    }
}

/// How the job was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobChoice {
    /// The caller named it.
    Expected,
    /// The job with the most trusted weight behind it.
    TrustedWeight,
    /// No valid receipt, no expected job.
    None,
}

/// The policy a tally used, for display.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicySummary {
    /// No policy file: every valid signer trusted with weight 1.
    pub implicit: bool,
    /// [`Policy::min_quorum`].
    pub min_quorum: usize,
    /// [`Policy::threshold`].
    pub threshold: f64,
    /// [`Policy::unknown_weight`].
    pub unknown_weight: f64,
    /// [`Policy::credibility`].
    pub credibility: bool,
}

/// The result of tallying receipts for one job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tally {
    /// Format version of this structure's JSON.
    pub version: u32,
    /// The job tallied.
    pub job: Option<JobDigest>,
    /// How it was chosen.
    pub job_chosen_by: JobChoice,
    /// The verdict.
    pub verdict: Verdict,
    /// The accepted outcome, when the verdict is accepted.
    pub accepted: Option<OutcomeDigest>,
    /// The policy used.
    pub policy: PolicySummary,
    /// Total trusted weight (the denominator of every score).
    pub total_weight: f64,
    /// Receipts given.
    pub receipts: usize,
    /// Outcome groups, heaviest first.
    pub groups: Vec<Group>,
    /// Trusted nodes, and nodes of positive weight, that voted for another
    /// outcome than the accepted one.
    pub dissenters: Vec<NodeRef>,
    /// Nodes that signed different outcomes for the job on one engine.
    pub equivocators: Vec<NodeRef>,
    /// Receipts not counted, with reasons.
    pub set_aside: Vec<SetAside>,
}

impl Tally {
    /// The accepted group, if any.
    pub fn accepted_group(&self) -> Option<&Group> {
        self.accepted.and_then(|a| self.groups.iter().find(|g| g.outcome == a))
    }
}

/// Verifies `receipts` (source label, envelope JSON) in parallel and tallies them.
pub fn tally<B: AsRef<[u8]> + Sync>(receipts: &[(String, B)], options: &TallyOptions) -> Tally {
    let envelopes: Vec<&[u8]> = receipts.iter().map(|(_, b)| b.as_ref()).collect();
    let results = receipt::verify_many(&envelopes);
    let labelled = receipts.iter().map(|(s, _)| s.clone()).zip(results).collect();
    tally_verified(labelled, options)
}

/// Tallies receipts already verified (or not): the pure counting of the
/// module doc, deterministic for a given input order.
pub fn tally_verified(results: Vec<(String, Result<VerifiedReceipt, ReceiptError>)>, options: &TallyOptions) -> Tally {
    let policy = &options.policy;
    let total_receipts = results.len();
    let mut set_aside = Vec::new();
    let mut valid = Vec::new();
    for (source, result) in results {
        match result {
            Ok(r) => valid.push((source, r)),
            Err(e) => set_aside.push(SetAside { source, node: e.signer(), reason: SetAsideReason::Invalid(e) }),
        }
    }

    let credibility = |node: &NodeId| -> f64 {
        match (&options.ledger, policy.credibility) {
            (Some(ledger), true) => ledger.credibility(node, policy.fault_rate),
            (None, true) => crate::quorum::reputation::credibility(Default::default(), policy.fault_rate),
            _ => 1.0,
        }
    };
    let index: HashMap<NodeId, &TrustedNode> = policy.nodes.iter().map(|n| (n.id, n)).collect();
    let trusted = |node: &NodeId| -> Option<&TrustedNode> { index.get(node).copied() };
    let base_weight = |node: &NodeId| -> f64 { trusted(node).map(|t| t.weight).unwrap_or(policy.unknown_weight) };
    let weight_of = |node: &NodeId| -> f64 { base_weight(node) * credibility(node) };

    // 2. Fix the job.
    let (job, job_chosen_by) = match options.expected_job {
        Some(j) => (Some(j), JobChoice::Expected),
        None => {
            let mut signers: BTreeMap<JobDigest, BTreeSet<NodeId>> = BTreeMap::new();
            for (_, r) in &valid {
                signers.entry(r.job()).or_default().insert(r.node());
            }
            let best = signers
                .iter()
                .map(|(job, nodes)| {
                    let weights: Vec<f64> = nodes.iter().map(weight_of).filter(|w| *w > 0.0).collect();
                    (weights.iter().sum::<f64>(), weights.len(), *job)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(&a.2)));
            match best {
                Some((_, _, j)) => (Some(j), JobChoice::TrustedWeight),
                None => (None, JobChoice::None),
            }
        }
    };

    // 3. One vote per node: sort by node, newest engine first (stable, so
    // each node's receipts on one engine keep their input order), and walk
    // each node's run.
    let mut kept: Vec<(String, VerifiedReceipt)> = Vec::with_capacity(valid.len());
    for (source, r) in valid {
        match job {
            Some(j) if r.job() != j => {
                set_aside.push(SetAside { source, node: Some(r.node()), reason: SetAsideReason::WrongJob { expected: j, found: r.job() } })
            }
            _ => kept.push((source, r)),
        }
    }
    let engine_of = |r: &VerifiedReceipt| EngineVersion::of(&r.statement.predicate.engine);
    kept.sort_by(|(_, a), (_, b)| a.node().cmp(&b.node()).then_with(|| engine_of(b).cmp(&engine_of(a))));
    let mut votes: Vec<(OutcomeDigest, Vote, &VerifiedReceipt)> = Vec::new();
    let mut equivocators = Vec::new();
    let mut voters: Vec<NodeId> = Vec::new();
    for receipts in kept.chunk_by(|(_, a), (_, b)| a.node() == b.node()) {
        let (first_source, first) = &receipts[0];
        let node = first.node();
        voters.push(node);
        let equivocated = receipts
            .chunk_by(|(_, a), (_, b)| engine_of(a) == engine_of(b))
            .any(|same_engine| same_engine.iter().any(|(_, r)| r.outcome_digest() != same_engine[0].1.outcome_digest()));
        if equivocated {
            equivocators.push(NodeRef { node, name: trusted(&node).and_then(|t| t.name.clone()), trusted: trusted(&node).is_some() || policy.implicit });
            for (source, r) in receipts {
                set_aside.push(SetAside { source: source.clone(), node: Some(node), reason: SetAsideReason::Equivocation { outcome: r.outcome_digest() } });
            }
            continue;
        }
        for (source, r) in &receipts[1..] {
            let reason = if r.outcome_digest() == first.outcome_digest() {
                SetAsideReason::Duplicate { counted: first_source.clone() }
            } else {
                SetAsideReason::Superseded { engine: engine_of(r), counted: first_source.clone() }
            };
            set_aside.push(SetAside { source: source.clone(), node: Some(node), reason });
        }
        let listed = trusted(&node);
        let engine = &first.statement.predicate.engine;
        votes.push((
            first.outcome_digest(),
            Vote {
                node,
                name: listed.and_then(|t| t.name.clone()),
                trusted: listed.is_some() || policy.implicit,
                weight: weight_of(&node),
                source: first_source.clone(),
                run_id: first.statement.predicate.run_id,
                engine: EngineVersion::of(engine),
                backend: engine.backend.clone(),
            },
            first,
        ));
    }

    // 4. Groups and scores.
    let listed: f64 = policy.nodes.iter().map(|n| n.weight * credibility(&n.id)).sum();
    let unlisted: f64 = voters.iter().filter(|n| trusted(n).is_none()).map(weight_of).sum();
    let total_weight = listed + unlisted;
    let mut groups: BTreeMap<OutcomeDigest, Group> = BTreeMap::new();
    for (outcome, vote, receipt) in votes {
        let o = &receipt.statement.predicate.outcome;
        let g = groups.entry(outcome).or_insert_with(|| Group {
            outcome,
            termination: o.termination.to_string(),
            fuel_consumed: o.fuel_consumed,
            engines: Vec::new(),
            votes: Vec::new(),
            weight: 0.0,
            score: 0.0,
            counted: 0,
        });
        g.weight += vote.weight;
        g.counted += usize::from(vote.weight > 0.0);
        g.votes.push(vote);
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    for g in &mut groups {
        let engines: BTreeSet<&EngineVersion> = g.votes.iter().map(|v| &v.engine).collect();
        g.engines = engines.into_iter().cloned().collect();
        g.score = if total_weight > 0.0 { (g.weight / total_weight).clamp(0.0, 1.0) } else { 0.0 };
        // Heaviest first, then named before unnamed, by name, then by id (cheap keys only:
        // a group may hold a hundred thousand votes).
        g.votes.sort_by(|a, b| {
            b.weight.total_cmp(&a.weight).then_with(|| (a.name.is_none(), &a.name).cmp(&(b.name.is_none(), &b.name))).then(a.node.cmp(&b.node))
        });
    }
    groups
        .sort_by(|a, b| b.weight.total_cmp(&a.weight).then(b.counted.cmp(&a.counted)).then(b.votes.len().cmp(&a.votes.len())).then(a.outcome.cmp(&b.outcome)));

    // 5. Verdict.
    let winners: Vec<&Group> = groups.iter().filter(|g| g.counted >= policy.min_quorum && g.score + SCORE_EPSILON >= policy.threshold).collect();
    let mut outcomes_by_engine: BTreeMap<&EngineVersion, BTreeSet<OutcomeDigest>> = BTreeMap::new();
    for g in &groups {
        for v in g.votes.iter().filter(|v| v.weight > 0.0) {
            outcomes_by_engine.entry(&v.engine).or_default().insert(g.outcome);
        }
    }
    let (verdict, accepted) = if let [winner] = winners.as_slice() {
        (Verdict::Accepted, Some(winner.outcome))
    } else if equivocators.iter().any(|e| weight_of(&e.node) > 0.0) {
        (Verdict::Nondeterministic, None)
    } else if outcomes_by_engine.values().any(|outcomes| outcomes.len() > 1) {
        (Verdict::Disputed, None)
    } else {
        (Verdict::Insufficient, None)
    };
    let dissenters = match accepted.and_then(|a| groups.iter().find(|g| g.outcome == a)) {
        Some(winner) => {
            // The engines the accepted outcome was seen on by nodes that have
            // a say: a stranger's vote does not widen whom it contradicts.
            let engines: BTreeSet<&EngineVersion> = winner.votes.iter().filter(|v| v.has_say()).map(|v| &v.engine).collect();
            groups
                .iter()
                .filter(|g| g.outcome != winner.outcome)
                .flat_map(|g| g.votes.iter())
                .filter(|v| v.has_say() && engines.contains(&v.engine))
                .map(|v| NodeRef { node: v.node, name: v.name.clone(), trusted: v.trusted })
                .collect()
        }
        None => Vec::new(),
    };

    Tally {
        version: TALLY_VERSION,
        job,
        job_chosen_by,
        verdict,
        accepted,
        policy: PolicySummary {
            implicit: policy.implicit,
            min_quorum: policy.min_quorum,
            threshold: policy.threshold,
            unknown_weight: policy.unknown_weight,
            credibility: policy.credibility,
        },
        total_weight,
        receipts: total_receipts,
        groups,
        dissenters,
        equivocators,
        set_aside,
    }
}
