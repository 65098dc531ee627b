//! [`Store`] on an embedded SQLite database: one file, WAL, every method
//! one `IMMEDIATE` transaction (so two writers never interleave), every
//! statement prepared once and cached, and versioned migrations recorded
//! in `PRAGMA user_version`.
//!
//! Durability: `synchronous = NORMAL` under WAL survives the coordinator's
//! crash or SIGKILL (a committed transaction is in the WAL file before the
//! call returns) but not a power loss of the machine; `durable = true`
//! (`synchronous = FULL`) survives that too, at an fsync per transaction.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Beat, CheckedReceipt, Counts, Event, Leased, ListFilter, LogAppend, Millis, NewJob, Store, StoreError};
use crate::digest::{Digest, JobDigest};
use crate::node::NodeId;
use crate::pool::api::{GroupMode, JobPage, JobState, JobSummary, JobView, NodeRun, NodeRunPage, RejectedReceipt, RunCounts, RunState, RunView};
use crate::pool::queue::{Decision, JobProgress, ReceiptMemo, decide_verified};
use crate::quorum::Policy;

/// The schema, one migration per entry; entry `i` takes `user_version` from
/// `i` to `i + 1`. Never edit a released entry: add one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, runs, rejections, events.
    "CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        job_digest TEXT NOT NULL,
        bundle TEXT NOT NULL,
        signature TEXT,
        submitter TEXT,
        grp TEXT,
        mode TEXT NOT NULL,
        priority INTEGER NOT NULL,
        replicas INTEGER NOT NULL,
        max_runs INTEGER NOT NULL,
        max_errors INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        verdict TEXT,
        accepted TEXT,
        tally TEXT,
        open_runs INTEGER NOT NULL DEFAULT 0,
        good_runs INTEGER NOT NULL DEFAULT 0,
        total_runs INTEGER NOT NULL DEFAULT 0,
        error_runs INTEGER NOT NULL DEFAULT 0,
        last_error_code TEXT,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        finished_at INTEGER
    );
    CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE state IN ('pending', 'running');
    CREATE INDEX jobs_group ON jobs (tenant, grp, seq) WHERE grp IS NOT NULL AND state IN ('pending', 'running');
    CREATE INDEX jobs_tenant ON jobs (tenant, seq);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        job_seq INTEGER NOT NULL REFERENCES jobs (seq),
        node TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        outcome TEXT,
        receipt BLOB,
        lease_until INTEGER NOT NULL,
        leased_at INTEGER NOT NULL,
        finished_at INTEGER,
        UNIQUE (job_seq, node)
    );
    CREATE INDEX runs_open ON runs (lease_until) WHERE state IN ('leased', 'running');
    CREATE TABLE rejections (
        job_seq INTEGER NOT NULL REFERENCES jobs (seq),
        run TEXT NOT NULL,
        node TEXT NOT NULL,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL,
        job TEXT NOT NULL,
        run TEXT,
        node TEXT,
        state TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX events_tenant ON events (tenant, seq);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 2: which tenant uploaded which blob, so that one tenant cannot learn
    // whether another holds some bytes.
    "CREATE TABLE tenant_blobs (
        tenant TEXT NOT NULL,
        digest TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (tenant, digest)
    ) WITHOUT ROWID;",
    // 3: a tenant's unfinished jobs, counted at every submit, without
    // visiting its finished ones (jobs_tenant holds them all).
    "CREATE INDEX jobs_unfinished ON jobs (tenant) WHERE state IN ('pending', 'running');",
    // 4: run logs in the database, a row per append, rather than a file per
    // run: a run's log commits with its state, costs no file creation, and
    // is reachable from wherever the database is.
    "CREATE TABLE run_logs (
        run TEXT NOT NULL,
        offset INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        PRIMARY KEY (run, offset)
    ) WITHOUT ROWID;
    ALTER TABLE runs ADD COLUMN log_size INTEGER NOT NULL DEFAULT 0;",
    // 5: a node's runs, newest first (`GET /v1/nodes/{node}/runs`): the
    // index holds each node's rowids in order.
    "CREATE INDEX runs_node ON runs (node);",
];

