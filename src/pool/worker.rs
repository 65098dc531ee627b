//! The worker: a node that leases runs from a coordinator, fetches each
//! job's blobs by digest and checks them, rebuilds the job and checks its
//! digest, runs it in the sandbox, sends its outputs and its signed
//! receipt (asking for its next run in the same request), and heartbeats
//! meanwhile.
//!
//! It trusts nothing it is sent: a blob that does not hash to its name, a
//! bundle that does not rebuild to the job digest it was leased under, or
//! (with `trust_submitters`) a job no trusted submitter signed, is refused
//! with a reason, and nothing is signed for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::api::{CompleteRequest, FailRequest, Lease, LogTail, MAX_INLINE_OUTPUT_BYTES};
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

/// Blobs a worker has fetched and checked lately, kept in memory so that
/// the next job naming one (most often the module) is built without
/// reading and hashing it again: at most [`MEMORY_CACHE_BYTES`], the
/// oldest dropped first.
#[derive(Default)]
struct Recent {
    blobs: std::collections::HashMap<Digest, Arc<Vec<u8>>>,
    order: std::collections::VecDeque<Digest>,
    bytes: usize,
}

/// How many bytes of checked blobs a worker keeps in memory: a few
/// modules and inputs, a small share of a worker machine's memory.
const MEMORY_CACHE_BYTES: usize = 256 << 20;

impl Recent {
    fn get(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        self.blobs.get(d).cloned()
    }

    /// Keeps `bytes`, which hash to `d`.
    fn put(&mut self, d: Digest, bytes: Arc<Vec<u8>>) {
        if bytes.len() > MEMORY_CACHE_BYTES || self.blobs.contains_key(&d) {
            return;
        }
        self.bytes += bytes.len();
        self.blobs.insert(d, bytes);
        self.order.push_back(d);
        while self.bytes > MEMORY_CACHE_BYTES {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(b) = self.blobs.remove(&old) {
                self.bytes -= b.len();
            }
        }
    }
}

/// What every run of a worker shares.
struct Ctx {
    client: Arc<Client>,
    sandbox: Sandbox,
    cache: Option<super::blobs::BlobStore>,
    recent: Mutex<Recent>,
    opts: WorkerOptions,
    heart: Heart,
    stop: Arc<AtomicBool>,
    /// Runs leased so far, against `max_runs`.
    leased: AtomicU64,
    /// Runs done.
    done: AtomicUsize,
}

impl Ctx {
    /// Counts one more run against `max_runs`, if it allows one.
    fn reserve(&self) -> bool {
        self.leased.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| self.opts.max_runs.is_none_or(|m| n < m).then_some(n + 1)).is_ok()
    }

    /// How many more runs `max_runs` allows, at most `want`.
    fn allowed(&self, want: u64) -> u64 {
        match self.opts.max_runs {
            Some(m) => want.min(m.saturating_sub(self.leased.load(Ordering::SeqCst))),
            None => want,
        }
    }
}

