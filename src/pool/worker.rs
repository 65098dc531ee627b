//! The worker: a node that leases runs from a coordinator, fetches each
//! job's blobs by digest and checks them, rebuilds the job and checks its
//! digest, runs it in the sandbox, uploads its outputs and its signed
//! receipt, and heartbeats meanwhile.
//!
//! It trusts nothing it is sent: a blob that does not hash to its name, a
//! bundle that does not rebuild to the job digest it was leased under, or
//! (with `trust_submitters`) a job no trusted submitter signed, is refused
//! with a reason, and nothing is signed for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::api::Lease;
use super::bundle::Bundle;
use super::client::{Auth, Client, ClientError};
use crate::digest::Digest;
use crate::node::{NodeId, NodeKey};
use crate::outcome::Outcome;
use crate::receipt::{Engine, RunFacts, RunId, Statement, Timestamp};
use crate::sandbox::{Backend, Cancel, RunError, RunOptions, Sandbox};
use crate::tree::Node;

/// How a worker runs.
pub struct WorkerOptions {
    /// The coordinator's URL.
    pub coordinator: String,
    /// The node key.
    pub key: NodeKey,
    /// Runs at once.
    pub concurrency: usize,
    /// Where blobs are kept between jobs (None: not kept).
    pub cache: Option<PathBuf>,
    /// Run only jobs signed by one of these (empty: any job).
    pub trust_submitters: Vec<NodeId>,
    /// Lie: flip the first byte of stdout before signing (a byzantine
    /// node, for tests and demonstrations).
    pub faulty: bool,
    /// The backend.
    pub backend: Backend,
    /// How long to wait before asking again when there is no work.
    pub idle_poll: Duration,
    /// Stop after this many runs (None: run until stopped).
    pub max_runs: Option<u64>,
}

/// How long the coordinator may hold a lease request until there is work
/// (`wait_ms`): an idle worker gets a job as soon as it is submitted, and
/// a stopping worker notices within this.
const LEASE_WAIT: Duration = Duration::from_secs(1);

/// What one run came to, for the worker's log.
fn log(line: &str) {
    eprintln!("canon worker: {line}");
}

/// How long a run's requests (blob fetches and uploads, its receipt or its
/// failure report) are retried while the coordinator cannot be reached or
/// answers 5xx or 429: a coordinator restarting, or a network cut. A late
/// receipt still counts while its job is open, so it is worth keeping.
const RETRY_FOR: Duration = Duration::from_secs(300);

/// How many times a run's request is retried when its signature is refused
/// (401): a restarted coordinator refuses signatures made before it started,
/// and a fresh one is accepted.
const RETRY_UNAUTHORIZED: u32 = 3;