/// The SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Receipts of open jobs already verified (see [`ReceiptMemo`]).
    memo: ReceiptMemo,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Distinct statements the store runs, all kept prepared (rusqlite's
/// default keeps 16; the store has about 50, with the variants of a
/// filtered list): parsing and planning a statement costs as much as
/// running most of them.
const STATEMENT_CACHE: usize = 128;

/// Runs `sql` through the connection's statement cache.
fn exec(tx: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// Reads one row of `sql` through the connection's statement cache.
fn row<T>(tx: &Connection, sql: &str, params: impl rusqlite::Params, f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    tx.prepare_cached(sql)?.query_row(params, f)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path, durable: bool) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(|e| StoreError::Db(format!("{}: {e}", path.display())))?;
        Self::init(conn, durable)
    }

    /// An in-memory store (tests).
    pub fn memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db)?, false)
    }

    fn init(mut conn: Connection, durable: bool) -> Result<SqliteStore, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" }).map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Db(format!("the database is at schema version {version}, newer than this canon knows ({known}): upgrade canon")));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            tx.execute_batch(sql).map_err(|e| StoreError::Db(format!("migration {}: {e}", i + 1)))?;
            tx.pragma_update(None, "user_version", i as i64 + 1).map_err(db)?;
            tx.commit().map_err(db)?;
        }
        Ok(SqliteStore { conn: Mutex::new(conn), memo: ReceiptMemo::default() })
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if it
    /// returns Ok, rolled back if it returns Err. The three statements are
    /// prepared once, like every other (parsing `BEGIN` and `COMMIT` anew
    /// each time was a tenth of the coordinator's CPU under load).
    fn tx<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Db("store lock poisoned".into()))?;
        let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(db);
        if !conn.is_autocommit() {
            // A transaction left open by a caller that did not return.
            run("ROLLBACK")?;
        }
        run("BEGIN IMMEDIATE")?;
        let out = f(&conn).and_then(|v| run("COMMIT").map(|_| v));
        if out.is_err() && !conn.is_autocommit() {
            let _ = run("ROLLBACK");
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn event(
    tx: &Connection,
    tenant: &str,
    now: Millis,
    kind: &str,
    job: &str,
    run: Option<&str>,
    node: Option<&str>,
    state: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    exec(
        tx,
        "INSERT INTO events (at, tenant, kind, job, run, node, state, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![now, tenant, kind, job, run, node, state, reason],
    )
    .map_err(db)?;
    Ok(())
}

fn bump(tx: &Connection, name: &str, by: i64) -> Result<(), StoreError> {
    exec(tx, "INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = value + ?2", params![name, by]).map_err(db)?;
    Ok(())
}

/// Ends a job's open runs as cancelled, with events.
fn cancel_open_runs(tx: &Connection, seq: i64, tenant: &str, job: &str, reason: &str, now: Millis) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached("SELECT id, node FROM runs WHERE job_seq = ?1 AND state IN ('leased', 'running')").map_err(db)?;
    let open: Vec<(String, String)> = stmt.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
    for (run, node) in &open {
        exec(tx, "UPDATE runs SET state = 'cancelled', reason = ?2, finished_at = ?3 WHERE id = ?1", params![run, reason, now]).map_err(db)?;
        event(tx, tenant, now, "run.cancelled", job, Some(run), Some(node), "cancelled", Some(reason))?;
    }
    exec(tx, "UPDATE jobs SET open_runs = 0 WHERE seq = ?1", [seq]).map_err(db)?;
    Ok(())
}

/// Ends a job in a final state.
#[allow(clippy::too_many_arguments)]
fn finish_job(tx: &Connection, seq: i64, tenant: &str, job: &str, state: JobState, reason: Option<&str>, now: Millis) -> Result<(), StoreError> {
    let why = reason.unwrap_or(match state {
        JobState::Succeeded => "decided",
        _ => "job ended",
    });
    cancel_open_runs(tx, seq, tenant, job, why, now)?;
    exec(tx, "UPDATE jobs SET state = ?2, reason = ?3, finished_at = ?4 WHERE seq = ?1", params![seq, state.as_str(), reason, now]).map_err(db)?;
    event(tx, tenant, now, &format!("job.{}", state.as_str()), job, None, None, state.as_str(), reason)?;
    Ok(())
}

/// Applies [`decide`] to the job after one of its runs ended.
fn decide_job(tx: &Connection, seq: i64, policy: &Policy, memo: &ReceiptMemo, now: Millis) -> Result<(), StoreError> {
    let row = row(
        tx,
        "SELECT id, tenant, job_digest, replicas, max_runs, max_errors, open_runs, total_runs, error_runs, last_error_code, last_error, state
             FROM jobs WHERE seq = ?1",
        [seq],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                [r.get::<_, u32>(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?],
                r.get::<_, Option<String>>(9)?,
                r.get::<_, Option<String>>(10)?,
                r.get::<_, String>(11)?,
            ))
        },
    )
    .map_err(db)?;
    let (id, tenant, digest, [replicas, max_runs, max_errors, open, total, errors], code, last, state) = row;
    if state.parse::<JobState>().map_err(StoreError::Db)?.is_final() {
        return Ok(());
    }
    let job_digest: JobDigest = digest.parse().map_err(|_| StoreError::Db(format!("job {id}: bad digest in store")))?;
    let mut stmt = tx.prepare_cached("SELECT id, receipt FROM runs WHERE job_seq = ?1 AND state = 'succeeded' ORDER BY leased_at, id").map_err(db)?;
    let receipts: Vec<(String, Vec<u8>)> = stmt.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
    let progress = JobProgress { job_digest, replicas, max_runs, max_errors, open, total, errors, last_error: code.zip(last) };
    let store_tally = |tally: &crate::quorum::Tally| -> Result<(), StoreError> {
        let json = serde_json::to_string(tally).map_err(|e| StoreError::Db(e.to_string()))?;
        exec(
            tx,
            "UPDATE jobs SET verdict = ?2, accepted = ?3, tally = ?4 WHERE seq = ?1",
            params![seq, tally.verdict.to_string(), tally.accepted.map(|a| a.to_string()), json],
        )
        .map_err(db)?;
        Ok(())
    };
    let verified = receipts.iter().map(|(run, envelope)| (run.clone(), memo.verify(envelope))).collect();
    let decision = decide_verified(&progress, verified, policy);
    if matches!(decision, Decision::Accept { .. } | Decision::Fail { .. }) {
        memo.forget(receipts.iter().map(|(_, e)| e.as_slice()));
    }
    match decision {
        Decision::Wait { tally } => {
            if let Some(t) = tally {
                store_tally(&t)?;
            }
        }
        Decision::Grow { replicas, tally } => {
            store_tally(&tally)?;
            exec(tx, "UPDATE jobs SET replicas = ?2 WHERE seq = ?1", params![seq, replicas]).map_err(db)?;
            event(
                tx,
                &tenant,
                now,
                "job.replicas",
                &id,
                None,
                None,
                "running",
                Some(&format!("receipts disagree ({}): want {replicas} replicas", tally.verdict)),
            )?;
        }
        Decision::Accept { tally } => {
            store_tally(&tally)?;
            finish_job(tx, seq, &tenant, &id, JobState::Succeeded, None, now)?;
        }
        Decision::Fail { timed_out, reason, tally } => {
            if let Some(t) = tally {
                store_tally(&t)?;
            }
            finish_job(tx, seq, &tenant, &id, if timed_out { JobState::TimedOut } else { JobState::Failed }, Some(&reason), now)?;
        }
    }
    Ok(())
}

