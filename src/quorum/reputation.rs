//! The reputation ledger: how often each node agreed with accepted verdicts,
//! and the credibility derived from it.
//!
//! # Credibility
//!
//! In the spirit of Sarmenta's credibility-based fault tolerance (Sarmenta,
//! "Sabotage-tolerance mechanisms for volunteer computing systems", 2002): a
//! node's credibility estimates the probability that its result is correct,
//! given an assumed fraction `f` of faulty results (the policy's
//! `fault_rate`) and what the ledger has seen. With `a` the number of
//! accepted verdicts the node agreed with and `d` the number it dissented
//! from (or equivocated in):
//!
//! ```text
//! credibility(a, d) = (1 − f / (a + 1)) · (a + 1) / (a + d + 1)
//! ```
//!
//! A new node starts at `1 − f`; each agreement moves it towards 1 (like
//! Sarmenta's `1 − f/k` after `k` passed spot-checks); each dissent scales it
//! down, so a node that is wrong as often as right drops towards one half
//! and below. A vote then counts `weight · credibility`, and the total
//! trusted weight is computed the same way, so trust scores stay in [0, 1].
//!
//! # What is recorded
//!
//! A ledger that throwaway keys could write would let anyone lower an
//! honest node's credibility, so [`Ledger::record`] takes a tally only when
//! its verdict is a function of the listed nodes' receipts alone, however
//! many keys others make:
//!
//! - the tally is accepted, under an explicit policy (under the implicit
//!   one every key is a vote) that gives unlisted nodes no weight
//!   (`unknown_weight = 0`);
//! - only nodes the policy lists are recorded (weight 0 included, so a node
//!   on probation builds a record): those in the accepted group agreed,
//!   dissenters and equivocators dissented. A node on another engine than
//!   the accepted group is neither. Unlisted nodes never enter the ledger,
//!   so a fresh key and an old one always weigh the same.
//! - per job and node, once: a later tally of the same job records the
//!   listed nodes not recorded yet (a late receipt still counts), and a
//!   node that agreed and is later shown to dissent or equivocate is moved
//!   to dissented; a tally accepting another outcome than the one recorded
//!   for the job is refused. The result does not depend on the order in
//!   which tallies of a job are recorded.
//!
//! The ledger is a JSON file, version 2; each node's counts are derived
//! from `jobs`:
//!
//! ```json
//! {"version": 2,
//!  "jobs": {"<job digest>": {"outcome": "<accepted outcome digest>",
//!                            "agreed": ["did:key:z6Mk…"], "dissented": []}}}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{JobDigest, OutcomeDigest};
use crate::node::NodeId;
use crate::quorum::tally::{Tally, Verdict};

/// The ledger format's version. Version 1 was written under rules that let
/// throwaway keys record dissent; canon does not read it.
pub const LEDGER_VERSION: u32 = 2;

/// One node's history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Accepted verdicts this node voted for.
    pub agreed: u64,
    /// Accepted verdicts this node voted against, or equivocated in.
    pub dissented: u64,
}

/// What the ledger recorded of one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The accepted outcome.
    pub outcome: OutcomeDigest,
    /// Listed nodes that voted for it.
    pub agreed: BTreeSet<NodeId>,
    /// Listed nodes that voted against it on its engine, or equivocated.
    pub dissented: BTreeSet<NodeId>,
}

/// Per-node agreement counts over accepted verdicts, derived from per-job
/// records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LedgerFile")]
pub struct Ledger {
    version: u32,
    jobs: BTreeMap<JobDigest, JobRecord>,
    /// Each node's counts, derived from `jobs`.
    #[serde(skip)]
    counts: BTreeMap<NodeId, Record>,
}

/// The ledger as stored; [`Ledger`] adds the derived counts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    version: u32,
    jobs: BTreeMap<JobDigest, JobRecord>,
}

impl From<LedgerFile> for Ledger {
    fn from(file: LedgerFile) -> Ledger {
        let mut counts: BTreeMap<NodeId, Record> = BTreeMap::new();
        for job in file.jobs.values() {
            for node in &job.agreed {
                counts.entry(*node).or_default().agreed += 1;
            }
            for node in &job.dissented {
                counts.entry(*node).or_default().dissented += 1;
            }
        }
        Ledger { version: file.version, jobs: file.jobs, counts }
    }
}

impl Default for Ledger {
    fn default() -> Ledger {
        Ledger { version: LEDGER_VERSION, jobs: BTreeMap::new(), counts: BTreeMap::new() }
    }
}

/// Why [`Ledger::record`] left the ledger as it was.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NotRecorded {
    /// Only accepted verdicts are recorded.
    #[error("the verdict is {0}, not accepted")]
    NotAccepted(Verdict),
    /// Under the implicit policy every key is a vote, so whoever makes the
    /// most keys decides who dissents.
    #[error("no trust policy: under the implicit policy every key is a vote, so its verdicts are not recorded")]
    ImplicitPolicy,
    /// The policy gives unlisted nodes weight, so the verdict depends on how
    /// many keys strangers make.
    #[error("the policy gives unlisted nodes weight (unknown_weight = {0}), so its verdicts depend on how many keys strangers make and are not recorded")]
    UnlistedWeight(f64),
    /// The job was recorded with another accepted outcome.
    #[error("job {job} was recorded with outcome {recorded}; this tally accepts {accepted}")]
    Conflict {
        /// The job.
        job: JobDigest,
        /// The outcome recorded for it.
        recorded: OutcomeDigest,
        /// The outcome this tally accepts.
        accepted: OutcomeDigest,
    },
}

