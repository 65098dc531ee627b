//! The coordinator's store: every job, run, receipt and event, behind one
//! narrow interface ([`Store`]) so that the HTTP handlers hold no SQL and a
//! second backend is an implementation of the trait, not a rewrite.
//!
//! Each method is one transaction: a state change and the events it makes
//! commit together or not at all. Decisions about a job (the replication
//! rules) are made by [`crate::pool::queue::decide`] inside the
//! transaction, the same for every backend.

mod sqlite;

use std::collections::BTreeSet;

pub use sqlite::SqliteStore;

use crate::digest::{Digest, JobDigest};
use crate::node::NodeId;
use crate::pool::api::{GroupMode, JobPage, JobState, JobView, NodeRunPage, RunState};
use crate::quorum::Policy;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, corruption, a bug).
    #[error("store: {0}")]
    Db(String),
    /// No such job for this tenant (another tenant's job is not found).
    #[error("no job {0}")]
    NoJob(String),
    /// No such run for this node.
    #[error("no run {0} leased to this node")]
    NoRun(String),
    /// The queue, or the tenant's share of it, is full.
    #[error("queue full: {0}")]
    QueueFull(String),
    /// The request conflicts with the job's state.
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed (a cursor this store never gave).
    #[error("{0}")]
    BadRequest(String),
    /// The request would pass a limit (a run's log).
    #[error("{0}")]
    TooLarge(String),
}

/// What a log append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogAppend {
    /// The log's size now.
    pub size: u64,
    /// Whether the bytes were appended (false: the offset was not the
    /// log's size, and nothing was written).
    pub appended: bool,
}

/// A job's accepted receipts: (run id, envelope JSON).
pub type Receipts = Vec<(String, Vec<u8>)>;

/// A job to add.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Its id (a UUID).
    pub id: String,
    /// The tenant submitting it.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// Its job digest.
    pub job_digest: JobDigest,
    /// Its bundle JSON.
    pub bundle: String,
    /// The submitter's DSSE envelope, if signed.
    pub signature: Option<String>,
    /// The submitter's node id, if signed.
    pub submitter: Option<String>,
    /// Its group.
    pub group: Option<String>,
    /// Its group mode.
    pub mode: GroupMode,
    /// 0 ..= 9, higher first.
    pub priority: u8,
    /// Target replicas.
    pub replicas: u32,
    /// Most runs in all.
    pub max_runs: u32,
    /// Most failed runs.
    pub max_errors: u32,
}

/// How big the queue may get.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Most unfinished jobs in all.
    pub max_unfinished: u64,
    /// Most unfinished jobs per tenant.
    pub max_unfinished_per_tenant: u64,
}

/// A run leased to a worker.
#[derive(Clone, Debug)]
pub struct Leased {
    /// The run's id.
    pub run: String,
    /// The job's id.
    pub job: String,
    /// Its digest.
    pub job_digest: JobDigest,
    /// Its bundle JSON.
    pub bundle: String,
    /// The submitter's signature.
    pub signature: Option<String>,
}

/// A run's job, as a receipt for the run is checked against it.
#[derive(Clone, Debug)]
pub struct RunJob {
    /// The job digest the receipt must name.
    pub job_digest: JobDigest,
    /// The run's state.
    pub state: RunState,
    /// The submitter's signature of the job (envelope JSON), if signed.
    pub signature: Option<String>,
}

/// What a heartbeat learns.
#[derive(Clone, Debug)]
pub enum Beat {
    /// Go on.
    Proceed,
    /// Stop: the run was cancelled, the job decided, or the run is over.
    Stop(String),
}

/// A receipt, checked by the coordinator, to record for a run.
#[derive(Clone, Debug)]
pub struct CheckedReceipt {
    /// The envelope JSON.
    pub envelope: Vec<u8>,
    /// What [`crate::receipt::verify_envelope`] made of it.
    pub verified: Box<crate::receipt::VerifiedReceipt>,
    /// The outcome digest it vouches for.
    pub outcome: String,
}

/// A filter for listing.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this group.
    pub group: Option<String>,
    /// Only jobs signed by this submitter.
    pub submitter: Option<String>,
    /// At most this many (capped by the store).
    pub limit: usize,
    /// From the cursor of the previous page.
    pub cursor: Option<String>,
}

/// One event: a job or run state change.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Monotonic sequence number, from 1.
    pub seq: i64,
    /// When, ms since the Unix epoch.
    pub at: Millis,
    /// `job.submitted`, `job.running`, `job.succeeded`, `run.leased`, ...
    pub kind: String,
    /// The job.
    pub job: String,
    /// The run, for run events.
    pub run: Option<String>,
    /// The node, for run events.
    pub node: Option<String>,
    /// The new state.
    pub state: String,
    /// Why, where there is a reason.
    pub reason: Option<String>,
}

/// Counts for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Unfinished jobs by priority.
    pub queue_by_priority: Vec<(u8, u64)>,
    /// Jobs by state.
    pub jobs_by_state: Vec<(JobState, u64)>,
    /// Runs by state.
    pub runs_by_state: Vec<(RunState, u64)>,
    /// Leases that expired.
    pub lease_expiries: u64,
    /// Blobs garbage-collected.
    pub blobs_collected: u64,
    /// Receipts rejected, by code.
    pub rejected_by_code: Vec<(String, u64)>,
}

