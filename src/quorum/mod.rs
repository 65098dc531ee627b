//! The quorum: receipts from many nodes for one job, counted under a trust
//! policy into a verdict a client can act on.
//!
//! - [`policy`]: which nodes a client trusts, how much, and what a quorum
//!   needs (TOML).
//! - [`tally`]: verify receipts, set aside the invalid, the replayed, the
//!   duplicated and the equivocating, group the rest by outcome digest and
//!   score each group.
//! - [`reputation`]: a ledger of who agreed with accepted verdicts, and the
//!   credibility that can weight votes.
//!
//! # What a quorum can and cannot prove
//!
//! An accepted verdict proves that nodes holding at least `threshold` of the
//! trusted weight (and at least `min_quorum` of them) each signed the same
//! outcome digest for this job. If fewer than `threshold` of the trusted
//! weight is faulty or colluding, the accepted outcome is the honest one: a
//! byzantine minority can cause a dispute only by being more than
//! `1 − threshold` of the weight, and can never get its own outcome
//! accepted. A quorum cannot tell a colluding majority from an honest one:
//! if nodes holding `threshold` of the weight sign the same wrong outcome,
//! the tally accepts it, and says so plainly — the trust is exactly as good
//! as the policy's choice of nodes. Nor can it show that nodes are
//! independent (one operator with many keys is many votes unless the policy
//! weights it so), or that an outcome is correct rather than merely agreed.

pub mod policy;
pub mod reputation;
pub mod tally;

pub use policy::{Policy, PolicyError, TrustedNode};
pub use reputation::{JobRecord, Ledger, LedgerError, NotRecorded, Record};
pub use tally::{EngineVersion, Group, SetAside, SetAsideReason, Tally, TallyOptions, Verdict, Vote, tally, tally_verified};
