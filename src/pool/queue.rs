//! What the coordinator decides about a job when one of its runs ends: the
//! replication rules, as BOINC has them, as a pure function of the job's
//! runs, so that every store backend decides alike.
//!
//! A job wants `replicas` receipts from distinct nodes. Once it has them
//! all, the quorum tallies them under the coordinator's policy:
//!
//! - accepted: the job succeeds, and its open runs are cancelled;
//! - otherwise one more replica is wanted, up to `max_runs` runs in all
//!   (BOINC's `max_total_results`); with no room left and no run open, the
//!   job fails with "no consensus", which suggests nondeterminism or
//!   collusion;
//! - more than `max_errors` failed runs (no result, a rejected receipt, an
//!   expired lease) fail the job (BOINC's `max_error_results`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::digest::{Digest, JobDigest};
use crate::quorum::{Policy, Tally, TallyOptions, Verdict};
use crate::receipt::{ReceiptError, VerifiedReceipt, verify_envelope};

/// A job's replication settings and counts, as the store holds them.
#[derive(Clone, Debug)]
pub struct JobProgress {
    /// The job digest receipts must name.
    pub job_digest: JobDigest,
    /// Receipts wanted now.
    pub replicas: u32,
    /// Most runs, of any state, the job may have.
    pub max_runs: u32,
    /// Most failed runs before the job fails.
    pub max_errors: u32,
    /// Runs leased or running.
    pub open: u32,
    /// Runs of any state so far.
    pub total: u32,
    /// Runs failed or expired.
    pub errors: u32,
    /// The last failure's code (`timeout`, ...), if any.
    pub last_error: Option<(String, String)>,
}

/// What happens to the job.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Nothing yet: open runs will bring more receipts, or more runs can be
    /// leased (the store leases while `open + succeeded < replicas`).
    Wait {
        /// The tally so far, if there are receipts.
        tally: Option<Box<Tally>>,
    },
    /// Want one more replica (receipts disagree or were too few).
    Grow {
        /// The new target.
        replicas: u32,
        /// The tally that was not enough.
        tally: Box<Tally>,
    },
    /// The quorum accepted an outcome.
    Accept {
        /// The tally.
        tally: Box<Tally>,
    },
    /// The job ends without a verdict.
    Fail {
        /// Whether the last failure was a timeout (the job ends `timed_out`).
        timed_out: bool,
        /// Why, in words.
        reason: String,
        /// The last tally, if there were receipts.
        tally: Option<Box<Tally>>,
    },
}

/// Decides, from the job's accepted receipts (run id, envelope) and its counts.
pub fn decide(job: &JobProgress, receipts: &[(String, Vec<u8>)], policy: &Policy) -> Decision {
    decide_verified(job, receipts.iter().map(|(run, envelope)| (run.clone(), verify_envelope(envelope))).collect(), policy)
}

/// [`decide`], from each receipt's [`verify_envelope`] result (run id,
/// result), as a [`ReceiptMemo`] gives them.
pub fn decide_verified(job: &JobProgress, receipts: Vec<(String, Result<VerifiedReceipt, ReceiptError>)>, policy: &Policy) -> Decision {
    let good = receipts.len() as u32;
    let tally = (!receipts.is_empty())
        .then(|| Box::new(crate::quorum::tally_verified(receipts, &TallyOptions { policy: policy.clone(), expected_job: Some(job.job_digest), ledger: None })));
    if job.errors > job.max_errors {
        let (code, last) = job.last_error.clone().unwrap_or_default();
        return Decision::Fail {
            timed_out: code == "timeout",
            reason: format!("{} runs failed, more than the {} allowed; the last: {last}", job.errors, job.max_errors),
            tally,
        };
    }
    if good < job.replicas {
        if good + job.open < job.replicas && job.total >= job.max_runs {
            return Decision::Fail {
                timed_out: false,
                reason: format!("{good} of {} receipts and no runs left: the most runs allowed is {}", job.replicas, job.max_runs),
                tally,
            };
        }
        return Decision::Wait { tally };
    }
    let Some(tally) = tally else { return Decision::Wait { tally: None } };
    if tally.verdict == Verdict::Accepted {
        return Decision::Accept { tally };
    }
    if job.total < job.max_runs {
        return Decision::Grow { replicas: job.replicas + 1, tally };
    }
    if job.open > 0 {
        return Decision::Wait { tally: Some(tally) };
    }
    Decision::Fail {
        timed_out: false,
        reason: format!(
            "no consensus after {good} results ({}; the most runs allowed is {}): the job may be nondeterministic, or nodes collude",
            tally.verdict, job.max_runs
        ),
        tally: Some(tally),
    }
}

/// Receipts of open jobs that verified, by the SHA-256 of their envelope.
///
/// The coordinator tallies a job's receipts each time one of its runs
/// ends, so without this a job of R replicas checks R(R+1)/2 signatures
/// where R would do. [`verify_envelope`] is a pure function of the bytes,
/// so a remembered result is the one a new check would give; receipts
/// that failed are not kept (they are checked again). The store forgets a
/// job's receipts when the job is decided, and everything when the memo
/// holds [`ReceiptMemo::MAX_ENTRIES`].
#[derive(Default)]
pub struct ReceiptMemo {
    verified: Mutex<HashMap<Digest, VerifiedReceipt>>,
}

impl ReceiptMemo {
    /// Most receipts held: about one per open run of a full queue's worth
    /// of in-flight jobs, a few MiB.
    pub const MAX_ENTRIES: usize = 10_000;

    /// [`verify_envelope`] of `envelope`, remembered.
    pub fn verify(&self, envelope: &[u8]) -> Result<VerifiedReceipt, ReceiptError> {
        let key = Digest::of(envelope);
        if let Some(r) = self.verified.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(r);
        }
        let r = verify_envelope(envelope)?;
        self.remember(envelope, &r);
        Ok(r)
    }

    /// Remembers that `envelope` verified as `receipt` (its caller checked
    /// it with [`verify_envelope`]).
    pub fn remember(&self, envelope: &[u8], receipt: &VerifiedReceipt) {
        if let Ok(mut m) = self.verified.lock() {
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
            m.insert(Digest::of(envelope), receipt.clone());
        }
    }

    /// Forgets these envelopes (their job is decided).
    pub fn forget<'a>(&self, envelopes: impl IntoIterator<Item = &'a [u8]>) {
        if let Ok(mut m) = self.verified.lock() {
            for e in envelopes {
                m.remove(&Digest::of(e));
            }
        }
    }
}