/// Why a ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not a ledger.
    #[error("{path}: not a canon reputation ledger: {message}")]
    Format {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// `credibility(a, d)` of the module doc, with fault rate `f`.
pub fn credibility(record: Record, fault_rate: f64) -> f64 {
    let a = record.agreed as f64;
    let d = record.dissented as f64;
    (1.0 - fault_rate / (a + 1.0)) * (a + 1.0) / (a + d + 1.0)
}

impl Ledger {
    /// Reads a ledger; a file that does not exist is an empty ledger.
    pub fn load(path: &Path) -> Result<Ledger, LedgerError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ledger::default()),
            Err(source) => return Err(LedgerError::Io { path: path.to_path_buf(), source }),
        };
        let format_err = |message: String| LedgerError::Format { path: path.to_path_buf(), message };
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = serde_json::from_slice(&bytes).map_err(|e| format_err(e.to_string()))?;
        if version != LEDGER_VERSION {
            return Err(format_err(format!("version {version} (this canon reads version {LEDGER_VERSION})")));
        }
        let ledger: Ledger = serde_json::from_slice(&bytes).map_err(|e| format_err(e.to_string()))?;
        Ok(ledger)
    }

    /// Writes the ledger atomically (temporary file in the same directory,
    /// then rename), replacing `path`.
    pub fn save(&self, path: &Path) -> Result<(), LedgerError> {
        let io_err = |source| LedgerError::Io { path: path.to_path_buf(), source };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new().prefix(".canon-ledger-").tempfile_in(dir).map_err(io_err)?;
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| io_err(io::Error::other(e)))?;
        text.push(b'\n');
        tmp.write_all(&text).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(path).map_err(|e| io_err(e.error))?;
        Ok(())
    }

    /// This node's record (zeros if unseen).
    pub fn record_of(&self, node: &NodeId) -> Record {
        self.counts.get(node).copied().unwrap_or_default()
    }

    /// The node's credibility under fault rate `fault_rate`.
    pub fn credibility(&self, node: &NodeId, fault_rate: f64) -> f64 {
        credibility(self.record_of(node), fault_rate)
    }

    /// What was recorded of `job`, if anything.
    pub fn job(&self, job: &JobDigest) -> Option<&JobRecord> {
        self.jobs.get(job)
    }

    /// Records an accepted tally by the rules of the module doc. Returns how
    /// many nodes' records changed (0 when the tally adds nothing new), or
    /// why nothing was recorded.
    pub fn record(&mut self, tally: &Tally) -> Result<usize, NotRecorded> {
        let (Verdict::Accepted, Some(job), Some(group)) = (tally.verdict, tally.job, tally.accepted_group()) else {
            return Err(NotRecorded::NotAccepted(tally.verdict));
        };
        if tally.policy.implicit {
            return Err(NotRecorded::ImplicitPolicy);
        }
        if tally.policy.unknown_weight != 0.0 {
            return Err(NotRecorded::UnlistedWeight(tally.policy.unknown_weight));
        }
        let entry = self.jobs.entry(job).or_insert_with(|| JobRecord { outcome: group.outcome, agreed: BTreeSet::new(), dissented: BTreeSet::new() });
        if entry.outcome != group.outcome {
            return Err(NotRecorded::Conflict { job, recorded: entry.outcome, accepted: group.outcome });
        }
        let mut changed = 0;
        for vote in group.votes.iter().filter(|v| v.trusted) {
            if !entry.dissented.contains(&vote.node) && entry.agreed.insert(vote.node) {
                self.counts.entry(vote.node).or_default().agreed += 1;
                changed += 1;
            }
        }
        for node in tally.dissenters.iter().chain(&tally.equivocators).filter(|n| n.trusted).map(|n| n.node) {
            if entry.dissented.insert(node) {
                let record = self.counts.entry(node).or_default();
                if entry.agreed.remove(&node) {
                    record.agreed -= 1;
                }
                record.dissented += 1;
                changed += 1;
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credibility_grows_with_agreement_and_falls_with_dissent() {
        let f = 0.1;
        let fresh = credibility(Record::default(), f);
        assert!((fresh - 0.9).abs() < 1e-12);
        let good = credibility(Record { agreed: 9, dissented: 0 }, f);
        assert!((good - 0.99).abs() < 1e-12);
        let bad = credibility(Record { agreed: 9, dissented: 9 }, f);
        assert!(bad < 0.55 && bad > 0.5, "{bad}");
        assert!(credibility(Record { agreed: 0, dissented: 5 }, f) < fresh);
    }
}
