//! A client's trust policy: which nodes it trusts, how much, and what a
//! quorum needs.
//!
//! ```toml
//! min_quorum = 2          # valid receipts, from nodes of positive weight, an accepted group needs
//! threshold = 0.667       # fraction of total trusted weight that must agree (default 2/3)
//! unknown_weight = 0.0    # weight of nodes not listed below (default 0: listed, never counted)
//! credibility = false     # weight votes by the reputation ledger (default false)
//! fault_rate = 0.1        # assumed fraction of faulty results, for credibility (default 0.1)
//!
//! [[node]]
//! id = "did:key:z6Mk…"
//! name = "alice"          # optional, for display
//! weight = 1.0            # optional, default 1.0
//! ```
//!
//! Without a policy file canon uses [`Policy::implicit`]: every node that
//! signed a valid receipt is trusted with weight 1.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::node::NodeId;

/// Default [`Policy::min_quorum`]: two independent receipts.
pub const DEFAULT_MIN_QUORUM: usize = 2;

/// Default [`Policy::threshold`]: two thirds. Then a colluding minority of
/// less than a third of the trusted weight can never get its outcome
/// accepted, nor keep the honest outcome from being accepted once every
/// honest node has voted.
pub const DEFAULT_THRESHOLD: f64 = 2.0 / 3.0;

/// Default [`Policy::fault_rate`], the `f` of the credibility formula.
pub const DEFAULT_FAULT_RATE: f64 = 0.1;

/// One trusted node.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedNode {
    /// Its id.
    pub id: NodeId,
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
    /// How much its vote counts. The default value is 1.0.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// A trust policy, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Trusted nodes, ids unique.
    pub nodes: Vec<TrustedNode>,
    /// Valid receipts from nodes of positive weight needed before any
    /// verdict, and in the accepted group (BOINC's `min_quorum`). The default
    /// value is [`DEFAULT_MIN_QUORUM`].
    pub min_quorum: usize,
    /// Fraction of the total trusted weight that one outcome group must
    /// reach to be accepted, in (0, 1]. The default value is
    /// [`DEFAULT_THRESHOLD`].
    pub threshold: f64,
    /// Weight of a node not in `nodes`. The default value is 0: unknown
    /// nodes are listed in the tally but never count.
    pub unknown_weight: f64,
    /// Whether votes are weighted by the reputation ledger's credibility.
    /// The default value is false.
    pub credibility: bool,
    /// Assumed fraction of faulty results, `f` in the credibility formula,
    /// in [0, 1). The default value is [`DEFAULT_FAULT_RATE`].
    pub fault_rate: f64,
    /// True for [`Policy::implicit`]: no file, every valid signer trusted.
    pub implicit: bool,
}

/// Why a policy file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The policy file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not valid policy TOML.
    #[error("{path}: {message}")]
    Toml {
        /// The policy file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range or a node is listed twice.
    #[error("{path}: {reason}")]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    min_quorum: Option<usize>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    unknown_weight: Option<f64>,
    #[serde(default)]
    credibility: Option<bool>,
    #[serde(default)]
    fault_rate: Option<f64>,
    #[serde(default, rename = "node")]
    nodes: Vec<TrustedNode>,
}

impl Default for Policy {
    /// [`Policy::implicit`].
    fn default() -> Policy {
        Policy::implicit()
    }
}

impl Policy {
    /// The policy used without a file: every node that signed a valid
    /// receipt is trusted with weight 1; defaults otherwise.
    pub fn implicit() -> Policy {
        Policy {
            nodes: Vec::new(),
            min_quorum: DEFAULT_MIN_QUORUM,
            threshold: DEFAULT_THRESHOLD,
            unknown_weight: 1.0,
            credibility: false,
            fault_rate: DEFAULT_FAULT_RATE,
            implicit: true,
        }
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = fs::read_to_string(path).map_err(|source| PolicyError::Io { path: path.to_path_buf(), source })?;
        Policy::from_toml(&text, path)
    }

    /// Parses and validates policy TOML; `path` is only for messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Toml { path: path.to_path_buf(), message: e.to_string() })?;
        let policy = Policy {
            nodes: file.nodes,
            min_quorum: file.min_quorum.unwrap_or(DEFAULT_MIN_QUORUM),
            threshold: file.threshold.unwrap_or(DEFAULT_THRESHOLD),
            unknown_weight: file.unknown_weight.unwrap_or(0.0),
            credibility: file.credibility.unwrap_or(false),
            fault_rate: file.fault_rate.unwrap_or(DEFAULT_FAULT_RATE),
            implicit: false,
        };
        policy.validate().map_err(|reason| PolicyError::Invalid { path: path.to_path_buf(), reason })?;
        Ok(policy)
    }

    /// Checks every value's range; the error says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_quorum == 0 {
            return Err("min_quorum must be at least 1".into());
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(format!("threshold must be in (0, 1], found {}", self.threshold));
        }
        if !(self.unknown_weight.is_finite() && self.unknown_weight >= 0.0) {
            return Err(format!("unknown_weight must be a finite number >= 0, found {}", self.unknown_weight));
        }
        if !(self.fault_rate >= 0.0 && self.fault_rate < 1.0) {
            return Err(format!("fault_rate must be in [0, 1), found {}", self.fault_rate));
        }
        let mut seen = BTreeSet::new();
        for n in &self.nodes {
            if !(n.weight.is_finite() && n.weight >= 0.0) {
                return Err(format!("node {}: weight must be a finite number >= 0, found {}", n.id, n.weight));
            }
            if !seen.insert(n.id) {
                return Err(format!("node {} is listed twice", n.id));
            }
        }
        Ok(())
    }

    /// The policy's entry for `id`, if it is trusted by name.
    pub fn trusted(&self, id: &NodeId) -> Option<&TrustedNode> {
        self.nodes.iter().find(|n| n.id == *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        let p = Policy::from_toml("", Path::new("p.toml")).expect("empty policy");
        assert_eq!((p.min_quorum, p.threshold, p.unknown_weight, p.credibility), (2, 2.0 / 3.0, 0.0, false));
        for bad in ["threshold = 0.0", "threshold = 1.5", "min_quorum = 0", "unknown_weight = -1.0", "fault_rate = 1.0", "colour = 1"] {
            let err = Policy::from_toml(bad, Path::new("p.toml")).expect_err(bad);
            assert!(err.to_string().starts_with("p.toml: "), "{err}");
        }
    }
}
