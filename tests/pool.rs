//! The pool end to end: a real `canon serve` and real `canon worker`
//! processes on loopback, driven by the real client commands and by raw
//! HTTP where a test plays a hostile client or worker.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use canon::node::NodeKey;
use canon::pool::api::{JobQuery, JobState, JobView};
use canon::pool::client::{Auth, Client};
use serde_json::Value;

use crate::util::{canon_bin, fixture, scratch};

const TOKEN: &str = "test-token-alice";
const OTHER_TOKEN: &str = "test-token-bob";

/// A coordinator and its workers; every process is killed on drop.
struct Pool {
    dir: tempfile::TempDir,
    url: String,
    coordinator: Child,
    workers: Vec<Child>,
}

impl Pool {
    /// Starts a coordinator with fast heartbeats and two tenants, and
    /// `extra` lines of config.
    fn start(extra: &str) -> Pool {
        Pool::start_with(extra, None)
    }

    /// A pool whose jobs are decided by one receipt from any node.
    fn single(extra: &str) -> Pool {
        Pool::start_with(&format!("replicas = 1\npolicy = \"policy.toml\"\n{extra}"), Some("min_quorum = 1\nunknown_weight = 1.0\n".into()))
    }

    /// Like [`Pool::start`], with `policy.toml` beside the config.
    fn start_with(extra: &str, policy: Option<String>) -> Pool {
        let dir = scratch();
        if let Some(p) = policy {
            std::fs::write(dir.path().join("policy.toml"), p).expect("policy");
        }
        let config = dir.path().join("coordinator.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nheartbeat_secs = 0.2\nlease_secs = 1.0\n{extra}\n\
                 [[tenant]]\nname = \"alice\"\ntoken = \"{TOKEN}\"\n[[tenant]]\nname = \"bob\"\ntoken = \"{OTHER_TOKEN}\"\n"
            ),
        )
        .expect("write config");
        let (coordinator, url) = spawn_coordinator(dir.path(), &config);
        Pool { dir, url, coordinator, workers: Vec::new() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The key file of worker `i`, created on first use.
    fn key(&self, i: usize) -> PathBuf {
        let p = self.path().join(format!("worker-{i}.key"));
        if !p.exists() {
            NodeKey::from_seed(&[i as u8 + 100; 32]).save_new(&p).expect("save key");
        }
        p
    }

    fn node_id(&self, i: usize) -> String {
        node_id(i)
    }

    /// Starts worker `i` with more flags.
    fn worker(&mut self, i: usize, flags: &[&str]) {
        let key = self.key(i);
        let child = Command::new(canon_bin())
            .args(["worker", "--coordinator", &self.url, "--key"])
            .arg(&key)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(self.path().join(format!("worker-{i}.log"))).expect("log")))
            .spawn()
            .expect("spawn worker");
        self.workers.push(child);
    }

    fn client(&self, token: &str) -> Client {
        Client::new(&self.url, Auth::Token(token.into())).expect("client")
    }

    fn canon(&self, args: &[&str]) -> Output {
        Command::new(canon_bin()).args(args).env("CANON_COORDINATOR", &self.url).env("CANON_TOKEN", TOKEN).env("HOME", self.path()).output().expect("run canon")
    }

    fn wait(&self, id: &str, timeout: Duration) -> JobView {
        let c = self.client(TOKEN);
        let deadline = Instant::now() + timeout;
        loop {
            let v = c.status(id).expect("status");
            if v.state.is_final() {
                return v;
            }
            assert!(Instant::now() < deadline, "job {id} still {} after {timeout:?}: {v:#?}", v.state);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Pool {
    /// Waits until one of the job's runs is running.
    fn wait_running(&self, id: &str) {
        let c = self.client(TOKEN);
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.status(id).expect("status").runs.running == 0 {
            assert!(Instant::now() < deadline, "job {id} never started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = self.coordinator.kill();
        let _ = self.coordinator.wait();
    }
}

/// Starts `canon serve` and reads the address it bound from its first line.
fn spawn_coordinator(data: &Path, config: &Path) -> (Child, String) {
    let mut child = Command::new(canon_bin())
        .args(["serve", "--data"])
        .arg(data.join("data"))
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(data.join("coordinator.log")).expect("log")))
        .spawn()
        .expect("spawn coordinator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read address");
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("coordinator said {line:?}")).to_string();
    (child, url)
}

fn submit(pool: &Pool, job: &Path, flags: &[&str]) -> String {
    let mut args = vec!["submit", job.to_str().expect("utf-8")];
    args.extend_from_slice(flags);
    let o = pool.canon(&args);
    assert!(o.status.success(), "submit failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Worker `i`'s node id.
fn node_id(i: usize) -> String {
    NodeKey::from_seed(&[i as u8 + 100; 32]).node_id().to_string()
}

/// The policy: the four workers, weight 1 each. The total weight is 4, so
/// three agreeing receipts (0.75) meet the 2/3 threshold and two do not.
fn four_worker_policy() -> String {
    (0..4).map(|i| format!("[[node]]\nid = \"{}\"\nname = \"w{i}\"\n", node_id(i))).collect()
}

/// Files under `dir`, relative path to bytes.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).expect("prefix").display().to_string(), std::fs::read(&p).expect("read"));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

#[test]
fn four_workers_one_byzantine_reach_accepted_verdicts_and_name_the_liar() {
    let mut pool = Pool::start_with("replicas = 3\nmax_runs = 4\npolicy = \"policy.toml\"", Some(four_worker_policy()));
    let jobs = ["hello.toml", "probe-writeout.toml", "sha256chain.toml", "mixed.toml"];
    let ids: Vec<String> = jobs.iter().map(|j| submit(&pool, &fixture(&format!("jobs/{j}")), &[])).collect();
    // The liar first, so it takes part.
    pool.worker(3, &["--faulty"]);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..3 {
        pool.worker(i, &[]);
    }
    let liar = pool.node_id(3);
    let mut liar_ran = 0;
    for (job, id) in jobs.iter().zip(&ids) {
        let v = pool.wait(id, Duration::from_secs(120));
        assert_eq!(v.state, JobState::Succeeded, "{job}: {v:#?}");
        assert_eq!(v.verdict.as_deref(), Some("accepted"));
        let tally = v.tally.as_ref().expect("tally");
        let dissenters: Vec<&str> = tally["dissenters"].as_array().expect("dissenters").iter().filter_map(|d| d["node"].as_str()).collect();
        let ran = v.run_list.iter().any(|r| r.node == liar && r.state == canon::pool::api::RunState::Succeeded);
        if ran {
            liar_ran += 1;
            assert_eq!(dissenters, vec![liar.as_str()], "{job}: the liar is the one dissenter");
            // 2 honest of 4 is not enough: a fourth replica was dispatched.
            assert_eq!(v.replicas, 4, "{job}");
        } else {
            assert!(dissenters.is_empty(), "{job}: {dissenters:?}");
        }
        // One run per node per job.
        let mut nodes: Vec<&str> = v.run_list.iter().map(|r| r.node.as_str()).collect();
        nodes.sort();
        nodes.dedup();
        assert_eq!(nodes.len(), v.run_list.len(), "{job}: a node ran the job twice");

        // What a client fetches is what an in-process run produces.
        let fetched = pool.path().join(format!("fetched-{job}"));
        let o = pool.canon(&["fetch", id, "--out", fetched.to_str().expect("utf-8")]);
        assert!(o.status.success(), "fetch {job}: {}", String::from_utf8_lossy(&o.stderr));
        let local = pool.path().join(format!("local-{job}"));
        let o = Command::new(canon_bin()).arg("run").arg(fixture(&format!("jobs/{job}"))).arg("--out").arg(&local).output().expect("canon run");
        assert!(o.status.success() || o.status.code() == Some(1), "run {job}: {}", String::from_utf8_lossy(&o.stderr));
        let mut want = files(&local);
        want.remove("outcome.json");
        let mut got = files(&fetched);
        got.retain(|k, _| !k.starts_with("receipts/") && k != "tally.json");
        assert_eq!(got, want, "{job}: fetched artifacts differ from the in-process run's");
    }
    assert!(liar_ran >= 1, "the byzantine worker never ran a job");

    // The liar's node page: each of its runs, with the job's accepted
    // outcome beside its own, which is another.
    let page = pool.client(TOKEN).node_runs(&liar, 2, None).expect("node runs");
    assert_eq!(page.node, liar);
    let mut runs = page.runs.clone();
    assert!(runs.len() <= 2 && page.next_cursor.is_some() == (liar_ran > 2), "{page:#?}");
    let mut cursor = page.next_cursor;
    while let Some(c) = cursor {
        let next = pool.client(TOKEN).node_runs(&liar, 2, Some(&c)).expect("next page");
        runs.extend(next.runs);
        cursor = next.next_cursor;
    }
    let finished: Vec<_> = runs.iter().filter(|r| r.state == canon::pool::api::RunState::Succeeded).collect();
    assert_eq!(finished.len(), liar_ran, "{runs:#?}");
    for r in &finished {
        assert!(ids.contains(&r.job), "{r:?}");
        assert_eq!(r.verdict.as_deref(), Some("accepted"));
        assert!(r.accepted.is_some() && r.outcome.is_some() && r.outcome != r.accepted, "the liar's run dissents: {r:?}");
    }
    // An honest node's runs agree.
    let honest = pool.client(TOKEN).node_runs(&pool.node_id(0), 1000, None).expect("node runs");
    assert!(!honest.runs.is_empty());
    assert!(honest.runs.iter().all(|r| r.outcome == r.accepted), "{honest:#?}");
    // Another tenant sees none of them; a malformed node id is refused by name.
    assert!(pool.client(OTHER_TOKEN).node_runs(&liar, 1000, None).expect("node runs").runs.is_empty());
    let e = pool.client(TOKEN).node_runs("did:key:nonsense", 10, None).expect_err("refused");
    assert_eq!(e.code(), Some("bad_request"), "{e}");
}

#[test]
fn a_tenant_cannot_see_or_cancel_another_tenants_job() {
    let pool = Pool::start("");
    let id = submit(&pool, &fixture("jobs/hello.toml"), &[]);
    let bob = pool.client(OTHER_TOKEN);
    for e in [bob.status(&id).err(), bob.cancel(&id, None).err(), bob.receipts(&id).err()] {
        assert_eq!(e.expect("refused").code(), Some("not_found"));
    }
    assert!(bob.list(&JobQuery::default()).expect("list").jobs.is_empty());
    assert_eq!(pool.client(TOKEN).list(&JobQuery::default()).expect("list").jobs.len(), 1);
    let e = pool.client("not-a-token").status(&id).expect_err("refused");
    assert_eq!(e.code(), Some("unauthorized"));
}

/// A raw worker request: method, path, body, with the headers given.
fn raw(pool: &Pool, method: &str, path: &str, body: &[u8], headers: &[(String, String)]) -> (u16, String) {
    let http = reqwest::blocking::Client::new();
    let mut rb = http.request(method.parse().expect("method"), format!("{}{path}", pool.url)).body(body.to_vec());
    for (k, v) in headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let r = rb.send().expect("send");
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_default())
}

fn signed(pool: &Pool, key: &NodeKey, method: &str, path: &str, body: &[u8]) -> Vec<(String, String)> {
    use canon::pool::httpsig;
    let authority = pool.url.trim_start_matches("http://").to_string();
    let digest = httpsig::content_digest(body);
    let parts = httpsig::RequestParts { method, authority: &authority, path, query: None, content_digest: &digest };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64;
    let sig = httpsig::sign_request(key, &parts, now, &httpsig::new_nonce()).expect("sign");
    vec![("content-digest".into(), digest), ("signature-input".into(), sig.signature_input), ("signature".into(), sig.signature)]
}

#[test]
fn forged_and_replayed_worker_requests_are_refused() {
    let pool = Pool::start("");
    let key = NodeKey::from_seed(&[7; 32]);
    let body = br#"{"slots":1}"#;
    // Honest: accepted (nothing to lease).
    let h = signed(&pool, &key, "POST", "/v1/lease", body);
    assert_eq!(raw(&pool, "POST", "/v1/lease", body, &h).0, 200);
    // The same request again: a replay.
    let (status, text) = raw(&pool, "POST", "/v1/lease", body, &h);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("replay"), "{text}");
    // Signed for one body, sent with another.
    let h = signed(&pool, &key, "POST", "/v1/lease", body);
    let (status, text) = raw(&pool, "POST", "/v1/lease", br#"{"slots":9}"#, &h);
    assert_eq!(status, 401, "{text}");
    // Signed for one path, sent to another.
    let h = signed(&pool, &key, "POST", "/v1/lease", b"");
    let (status, _) = raw(&pool, "POST", "/v1/runs/x/fail", b"", &h);
    assert_eq!(status, 401);
    // No signature; a tenant's token is not a worker's identity.
    let (status, _) = raw(&pool, "POST", "/v1/lease", body, &[("authorization".into(), format!("Bearer {TOKEN}"))]);
    assert_eq!(status, 401);
    // A run leased to nobody: not found for this node.
    let b = br#"{"code":"error","reason":"x"}"#;
    let h = signed(&pool, &key, "POST", "/v1/runs/00000000-0000-0000-0000-000000000000/fail", b);
    assert_eq!(raw(&pool, "POST", "/v1/runs/00000000-0000-0000-0000-000000000000/fail", b, &h).0, 404);
}

#[test]
fn a_worker_that_requires_signed_jobs_refuses_unsigned_and_wrongly_signed_ones() {
    let mut pool = Pool::single("max_runs = 1\nmax_errors = 0");
    let submitter = NodeKey::from_seed(&[9; 32]);
    let key_path = pool.path().join("submitter.key");
    submitter.save_new(&key_path).expect("key");
    let stranger = NodeKey::from_seed(&[10; 32]);
    let stranger_path = pool.path().join("stranger.key");
    stranger.save_new(&stranger_path).expect("key");
    let hello = fixture("jobs/hello.toml");
    let unsigned = submit(&pool, &hello, &[]);
    let by_stranger = submit(&pool, &hello, &["--sign", stranger_path.to_str().expect("utf-8")]);
    let signed = submit(&pool, &hello, &["--sign", key_path.to_str().expect("utf-8")]);
    pool.worker(0, &["--trust-submitter", &submitter.node_id().to_string()]);
    let v = pool.wait(&signed, Duration::from_secs(60));
    assert_eq!(v.state, JobState::Succeeded, "{v:#?}");
    assert_eq!(v.submitter.as_deref(), Some(submitter.node_id().to_string().as_str()));
    // Its receipt names the signed request it answered.
    let receipts = pool.client(TOKEN).receipts(&signed).expect("receipts");
    let r = canon::receipt::verify_envelope(receipts.receipts[0].1.as_bytes()).expect("receipt");
    let named = r.statement.predicate.job_request.expect("the receipt names the request");
    assert_eq!(named.submitter, submitter.node_id());
    let db = rusqlite::Connection::open(pool.path().join("data/canon.db")).expect("db");
    let sig: String = db.query_row("SELECT signature FROM jobs WHERE id = ?1", [&signed], |r| r.get(0)).expect("signature");
    assert_eq!(named.sha256, canon::digest::Digest::of(sig.as_bytes()));
    // The list filters by submitter.
    let alice = pool.client(TOKEN);
    let by = |who: &str| -> Vec<String> {
        let q = JobQuery { submitter: Some(who.to_string()), ..JobQuery::default() };
        alice.list(&q).expect("list").jobs.into_iter().map(|j| j.id).collect()
    };
    assert_eq!(by(&submitter.node_id().to_string()), vec![signed.clone()]);
    assert_eq!(by(&stranger.node_id().to_string()), vec![by_stranger.clone()]);
    let all = alice.list(&JobQuery::default()).expect("list").jobs;
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().find(|j| j.id == signed).and_then(|j| j.submitter.clone()), Some(submitter.node_id().to_string()));
    assert_eq!(all.iter().find(|j| j.id == unsigned).and_then(|j| j.submitter.clone()), None);
    let e = alice.list(&JobQuery { submitter: Some("alice".into()), ..JobQuery::default() }).expect_err("refused");
    assert_eq!(e.code(), Some("bad_request"), "{e}");
    assert!(e.to_string().contains("submitter"), "{e}");
    for (id, why) in [(unsigned, "not signed"), (by_stranger, "not a submitter this worker trusts")] {
        let v = pool.wait(&id, Duration::from_secs(60));
        assert_eq!(v.state, JobState::Failed, "{v:#?}");
        let reason = v.run_list[0].reason.clone().unwrap_or_default();
        assert!(reason.contains(why), "{reason}");
    }
}

#[test]
fn replace_supersedes_the_groups_jobs_and_enqueue_keeps_order() {
    let mut pool = Pool::single("max_runs = 2");
    let hello = fixture("jobs/hello.toml");
    let a = submit(&pool, &hello, &["--group", "deploy", "--mode", "enqueue"]);
    let b = submit(&pool, &hello, &["--group", "deploy", "--mode", "enqueue"]);
    let c = submit(&pool, &hello, &["--group", "deploy"]);
    let alice = pool.client(TOKEN);
    for id in [&a, &b] {
        let v = alice.status(id).expect("status");
        assert_eq!(v.state, JobState::Cancelled);
        assert_eq!(v.reason, Some(format!("superseded by {c}")));
    }
    // Enqueue: in submission order, one at a time.
    let d = submit(&pool, &hello, &["--group", "ship", "--mode", "enqueue"]);
    let e = submit(&pool, &hello, &["--group", "ship", "--mode", "enqueue"]);
    pool.worker(0, &["--concurrency", "2"]);
    for id in [&c, &d, &e] {
        assert_eq!(pool.wait(id, Duration::from_secs(60)).state, JobState::Succeeded);
    }
    let d_end = alice.status(&d).expect("d").finished_at.expect("finished");
    let e_start = alice.status(&e).expect("e").run_list[0].leased_at;
    assert!(e_start >= d_end, "the group's second job started before its first ended");
}

#[test]
fn a_killed_worker_loses_its_lease_and_another_node_finishes_the_job() {
    let mut pool = Pool::single("max_runs = 3");
    // A job that runs long enough to kill its worker mid-run.
    let spec = crate::util::job_spec(pool.path(), "slow.toml", "sha256chain.wasm", "args = [\"3000000\"]\n[limits]\nfuel = 100000000000\ntimeout = 60");
    let id = submit(&pool, &spec, &[]);
    pool.worker(0, &[]);
    pool.wait_running(&id);
    let mut w = pool.workers.remove(0);
    w.kill().expect("SIGKILL");
    let _ = w.wait();
    pool.worker(1, &[]);
    let v = pool.wait(&id, Duration::from_secs(120));
    assert_eq!(v.state, JobState::Succeeded, "{v:#?}");
    let states: Vec<(&str, &str)> = v.run_list.iter().map(|r| (r.node.as_str(), r.state.as_str())).collect();
    assert_eq!(states, vec![(pool.node_id(0).as_str(), "expired"), (pool.node_id(1).as_str(), "succeeded")]);
}

#[test]
fn events_resume_after_last_event_id_with_nothing_missed_or_repeated() {
    let mut pool = Pool::single("");
    let alice = pool.client(TOKEN);
    let hello = fixture("jobs/hello.toml");
    let first = submit(&pool, &hello, &[]);
    pool.worker(0, &[]);
    pool.wait(&first, Duration::from_secs(60));
    // Read everything so far, stopping half way.
    let mut all = Vec::new();
    alice
        .events(None, Some(0), &mut |e| {
            all.push(e);
            all.last().is_some_and(|e| e.kind != "job.succeeded")
        })
        .expect("events");
    let half = all.len() / 2;
    let resume_after = all[half - 1].seq;
    let mut resumed = Vec::new();
    alice
        .events(None, Some(resume_after), &mut |e| {
            resumed.push(e);
            resumed.len() < all.len() - half
        })
        .expect("events");
    let a: Vec<i64> = all[half..].iter().map(|e| e.seq).collect();
    let b: Vec<i64> = resumed.iter().map(|e| e.seq).collect();
    assert_eq!(a, b);
    // Bob sees none of Alice's events.
    let bob = pool.client(OTHER_TOKEN);
    let bob_job = submit_as(&pool, OTHER_TOKEN, &hello);
    let mut bobs = Vec::new();
    bob.events(None, Some(0), &mut |e| {
        bobs.push(e);
        false
    })
    .expect("events");
    assert_eq!(bobs[0].job, bob_job);
}

fn submit_as(pool: &Pool, token: &str, job: &Path) -> String {
    let o = Command::new(canon_bin())
        .args(["submit", job.to_str().expect("utf-8")])
        .env("CANON_COORDINATOR", &pool.url)
        .env("CANON_TOKEN", token)
        .output()
        .expect("submit");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn a_full_queue_refuses_with_queue_full_and_stores_nothing() {
    let pool = Pool::start("max_unfinished = 2");
    let hello = fixture("jobs/hello.toml");
    submit(&pool, &hello, &[]);
    submit(&pool, &hello, &[]);
    let o = pool.canon(&["submit", hello.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("429") && err.contains("queue_full"), "{err}");
    assert_eq!(pool.client(TOKEN).list(&JobQuery::default()).expect("list").jobs.len(), 2);
}

#[test]
fn list_pages_with_a_cursor_newest_first() {
    let pool = Pool::start("");
    let hello = fixture("jobs/hello.toml");
    let ids: Vec<String> = (0..5).map(|_| submit(&pool, &hello, &[])).collect();
    let alice = pool.client(TOKEN);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = alice.list(&JobQuery { limit: Some(2), cursor: cursor.clone(), ..JobQuery::default() }).expect("list");
        seen.extend(page.jobs.iter().map(|j| j.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
}

#[test]
fn cancel_stops_pending_runs_and_tells_a_running_worker() {
    let mut pool = Pool::single("");
    // Runs for days unless stopped (its safety timeout is an hour).
    let spec = crate::util::job_spec(pool.path(), "forever.toml", "sha256chain.wasm", &crate::util::FOREVER.replace("timeout = 1", "timeout = 3600"));
    let pending = submit(&pool, &fixture("jobs/hello.toml"), &[]);
    let o = pool.canon(&["cancel", &pending, "--reason", "not needed"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let running = submit(&pool, &spec, &[]);
    pool.worker(0, &[]);
    let alice = pool.client(TOKEN);
    pool.wait_running(&running);
    alice.cancel(&running, Some("changed my mind".into())).expect("cancel");
    let v = alice.status(&pending).expect("status");
    assert_eq!((v.state, v.reason.as_deref(), v.run_list.len()), (JobState::Cancelled, Some("not needed"), 0));
    let v = alice.status(&running).expect("status");
    assert_eq!(v.state, JobState::Cancelled);
    assert_eq!(v.run_list[0].state, canon::pool::api::RunState::Cancelled);
    // Cancelling again is a conflict, with the state named.
    let e = alice.cancel(&running, None).expect_err("conflict");
    assert_eq!(e.code(), Some("conflict"));
    // The worker (one slot) stopped its sandbox: it takes the next job at
    // once, where the cancelled one would have held the slot for days.
    let next = submit(&pool, &fixture("jobs/hello.toml"), &[]);
    assert_eq!(pool.wait(&next, Duration::from_secs(60)).state, JobState::Succeeded);
    let log = std::fs::read_to_string(pool.path().join("worker-0.log")).expect("log");
    assert!(log.contains("stopped: changed my mind"), "{log}");
}

#[test]
fn fetch_refuses_without_an_accepted_outcome() {
    let pool = Pool::start("");
    let id = submit(&pool, &fixture("jobs/hello.toml"), &[]);
    let out = pool.path().join("fetched");
    let o = pool.canon(&["fetch", &id, "--out", out.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("insufficient"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn metrics_and_openapi_are_served() {
    let pool = Pool::start("");
    submit(&pool, &fixture("jobs/hello.toml"), &[]);
    let text = reqwest::blocking::get(format!("{}/metrics", pool.url)).expect("metrics").text().expect("text");
    assert!(text.contains("canon_queue_depth{priority=\"4\"} 1"), "{text}");
    let doc: Value = reqwest::blocking::get(format!("{}/openapi.json", pool.url)).expect("openapi").json().expect("json");
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
}

/// Every route the router has, as (method, path), read from its source.
fn routes() -> Vec<(String, String)> {
    let src = std::fs::read_to_string(crate::util::root().join("src/pool/server.rs")).expect("server.rs");
    let mut out = Vec::new();
    for line in src.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
        let path = line.split('"').nth(1).expect("path").to_string();
        let handlers = &line[line.find(',').expect("handlers")..];
        for m in ["get", "post", "put", "delete", "patch"] {
            if handlers.contains(&format!(" {m}(")) || handlers.contains(&format!(".{m}(")) {
                out.push((m.to_string(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_in_the_openapi_document() {
    let doc: Value = serde_json::from_str(canon::pool::server::OPENAPI).expect("openapi.json");
    let routes = routes();
    assert!(routes.len() >= 15, "{routes:?}");
    for (method, path) in &routes {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in docs/openapi.json");
    }
    let documented: usize = doc["paths"].as_object().expect("paths").values().map(|v| v.as_object().map_or(0, |o| o.len())).sum();
    assert_eq!(documented, routes.len(), "docs/openapi.json documents a route the server does not have");
}

/// Every fixture job travels as a bundle and rebuilds to the same job,
/// whatever the staging directory.
#[test]
fn bundles_rebuild_every_fixture_job_to_its_digest() {
    use canon::job::{Policy, Threads};
    use canon::pool::bundle::Bundle;
    let (mut n, mut threaded) = (0, 0);
    for entry in std::fs::read_dir(fixture("jobs")).expect("jobs").flatten() {
        let path = entry.path();
        let Ok(job) = canon::job::Job::load(&path) else { continue };
        let mut jobs = vec![job.clone()];
        // A threaded job's scheduler settings travel too.
        if job.threads.is_some() {
            let mut other = job.clone();
            other.threads = Some(Threads { policy: Policy::Pct { depth: 3 }, seed: Some(11), slice: 500, max_threads: 8 });
            assert_ne!(other.digest(), job.digest());
            jobs.push(other);
            threaded += 1;
        }
        for job in jobs {
            let (bundle, blobs) = Bundle::of(&job);
            let parsed = Bundle::parse(&bundle.to_json()).expect("parse");
            assert_eq!(parsed, bundle);
            for _ in 0..2 {
                let stage = scratch();
                let mut get = |d: &canon::digest::Digest| blobs.get(d).cloned().ok_or_else(|| "missing".to_string());
                let rebuilt = parsed.materialize(stage.path(), &mut get).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(rebuilt.digest(), job.digest(), "{}", path.display());
                assert_eq!(rebuilt.encode(), job.encode());
            }
        }
        n += 1;
    }
    assert!(n > 20, "only {n} fixture jobs loaded");
    assert!(threaded >= 5, "only {threaded} threaded fixture jobs");
}

#[test]
fn a_corrupt_blob_or_a_lying_bundle_is_refused_before_anything_runs() {
    use canon::pool::bundle::{Bundle, BundleError};
    let job = canon::job::Job::load(&fixture("jobs/probe-writeout.toml")).expect("job");
    let (bundle, blobs) = Bundle::of(&job);
    // A blob whose bytes are not the ones its digest names.
    let stage = scratch();
    let mut corrupt = |d: &canon::digest::Digest| {
        let mut b = blobs.get(d).map(|b| b.to_vec()).ok_or("missing")?;
        if *d == bundle.module {
            b[10] ^= 1;
        }
        Ok(std::sync::Arc::new(b))
    };
    assert!(matches!(bundle.materialize(stage.path(), &mut corrupt), Err(BundleError::BlobMismatch { .. })));
    // A bundle whose fields describe another job than the digest it names.
    let mut lying = bundle.clone();
    lying.args.push("extra".into());
    let stage = scratch();
    let mut get = |d: &canon::digest::Digest| blobs.get(d).cloned().ok_or_else(|| "missing".to_string());
    assert!(matches!(lying.materialize(stage.path(), &mut get), Err(BundleError::DigestMismatch { .. })));
    // Unknown fields and a path that climbs out are refused on parse.
    let mut v: Value = serde_json::from_slice(&bundle.to_json()).expect("json");
    v["extra"] = Value::Bool(true);
    assert!(Bundle::parse(v.to_string().as_bytes()).is_err());
}

/// The signed job request is pinned: its payload bytes and its signature
/// for a fixed key and job digest.
#[test]
fn job_request_signatures_match_their_vector() {
    use canon::pool::submitter;
    let path = fixture("pool/job-request-v1.json");
    let key = NodeKey::from_seed(&[42; 32]);
    let job: canon::digest::JobDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000001".parse().expect("digest");
    let signed = submitter::sign(&key, &job);
    if std::env::var_os("CANON_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, [&signed[..], b"\n"].concat()).expect("bless");
    }
    let want = std::fs::read(&path).expect("vector (bless with CANON_BLESS=1)");
    assert_eq!(String::from_utf8_lossy(&signed), String::from_utf8_lossy(want.trim_ascii_end()));
    assert_eq!(submitter::verify(&signed, &job).expect("verifies"), key.node_id());
    let other: canon::digest::JobDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000002".parse().expect("digest");
    assert!(matches!(submitter::verify(&signed, &other), Err(submitter::SubmitterError::OtherJob { .. })));
    let mut forged: Value = serde_json::from_slice(&signed).expect("json");
    forged["signatures"][0]["keyid"] = Value::String(NodeKey::from_seed(&[43; 32]).node_id().to_string());
    assert!(matches!(submitter::verify(forged.to_string().as_bytes(), &job), Err(submitter::SubmitterError::BadSignature(_))));
}

#[test]
fn higher_priority_runs_first_and_fifo_within_a_priority() {
    let mut pool = Pool::single("");
    let hello = fixture("jobs/hello.toml");
    let low = submit(&pool, &hello, &["--priority", "1"]);
    let mid_a = submit(&pool, &hello, &["--priority", "5"]);
    let high = submit(&pool, &hello, &["--priority", "9"]);
    let mid_b = submit(&pool, &hello, &["--priority", "5"]);
    let o = pool.canon(&["submit", hello.to_str().expect("utf-8"), "--priority", "10"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("`priority` is 10"), "{}", String::from_utf8_lossy(&o.stderr));
    pool.worker(0, &["--concurrency", "1"]);
    let order = [&high, &mid_a, &mid_b, &low];
    let leased: Vec<i64> = order.iter().map(|id| pool.wait(id, Duration::from_secs(60)).run_list[0].leased_at).collect();
    assert!(leased.windows(2).all(|w| w[0] <= w[1]), "leased out of order: {leased:?}");
    // Equal times cannot tell order apart: the event log can.
    let mut events = Vec::new();
    pool.client(TOKEN)
        .events(None, Some(0), &mut |e| {
            if e.kind == "run.leased" {
                events.push(e.job.clone());
            }
            events.len() < 4
        })
        .expect("events");
    assert_eq!(events, order.iter().map(|s| s.to_string()).collect::<Vec<_>>());
}

#[test]
fn a_runs_log_reads_from_an_offset_and_follows_until_the_run_ends() {
    let mut pool = Pool::single("");
    // The log holds the worker's own lines and the guest's output.
    let id = submit(&pool, &fixture("jobs/hello.toml"), &[]);
    pool.worker(0, &[]);
    let v = pool.wait(&id, Duration::from_secs(60));
    assert_eq!(v.state, JobState::Succeeded);
    let whole = pool.canon(&["logs", &id]);
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    let text = String::from_utf8_lossy(&whole.stdout).into_owned();
    assert!(text.contains("hello from canon"), "the guest's stdout is in the log: {text}");
    assert!(text.contains("[canon worker] job ") && text.contains("receipt signed"), "{text}");
    let tail = pool.canon(&["logs", &id, "--offset", "10"]);
    assert_eq!(String::from_utf8_lossy(&tail.stdout), text[10..]);
    // By node, and following a finished run ends at once with the whole log.
    let followed = pool.canon(&["logs", &id, "--node", &pool.node_id(0), "--follow"]);
    assert_eq!(String::from_utf8_lossy(&followed.stdout), text);
    // Another tenant cannot read it.
    let bob = Command::new(canon_bin()).args(["logs", &id]).env("CANON_COORDINATOR", &pool.url).env("CANON_TOKEN", OTHER_TOKEN).output().expect("logs");
    assert!(!bob.status.success());
}

#[test]
fn following_a_running_log_sees_output_as_it_is_written() {
    let mut pool = Pool::single("");
    // A job that runs for days: the worker's line saying it started must
    // reach a follower while it still runs.
    let spec = crate::util::job_spec(pool.path(), "forever.toml", "sha256chain.wasm", &crate::util::FOREVER.replace("timeout = 1", "timeout = 3600"));
    let id = submit(&pool, &spec, &[]);
    pool.worker(0, &[]);
    let mut child = Command::new(canon_bin())
        .args(["logs", &id, "--follow"])
        .env("CANON_COORDINATOR", &pool.url)
        .env("CANON_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .expect("follow");
    // Wait for the run to start, then for the worker's "running" line.
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !line.contains("running on") {
        line.clear();
        if reader.read_line(&mut line).expect("read") == 0 {
            // `logs` found no run yet: try again.
            let _ = child.wait();
            assert!(Instant::now() < deadline, "no log line while the run went on");
            std::thread::sleep(Duration::from_millis(100));
            child = Command::new(canon_bin())
                .args(["logs", &id, "--follow"])
                .env("CANON_COORDINATOR", &pool.url)
                .env("CANON_TOKEN", TOKEN)
                .stdout(Stdio::piped())
                .spawn()
                .expect("follow");
            reader = BufReader::new(child.stdout.take().expect("stdout"));
        }
    }
    assert_eq!(pool.client(TOKEN).status(&id).expect("status").state, JobState::Running);
    // Cancelling ends the run, and with it the follow.
    pool.client(TOKEN).cancel(&id, None).expect("cancel");
    let status = child.wait().expect("follow ends");
    assert!(status.success());
}

#[test]
fn a_tenant_learns_nothing_of_another_tenants_blobs_and_cannot_use_them() {
    let pool = Pool::start("");
    let alice = pool.client(TOKEN);
    let bob = pool.client(OTHER_TOKEN);
    let secret = b"alice's input".to_vec();
    let d = canon::digest::Digest::of(&secret);
    alice.put_blob(&d, secret).expect("upload");
    assert!(alice.missing(vec![d]).expect("missing").is_empty());
    assert_eq!(bob.missing(vec![d]).expect("missing"), vec![d], "bob must not learn that the coordinator holds alice's bytes");
    // A bundle of bob's naming alice's blob is refused until bob uploads it.
    let job = canon::job::Job::load(&fixture("jobs/hello.toml")).expect("job");
    let (bundle, blobs) = canon::pool::bundle::Bundle::of(&job);
    for (digest, bytes) in &blobs {
        alice.put_blob(digest, bytes.to_vec()).expect("upload");
    }
    let req = canon::pool::api::SubmitRequest::of(&bundle);
    assert_eq!(bob.submit(&req).expect_err("refused").code(), Some("missing_blobs"));
    assert!(alice.submit(&req).is_ok());
    // A blob uploaded under a wrong digest is refused and not stored.
    let e = bob.put_blob(&d, b"other bytes".to_vec()).expect_err("refused");
    assert_eq!(e.code(), Some("blob_mismatch"));
}

/// A worker that leaves the signed request out of its receipt, or names
/// one for an unsigned job, has its receipt refused with the reason.
#[test]
fn a_receipt_that_misnames_the_jobs_signed_request_is_refused() {
    use canon::receipt::{Engine, JobRequestRef, RunFacts, RunId, Statement, Timestamp};
    let pool = Pool::single("max_errors = 5");
    let key_path = pool.path().join("submitter.key");
    NodeKey::from_seed(&[9; 32]).save_new(&key_path).expect("key");
    let hello = fixture("jobs/hello.toml");
    let signed = submit(&pool, &hello, &["--sign", key_path.to_str().expect("utf-8")]);
    let job = canon::job::Job::load(&hello).expect("job");
    let outcome = canon::sandbox::Sandbox::builder().cache_dir(None).build().expect("sandbox").run(&job).expect("run");
    let key = NodeKey::from_seed(&[77; 32]);
    let liar = Client::new(&pool.url, Auth::Node(Box::new(key.clone()))).expect("client");
    let lease = liar.lease(1).expect("lease").pop().expect("a lease");
    assert_eq!(lease.job, signed);
    let facts = |run: &str| RunFacts {
        job_digest: job.digest(),
        run_id: RunId::from_uuid(run.parse().expect("uuid")),
        engine: Engine::current("cranelift"),
        outcome: outcome.summary(),
        started: Timestamp::now(),
        finished: Timestamp::now(),
    };
    let bare = Statement::new(key.node_id(), facts(&lease.run)).sign(&key).expect("sign");
    let ack = liar.complete(&lease.run, String::from_utf8(bare.to_json()).expect("utf-8")).expect("answered");
    assert!(ack.rejected.as_deref().is_some_and(|r| r.starts_with("request_mismatch")), "{ack:?}");
    let v = pool.client(TOKEN).status(&signed).expect("status");
    assert_eq!(v.rejected[0].code, "request_mismatch");

    // An unsigned job, and a receipt naming a request nobody made.
    let unsigned = submit(&pool, &hello, &[]);
    let other = NodeKey::from_seed(&[78; 32]);
    let liar = Client::new(&pool.url, Auth::Node(Box::new(other.clone()))).expect("client");
    let lease = liar.lease(2).expect("lease").into_iter().find(|l| l.job == unsigned).expect("a lease");
    let made_up = JobRequestRef { submitter: other.node_id(), sha256: canon::digest::Digest::of(b"no such request") };
    let forged = Statement::new(other.node_id(), facts(&lease.run)).answering(made_up).sign(&other).expect("sign");
    let ack = liar.complete(&lease.run, String::from_utf8(forged.to_json()).expect("utf-8")).expect("answered");
    assert!(ack.rejected.as_deref().is_some_and(|r| r.starts_with("request_mismatch")), "{ack:?}");
}

/// SIGTERM drains a worker: it leases nothing more, finishes the run in
/// hand, reports it, and exits 0.
#[test]
fn sigterm_drains_a_worker_it_finishes_the_run_in_hand_and_leases_nothing_more() {
    let mut pool = Pool::single("");
    // A few seconds of work.
    let spec = crate::util::job_spec(pool.path(), "slow.toml", "sha256chain.wasm", "args = [\"10000000\"]\n[limits]\nfuel = 1000000000000\ntimeout = 600");
    let first = submit(&pool, &spec, &[]);
    let second = submit(&pool, &fixture("jobs/hello.toml"), &[]);
    pool.worker(0, &["--concurrency", "1"]);
    let alice = pool.client(TOKEN);
    pool.wait_running(&first);
    let mut w = pool.workers.remove(0);
    let term = Command::new("kill").args(["-TERM", &w.id().to_string()]).status().expect("kill");
    assert!(term.success());
    let status = w.wait().expect("worker exits");
    assert!(status.success(), "the worker exits 0 after draining: {status:?}");
    let v = alice.status(&first).expect("status");
    assert_eq!((v.state, v.run_list.len(), v.run_list[0].state), (JobState::Succeeded, 1, canon::pool::api::RunState::Succeeded), "{v:#?}");
    let v = alice.status(&second).expect("status");
    assert_eq!((v.state, v.run_list.len()), (JobState::Pending, 0), "a draining worker took new work");
}

/// Garbage collection deletes what nothing names past the retention, and
/// spares the blobs of unfinished jobs and of jobs within the retention.
#[test]
fn garbage_collection_spares_what_jobs_name_and_deletes_the_rest() {
    // The retention is longer than the grace period, so that the finished
    // job's outputs outlive the stray blob by seconds however slowly this
    // test runs.
    let mut pool = Pool::single("blob_grace_secs = 2\nblob_retention_secs = 6\ngc_interval_secs = 0.2");
    let alice = pool.client(TOKEN);
    let stray = b"uploaded, never submitted".to_vec();
    let stray_d = canon::digest::Digest::of(&stray);
    alice.put_blob(&stray_d, stray).expect("upload");
    // A job nobody runs yet keeps its blobs however long it waits.
    let waiting = submit(&pool, &fixture("jobs/probe-writeout.toml"), &["--priority", "0"]);
    let done = submit(&pool, &fixture("jobs/hello.toml"), &["--priority", "9"]);
    pool.worker(0, &["--max-runs", "1"]);
    assert_eq!(pool.wait(&done, Duration::from_secs(60)).state, JobState::Succeeded);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Watched on disk: asking the coordinator would mark it as used.
    let hex = stray_d.to_string();
    let stray_file = pool.path().join("data/blobs/sha256").join(&hex[..2]).join(&hex);
    assert!(stray_file.exists());
    while stray_file.exists() {
        assert!(Instant::now() < deadline, "the stray blob was never collected");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(alice.missing(vec![stray_d]).expect("missing"), vec![stray_d]);
    // Within the retention the finished job's outputs can be fetched.
    let policy = pool.path().join("policy.toml");
    let policy = policy.to_str().expect("utf-8");
    let o = pool.canon(&["fetch", &done, "--policy", policy, "--out", pool.path().join("early").to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Past it they are gone, with a clear error; the waiting job's are not.
    std::thread::sleep(Duration::from_millis(6500));
    let o = pool.canon(&["fetch", &done, "--policy", policy, "--out", pool.path().join("late").to_str().expect("utf-8")]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not held"), "{}", String::from_utf8_lossy(&o.stderr));
    pool.worker(1, &[]);
    assert_eq!(pool.wait(&waiting, Duration::from_secs(60)).state, JobState::Succeeded, "the waiting job's inputs were collected");
    let metrics = reqwest::blocking::get(format!("{}/metrics", pool.url)).expect("metrics").text().expect("text");
    assert!(!metrics.contains("canon_blobs_collected_total 0\n"), "{metrics}");
}

#[test]
fn oversized_bodies_and_unknown_routes_get_the_json_error_body() {
    let pool = Pool::start("max_body_bytes = 2048\nmax_blob_bytes = 1024");
    let alice = pool.client(TOKEN);
    let big = vec![7u8; 4096];
    let e = alice.put_blob(&canon::digest::Digest::of(&big), big).expect_err("refused");
    assert_eq!(e.code(), Some("too_large"), "{e}");
    let mid = vec![7u8; 1500];
    let e = alice.put_blob(&canon::digest::Digest::of(&mid), mid).expect_err("refused");
    assert_eq!(e.code(), Some("too_large"), "{e}");
    let r = reqwest::blocking::get(format!("{}/v1/nowhere", pool.url)).expect("get");
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().expect("a JSON error body");
    assert_eq!(body["error"], "not_found");
}

/// A node the coordinator does not allow is refused work, with the reason.
#[test]
fn a_node_outside_allow_nodes_cannot_lease() {
    let allowed = NodeKey::from_seed(&[1; 32]);
    let pool = Pool::start(&format!("allow_nodes = [\"{}\"]", allowed.node_id()));
    submit(&pool, &fixture("jobs/hello.toml"), &[]);
    let stranger = Client::new(&pool.url, Auth::Node(Box::new(NodeKey::from_seed(&[2; 32])))).expect("client");
    let e = stranger.lease(1).expect_err("refused");
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let ok = Client::new(&pool.url, Auth::Node(Box::new(allowed))).expect("client");
    assert_eq!(ok.lease(1).expect("lease").len(), 1);
}

/// An honest receipt for `lease`, made by `key`, with its outputs uploaded.
fn honest_receipt(client: &Client, key: &NodeKey, lease: &canon::pool::api::Lease, job: &canon::job::Job) -> String {
    let (receipt, outcome) = signed_receipt(key, lease, job);
    for bytes in [&outcome.stdout, &outcome.stderr] {
        client.put_blob(&canon::digest::Digest::of(bytes), bytes.clone()).expect("upload");
    }
    receipt
}

/// `job` run here, and an honest receipt of it for `lease` signed by `key`.
fn signed_receipt(key: &NodeKey, lease: &canon::pool::api::Lease, job: &canon::job::Job) -> (String, canon::outcome::Outcome) {
    use canon::receipt::{Engine, RunFacts, RunId, Statement, Timestamp};
    let outcome = canon::sandbox::Sandbox::builder().cache_dir(None).build().expect("sandbox").run(job).expect("run");
    let facts = RunFacts {
        job_digest: job.digest(),
        run_id: RunId::from_uuid(lease.run.parse().expect("uuid")),
        engine: Engine::current("cranelift"),
        outcome: outcome.summary(),
        started: Timestamp::now(),
        finished: Timestamp::now(),
    };
    (String::from_utf8(Statement::new(key.node_id(), facts).sign(key).expect("sign").to_json()).expect("utf-8"), outcome)
}

/// One request ends a run: the receipt brings its outputs inline and the
/// end of its log, and its answer leases the slot's next run. Inline bytes
/// that are not what their digest names, bad base64 and too many bytes are
/// refused with the field named, and leave the run open.
#[test]
fn a_receipt_brings_its_outputs_and_log_tail_inline_and_leases_the_next_run() {
    use base64::Engine as _;
    use canon::digest::Digest;
    use canon::pool::api::{CompleteRequest, LogTail, MAX_INLINE_OUTPUT_BYTES, RunState};
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let pool = Pool::single("");
    let hello = fixture("jobs/hello.toml");
    let first = submit(&pool, &hello, &[]);
    let second = submit(&pool, &hello, &[]);
    let job = canon::job::Job::load(&hello).expect("job");
    let key = NodeKey::from_seed(&[51; 32]);
    let node = Client::new(&pool.url, Auth::Node(Box::new(key.clone()))).expect("client");
    let lease = node.lease(1).expect("lease").pop().expect("a lease");
    assert_eq!(lease.job, first);
    let (receipt, outcome) = signed_receipt(&key, &lease, &job);
    let (out, err) = (Digest::of(&outcome.stdout), Digest::of(&outcome.stderr));
    let complete = |outputs: Vec<(Digest, String)>, log: Option<LogTail>, next: Option<u32>| {
        node.complete_with(&lease.run, &CompleteRequest { receipt: receipt.clone(), outputs: outputs.into_iter().collect(), log, next })
    };
    let open = || pool.client(TOKEN).status(&first).expect("status").run_list[0].state;

    let e = complete(vec![(out, b64(b"not the stdout")), (err, b64(&outcome.stderr))], None, None).expect_err("refused");
    assert_eq!(e.code(), Some("blob_mismatch"), "{e}");
    let e = complete(vec![(out, "%%% not base64".into())], None, None).expect_err("refused");
    assert!(e.code() == Some("bad_request") && e.to_string().contains(&format!("outputs.{out}")), "{e}");
    let big = vec![0u8; MAX_INLINE_OUTPUT_BYTES + 1];
    let e = complete(vec![(Digest::of(&big), b64(&big))], None, None).expect_err("refused");
    assert_eq!(e.code(), Some("too_large"), "{e}");
    assert_eq!(open(), RunState::Leased, "a refused request leaves the run open");

    let tail = LogTail { offset: 0, data: b64(b"[canon worker] the end\n") };
    let ack = complete(vec![(out, b64(&outcome.stdout)), (err, b64(&outcome.stderr))], Some(tail), Some(1)).expect("accepted");
    assert_eq!((ack.state, ack.rejected), (RunState::Succeeded, None));
    assert_eq!(ack.leases.iter().map(|l| l.job.as_str()).collect::<Vec<_>>(), [second.as_str()], "the answer leases the next job");
    let alice = pool.client(TOKEN);
    assert_eq!(alice.job_blob(&first, &out).expect("stdout"), outcome.stdout, "the inline stdout is held");
    let mut log = Vec::new();
    alice.read_log(&first, &lease.run, 0, false, &mut log).expect("log");
    assert_eq!(log, b"[canon worker] the end\n", "the tail is the run's log");
    // The run is closed: a retried request changes nothing and leases nothing.
    let e = complete(vec![], None, Some(1)).expect_err("closed");
    assert_eq!(e.code(), Some("conflict"), "{e}");
}

/// Receipts that are not what their lease asked for are refused, each with
/// its reason, and listed in the job's status.
#[test]
fn forged_and_misdirected_receipts_are_refused_with_their_reasons() {
    let pool = Pool::single("max_errors = 10\nmax_runs = 10");
    let hello = fixture("jobs/hello.toml");
    let id = submit(&pool, &hello, &[]);
    let job = canon::job::Job::load(&hello).expect("job");
    let a = NodeKey::from_seed(&[31; 32]);
    let b = NodeKey::from_seed(&[32; 32]);
    let ca = Client::new(&pool.url, Auth::Node(Box::new(a.clone()))).expect("client");
    let cb = Client::new(&pool.url, Auth::Node(Box::new(b.clone()))).expect("client");
    // Signed by another node than the lease's.
    let la = ca.lease(1).expect("lease").pop().expect("lease");
    let by_b = honest_receipt(&cb, &b, &la, &job);
    let ack = ca.complete(&la.run, by_b.clone()).expect("answered");
    assert!(ack.rejected.as_deref().is_some_and(|r| r.starts_with("node_mismatch")), "{ack:?}");
    // For another run (b's receipt of a's run, replayed onto b's own lease).
    let lb = cb.lease(1).expect("lease").pop().expect("lease");
    let ack = cb.complete(&lb.run, by_b).expect("answered");
    assert!(ack.rejected.as_deref().is_some_and(|r| r.starts_with("run_mismatch")), "{ack:?}");
    // A tampered signature.
    let c = NodeKey::from_seed(&[33; 32]);
    let cc = Client::new(&pool.url, Auth::Node(Box::new(c.clone()))).expect("client");
    let lc = cc.lease(1).expect("lease").pop().expect("lease");
    let mut env: Value = serde_json::from_str(&honest_receipt(&cc, &c, &lc, &job)).expect("json");
    let sig = env["signatures"][0]["sig"].as_str().expect("sig").to_string();
    env["signatures"][0]["sig"] = Value::String(format!("{}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]));
    let ack = cc.complete(&lc.run, env.to_string()).expect("answered");
    assert!(ack.rejected.as_deref().is_some_and(|r| r.contains("signature")), "{ack:?}");
    let v = pool.client(TOKEN).status(&id).expect("status");
    let codes: Vec<&str> = v.rejected.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes.len(), 3, "{codes:?}");
    assert_eq!(&codes[..2], &["node_mismatch", "run_mismatch"]);
    assert_eq!(v.state, JobState::Running, "no refused receipt counts");
}

/// The late-receipt rule: a receipt whose lease ran out still counts while
/// its job is open, since its node has no other run of the job.
#[test]
fn a_late_receipt_counts_while_the_job_is_open() {
    let pool = Pool::single("");
    let hello = fixture("jobs/hello.toml");
    let id = submit(&pool, &hello, &[]);
    let job = canon::job::Job::load(&hello).expect("job");
    let key = NodeKey::from_seed(&[41; 32]);
    let node = Client::new(&pool.url, Auth::Node(Box::new(key.clone()))).expect("client");
    let lease = node.lease(1).expect("lease").pop().expect("lease");
    let receipt = honest_receipt(&node, &key, &lease, &job);
    // No heartbeat: the lease (1 s) runs out.
    let alice = pool.client(TOKEN);
    let deadline = Instant::now() + Duration::from_secs(30);
    while alice.status(&id).expect("status").runs.expired == 0 {
        assert!(Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same node cannot lease the job again.
    assert!(node.lease(1).expect("lease").is_empty());
    let ack = node.complete(&lease.run, receipt).expect("answered");
    assert_eq!((ack.state, ack.rejected), (canon::pool::api::RunState::Succeeded, None));
    let v = alice.status(&id).expect("status");
    assert_eq!(v.state, JobState::Succeeded, "{v:#?}");
}

/// `replace` supersedes a job that a worker is running: the job ends
/// cancelled, the worker stops it and goes on to the new one.
#[test]
fn replace_supersedes_a_running_job_and_its_worker_stops() {
    let mut pool = Pool::single("");
    let spec = crate::util::job_spec(pool.path(), "forever.toml", "sha256chain.wasm", &crate::util::FOREVER.replace("timeout = 1", "timeout = 3600"));
    let old = submit(&pool, &spec, &["--group", "deploy"]);
    pool.worker(0, &["--concurrency", "1"]);
    let alice = pool.client(TOKEN);
    pool.wait_running(&old);
    let new = submit(&pool, &fixture("jobs/hello.toml"), &["--group", "deploy"]);
    let v = alice.status(&old).expect("status");
    assert_eq!((v.state, v.reason.clone()), (JobState::Cancelled, Some(format!("superseded by {new}"))));
    assert_eq!(v.run_list[0].state, canon::pool::api::RunState::Cancelled);
    // The one slot is free again: the superseded run was stopped.
    assert_eq!(pool.wait(&new, Duration::from_secs(60)).state, JobState::Succeeded);
}

/// A bundle whose fields describe another job than the digest it names is
/// refused by the worker before anything runs, with the reason.
#[test]
fn a_worker_refuses_a_bundle_whose_job_digest_does_not_match() {
    let mut pool = Pool::single("max_runs = 1\nmax_errors = 0");
    let job = canon::job::Job::load(&fixture("jobs/hello.toml")).expect("job");
    let (mut bundle, blobs) = canon::pool::bundle::Bundle::of(&job);
    bundle.args.push("injected".into());
    let alice = pool.client(TOKEN);
    for (d, b) in &blobs {
        alice.put_blob(d, b.to_vec()).expect("upload");
    }
    let req = canon::pool::api::SubmitRequest::of(&bundle);
    let id = alice.submit(&req).expect("submit").id;
    pool.worker(0, &[]);
    let v = pool.wait(&id, Duration::from_secs(60));
    assert_eq!(v.state, JobState::Failed, "{v:#?}");
    let reason = v.run_list[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("refused") && reason.contains("describes job"), "{reason}");
    assert_eq!(v.runs.succeeded, 0);
}
