//! The HTTP API's request and response bodies, shared by the coordinator,
//! the worker and the client commands. docs/POOL.md lists the routes;
//! `docs/openapi.json` describes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, JobDigest};

/// Job states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its first run to be leased.
    Pending,
    /// At least one run leased.
    Running,
    /// The quorum accepted an outcome.
    Succeeded,
    /// Too many failed runs, or no consensus after the most runs allowed.
    Failed,
    /// Failed, and the last failure was a run's timeout.
    TimedOut,
    /// Cancelled by a client, or superseded by a later job of its group.
    Cancelled,
}

impl JobState {
    /// Every state, in order.
    pub const ALL: [JobState; 6] = [JobState::Pending, JobState::Running, JobState::Succeeded, JobState::Failed, JobState::TimedOut, JobState::Cancelled];

    /// The name used in JSON, the store and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<JobState, String> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("{s:?}: expected one of pending, running, succeeded, failed, timed_out, cancelled"))
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Run states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Leased to a node, not yet started.
    Leased,
    /// The node has the job's blobs and is running it.
    Running,
    /// The node's receipt was accepted.
    Succeeded,
    /// The node reported no result, or its receipt was rejected.
    Failed,
    /// The lease ran out without a heartbeat.
    Expired,
    /// The job was cancelled or decided while the run was open.
    Cancelled,
}

impl RunState {
    /// Every state, in order.
    pub const ALL: [RunState; 6] = [RunState::Leased, RunState::Running, RunState::Succeeded, RunState::Failed, RunState::Expired, RunState::Cancelled];

    /// The name used in JSON and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Leased => "leased",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Expired => "expired",
            RunState::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<RunState, String> {
        RunState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("{s:?}: not a run state"))
    }
}

/// How a job treats earlier jobs of its group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMode {
    /// Supersede the group's pending and running jobs (they end cancelled).
    #[default]
    Replace,
    /// Run after the group's earlier jobs, in submission order.
    Enqueue,
}

impl GroupMode {
    /// The name used in JSON and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupMode::Replace => "replace",
            GroupMode::Enqueue => "enqueue",
        }
    }
}

impl std::str::FromStr for GroupMode {
    type Err = String;
    fn from_str(s: &str) -> Result<GroupMode, String> {
        match s {
            "replace" => Ok(GroupMode::Replace),
            "enqueue" => Ok(GroupMode::Enqueue),
            _ => Err(format!("{s:?}: expected replace or enqueue")),
        }
    }
}

/// Most priority a job can have; 0 is the least, the default is
/// [`DEFAULT_PRIORITY`]. Higher runs first, FIFO within one priority.
pub const MAX_PRIORITY: u8 = 9;

/// The priority of a job submitted without one.
pub const DEFAULT_PRIORITY: u8 = 4;

/// `POST /v1/jobs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The job's bundle (`canon/bundle/v1`), as JSON text.
    pub bundle: String,
    /// Target replicas: distinct nodes to run the job on (default: the
    /// coordinator's).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// The job's group, if any.
    #[serde(default)]
    pub group: Option<String>,
    /// How it treats earlier jobs of its group.
    #[serde(default)]
    pub mode: GroupMode,
    /// 0 ..= [`MAX_PRIORITY`].
    #[serde(default)]
    pub priority: Option<u8>,
    /// The submitter's signature over the job (a DSSE envelope, as JSON text).
    #[serde(default)]
    pub signature: Option<String>,
}

impl SubmitRequest {
    /// A request to run `bundle` with the coordinator's defaults: its
    /// replicas and priority, no group, unsigned.
    pub fn of(bundle: &crate::pool::bundle::Bundle) -> SubmitRequest {
        SubmitRequest {
            bundle: String::from_utf8_lossy(&bundle.to_json()).into_owned(),
            replicas: None,
            group: None,
            mode: GroupMode::default(),
            priority: None,
            signature: None,
        }
    }
}

/// The answer to a submit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The new job's id.
    pub id: String,
    /// Its job digest.
    pub job_digest: JobDigest,
    /// Jobs of its group it superseded.
    pub superseded: Vec<String>,
}

/// `POST /v1/blobs/missing`: which of these the coordinator lacks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingRequest {
    /// Digests the client is about to need.
    pub digests: Vec<Digest>,
}

/// The answer to [`MissingRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MissingResponse {
    /// Those the coordinator does not have.
    pub missing: Vec<Digest>,
}

