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
//! The ledger is a JSON file:
//!
//! ```json
//! {"version": 1,
//!  "nodes": {"did:key:z6Mk…": {"agreed": 3, "dissented": 0}},
//!  "jobs": ["<job digest>", …]}
//! ```
//!
//! `jobs` lists the jobs already recorded, so tallying the same job twice
//! never counts twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::JobDigest;
use crate::node::NodeId;
use crate::quorum::tally::{Tally, Verdict};

/// The ledger format's version.
pub const LEDGER_VERSION: u32 = 1;

/// One node's history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Accepted verdicts this node voted for.
    pub agreed: u64,
    /// Accepted verdicts this node voted against, or equivocated in.
    pub dissented: u64,
}

/// Per-node agreement counts over accepted verdicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Always [`LEDGER_VERSION`].
    pub version: u32,
    /// Each node's record.
    pub nodes: BTreeMap<NodeId, Record>,
    /// Jobs already recorded.
    pub jobs: BTreeSet<JobDigest>,
}

impl Default for Ledger {
    fn default() -> Ledger {
        Ledger { version: LEDGER_VERSION, nodes: BTreeMap::new(), jobs: BTreeSet::new() }
    }
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
        let ledger: Ledger = serde_json::from_slice(&bytes).map_err(|e| LedgerError::Format { path: path.to_path_buf(), message: e.to_string() })?;
        if ledger.version != LEDGER_VERSION {
            return Err(LedgerError::Format {
                path: path.to_path_buf(),
                message: format!("version {} (this canon reads version {LEDGER_VERSION})", ledger.version),
            });
        }
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
        self.nodes.get(node).copied().unwrap_or_default()
    }

    /// The node's credibility under fault rate `fault_rate`.
    pub fn credibility(&self, node: &NodeId, fault_rate: f64) -> f64 {
        credibility(self.record_of(node), fault_rate)
    }

    /// Records an accepted tally: its group's nodes agreed, dissenters and
    /// equivocators dissented. Returns false (and changes nothing) if the
    /// tally is not accepted or its job was already recorded.
    pub fn record(&mut self, tally: &Tally) -> bool {
        let (Verdict::Accepted, Some(job), Some(accepted)) = (tally.verdict, tally.job, tally.accepted) else {
            return false;
        };
        if !self.jobs.insert(job) {
            return false;
        }
        for group in &tally.groups {
            for vote in &group.votes {
                let r = self.nodes.entry(vote.node).or_default();
                if group.outcome == accepted {
                    r.agreed += 1;
                } else {
                    r.dissented += 1;
                }
            }
        }
        for e in &tally.equivocators {
            self.nodes.entry(e.node).or_default().dissented += 1;
        }
        true
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