/// `call`, retried with backoff (50 ms, doubling to 5 s) while it fails
/// in a way that may pass: see [`RETRY_FOR`] and [`RETRY_UNAUTHORIZED`].
/// Every attempt is signed afresh.
fn retrying<T>(what: &str, mut call: impl FnMut() -> Result<T, ClientError>) -> Result<T, ClientError> {
    let deadline = Instant::now() + RETRY_FOR;
    let mut wait = Duration::from_millis(50);
    let mut refused = 0;
    loop {
        let e = match call() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let again = match &e {
            ClientError::Transport { .. } => true,
            ClientError::Api { status, .. } if *status >= 500 || *status == 429 => true,
            ClientError::Api { status: 401, .. } => {
                refused += 1;
                refused <= RETRY_UNAUTHORIZED
            }
            ClientError::Api { .. } => false,
        };
        if !again || Instant::now() + wait > deadline {
            return Err(e);
        }
        log(&format!("{what}: {e}; retrying in {wait:?}"));
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Runs the worker until `stop` is set (then drains: no new leases, the
/// runs in hand finish and are reported) or `max_runs` runs are done.
pub fn run(opts: WorkerOptions, stop: Arc<AtomicBool>) -> Result<(), String> {
    let node = opts.key.node_id();
    let client = Arc::new(Client::new(&opts.coordinator, Auth::Node(Box::new(opts.key.clone())))?);
    let sandbox = Arc::new(Sandbox::builder().backend(opts.backend).build().map_err(|e| e.to_string())?);
    let cache = match &opts.cache {
        Some(dir) => Some(Arc::new(super::blobs::BlobStore::open(dir, u64::MAX).map_err(|e| e.to_string())?)),
        None => None,
    };
    let opts = Arc::new(opts);
    log(&format!("node {node}, coordinator {}, {} slots", opts.coordinator, opts.concurrency));
    let busy = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let mut backoff = opts.idle_poll;
    let mut leased_total = 0u64;
    // Each run thread says when it is done, so a full worker leases again
    // at once rather than at its next poll.
    let (freed_tx, freed_rx) = std::sync::mpsc::channel::<()>();
    while !stop.load(Ordering::SeqCst) {
        if opts.max_runs.is_some_and(|m| leased_total >= m) {
            break;
        }
        handles.retain(|h| !h.is_finished());
        let free = opts.concurrency.saturating_sub(busy.load(Ordering::SeqCst));
        if free == 0 {
            let _ = freed_rx.recv_timeout(Duration::from_millis(20));
            continue;
        }
        let want = match opts.max_runs {
            Some(m) => (free as u64).min(m - leased_total) as u32,
            None => free as u32,
        };
        let asked = std::time::Instant::now();
        let leases = match client.lease_wait(want, LEASE_WAIT) {
            Ok(l) => l,
            Err(e) => {
                log(&format!("lease: {e}"));
                sleep_unless(&stop, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if leases.is_empty() {
            // A coordinator that held the request has waited already.
            if asked.elapsed() < LEASE_WAIT / 2 {
                sleep_unless(&stop, backoff);
                backoff = (backoff * 2).min(opts.idle_poll * 8);
            }
            continue;
        }
        backoff = opts.idle_poll;
        for lease in leases {
            leased_total += 1;
            busy.fetch_add(1, Ordering::SeqCst);
            let (client, sandbox, cache, opts, busy, done) = (client.clone(), sandbox.clone(), cache.clone(), opts.clone(), busy.clone(), done.clone());
            let freed = freed_tx.clone();
            let h = std::thread::Builder::new()
                .name("canon-run".into())
                .spawn(move || {
                    let run = lease.run.clone();
                    let job = lease.job.clone();
                    match run_one(&client, &sandbox, cache.as_deref(), &opts, lease) {
                        Ok(msg) => log(&format!("run {run} of job {job}: {msg}")),
                        Err(msg) => log(&format!("run {run} of job {job}: {msg}")),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    busy.fetch_sub(1, Ordering::SeqCst);
                    let _ = freed.send(());
                })
                .map_err(|e| format!("cannot start a run thread: {e}"))?;
            handles.push(h);
        }
    }
    if stop.load(Ordering::SeqCst) {
        log(&format!("draining: {} runs in hand", busy.load(Ordering::SeqCst)));
    }
    for h in handles {
        let _ = h.join();
    }
    log(&format!("stopped after {} runs", done.load(Ordering::SeqCst)));
    Ok(())
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(20);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::SeqCst) {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

/// Most bytes of one run's log a worker sends; past it the log says it was
/// cut (the coordinator has its own limit too).
const MAX_LOG_BYTES: usize = 4 << 20;

/// A run's log, buffered until the heartbeat thread sends it: the worker's
/// own lines and the guest's stdout and stderr as they are written.
#[derive(Default)]
struct RunLog {
    pending: Mutex<Vec<u8>>,
    taken: AtomicUsize,
}

impl RunLog {
    fn push(&self, bytes: &[u8]) {
        let before = self.taken.fetch_add(bytes.len(), Ordering::SeqCst);
        if let Ok(mut p) = self.pending.lock() {
            if before + bytes.len() <= MAX_LOG_BYTES {
                p.extend_from_slice(bytes);
            } else if before < MAX_LOG_BYTES {
                p.extend_from_slice(&bytes[..MAX_LOG_BYTES - before]);
                p.extend_from_slice(b"\n[canon worker: log cut at 4 MiB]\n");
            }
        }
    }

    fn line(&self, text: &str) {
        self.push(format!("[canon worker] {text}\n").as_bytes());
    }

    fn take(&self) -> Vec<u8> {
        self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default()
    }

    fn put_back(&self, mut bytes: Vec<u8>) {
        if let Ok(mut p) = self.pending.lock() {
            bytes.extend_from_slice(&p);
            *p = bytes;
        }
    }
}

/// Sends what the log holds; `sent` is how much the coordinator has.
fn flush(client: &Client, run: &str, log: &RunLog, sent: &mut u64) {
    let chunk = log.take();
    if chunk.is_empty() {
        return;
    }
    match client.append_log(run, *sent, chunk.clone()) {
        Ok(ack) if ack.appended => *sent = ack.size,
        // The coordinator has more than we thought (a retried append that
        // did land): send only what it lacks.
        Ok(ack) => {
            let skip = ack.size.saturating_sub(*sent) as usize;
            *sent = ack.size;
            if skip < chunk.len() {
                log.put_back(chunk[skip..].to_vec());
            }
        }
        Err(ClientError::Api { .. }) => {}
        Err(_) => log.put_back(chunk),
    }
}

/// Heartbeats a run and sends its log until closed; when the coordinator
/// says to stop, it records why and stops the sandbox through `cancel`.
struct Heart {
    quit: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
    stopped: Arc<Mutex<Option<String>>>,
    log: Arc<RunLog>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Heart {
    fn start(client: Arc<Client>, run: String, every: Duration, cancel: Cancel) -> Heart {
        let quit = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(Mutex::new(None));
        let log = Arc::new(RunLog::default());
        let (q, r, s, l) = (quit.clone(), running.clone(), stopped.clone(), log.clone());
        let handle = std::thread::spawn(move || {
            let mut sent_running = false;
            let mut sent_log = 0u64;
            // Logs go out at least twice a second, heartbeats every `every`.
            let log_every = every.min(Duration::from_millis(500));
            loop {
                // Sleep until the next heartbeat, waking to send the log,
                // and at once when the run starts or the heart closes
                // (both unpark this thread).
                let beat_at = std::time::Instant::now() + every;
                loop {
                    if q.load(Ordering::SeqCst) || (r.load(Ordering::SeqCst) && !sent_running) {
                        break;
                    }
                    let now = std::time::Instant::now();
                    if now >= beat_at {
                        break;
                    }
                    std::thread::park_timeout((beat_at - now).min(log_every));
                    flush(&client, &run, &l, &mut sent_log);
                }
                flush(&client, &run, &l, &mut sent_log);
                if q.load(Ordering::SeqCst) {
                    return;
                }
                let running = r.load(Ordering::SeqCst);
                let stop = match client.heartbeat(&run, running) {
                    Ok(h) if !h.proceed => Some(h.reason.unwrap_or_else(|| "stop".into())),
                    Ok(_) => {
                        sent_running = running;
                        None
                    }
                    Err(ClientError::Api { status: 404, .. }) => Some("the coordinator does not know this run".into()),
                    // A missed heartbeat: try again next tick; the lease
                    // allows several.
                    Err(_) => None,
                };
                if let Some(why) = stop {
                    if let Ok(mut g) = s.lock() {
                        *g = Some(why);
                    }
                    cancel.cancel();
                    return;
                }
            }
        });
        Heart { quit, running, stopped, log, handle: Mutex::new(Some(handle)) }
    }

    fn stopped(&self) -> Option<String> {
        self.stopped.lock().ok().and_then(|g| g.clone())
    }

    /// Stops heartbeating, after sending what the log holds.
    fn close(&self) {
        self.quit.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.lock().ok().and_then(|mut h| h.take()) {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Heart {
    fn drop(&mut self) {
        self.close();
    }
}

/// Runs one lease to its receipt (Ok) or its failure report (Err).
fn run_one(client: &Arc<Client>, sandbox: &Sandbox, cache: Option<&super::blobs::BlobStore>, opts: &WorkerOptions, lease: Lease) -> Result<String, String> {
    let cancel = Cancel::new();
    let heart = Heart::start(client.clone(), lease.run.clone(), Duration::from_millis(lease.heartbeat_ms.max(50)), cancel.clone());
    let refuse = |code: &str, reason: String| -> Result<String, String> {
        heart.log.line(&format!("no result: {code}: {reason}"));
        heart.close();
        match retrying("fail", || client.fail(&lease.run, code, &reason)) {
            Ok(_) => Err(format!("{code}: {reason}")),
            Err(e) => Err(format!("{code}: {reason} (and the report failed: {e})")),
        }
    };
    let bundle = match Bundle::parse(lease.bundle.as_bytes()) {
        Ok(b) => b,
        Err(e) => return refuse("refused", e.to_string()),
    };
    if bundle.job_digest != lease.job_digest {
        return refuse("refused", format!("leased as job {} but the bundle names job {}", lease.job_digest, bundle.job_digest));
    }
    // The signed request the receipt will name: checked whether or not
    // this worker requires one.
    let request = match &lease.signature {
        None if !opts.trust_submitters.is_empty() => {
            return refuse("refused", "the job is not signed, and this worker runs only jobs signed by a trusted submitter".into());
        }
        None => None,
        Some(sig) => match super::submitter::verify(sig.as_bytes(), &lease.job_digest) {
            Ok(who) if opts.trust_submitters.is_empty() || opts.trust_submitters.contains(&who) => {
                Some(crate::receipt::JobRequestRef { submitter: who, sha256: Digest::of(sig.as_bytes()) })
            }
            Ok(who) => return refuse("refused", format!("the job is signed by {who}, who is not a submitter this worker trusts")),
            Err(e) => return refuse("refused", e.to_string()),
        },
    };
    let stage = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return refuse("error", format!("cannot make a staging directory: {e}")),
    };
    let mut get = |d: &Digest| -> Result<Arc<Vec<u8>>, String> {
        if let Some(c) = cache
            && let Ok(b) = c.get(d)
        {
            return Ok(Arc::new(b));
        }
        let bytes = retrying("get blob", || client.get_blob(d)).map_err(|e| e.to_string())?;
        if let Some(c) = cache {
            // Checked against the digest before it is kept.
            let _ = c.put(d, &bytes);
        }
        Ok(Arc::new(bytes))
    };
    let job = match bundle.materialize(stage.path(), &mut get) {
        Ok(j) => j,
        Err(e) => return refuse("refused", e.to_string()),
    };
    drop(stage);
    heart.log.line(&format!("job {} ({}), {} blobs checked; running on {}", job.digest(), job.name, bundle.blobs().len(), opts.backend.as_str()));
    heart.running.store(true, Ordering::SeqCst);
    if let Some(t) = heart.handle.lock().ok().and_then(|h| h.as_ref().map(|h| h.thread().clone())) {
        t.unpark();
    }
    let started = Timestamp::now();
    let tap_log = heart.log.clone();
    let tap = crate::sandbox::StdioTap(Arc::new(move |_stream: u32, bytes: &[u8]| tap_log.push(bytes)));
    let outcome = match sandbox.run_with(&job, RunOptions { cancel: Some(cancel), tap: Some(tap), ..RunOptions::default() }) {
        Ok(o) => o,
        Err(RunError::Cancelled) => return Err(format!("stopped: {}; nothing sent", heart.stopped().unwrap_or_default())),
        Err(RunError::Timeout(t)) => return refuse("timeout", format!("no result within the safety timeout of {t:?}")),
        Err(e) => return refuse("error", e.to_string()),
    };
    if let Some(why) = heart.stopped() {
        return Err(format!("stopped: {why}; nothing sent"));
    }
    let outcome = if opts.faulty { flip(&outcome) } else { outcome };
    // Outputs first, so the receipt never names a blob the coordinator lacks.
    let mut blobs: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
    blobs.insert(Digest::of(&outcome.stdout), outcome.stdout.clone());
    blobs.insert(Digest::of(&outcome.stderr), outcome.stderr.clone());
    outcome.outputs.walk("", &mut |_, n| {
        match n {
            Node::File(b) => {
                blobs.insert(Digest::of(b), b.to_vec());
            }
            // A link's target is a blob too, so `canon fetch` can rebuild it.
            Node::Symlink(t) => {
                blobs.insert(Digest::of(t.as_bytes()), t.as_bytes().to_vec());
            }
            Node::Dir(_) => {}
        }
    });
    let missing = match retrying("missing", || client.missing(blobs.keys().copied().collect())) {
        Ok(m) => m,
        Err(e) => return refuse("error", format!("cannot ask which outputs to upload: {e}")),
    };
    for d in missing {
        if let Some(b) = blobs.remove(&d)
            && let Err(e) = retrying("put blob", || client.put_blob(&d, b.clone()))
        {
            return refuse("error", format!("cannot upload output {d}: {e}"));
        }
    }
    let run_id = match uuid::Uuid::parse_str(&lease.run) {
        Ok(u) => RunId::from_uuid(u),
        Err(_) => return refuse("refused", format!("the run id {:?} is not a UUID", lease.run)),
    };
    let summary = outcome.summary();
    let facts = RunFacts {
        job_digest: job.digest(),
        run_id,
        engine: Engine::current(opts.backend.as_str()),
        outcome: summary.clone(),
        started,
        finished: Timestamp::now(),
    };
    let statement = Statement::new(opts.key.node_id(), facts);
    let statement = match request {
        Some(r) => statement.answering(r),
        None => statement,
    };
    let envelope = match statement.sign(&opts.key) {
        Ok(e) => e,
        Err(e) => return refuse("error", format!("cannot sign: {e}")),
    };
    let receipt = String::from_utf8_lossy(&envelope.to_json()).into_owned();
    heart.log.line(&format!("{} ({}), fuel {}; receipt signed", summary.termination, summary.outcome_digest, summary.fuel_consumed));
    heart.close();
    match retrying("complete", || client.complete(&lease.run, receipt.clone())) {
        Ok(ack) => match ack.rejected {
            None => Ok(format!("{} ({}), receipt {}", summary.termination, summary.outcome_digest.short(), ack.state.as_str())),
            Some(why) => Err(format!("receipt refused: {why}")),
        },
        Err(e) => Err(format!("cannot send the receipt: {e}")),
    }
}

/// The lie of a faulty worker: the first byte of stdout flipped (an empty
/// stdout becomes 0x01), as `canon run --faulty` does.
fn flip(o: &Outcome) -> Outcome {
    let mut o = o.clone();
    match o.stdout.first_mut() {
        Some(b) => *b ^= 1,
        None => o.stdout.push(1),
    }
    o
}