/// Runs the worker until `stop` is set (then drains: no new leases, the
/// runs in hand finish and are reported) or `max_runs` runs are done.
///
/// Each slot is a thread that runs a lease, then sends its receipt with a
/// request for the next run (`next` in `POST /v1/runs/{id}/complete`), so
/// a busy slot costs one request a run. This loop leases only for idle
/// slots, with a request the coordinator holds until there is work; one
/// heartbeat thread serves every run in hand.
pub fn run(opts: WorkerOptions, stop: Arc<AtomicBool>) -> Result<(), String> {
    let node = opts.key.node_id();
    let client = Arc::new(Client::new(&opts.coordinator, Auth::Node(Box::new(opts.key.clone())))?);
    let sandbox = Sandbox::builder().backend(opts.backend).build().map_err(|e| e.to_string())?;
    let cache = match &opts.cache {
        Some(dir) => Some(super::blobs::BlobStore::open(dir, u64::MAX).map_err(|e| e.to_string())?),
        None => None,
    };
    log(&format!("node {node}, coordinator {}, {} slots", opts.coordinator, opts.concurrency));
    let heart = Heart::start(client.clone());
    let ctx = Arc::new(Ctx {
        client,
        sandbox,
        cache,
        recent: Mutex::default(),
        opts,
        heart,
        stop: stop.clone(),
        leased: AtomicU64::new(0),
        done: AtomicUsize::new(0),
    });
    let busy = Arc::new(AtomicUsize::new(0));
    let mut handles: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let mut backoff = ctx.opts.idle_poll;
    // Each slot thread says when it ends, so a full worker leases again at
    // once rather than at its next poll.
    let (freed_tx, freed_rx) = std::sync::mpsc::channel::<()>();
    while !stop.load(Ordering::SeqCst) {
        let free = ctx.opts.concurrency.saturating_sub(busy.load(Ordering::SeqCst)) as u64;
        let want = ctx.allowed(free);
        if want == 0 {
            if ctx.opts.max_runs.is_some_and(|m| ctx.leased.load(Ordering::SeqCst) >= m) && busy.load(Ordering::SeqCst) == 0 {
                break;
            }
            let _ = freed_rx.recv_timeout(Duration::from_millis(20));
            handles.retain(|h| !h.is_finished());
            continue;
        }
        let asked = Instant::now();
        let leases = match ctx.client.lease_wait(want as u32, LEASE_WAIT) {
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
                backoff = (backoff * 2).min(ctx.opts.idle_poll * 8);
            }
            continue;
        }
        backoff = ctx.opts.idle_poll;
        for lease in leases {
            ctx.leased.fetch_add(1, Ordering::SeqCst);
            busy.fetch_add(1, Ordering::SeqCst);
            let (ctx, busy, freed) = (ctx.clone(), busy.clone(), freed_tx.clone());
            // A guest thread: the slot's runs execute in place on it.
            let h = crate::sandbox::guest_thread("canon-slot", move || {
                slot(&ctx, lease);
                busy.fetch_sub(1, Ordering::SeqCst);
                let _ = freed.send(());
            })
            .map_err(|e| format!("cannot start a slot thread: {e}"))?;
            handles.push(h);
        }
    }
    if stop.load(Ordering::SeqCst) {
        log(&format!("draining: {} runs in hand", busy.load(Ordering::SeqCst)));
    }
    for h in handles {
        let _ = h.join();
    }
    ctx.heart.quit();
    log(&format!("stopped after {} runs", ctx.done.load(Ordering::SeqCst)));
    Ok(())
}