/// The coordinator's store. Every method is one transaction.
pub trait Store: Send + Sync {
    /// Adds a job; with a group in `replace` mode, cancels the group's
    /// unfinished jobs in the same transaction (returned).
    fn submit(&self, job: NewJob, capacity: Capacity, now: Millis) -> Result<Vec<String>, StoreError>;
    /// A tenant's job, with its runs and rejections.
    fn job(&self, tenant: &str, id: &str) -> Result<JobView, StoreError>;
    /// A page of a tenant's jobs, newest first.
    fn list(&self, tenant: &str, filter: &ListFilter) -> Result<JobPage, StoreError>;
    /// `node`'s runs of `tenant`'s jobs, newest first, at most `limit`
    /// (capped at 1000) from `cursor`.
    fn node_runs(&self, tenant: &str, node: &str, limit: usize, cursor: Option<&str>) -> Result<NodeRunPage, StoreError>;
    /// Cancels a tenant's job and its open runs. Cancelling a finished job
    /// is a conflict.
    fn cancel(&self, tenant: &str, id: &str, reason: &str, now: Millis) -> Result<(), StoreError>;
    /// Leases at most `slots` runs to `node`: the most urgent, oldest jobs
    /// that want a run, have none on this node, and are first in their group.
    fn lease(&self, node: &NodeId, slots: u32, lease_ms: i64, now: Millis) -> Result<Vec<Leased>, StoreError>;
    /// Extends a run's lease; `running` marks it started.
    fn heartbeat(&self, node: &NodeId, run: &str, running: bool, lease_ms: i64, now: Millis) -> Result<Beat, StoreError>;
    /// Records a run's receipt (checked by the caller against the run) and
    /// decides the job.
    fn complete(&self, node: &NodeId, run: &str, receipt: CheckedReceipt, policy: &Policy, now: Millis) -> Result<RunState, StoreError>;
    /// Records that a run produced no result, or that its receipt was
    /// refused (`rejected`: then listed among the job's rejections), and
    /// decides the job.
    #[allow(clippy::too_many_arguments)]
    fn fail(&self, node: &NodeId, run: &str, code: &str, reason: &str, rejected: bool, policy: &Policy, now: Millis) -> Result<RunState, StoreError>;
    /// The state of run `run` of a tenant's job `job` (not found if the run
    /// is not that job's or the job not that tenant's).
    fn run_state(&self, tenant: &str, job: &str, run: &str) -> Result<RunState, StoreError>;
    /// The run's job digest and state, for checking a receipt before
    /// [`Store::complete`].
    fn run_job(&self, node: &NodeId, run: &str) -> Result<RunJob, StoreError>;
    /// Expires leases past their time and decides their jobs; returns how many.
    fn expire(&self, policy: &Policy, now: Millis) -> Result<usize, StoreError>;
    /// A tenant's job's accepted receipts: (run id, envelope).
    fn receipts(&self, tenant: &str, id: &str) -> Result<(JobDigest, Receipts), StoreError>;
    /// A tenant's events after `after`, oldest first, at most `limit`.
    fn events(&self, tenant: &str, after: i64, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Deletes events older than `before`, keeping at least the newest `keep`.
    fn prune_events(&self, before: Millis, keep: u64) -> Result<u64, StoreError>;
    /// The oldest and newest event sequence numbers held (0 if none).
    fn event_bounds(&self) -> Result<(i64, i64), StoreError>;
    /// Records that `tenant` uploaded the blob `digest`.
    fn record_blob(&self, tenant: &str, digest: &Digest, now: Millis) -> Result<(), StoreError>;
    /// For each digest, whether `tenant` uploaded it.
    fn tenant_blobs(&self, tenant: &str, digests: &[Digest]) -> Result<Vec<bool>, StoreError>;
    /// Garbage collection, first step: the newest job's sequence number and
    /// every blob named by a job that is unfinished or finished at or after
    /// `retain_after` (its bundle's blobs and its receipts' outputs).
    fn gc_roots(&self, retain_after: Millis) -> Result<(i64, BTreeSet<Digest>), StoreError>;
    /// Garbage collection, last step, in one transaction that submits wait
    /// for: of `candidates`, drops those a job newer than `since_seq` names,
    /// calls `delete` on the rest, forgets which tenants uploaded the ones
    /// deleted, and returns how many were.
    fn gc_commit(&self, since_seq: i64, candidates: Vec<Digest>, delete: &mut dyn FnMut(&Digest) -> bool) -> Result<u64, StoreError>;
    /// Appends `bytes` to the log of run `run`, open and leased to `node`,
    /// if `offset` is the log's size; a log passes no `max` bytes.
    fn append_log(&self, node: &NodeId, run: &str, offset: u64, bytes: &[u8], max: u64) -> Result<LogAppend, StoreError>;
    /// At most `max` bytes of the log of run `run` of a tenant's job from
    /// `offset` (empty past its end), and the run's state when read.
    fn read_log(&self, tenant: &str, job: &str, run: &str, offset: u64, max: usize) -> Result<(Vec<u8>, RunState), StoreError>;
    /// Counts for metrics.
    fn counts(&self) -> Result<Counts, StoreError>;
}