/// Counts of a job's runs by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Leased, not started.
    pub leased: u32,
    /// Running.
    pub running: u32,
    /// Receipt accepted.
    pub succeeded: u32,
    /// No result or receipt rejected.
    pub failed: u32,
    /// Lease ran out.
    pub expired: u32,
    /// Cancelled.
    pub cancelled: u32,
}

/// One run of a job, as the status shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunView {
    /// The run's UUID (also the receipt's run id).
    pub id: String,
    /// The node it is leased to.
    pub node: String,
    /// Its state.
    pub state: RunState,
    /// Why it failed, expired or was cancelled.
    pub reason: Option<String>,
    /// The outcome digest its receipt vouches for.
    pub outcome: Option<String>,
    /// When leased, ms since the Unix epoch.
    pub leased_at: i64,
    /// When it ended.
    pub finished_at: Option<i64>,
}

/// A receipt the coordinator refused, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RejectedReceipt {
    /// The run it claimed to answer.
    pub run: String,
    /// The node that sent it.
    pub node: String,
    /// A stable code.
    pub code: String,
    /// The reason, in words.
    pub reason: String,
    /// When, ms since the Unix epoch.
    pub at: i64,
}

/// `GET /v1/jobs/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its job digest.
    pub job_digest: JobDigest,
    /// Its state.
    pub state: JobState,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Its group.
    pub group: Option<String>,
    /// Its group mode.
    pub mode: GroupMode,
    /// Its priority.
    pub priority: u8,
    /// Target replicas now (grows when receipts disagree).
    pub replicas: u32,
    /// Most runs it may have.
    pub max_runs: u32,
    /// The submitter's node id, when the job was signed.
    pub submitter: Option<String>,
    /// Runs by state.
    pub runs: RunCounts,
    /// The tally's verdict so far.
    pub verdict: Option<String>,
    /// The accepted outcome digest.
    pub accepted: Option<String>,
    /// The current tally (the `canon quorum --json` document).
    pub tally: Option<serde_json::Value>,
    /// Every run, oldest first.
    pub run_list: Vec<RunView>,
    /// Receipts refused.
    pub rejected: Vec<RejectedReceipt>,
    /// When submitted, ms since the Unix epoch.
    pub created_at: i64,
    /// When it ended.
    pub finished_at: Option<i64>,
}

/// A line of `GET /v1/jobs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSummary {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Its group.
    pub group: Option<String>,
    /// Its priority.
    pub priority: u8,
    /// The verdict so far.
    pub verdict: Option<String>,
    /// The submitter's node id, when the job was signed.
    #[serde(default)]
    pub submitter: Option<String>,
    /// When submitted.
    pub created_at: i64,
}

/// The query of `GET /v1/jobs`: every field optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobQuery {
    /// Only jobs in this state (a [`JobState`] name).
    pub status: Option<String>,
    /// Only jobs of this group.
    pub group: Option<String>,
    /// Only jobs signed by this submitter (its did:key).
    pub submitter: Option<String>,
    /// At most this many, 1 to 1000 (default 50).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A run of one node, with what its job's tally made of it: a line of
/// `GET /v1/nodes/{node}/runs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRun {
    /// The run's UUID.
    pub run: String,
    /// Its job's id.
    pub job: String,
    /// Its job's name.
    pub job_name: String,
    /// The run's state.
    pub state: RunState,
    /// Why it failed, expired or was cancelled.
    pub reason: Option<String>,
    /// The outcome digest its receipt vouches for.
    pub outcome: Option<String>,
    /// The job's verdict so far.
    pub verdict: Option<String>,
    /// The job's accepted outcome, if any: the run agreed when its outcome
    /// is this one, dissented when it has another.
    pub accepted: Option<String>,
    /// When leased, ms since the Unix epoch.
    pub leased_at: i64,
    /// When it ended.
    pub finished_at: Option<i64>,
}

/// `GET /v1/nodes/{node}/runs`: a node's runs for the caller's jobs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRunPage {
    /// The node's did:key.
    pub node: String,
    /// Newest first.
    pub runs: Vec<NodeRun>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `GET /v1/jobs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<JobSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `POST /v1/jobs/{id}/cancel`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/lease` (worker).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// Runs the worker can start now.
    #[serde(default)]
    pub slots: Option<u32>,
    /// With no run to lease now, how long the coordinator may hold the
    /// request for one to become available, in milliseconds (at most
    /// [`MAX_LEASE_WAIT_MS`]). Default: 0, answer at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// The longest a coordinator holds a lease request waiting for work
