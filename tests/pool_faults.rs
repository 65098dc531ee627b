//! The pool under faults (docs/POOL.md, "Faults"), with real processes:
//! the coordinator SIGKILLed under load and restarted on its data
//! directory and port, and a worker cut off from the network in a network
//! namespace of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canon::digest::Digest;
use canon::node::NodeKey;
use canon::pool::api::{GroupMode, JobQuery, JobState, JobView, RunState, SubmitRequest};
use canon::pool::bundle::Bundle;
use canon::pool::client::{Auth, Client};

use crate::util::{canon_bin, fixture, job_spec, scratch};

const TOKEN: &str = "test-token-faults";

/// A coordinator that can be killed and restarted on its data directory
/// and address, and its workers; every process is killed on drop.
struct Pool {
    dir: tempfile::TempDir,
    config: PathBuf,
    url: String,
    coordinator: Option<Child>,
    workers: Vec<(usize, Child)>,
}

impl Pool {
    /// Writes the config (listening on `listen`, fast heartbeats, one
    /// tenant, `extra` lines) and `policy.toml` beside it, if given, and
    /// starts the coordinator.
    fn start(listen: &str, extra: &str, policy: Option<&str>) -> Pool {
        let dir = scratch();
        if let Some(p) = policy {
            std::fs::write(dir.path().join("policy.toml"), p).expect("policy");
        }
        let config = dir.path().join("coordinator.toml");
        std::fs::write(
            &config,
            format!("listen = \"{listen}\"\nheartbeat_secs = 0.2\nlease_secs = 1.0\n{extra}\n[[tenant]]\nname = \"alice\"\ntoken = \"{TOKEN}\"\n"),
        )
        .expect("write config");
        let mut pool = Pool { dir, config, url: String::new(), coordinator: None, workers: Vec::new() };
        pool.url = pool.spawn_coordinator();
        pool
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `canon serve` on the data directory and returns the URL it
    /// printed.
    fn spawn_coordinator(&mut self) -> String {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path().join("coordinator.log")).expect("log");
        let mut child = Command::new(canon_bin())
            .args(["serve", "--data"])
            .arg(self.path().join("data"))
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn coordinator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read address");
        self.coordinator = Some(child);
        line.trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("coordinator said {line:?}; see {}", self.path().join("coordinator.log").display()))
            .to_string()
    }

    /// SIGKILLs the coordinator.
    fn kill_coordinator(&mut self) {
        let mut c = self.coordinator.take().expect("a coordinator runs");
        c.kill().expect("SIGKILL");
        let _ = c.wait();
    }

    /// Starts worker `i` (key seeded by `i`), prefixed by `wrap` (e.g. `ip
    /// netns exec NS`).
    fn worker(&mut self, i: usize, wrap: &[&str], flags: &[&str]) {
        let key = self.path().join(format!("worker-{i}.key"));
        if !key.exists() {
            NodeKey::from_seed(&[i as u8 + 150; 32]).save_new(&key).expect("save key");
        }
        let mut cmd = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(canon_bin());
                c
            }
            None => Command::new(canon_bin()),
        };
        let child = cmd
            .args(["worker", "--coordinator", &self.url, "--key"])
            .arg(&key)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(self.log_path(i)).expect("log")))
            .spawn()
            .expect("spawn worker");
        self.workers.push((i, child));
    }

    fn stop_worker(&mut self, i: usize) {
        let at = self.workers.iter().position(|(n, _)| *n == i).expect("worker runs");
        let (_, mut w) = self.workers.remove(at);
        let _ = w.kill();
        let _ = w.wait();
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.path().join(format!("worker-{i}.log"))
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    fn client(&self) -> Client {
        Client::new(&self.url, Auth::Token(TOKEN.into())).expect("client")
    }

    /// Polls `id` until `done` holds of its view, or panics after `timeout`.
    fn wait_for(&self, id: &str, timeout: Duration, what: &str, done: impl Fn(&JobView) -> bool) -> JobView {
        let c = self.client();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(v) = c.status(id) {
                if done(&v) {
                    return v;
                }
                assert!(Instant::now() < deadline, "job {id}: not {what} after {timeout:?}: {v:#?}");
            }
            assert!(Instant::now() < deadline, "job {id}: no status after {timeout:?}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn wait(&self, id: &str, timeout: Duration) -> JobView {
        self.wait_for(id, timeout, "final", |v| v.state.is_final())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (_, w) in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Some(c) = &mut self.coordinator {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn node_id(i: usize) -> String {
    NodeKey::from_seed(&[i as u8 + 150; 32]).node_id().to_string()
}

/// A free loopback port: bound, read and released.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A job submitted through the library client: its blobs uploaded, then
/// its bundle.
struct Submitter {
    client: Client,
    bundle: String,
    blobs: BTreeMap<Digest, Arc<Vec<u8>>>,
}

impl Submitter {
    fn new(url: &str, job: &Path) -> Submitter {
        let job = canon::job::Job::load(job).expect("job");
        let (bundle, blobs) = Bundle::of(&job);
        let bundle = String::from_utf8(bundle.to_json()).expect("utf-8");
        Submitter { client: Client::new(url, Auth::Token(TOKEN.into())).expect("client"), bundle, blobs }
    }

    /// The job's id, if the coordinator took it.
    fn submit(&self) -> Option<String> {
        let missing = self.client.missing(self.blobs.keys().copied().collect()).ok()?;
        for d in missing {
            self.client.put_blob(&d, self.blobs[&d].to_vec()).ok()?;
        }
        let req = SubmitRequest { bundle: self.bundle.clone(), replicas: None, group: None, mode: GroupMode::Replace, priority: None, signature: None };
        self.client.submit(&req).ok().map(|r| r.id)
    }
}

/// The runs whose receipts a worker's log says the coordinator accepted:
/// (job, run).
fn acknowledged(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| l.ends_with("receipt succeeded"))
        .filter_map(|l| {
            let rest = l.strip_prefix("canon worker: run ")?;
            let (run, rest) = rest.split_once(" of job ")?;
            let (job, _) = rest.split_once(':')?;
            Some((job.to_string(), run.to_string()))
        })
        .collect()
}

/// A signed `POST /v1/blobs/missing`, which changes nothing: its headers.
fn signed_missing(url: &str, key: &NodeKey, body: &[u8]) -> Vec<(String, String)> {
    use canon::pool::httpsig;
    let authority = url.trim_start_matches("http://").to_string();
    let digest = httpsig::content_digest(body);
    let parts = httpsig::RequestParts { method: "POST", authority: &authority, path: "/v1/blobs/missing", query: None, content_digest: &digest };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64;
    let sig = httpsig::sign_request(key, &parts, now, &httpsig::new_nonce()).expect("sign");
    vec![("content-digest".into(), digest), ("signature-input".into(), sig.signature_input), ("signature".into(), sig.signature)]
}

fn send(url: &str, body: &[u8], headers: &[(String, String)]) -> (u16, String) {
    let mut rb = reqwest::blocking::Client::new().post(format!("{url}/v1/blobs/missing")).body(body.to_vec());
    for (k, v) in headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let r = rb.send().expect("send");
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_default())
}

/// The coordinator is SIGKILLed while three workers lease and complete a
/// stream of jobs and a client keeps submitting, then restarted on the same
/// data directory and port. Nothing it acknowledged is lost: every job the
/// client got an id for is there and ends accepted, every receipt a worker
/// had acknowledged is among the job's receipts, every accepted output can
/// be fetched, no node ran a job twice, and the workers carry on across the
/// restart without being restarted. A request signed before the restart is
/// refused after it, although the new process has never seen its nonce.
#[test]
fn a_coordinator_killed_under_load_loses_nothing_it_acknowledged() {
    let listen = format!("127.0.0.1:{}", free_port());
    // Every valid signer weighs 1 (no policy): two agreeing receipts decide.
    let mut pool = Pool::start(&listen, "replicas = 2\nmax_runs = 6\nmax_errors = 6", None);
    assert_eq!(pool.url, format!("http://{listen}"));
    for i in 0..3 {
        pool.worker(i, &[], &["--concurrency", "2"]);
    }
    let spec = job_spec(pool.path(), "chain.toml", "sha256chain.wasm", "args = [\"20000\"]");
    let jobs = [fixture("jobs/hello.toml"), spec];

    // A client submitting without pause, before, during and after the kill.
    let ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (ids, stop, url) = (ids.clone(), stop.clone(), pool.url.clone());
        let subs: Vec<Submitter> = jobs.iter().map(|j| Submitter::new(&url, j)).collect();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                if let Some(id) = subs[n % subs.len()].submit() {
                    ids.lock().expect("ids").push(id);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };

    // Kill it once work is in every state: some decided, some running.
    let client = pool.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = client.list(&JobQuery { limit: Some(1000), ..JobQuery::default() }).expect("list");
        let done = page.jobs.iter().filter(|j| j.state == JobState::Succeeded).count();
        let running = page.jobs.iter().filter(|j| j.state == JobState::Running).count();
        if done >= 6 && running >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the pool never got going: {done} done, {running} running");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A request signed and accepted before the kill, to replay after it.
    let stranger = NodeKey::from_seed(&[77; 32]);
    let body = br#"{"digests":[]}"#;
    let old = signed_missing(&pool.url, &stranger, body);
    assert_eq!(send(&pool.url, body, &old).0, 200);

    pool.kill_coordinator();
    let submitted_before_kill = ids.lock().expect("ids").len();
    std::thread::sleep(Duration::from_millis(500));
    let url = pool.spawn_coordinator();
    assert_eq!(url, pool.url, "the restarted coordinator listens where it did");

    // The replay: the new process holds no nonces, and still refuses it.
    let (status, text) = send(&pool.url, body, &old);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("before") && text.contains("sign the request afresh"), "{text}");
    assert_eq!(send(&pool.url, body, &signed_missing(&pool.url, &stranger, body)).0, 200, "a fresh signature is accepted");

    // More work after the restart, then let everything finish.
    let more = Instant::now() + Duration::from_secs(2);
    while ids.lock().expect("ids").len() < submitted_before_kill + 5 || Instant::now() < more {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    submitter.join().expect("submitter");
    let ids = ids.lock().expect("ids").clone();
    assert!(submitted_before_kill >= 4, "only {submitted_before_kill} jobs before the kill");

    // A job whose id the kill kept from the client may be there too.
    let listed: Vec<String> = client.list(&JobQuery { limit: Some(1000), ..JobQuery::default() }).expect("list").jobs.into_iter().map(|j| j.id).collect();
    for id in &ids {
        assert!(listed.contains(id), "job {id} was accepted before the kill and is gone");
    }
    let mut views = BTreeMap::new();
    for id in &listed {
        let v = pool.wait(id, Duration::from_secs(120));
        assert_eq!((v.state, v.verdict.as_deref()), (JobState::Succeeded, Some("accepted")), "{v:#?}");
        let nodes: BTreeSet<&str> = v.run_list.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(nodes.len(), v.run_list.len(), "a node ran job {id} twice: {v:#?}");
        // Every accepted output is there to fetch, and is what it says.
        let receipts = client.receipts(id).expect("receipts");
        assert!(receipts.receipts.len() >= 2, "{receipts:?}");
        for (_, env) in &receipts.receipts {
            let r = canon::receipt::verify_envelope(env.as_bytes()).expect("receipt verifies");
            let d = r.statement.predicate.outcome.stdout_sha256;
            assert_eq!(Digest::of(&client.job_blob(id, &d).expect("stdout blob")), d);
        }
        views.insert(id.clone(), (v, receipts));
    }
    // Every receipt a worker was told was accepted, before the kill or
    // after, is among its job's receipts.
    let mut acked = 0;
    for i in 0..3 {
        for (job, run) in acknowledged(&pool.log(i)) {
            let (v, receipts) = views.get(&job).unwrap_or_else(|| panic!("worker {i} completed job {job}, which is gone"));
            let r = v.run_list.iter().find(|r| r.id == run).unwrap_or_else(|| panic!("run {run} of job {job} is gone"));
            assert_eq!((r.node.as_str(), r.state), (node_id(i).as_str(), RunState::Succeeded));
            assert!(receipts.receipts.iter().any(|(id, _)| *id == run), "the receipt of run {run} of job {job} is gone");
            acked += 1;
        }
    }
    assert!(acked >= listed.len(), "{acked} receipts acknowledged for {} jobs", listed.len());
    // The workers were never restarted.
    let dir = pool.path().to_path_buf();
    for (i, w) in &mut pool.workers {
        assert!(w.try_wait().expect("try_wait").is_none(), "worker {i} exited: {}", dir.join(format!("worker-{i}.log")).display());
    }
}

/// A network namespace joined to this one by a veth pair: `host` (this
/// side, `host_addr`) and the namespace's side (`ns_addr`). Removed on drop.
struct Netns {
    name: String,
    host: String,
    host_addr: String,
}

/// Runs `ip ARGS`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if o.status.success() { Ok(()) } else { Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim())) }
}

impl Netns {
    /// Makes the namespace, or says why it cannot: Err(reason) when this
    /// process may not (no root, no CAP_NET_ADMIN), a panic otherwise.
    fn new() -> Result<Netns, String> {
        if Command::new("ip").arg("-V").output().is_err() {
            let why = "`ip` (iproute2) is not installed; scripts/test.sh installs it".to_string();
            assert!(std::env::var_os("CI").is_none(), "{why}");
            return Err(why);
        }
        let pid = std::process::id();
        // One /30 of 10.200.0.0/16 per process, and names of at most 15 bytes.
        let net = (pid % 16384) * 4;
        let (a, b) = (net >> 8, net & 0xff);
        let name = format!("canon-test-{pid}");
        let inner = format!("cvn{pid}");
        let ns_addr = format!("10.200.{a}.{}/30", b + 2);
        let not_permitted = |e: &str| e.contains("Operation not permitted") || e.contains("Permission denied");
        if let Err(e) = ip(&["netns", "add", &name]) {
            if not_permitted(&e) {
                return Err(format!("needs root or CAP_NET_ADMIN to make a network namespace ({e})"));
            }
            panic!("{e}");
        }
        // From here on, dropping `ns` removes what was made.
        let ns = Netns { name, host: format!("cvh{pid}"), host_addr: format!("10.200.{a}.{}", b + 1) };
        let steps: [&[&str]; 7] = [
            &["link", "add", &ns.host, "type", "veth", "peer", "name", &inner],
            &["link", "set", &inner, "netns", &ns.name],
            &["addr", "add", &format!("{}/30", ns.host_addr), "dev", &ns.host],
            &["link", "set", &ns.host, "up"],
            &["-n", &ns.name, "addr", "add", &ns_addr, "dev", &inner],
            &["-n", &ns.name, "link", "set", &inner, "up"],
            &["-n", &ns.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(e) = ip(step) {
                if not_permitted(&e) {
                    return Err(format!("needs CAP_NET_ADMIN to make a veth pair ({e})"));
                }
                panic!("{e}");
            }
        }
        Ok(ns)
    }

    /// Takes this side of the link down or up.
    fn link(&self, up: bool) {
        ip(&["link", "set", &self.host, if up { "up" } else { "down" }]).expect("ip link set");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so both.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host]);
    }
}