/// Adds the blobs a stored bundle names.
fn bundle_blobs(bundle: &str, into: &mut BTreeSet<Digest>) {
    if let Ok(b) = crate::pool::bundle::Bundle::parse(bundle.as_bytes()) {
        into.extend(b.blobs().into_keys());
    }
}

/// Adds the outputs a stored (already verified) receipt names.
fn receipt_blobs(envelope: &[u8], into: &mut BTreeSet<Digest>) {
    // Stored receipts were verified on arrival.
    if let Ok(r) = crate::receipt::reread_verified(envelope) {
        into.extend(r.statement.predicate.outcome.blob_digests());
    }
}

/// A page's size (capped at 1000) and the row it starts below: a cursor is
/// the last row of the previous page.
fn page(limit: usize, cursor: Option<&str>) -> Result<(usize, i64), StoreError> {
    let before = match cursor {
        None => i64::MAX,
        Some(c) => c.parse().map_err(|_| StoreError::BadRequest(format!("`cursor` {c:?}: not a cursor this coordinator gave")))?,
    };
    Ok((limit.clamp(1, 1000), before))
}

fn parse_state<T: std::str::FromStr<Err = String>>(s: String) -> Result<T, StoreError> {
    s.parse().map_err(StoreError::Db)
}

/// The run `run` if it is leased to `node`: (job seq, tenant, job id, state).
fn run_of(tx: &Connection, node: &NodeId, run: &str) -> Result<(i64, String, String, RunState), StoreError> {
    let row: Option<(i64, String, String, String)> = row(
        tx,
        "SELECT r.job_seq, j.tenant, j.id, r.state FROM runs r JOIN jobs j ON j.seq = r.job_seq WHERE r.id = ?1 AND r.node = ?2",
        params![run, node.to_string()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .optional()
    .map_err(db)?;
    let (seq, tenant, job, state) = row.ok_or_else(|| StoreError::NoRun(run.to_string()))?;
    Ok((seq, tenant, job, parse_state(state)?))
}

/// The state of run `run` of a tenant's job `job` (not found if the run is
/// not that job's or the job not that tenant's).
fn tenant_run_state(tx: &Connection, tenant: &str, job: &str, run: &str) -> Result<RunState, StoreError> {
    let state: Option<String> = row(
        tx,
        "SELECT r.state FROM runs r JOIN jobs j ON j.seq = r.job_seq WHERE r.id = ?1 AND j.id = ?2 AND j.tenant = ?3",
        params![run, job, tenant],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)?;
    parse_state(state.ok_or_else(|| StoreError::NoRun(run.to_string()))?)
}

impl Store for SqliteStore {
    fn submit(&self, job: NewJob, capacity: super::Capacity, now: Millis) -> Result<Vec<String>, StoreError> {
        self.tx(|tx| {
            let unfinished: u64 = row(tx, "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')", [], |r| r.get(0)).map_err(db)?;
            // A replaced group's jobs leave the queue in this transaction.
            let superseded: Vec<(i64, String)> = match (&job.group, job.mode) {
                (Some(g), GroupMode::Replace) => {
                    let mut stmt = tx.prepare_cached("SELECT seq, id FROM jobs WHERE tenant = ?1 AND grp = ?2 AND state IN ('pending', 'running') ORDER BY seq").map_err(db)?;
                    stmt.query_map(params![job.tenant, g], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?
                }
                _ => Vec::new(),
            };
            let freed = superseded.len() as u64;
            if unfinished - freed >= capacity.max_unfinished {
                return Err(StoreError::QueueFull(format!("{unfinished} unfinished jobs, the coordinator's limit is {}", capacity.max_unfinished)));
            }
            let mine: u64 =
                row(tx, "SELECT count(*) FROM jobs WHERE tenant = ?1 AND state IN ('pending', 'running')", [&job.tenant], |r| r.get(0)).map_err(db)?;
            if mine - freed >= capacity.max_unfinished_per_tenant {
                return Err(StoreError::QueueFull(format!("tenant {:?} has {mine} unfinished jobs, its limit is {}", job.tenant, capacity.max_unfinished_per_tenant)));
            }
            let reason = format!("superseded by {}", job.id);
            for (seq, id) in &superseded {
                finish_job(tx, *seq, &job.tenant, id, JobState::Cancelled, Some(&reason), now)?;
            }
            exec(tx,
                "INSERT INTO jobs (id, tenant, name, job_digest, bundle, signature, submitter, grp, mode, priority, replicas, max_runs, max_errors, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'pending', ?14)",
                params![
                    job.id,
                    job.tenant,
                    job.name,
                    job.job_digest.to_string(),
                    job.bundle,
                    job.signature,
                    job.submitter,
                    job.group,
                    job.mode.as_str(),
                    job.priority,
                    job.replicas,
                    job.max_runs,
                    job.max_errors,
                    now
                ],
            )
            .map_err(db)?;
            event(tx, &job.tenant, now, "job.submitted", &job.id, None, None, "pending", None)?;
            Ok(superseded.into_iter().map(|(_, id)| id).collect())
        })
    }

    fn job(&self, tenant: &str, id: &str) -> Result<JobView, StoreError> {
        self.tx(|tx| {
            let row = row(tx,
                    "SELECT seq, name, job_digest, state, reason, grp, mode, priority, replicas, max_runs, submitter, verdict, accepted, tally, created_at, finished_at
                     FROM jobs WHERE id = ?1 AND tenant = ?2",
                    params![id, tenant],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            (r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?, r.get::<_, Option<String>>(5)?),
                            (r.get::<_, String>(6)?, r.get::<_, u8>(7)?, r.get::<_, u32>(8)?, r.get::<_, u32>(9)?, r.get::<_, Option<String>>(10)?),
                            (r.get::<_, Option<String>>(11)?, r.get::<_, Option<String>>(12)?, r.get::<_, Option<String>>(13)?, r.get::<_, i64>(14)?, r.get::<_, Option<i64>>(15)?),
                        ))
                    },
                )
                .optional()
                .map_err(db)?
                .ok_or_else(|| StoreError::NoJob(id.to_string()))?;
            let (seq, (name, digest, state, reason, group), (mode, priority, replicas, max_runs, submitter), (verdict, accepted, tally, created_at, finished_at)) = row;
            let mut stmt = tx.prepare_cached("SELECT id, node, state, reason, outcome, leased_at, finished_at FROM runs WHERE job_seq = ?1 ORDER BY leased_at, id").map_err(db)?;
            type Row = (String, String, String, Option<String>, Option<String>, i64, Option<i64>);
            let rows: Vec<Row> = stmt
                .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let mut counts = RunCounts::default();
            let mut run_list = Vec::new();
            for (rid, node, st, why, outcome, leased_at, fin) in rows {
                let st: RunState = parse_state(st)?;
                *match st {
                    RunState::Leased => &mut counts.leased,
                    RunState::Running => &mut counts.running,
                    RunState::Succeeded => &mut counts.succeeded,
                    RunState::Failed => &mut counts.failed,
                    RunState::Expired => &mut counts.expired,
                    RunState::Cancelled => &mut counts.cancelled,
                } += 1;
                run_list.push(RunView { id: rid, node, state: st, reason: why, outcome, leased_at, finished_at: fin });
            }
            let mut stmt = tx.prepare_cached("SELECT run, node, code, reason, at FROM rejections WHERE job_seq = ?1 ORDER BY at, rowid").map_err(db)?;
            let rejected = stmt
                .query_map([seq], |r| Ok(RejectedReceipt { run: r.get(0)?, node: r.get(1)?, code: r.get(2)?, reason: r.get(3)?, at: r.get(4)? }))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            Ok(JobView {
                id: id.to_string(),
                name,
                job_digest: digest.parse().map_err(|_| StoreError::Db("bad digest in store".into()))?,
                state: parse_state(state)?,
                reason,
                group,
                mode: mode.parse().map_err(StoreError::Db)?,
                priority,
                replicas,
                max_runs,
                submitter,
                runs: counts,
                verdict,
                accepted,
                tally: tally.and_then(|t| serde_json::from_str(&t).ok()),
                run_list,
                rejected,
                created_at,
                finished_at,
            })
        })
    }

    fn list(&self, tenant: &str, filter: &ListFilter) -> Result<JobPage, StoreError> {
        let (limit, before) = page(filter.limit, filter.cursor.as_deref())?;
        self.tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, id, name, state, grp, priority, verdict, created_at, submitter FROM jobs
                     WHERE tenant = ?1 AND seq < ?2 AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR grp = ?4)
                       AND (?6 IS NULL OR submitter = ?6)
                     ORDER BY seq DESC LIMIT ?5",
                )
                .map_err(db)?;
            let rows: Vec<(i64, JobSummary)> = stmt
                .query_map(params![tenant, before, filter.state.map(|s| s.as_str()), filter.group, limit as i64 + 1, filter.submitter], |r| {
                    Ok((
                        r.get(0)?,
                        JobSummary {
                            id: r.get(1)?,
                            name: r.get(2)?,
                            state: JobState::Pending,
                            group: r.get(4)?,
                            priority: r.get(5)?,
                            verdict: r.get(6)?,
                            created_at: r.get(7)?,
                            submitter: r.get(8)?,
                        },
                    ))
                    .and_then(|(seq, mut s): (i64, JobSummary)| {
                        let st: String = r.get(3)?;
                        s.state = st.parse().unwrap_or(JobState::Failed);
                        Ok((seq, s))
                    })
                })
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let more = rows.len() > limit;
            let jobs: Vec<(i64, JobSummary)> = rows.into_iter().take(limit).collect();
            let next_cursor = if more { jobs.last().map(|(seq, _)| seq.to_string()) } else { None };
            Ok(JobPage { jobs: jobs.into_iter().map(|(_, s)| s).collect(), next_cursor })
        })
    }

    fn node_runs(&self, tenant: &str, node: &str, limit: usize, cursor: Option<&str>) -> Result<NodeRunPage, StoreError> {
        let (limit, before) = page(limit, cursor)?;
        self.tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT r.rowid, r.id, j.id, j.name, r.state, r.reason, r.outcome, j.verdict, j.accepted, r.leased_at, r.finished_at
                     FROM runs r JOIN jobs j ON j.seq = r.job_seq
                     WHERE r.node = ?1 AND r.rowid < ?2 AND j.tenant = ?3
                     ORDER BY r.rowid DESC LIMIT ?4",
                )
                .map_err(db)?;
            type Row = (i64, String, String, String, String, Option<String>, Option<String>, Option<String>, Option<String>, i64, Option<i64>);
            let rows: Vec<Row> = stmt
                .query_map(params![node, before, tenant, limit as i64 + 1], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?))
                })
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let more = rows.len() > limit;
            let mut runs = Vec::with_capacity(limit.min(rows.len()));
            let mut last = None;
            for (rowid, run, job, job_name, state, reason, outcome, verdict, accepted, leased_at, finished_at) in rows.into_iter().take(limit) {
                last = Some(rowid);
                runs.push(NodeRun { run, job, job_name, state: parse_state(state)?, reason, outcome, verdict, accepted, leased_at, finished_at });
            }
            let next_cursor = if more { last.map(|r| r.to_string()) } else { None };
            Ok(NodeRunPage { node: node.to_string(), runs, next_cursor })
        })
    }

    fn cancel(&self, tenant: &str, id: &str, reason: &str, now: Millis) -> Result<(), StoreError> {
        self.tx(|tx| {
            let (seq, state): (i64, String) =
                row(tx, "SELECT seq, state FROM jobs WHERE id = ?1 AND tenant = ?2", params![id, tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(db)?
                    .ok_or_else(|| StoreError::NoJob(id.to_string()))?;
            let state: JobState = parse_state(state)?;
            if state.is_final() {
                return Err(StoreError::Conflict(format!("job {id} is already {state}")));
            }
            finish_job(tx, seq, tenant, id, JobState::Cancelled, Some(reason), now)
        })
    }

    fn lease(&self, node: &NodeId, slots: u32, lease_ms: i64, now: Millis) -> Result<Vec<Leased>, StoreError> {
        let node = node.to_string();
        self.tx(|tx| {
            // The most urgent, oldest job that wants a run, has none on this
            // node, and is the oldest unfinished job of its group.
            let mut stmt = tx
                .prepare_cached(
                    "SELECT j.seq, j.id, j.tenant, j.job_digest, j.bundle, j.signature, j.state FROM jobs j
                     WHERE j.state IN ('pending', 'running')
                       AND j.open_runs + j.good_runs < j.replicas
                       AND j.total_runs < j.max_runs
                       AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job_seq = j.seq AND r.node = ?1)
                       AND (j.grp IS NULL OR j.seq = (SELECT min(k.seq) FROM jobs k
                            WHERE k.tenant = j.tenant AND k.grp = j.grp AND k.state IN ('pending', 'running')))
                     ORDER BY j.priority DESC, j.seq LIMIT ?2",
                )
                .map_err(db)?;
            type Row = (i64, String, String, String, String, Option<String>, String);
            let rows: Vec<Row> = stmt
                .query_map(params![node, slots.max(1)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let mut out = Vec::new();
            for (seq, id, tenant, digest, bundle, signature, state) in rows {
                let run = uuid::Uuid::new_v4().to_string();
                exec(
                    tx,
                    "INSERT INTO runs (id, job_seq, node, state, lease_until, leased_at) VALUES (?1, ?2, ?3, 'leased', ?4, ?5)",
                    params![run, seq, node, now + lease_ms, now],
                )
                .map_err(db)?;
                exec(tx, "UPDATE jobs SET open_runs = open_runs + 1, total_runs = total_runs + 1, state = 'running' WHERE seq = ?1", [seq]).map_err(db)?;
                if state == "pending" {
                    event(tx, &tenant, now, "job.running", &id, None, None, "running", None)?;
                }
                event(tx, &tenant, now, "run.leased", &id, Some(&run), Some(&node), "leased", None)?;
                let job_digest = digest.parse().map_err(|_| StoreError::Db("bad digest in store".into()))?;
                out.push(Leased { run, job: id, job_digest, bundle, signature });
            }
            Ok(out)
        })
    }

    fn heartbeat(&self, node: &NodeId, run: &str, running: bool, lease_ms: i64, now: Millis) -> Result<Beat, StoreError> {
        self.tx(|tx| {
            let (_, tenant, job, state) = run_of(tx, node, run)?;
            match state {
                RunState::Leased | RunState::Running => {
                    exec(tx, "UPDATE runs SET lease_until = ?2 WHERE id = ?1", params![run, now + lease_ms]).map_err(db)?;
                    if running && state == RunState::Leased {
                        exec(tx, "UPDATE runs SET state = 'running' WHERE id = ?1", [run]).map_err(db)?;
                        event(tx, &tenant, now, "run.running", &job, Some(run), Some(&node.to_string()), "running", None)?;
                    }
                    Ok(Beat::Proceed)
                }
                // A lease that ran out may still bring its receipt while
                // the job is open (see POOL.md, "Late receipts").
                RunState::Expired => {
                    let open: String = row(tx, "SELECT state FROM jobs WHERE id = ?1", [&job], |r| r.get(0)).map_err(db)?;
                    if parse_state::<JobState>(open)?.is_final() { Ok(Beat::Stop("the job is over".into())) } else { Ok(Beat::Proceed) }
                }
                RunState::Cancelled => {
                    let why: Option<String> = row(tx, "SELECT reason FROM runs WHERE id = ?1", [run], |r| r.get(0)).map_err(db)?;
                    Ok(Beat::Stop(why.unwrap_or_else(|| "cancelled".into())))
                }
                RunState::Succeeded | RunState::Failed => Ok(Beat::Stop(format!("the run is already {}", state.as_str()))),
            }
        })
    }

    fn run_state(&self, tenant: &str, job: &str, run: &str) -> Result<RunState, StoreError> {
        self.tx(|tx| tenant_run_state(tx, tenant, job, run))
    }

    fn run_job(&self, node: &NodeId, run: &str) -> Result<super::RunJob, StoreError> {
        self.tx(|tx| {
            let (seq, _, _, state) = run_of(tx, node, run)?;
            let (d, signature): (String, Option<String>) =
                row(tx, "SELECT job_digest, signature FROM jobs WHERE seq = ?1", [seq], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?;
            Ok(super::RunJob { job_digest: d.parse().map_err(|_| StoreError::Db("bad digest in store".into()))?, state, signature })
        })
    }

    fn complete(&self, node: &NodeId, run: &str, receipt: CheckedReceipt, policy: &Policy, now: Millis) -> Result<RunState, StoreError> {
        self.tx(|tx| {
            let (seq, tenant, job, state) = run_of(tx, node, run)?;
            let job_state: String = row(tx, "SELECT state FROM jobs WHERE seq = ?1", [seq], |r| r.get(0)).map_err(db)?;
            let open = matches!(state, RunState::Leased | RunState::Running);
            // Late receipts: an expired run's receipt still counts while the
            // job is open; the node has no other run of the job, so it never
            // votes twice.
            let late = state == RunState::Expired && !parse_state::<JobState>(job_state)?.is_final();
            if !open && !late {
                return Err(StoreError::Conflict(format!("run {run} is {}: its receipt is not wanted", state.as_str())));
            }
            exec(
                tx,
                "UPDATE runs SET state = 'succeeded', receipt = ?2, outcome = ?3, finished_at = ?4 WHERE id = ?1",
                params![run, receipt.envelope, receipt.outcome, now],
            )
            .map_err(db)?;
            let open_delta = if open { 1 } else { 0 };
            // A late receipt turns an error back into a result.
            let error_delta = if late { 1 } else { 0 };
            exec(
                tx,
                "UPDATE jobs SET open_runs = open_runs - ?2, good_runs = good_runs + 1, error_runs = error_runs - ?3 WHERE seq = ?1",
                params![seq, open_delta, error_delta],
            )
            .map_err(db)?;
            event(tx, &tenant, now, "run.succeeded", &job, Some(run), Some(&node.to_string()), "succeeded", None)?;
            self.memo.remember(&receipt.envelope, &receipt.verified);
            decide_job(tx, seq, policy, &self.memo, now)?;
            Ok(RunState::Succeeded)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn fail(&self, node: &NodeId, run: &str, code: &str, reason: &str, rejected: bool, policy: &Policy, now: Millis) -> Result<RunState, StoreError> {
        self.tx(|tx| {
            let (seq, tenant, job, state) = run_of(tx, node, run)?;
            if rejected {
                exec(
                    tx,
                    "INSERT INTO rejections (job_seq, run, node, code, reason, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![seq, run, node.to_string(), code, reason, now],
                )
                .map_err(db)?;
                bump(tx, &format!("rejected.{code}"), 1)?;
                event(tx, &tenant, now, "receipt.rejected", &job, Some(run), Some(&node.to_string()), state.as_str(), Some(reason))?;
            }
            if !matches!(state, RunState::Leased | RunState::Running) {
                return Ok(state);
            }
            exec(tx, "UPDATE runs SET state = 'failed', reason = ?2, finished_at = ?3 WHERE id = ?1", params![run, format!("{code}: {reason}"), now])
                .map_err(db)?;
            exec(
                tx,
                "UPDATE jobs SET open_runs = open_runs - 1, error_runs = error_runs + 1, last_error_code = ?2, last_error = ?3 WHERE seq = ?1",
                params![seq, code, reason],
            )
            .map_err(db)?;
            event(tx, &tenant, now, "run.failed", &job, Some(run), Some(&node.to_string()), "failed", Some(reason))?;
            decide_job(tx, seq, policy, &self.memo, now)?;
            Ok(RunState::Failed)
        })
    }

    fn expire(&self, policy: &Policy, now: Millis) -> Result<usize, StoreError> {
        self.tx(|tx| {
            let mut stmt = tx
                .prepare_cached("SELECT r.id, r.node, r.job_seq, j.tenant, j.id FROM runs r JOIN jobs j ON j.seq = r.job_seq WHERE r.state IN ('leased', 'running') AND r.lease_until < ?1")
                .map_err(db)?;
            let rows: Vec<(String, String, i64, String, String)> =
                stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
            let reason = "lease expired: no heartbeat";
            for (run, node, seq, tenant, job) in &rows {
                exec(tx, "UPDATE runs SET state = 'expired', reason = ?2, finished_at = ?3 WHERE id = ?1", params![run, reason, now]).map_err(db)?;
                exec(tx,
                    "UPDATE jobs SET open_runs = open_runs - 1, error_runs = error_runs + 1, last_error_code = 'expired', last_error = ?2 WHERE seq = ?1",
                    params![seq, reason],
                )
                .map_err(db)?;
                event(tx, tenant, now, "run.expired", job, Some(run), Some(node), "expired", Some(reason))?;
                bump(tx, "lease_expiries", 1)?;
                decide_job(tx, *seq, policy, &self.memo, now)?;
            }
            Ok(rows.len())
        })
    }

    fn receipts(&self, tenant: &str, id: &str) -> Result<(JobDigest, super::Receipts), StoreError> {
        self.tx(|tx| {
            let (seq, digest): (i64, String) =
                row(tx, "SELECT seq, job_digest FROM jobs WHERE id = ?1 AND tenant = ?2", params![id, tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(db)?
                    .ok_or_else(|| StoreError::NoJob(id.to_string()))?;
            let mut stmt = tx.prepare_cached("SELECT id, receipt FROM runs WHERE job_seq = ?1 AND state = 'succeeded' ORDER BY leased_at, id").map_err(db)?;
            let receipts = stmt.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
            Ok((digest.parse().map_err(|_| StoreError::Db("bad digest in store".into()))?, receipts))
        })
    }

    fn events(&self, tenant: &str, after: i64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.tx(|tx| {
            let mut stmt = tx
                .prepare_cached("SELECT seq, at, kind, job, run, node, state, reason FROM events WHERE tenant = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
                .map_err(db)?;
            stmt.query_map(params![tenant, after, limit as i64], |r| {
                Ok(Event {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    job: r.get(3)?,
                    run: r.get(4)?,
                    node: r.get(5)?,
                    state: r.get(6)?,
                    reason: r.get(7)?,
                })
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
        })
    }

    fn prune_events(&self, before: Millis, keep: u64) -> Result<u64, StoreError> {
        self.tx(|tx| {
            let n = exec(tx, "DELETE FROM events WHERE at < ?1 AND seq <= (SELECT coalesce(max(seq), 0) FROM events) - ?2", params![before, keep as i64])
                .map_err(db)?;
            Ok(n as u64)
        })
    }

    fn event_bounds(&self) -> Result<(i64, i64), StoreError> {
        self.tx(|tx| row(tx, "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM events", [], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db))
    }

    fn record_blob(&self, tenant: &str, digest: &Digest, now: Millis) -> Result<(), StoreError> {
        self.tx(|tx| {
            exec(tx, "INSERT OR IGNORE INTO tenant_blobs (tenant, digest, at) VALUES (?1, ?2, ?3)", params![tenant, digest.to_string(), now]).map_err(db)?;
            Ok(())
        })
    }

    fn tenant_blobs(&self, tenant: &str, digests: &[Digest]) -> Result<Vec<bool>, StoreError> {
        self.tx(|tx| {
            let mut stmt = tx.prepare_cached("SELECT 1 FROM tenant_blobs WHERE tenant = ?1 AND digest = ?2").map_err(db)?;
            digests.iter().map(|d| stmt.exists(params![tenant, d.to_string()]).map_err(db)).collect()
        })
    }

    fn gc_roots(&self, retain_after: Millis) -> Result<(i64, BTreeSet<Digest>), StoreError> {
        self.tx(|tx| {
            let newest: i64 = row(tx, "SELECT coalesce(max(seq), 0) FROM jobs", [], |r| r.get(0)).map_err(db)?;
            let mut roots = BTreeSet::new();
            let mut stmt = tx.prepare_cached("SELECT seq, bundle FROM jobs WHERE state IN ('pending', 'running') OR finished_at >= ?1").map_err(db)?;
            let jobs: Vec<(i64, String)> = stmt.query_map([retain_after], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
            let mut receipts = tx.prepare_cached("SELECT receipt FROM runs WHERE job_seq = ?1 AND state = 'succeeded'").map_err(db)?;
            for (seq, bundle) in jobs {
                bundle_blobs(&bundle, &mut roots);
                let envs: Vec<Vec<u8>> = receipts.query_map([seq], |r| r.get(0)).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
                for env in envs {
                    receipt_blobs(&env, &mut roots);
                }
            }
            Ok((newest, roots))
        })
    }

    fn gc_commit(&self, since_seq: i64, candidates: Vec<Digest>, delete: &mut dyn FnMut(&Digest) -> bool) -> Result<u64, StoreError> {
        self.tx(|tx| {
            // Jobs submitted since the roots were taken may name candidates.
            let mut newer = BTreeSet::new();
            let mut stmt = tx.prepare_cached("SELECT bundle FROM jobs WHERE seq > ?1").map_err(db)?;
            let bundles: Vec<String> = stmt.query_map([since_seq], |r| r.get(0)).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
            for b in bundles {
                bundle_blobs(&b, &mut newer);
            }
            let mut deleted = 0;
            for d in candidates.into_iter().filter(|d| !newer.contains(d)) {
                if delete(&d) {
                    exec(tx, "DELETE FROM tenant_blobs WHERE digest = ?1", [d.to_string()]).map_err(db)?;
                    deleted += 1;
                }
            }
            bump(tx, "blobs_collected", deleted as i64)?;
            Ok(deleted)
        })
    }

    fn append_log(&self, node: &NodeId, run: &str, offset: u64, bytes: &[u8], max: u64) -> Result<LogAppend, StoreError> {
        self.tx(|tx| {
            let (_, _, _, state) = run_of(tx, node, run)?;
            if !matches!(state, RunState::Leased | RunState::Running) {
                return Err(StoreError::Conflict(format!("run {run} is {}: its log is closed", state.as_str())));
            }
            let size: i64 = row(tx, "SELECT log_size FROM runs WHERE id = ?1", [run], |r| r.get(0)).map_err(db)?;
            let size = size as u64;
            if offset != size || bytes.is_empty() {
                return Ok(LogAppend { size, appended: offset == size });
            }
            let end = size.saturating_add(bytes.len() as u64);
            if end > max {
                return Err(StoreError::TooLarge(format!("the log of run {run} would pass its limit of {max} bytes")));
            }
            exec(tx, "INSERT INTO run_logs (run, offset, bytes) VALUES (?1, ?2, ?3)", params![run, size as i64, bytes]).map_err(db)?;
            exec(tx, "UPDATE runs SET log_size = ?2 WHERE id = ?1", params![run, end as i64]).map_err(db)?;
            Ok(LogAppend { size: end, appended: true })
        })
    }

    fn read_log(&self, tenant: &str, job: &str, run: &str, offset: u64, max: usize) -> Result<(Vec<u8>, RunState), StoreError> {
        self.tx(|tx| {
            let state = tenant_run_state(tx, tenant, job, run)?;
            // The chunk holding `offset`, and those after it.
            let mut stmt = tx
                .prepare_cached(
                    "SELECT offset, bytes FROM run_logs WHERE run = ?1 AND offset >= coalesce(
                        (SELECT max(offset) FROM run_logs WHERE run = ?1 AND offset <= ?2), 0) ORDER BY offset",
                )
                .map_err(db)?;
            let mut rows = stmt.query(params![run, offset as i64]).map_err(db)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                let at: i64 = r.get(0).map_err(db)?;
                let bytes: Vec<u8> = r.get(1).map_err(db)?;
                let skip = (offset.saturating_sub(at as u64) as usize).min(bytes.len());
                out.extend_from_slice(&bytes[skip..]);
                if out.len() >= max {
                    out.truncate(max);
                    break;
                }
            }
            Ok((out, state))
        })
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        self.tx(|tx| {
            let mut c = Counts::default();
            let mut stmt = tx
                .prepare_cached("SELECT priority, count(*) FROM jobs WHERE state IN ('pending', 'running') GROUP BY priority ORDER BY priority")
                .map_err(db)?;
            c.queue_by_priority = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
            let mut stmt = tx.prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state").map_err(db)?;
            let rows: Vec<(String, u64)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
            c.jobs_by_state = rows.into_iter().filter_map(|(s, n)| s.parse().ok().map(|s| (s, n))).collect();
            let mut stmt = tx.prepare_cached("SELECT state, count(*) FROM runs GROUP BY state").map_err(db)?;
            let rows: Vec<(String, u64)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
            c.runs_by_state = rows.into_iter().filter_map(|(s, n)| s.parse().ok().map(|s| (s, n))).collect();
            c.blobs_collected = row(tx, "SELECT coalesce(sum(value), 0) FROM counters WHERE name = 'blobs_collected'", [], |r| r.get(0)).map_err(db)?;
            c.lease_expiries = row(tx, "SELECT coalesce(sum(value), 0) FROM counters WHERE name = 'lease_expiries'", [], |r| r.get(0)).map_err(db)?;
            let mut stmt = tx.prepare_cached("SELECT substr(name, 10), value FROM counters WHERE name LIKE 'rejected.%' ORDER BY name").map_err(db)?;
            c.rejected_by_code = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
            Ok(c)
        })
    }
}