/// (`wait_ms`): long enough that an idle worker asks a few times a
/// minute, short enough that a stopping coordinator or worker is not kept
/// waiting, and far under a client's request timeout.
pub const MAX_LEASE_WAIT_MS: u64 = 5_000;

/// The most runs one request leases (`slots`, `next`): more than any
/// worker's slots need at once, few enough that one answer stays small.
pub const MAX_LEASE_SLOTS: u32 = 64;

/// One leased run: what the worker runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lease {
    /// The run's id; the receipt must carry it.
    pub run: String,
    /// The job's id.
    pub job: String,
    /// The job digest the receipt must name.
    pub job_digest: JobDigest,
    /// The bundle, as JSON text.
    pub bundle: String,
    /// The submitter's signature, if the job was signed.
    pub signature: Option<String>,
    /// Heartbeat at least this often, ms.
    pub heartbeat_ms: u64,
    /// The lease expires this long after the last heartbeat, ms.
    pub lease_ms: u64,
}

/// The answer to `POST /v1/lease`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseResponse {
    /// Leased runs (empty: nothing to do now).
    pub leases: Vec<Lease>,
}

/// `POST /v1/runs/{id}/heartbeat`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The worker has the blobs and is running the job.
    #[serde(default)]
    pub running: bool,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Keep running; false: stop the sandbox and drop the run.
    pub proceed: bool,
    /// Why not.
    pub reason: Option<String>,
}

/// `POST /v1/runs/{id}/complete`: the receipt, with the run's small
/// outputs and the end of its log, and a request for the next run — one
/// round trip ends a run and starts the next, as a BOINC scheduler request
/// reports results and asks for work together.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The signed receipt, a DSSE envelope as JSON text.
    pub receipt: String,
    /// Output blobs sent inline, by digest (base64, standard alphabet with
    /// padding), at most [`MAX_INLINE_OUTPUT_BYTES`] decoded in all. Every
    /// output the receipt names must be held by the coordinator after
    /// these are stored: the others were uploaded before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<Digest, String>,
    /// The end of the run's log, appended before the run closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogTail>,
    /// Runs to lease in the same request (0 or absent: none), as
    /// `POST /v1/lease` would with `slots`; never held waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u32>,
}

/// The most output bytes a complete request carries inline
/// ([`CompleteRequest::outputs`]): the stdout, stderr and small files of
/// most runs, in a body far under the coordinator's `max_body_bytes`.
/// Larger outputs go through `POST /v1/blobs/missing` and
/// `PUT /v1/blobs/{digest}` first.
pub const MAX_INLINE_OUTPUT_BYTES: usize = 256 << 10;

/// The last bytes of a run's log, sent with its end.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogTail {
    /// Where the worker believes the log ends, as for `POST
    /// /v1/runs/{id}/log?offset=`: at another offset nothing is appended.
    pub offset: u64,
    /// The bytes, base64 (standard alphabet with padding).
    pub data: String,
}

/// `POST /v1/runs/{id}/fail`: no result.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// A stable code: `timeout`, `refused`, `fetch`, `error`, `drained`.
    pub code: String,
    /// The reason, in words.
    pub reason: String,
    /// The end of the run's log, appended before the run closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogTail>,
}

/// The answer to complete and fail.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunAck {
    /// The run's state now.
    pub state: RunState,
    /// Why the receipt was refused, if it was.
    pub rejected: Option<String>,
    /// Runs leased by the request's `next`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<Lease>,
}

/// The answer to a log append.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogAck {
    /// The log's size now.
    pub size: u64,
    /// Whether these bytes were appended (false: the offset was not the
    /// log's size; resume from `size`).
    pub appended: bool,
}

/// `GET /v1/jobs/{id}/receipts`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceiptList {
    /// The job digest.
    pub job_digest: JobDigest,
    /// Accepted receipts: (run id, envelope JSON text).
    pub receipts: Vec<(String, String)>,
}

/// Every error the API returns: a stable code and a message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable code (`queue_full`, `not_found`, `unauthorized`, ...).
    pub error: String,
    /// What was wrong, naming the field or value.
    pub message: String,
}