/// A worker in a network namespace of its own loses its link while it runs
/// a job: its lease expires and a node on the other side finishes the job.
/// With the link back, the cut-off worker learns the job is over (its
/// heartbeat is told to stop, or its late receipt is refused as `409`,
/// docs/POOL.md "Late receipts") and takes new work.
#[test]
fn a_worker_cut_off_from_the_network_loses_its_lease_and_recovers() {
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("skipped: a worker cut off from the network: {why}");
            return;
        }
    };
    // The coordinator listens on this side of the link, so the worker in the
    // namespace reaches it only through the link.
    let policy = "min_quorum = 1\nunknown_weight = 1.0\n";
    let mut pool = Pool::start(&format!("{}:0", ns.host_addr), "replicas = 1\nmax_runs = 3\npolicy = \"policy.toml\"", Some(policy));

    let spec = job_spec(pool.path(), "slow.toml", "sha256chain.wasm", "args = [\"6000000\"]\n[limits]\nfuel = 100000000000\ntimeout = 60");
    let slow = Submitter::new(&pool.url, &spec).submit().expect("submit");
    let (cut, other) = (node_id(0), node_id(1));
    pool.worker(0, &["ip", "netns", "exec", &ns.name], &[]);
    pool.wait_for(&slow, Duration::from_secs(60), "running on the cut-off worker", |v| {
        v.run_list.iter().any(|r| r.node == cut && r.state == RunState::Running)
    });

    ns.link(false);
    pool.wait_for(&slow, Duration::from_secs(30), "expired", |v| v.run_list.iter().any(|r| r.node == cut && r.state == RunState::Expired));
    pool.worker(1, &[], &[]);
    let v = pool.wait(&slow, Duration::from_secs(60));
    assert_eq!(v.state, JobState::Succeeded, "{v:#?}");
    let runs: Vec<(&str, RunState)> = v.run_list.iter().map(|r| (r.node.as_str(), r.state)).collect();
    assert_eq!(runs, vec![(cut.as_str(), RunState::Expired), (other.as_str(), RunState::Succeeded)]);

    ns.link(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = &v.run_list[0].id;
    loop {
        let log = pool.log(0);
        let told_to_stop = log.contains(&format!("run {run} of job {slow}: stopped: the job is over; nothing sent"));
        let late_refused =
            log.lines().any(|l| l.starts_with(&format!("canon worker: run {run} of job {slow}: cannot send the receipt")) && l.contains("409 conflict"));
        if told_to_stop || late_refused {
            break;
        }
        assert!(Instant::now() < deadline, "the cut-off worker never learned the job was over:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The job stays as it was decided.
    let after = pool.client().status(&slow).expect("status");
    assert_eq!(after.run_list.iter().map(|r| (r.node.as_str(), r.state)).collect::<Vec<_>>(), runs);

    // New work goes to the worker that was cut off, the only one left.
    pool.stop_worker(1);
    let hello = Submitter::new(&pool.url, &fixture("jobs/hello.toml")).submit().expect("submit");
    let v = pool.wait(&hello, Duration::from_secs(60));
    assert_eq!(v.state, JobState::Succeeded, "{v:#?}");
    assert_eq!(v.run_list.iter().map(|r| (r.node.as_str(), r.state)).collect::<Vec<_>>(), vec![(cut.as_str(), RunState::Succeeded)]);
}