/// One slot: runs `first`, then each next run its receipt's answer brings,
/// until there is none (the slot is idle) or the worker stops.
fn slot(ctx: &Ctx, first: Lease) {
    let mut lease = Some(first);
    while let Some(l) = lease.take() {
        let (run, job) = (l.run.clone(), l.job.clone());
        let (result, mut leases) = run_one(ctx, l);
        match result {
            Ok(msg) | Err(msg) => log(&format!("run {run} of job {job}: {msg}")),
        }
        ctx.done.fetch_add(1, Ordering::SeqCst);
        // `next` asks for one; a coordinator that sent more sent what this
        // slot did not ask for, and those leases expire.
        leases.truncate(1);
        lease = leases.pop();
    }
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

/// How soon after its lease a run's first heartbeat goes, reporting it
/// `running`: soon enough for a person watching, late enough that a short
/// run ends first and costs no heartbeat at all (it goes from `leased`
/// straight to its end).
const FIRST_BEAT: Duration = Duration::from_millis(250);

/// How often a run's log is sent while the run is open.
const LOG_EVERY: Duration = Duration::from_millis(500);

/// A run's log, buffered until it is sent: the worker's own lines and the
/// guest's stdout and stderr as they are written.
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

/// A run in hand, as the heartbeat thread sees it.
struct Beating {
    run: String,
    cancel: Cancel,
    log: RunLog,
    /// The blobs are checked and the sandbox is starting.
    running: AtomicBool,
    /// Why the coordinator said to stop, if it did.
    stopped: Mutex<Option<String>>,
    /// The log's size at the coordinator as far as this worker knows, and
    /// whether the run is closed (its tail goes with its end); held while
    /// the log is sent.
    sent: Mutex<(u64, bool)>,
    /// When the next heartbeat and the next log send are due.
    due: Mutex<(Instant, Instant)>,
    every: Duration,
}

impl Beating {
    fn stopped(&self) -> Option<String> {
        self.stopped.lock().ok().and_then(|g| g.clone())
    }
}

/// Sends what a run's log holds, unless the run is closed.
fn flush(client: &Client, b: &Beating) {
    let Ok(mut sent) = b.sent.lock() else { return };
    if sent.1 {
        return;
    }
    let chunk = b.log.take();
    if chunk.is_empty() {
        return;
    }
    match client.append_log(&b.run, sent.0, chunk.clone()) {
        Ok(ack) if ack.appended => sent.0 = ack.size,
        // The coordinator has more than we thought (a retried append that
        // did land): send only what it lacks.
        Ok(ack) => {
            let skip = ack.size.saturating_sub(sent.0) as usize;
            sent.0 = ack.size;
            if skip < chunk.len() {
                b.log.put_back(chunk[skip..].to_vec());
            }
        }
        Err(ClientError::Api { .. }) => {}
        Err(_) => b.log.put_back(chunk),
    }
}

/// One thread that heartbeats every run in hand and sends their logs; when
/// the coordinator says to stop a run, it records why and stops the
/// sandbox through the run's `Cancel`.
struct Heart {
    runs: Arc<Mutex<Vec<Arc<Beating>>>>,
    quit: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heart {
    fn start(client: Arc<Client>) -> Heart {
        let runs: Arc<Mutex<Vec<Arc<Beating>>>> = Arc::default();
        let quit = Arc::new(AtomicBool::new(false));
        let (r, q) = (runs.clone(), quit.clone());
        let thread = std::thread::Builder::new()
            .name("canon-heart".into())
            .spawn(move || {
                while !q.load(Ordering::SeqCst) {
                    let now = Instant::now();
                    let list: Vec<Arc<Beating>> = r.lock().map(|l| l.clone()).unwrap_or_default();
                    let mut wake = now + Duration::from_secs(1);
                    for b in &list {
                        let (beat_at, log_at) = b.due.lock().map(|d| *d).unwrap_or((now, now));
                        if now >= log_at {
                            flush(&client, b);
                            if let Ok(mut d) = b.due.lock() {
                                d.1 = Instant::now() + LOG_EVERY;
                            }
                        }
                        if now >= beat_at {
                            beat(&client, b);
                            if let Ok(mut d) = b.due.lock() {
                                d.0 = Instant::now() + b.every;
                            }
                        }
                        if let Ok(d) = b.due.lock() {
                            wake = wake.min(d.0).min(d.1);
                        }
                    }
                    // Woken early when a run is added or the worker stops.
                    std::thread::park_timeout(wake.saturating_duration_since(Instant::now()));
                }
            })
            .ok();
        Heart { runs, quit, thread }
    }

    /// Starts heartbeating a run.
    fn add(&self, run: &str, every: Duration) -> Arc<Beating> {
        let now = Instant::now();
        let b = Arc::new(Beating {
            run: run.to_string(),
            cancel: Cancel::new(),
            log: RunLog::default(),
            running: AtomicBool::new(false),
            stopped: Mutex::new(None),
            sent: Mutex::new((0, false)),
            due: Mutex::new((now + FIRST_BEAT.min(every), now + LOG_EVERY)),
            every,
        });
        if let Ok(mut l) = self.runs.lock() {
            l.push(b.clone());
        }
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
        b
    }

    /// Stops heartbeating a run and closes its log; returns the log's end
    /// that is still to be sent, with the offset it goes at.
    fn close(&self, b: &Beating) -> Option<LogTail> {
        if let Ok(mut l) = self.runs.lock() {
            l.retain(|x| x.run != b.run);
        }
        // Waits for a send in progress.
        let mut sent = b.sent.lock().ok()?;
        sent.1 = true;
        let bytes = b.log.take();
        use base64::Engine as _;
        (!bytes.is_empty()).then(|| LogTail { offset: sent.0, data: base64::engine::general_purpose::STANDARD.encode(bytes) })
    }

    fn quit(&self) {
        self.quit.store(true, Ordering::SeqCst);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

/// One heartbeat of a run.
fn beat(client: &Client, b: &Beating) {
    if b.sent.lock().map(|s| s.1).unwrap_or(true) {
        return;
    }
    let stop = match client.heartbeat(&b.run, b.running.load(Ordering::SeqCst)) {
        Ok(h) if !h.proceed => Some(h.reason.unwrap_or_else(|| "stop".into())),
        Ok(_) => None,
        Err(ClientError::Api { status: 404, .. }) => Some("the coordinator does not know this run".into()),
        // A missed heartbeat: try again next time; the lease allows several.
        Err(_) => None,
    };
    if let Some(why) = stop {
        if let Ok(mut g) = b.stopped.lock() {
            *g = Some(why);
        }
        b.cancel.cancel();
    }
}

/// What one run came to: Ok (a receipt sent) or Err (no result, reported
/// or not), and the runs leased with its end (`next`).
type RunEnd = (Result<String, String>, Vec<Lease>);

/// Runs one lease to its receipt or its failure report, asking for the
/// slot's next run with the receipt unless the worker is stopping or has
/// leased its `max_runs`.
fn run_one(ctx: &Ctx, lease: Lease) -> RunEnd {
    let (client, opts) = (&ctx.client, &ctx.opts);
    let b = ctx.heart.add(&lease.run, Duration::from_millis(lease.heartbeat_ms.max(50)));
    let refuse = |code: &str, reason: String| -> RunEnd {
        b.log.line(&format!("no result: {code}: {reason}"));
        let req = FailRequest { code: code.into(), reason: reason.clone(), log: ctx.heart.close(&b) };
        match retrying("fail", || client.fail_with(&lease.run, &req)) {
            Ok(_) => (Err(format!("{code}: {reason}")), Vec::new()),
            Err(e) => (Err(format!("{code}: {reason} (and the report failed: {e})")), Vec::new()),
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
    let cache = ctx.cache.as_ref();
    let mut get = |d: &Digest| -> Result<Arc<Vec<u8>>, String> {
        if let Some(b) = ctx.recent.lock().ok().and_then(|r| r.get(d)) {
            return Ok(b);
        }
        let bytes = match cache.map(|c| c.get(d)) {
            // Checked against the digest as it was read.
            Some(Ok(b)) => b,
            _ => {
                let bytes = retrying("get blob", || client.get_blob(d)).map_err(|e| e.to_string())?;
                if Digest::of(&bytes) != *d {
                    // `materialize` names the blob and what it is for.
                    return Ok(Arc::new(bytes));
                }
                if let Some(c) = cache {
                    let _ = c.put(d, &bytes);
                }
                bytes
            }
        };
        // Only bytes that hash to their name get here.
        let bytes = Arc::new(bytes);
        if let Ok(mut r) = ctx.recent.lock() {
            r.put(*d, bytes.clone());
        }
        Ok(bytes)
    };
    let job = match bundle.materialize(stage.path(), &mut get) {
        Ok(j) => j,
        Err(e) => return refuse("refused", e.to_string()),
    };
    drop(stage);
    b.log.line(&format!("job {} ({}), {} blobs checked; running on {}", job.digest(), job.name, bundle.blobs().len(), opts.backend.as_str()));
    b.running.store(true, Ordering::SeqCst);
    let started = Timestamp::now();
    let tap_log = b.clone();
    let tap = crate::sandbox::StdioTap(Arc::new(move |_stream: u32, bytes: &[u8]| tap_log.log.push(bytes)));
    let outcome = match ctx.sandbox.run_with(&job, RunOptions { cancel: Some(b.cancel.clone()), tap: Some(tap), ..RunOptions::default() }) {
        Ok(o) => o,
        Err(RunError::Cancelled) => {
            ctx.heart.close(&b);
            return (Err(format!("stopped: {}; nothing sent", b.stopped().unwrap_or_default())), Vec::new());
        }
        Err(RunError::Timeout(t)) => return refuse("timeout", format!("no result within the safety timeout of {t:?}")),
        Err(e) => return refuse("error", e.to_string()),
    };
    if let Some(why) = b.stopped() {
        ctx.heart.close(&b);
        return (Err(format!("stopped: {why}; nothing sent")), Vec::new());
    }
    let outcome = if opts.faulty { flip(&outcome) } else { outcome };
    // Every output the receipt will name reaches the coordinator before or
    // with it: the small ones inline, the rest uploaded first if missing.
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
    let (inline, upload) = split_inline(blobs);
    if !upload.is_empty() {
        let missing = match retrying("missing", || client.missing(upload.keys().copied().collect())) {
            Ok(m) => m,
            Err(e) => return refuse("error", format!("cannot ask which outputs to upload: {e}")),
        };
        for d in missing {
            if let Some(bytes) = upload.get(&d)
                && let Err(e) = retrying("put blob", || client.put_blob(&d, bytes.clone()))
            {
                return refuse("error", format!("cannot upload output {d}: {e}"));
            }
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
    b.log.line(&format!("{} ({}), fuel {}; receipt signed", summary.termination, summary.outcome_digest, summary.fuel_consumed));
    let next = !ctx.stop.load(Ordering::SeqCst) && ctx.reserve();
    let req = CompleteRequest {
        receipt: String::from_utf8_lossy(&envelope.to_json()).into_owned(),
        outputs: inline,
        log: ctx.heart.close(&b),
        next: next.then_some(1),
    };
    let (said, leases) = match retrying("complete", || client.complete_with(&lease.run, &req)) {
        Ok(ack) => {
            let said = match ack.rejected {
                None => Ok(format!("{} ({}), receipt {}", summary.termination, summary.outcome_digest.short(), ack.state.as_str())),
                Some(why) => Err(format!("receipt refused: {why}")),
            };
            (said, ack.leases)
        }
        Err(e) => (Err(format!("cannot send the receipt: {e}")), Vec::new()),
    };
    if next && leases.is_empty() {
        ctx.leased.fetch_sub(1, Ordering::SeqCst);
    }
    (said, leases)
}

/// Splits a run's outputs into those sent inline with the receipt
/// (smallest first, within [`MAX_INLINE_OUTPUT_BYTES`], base64) and those
/// to upload first.
fn split_inline(blobs: BTreeMap<Digest, Vec<u8>>) -> (BTreeMap<Digest, String>, BTreeMap<Digest, Vec<u8>>) {
    use base64::Engine as _;
    let mut by_size: Vec<(Digest, Vec<u8>)> = blobs.into_iter().collect();
    by_size.sort_by_key(|(d, b)| (b.len(), *d));
    let (mut inline, mut upload) = (BTreeMap::new(), BTreeMap::new());
    let mut room = MAX_INLINE_OUTPUT_BYTES;
    for (d, bytes) in by_size {
        if bytes.len() <= room {
            room -= bytes.len();
            inline.insert(d, base64::engine::general_purpose::STANDARD.encode(&bytes));
        } else {
            upload.insert(d, bytes);
        }
    }
    (inline, upload)
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
