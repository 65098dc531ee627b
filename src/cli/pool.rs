//! The pool's commands: `canon serve` (the coordinator), `canon worker` (a
//! node), and the clients `submit`, `status`, `list`, `cancel`, `watch` and
//! `fetch` (docs/POOL.md).
//!
//! Clients find the coordinator and their token, in this order, from
//! `--coordinator` / `--token`, the environment (`CANON_COORDINATOR`,
//! `CANON_TOKEN`), then `$XDG_CONFIG_HOME/canon/client.toml` (or
//! `~/.config/canon/client.toml`: `coordinator = "http://…"`, `token = "…"`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use canon::digest::Digest;
use canon::job::Job;
use canon::node::{NodeId, NodeKey};
use canon::pool::api::{GroupMode, JobQuery, JobState, JobView, SubmitRequest};
use canon::pool::bundle::Bundle;
use canon::pool::client::{Auth, Client};
use canon::pool::config::{Config, DEFAULT_LISTEN, Tenant};
use canon::pool::server::App;
use canon::quorum::{Policy, TallyOptions, Verdict};
use canon::sandbox::Backend;
use canon::tree::{Kind, Node, Tree};

/// Where the client finds the coordinator.
#[derive(Debug, clap::Args)]
pub struct Conn {
    /// The coordinator's URL (default: $CANON_COORDINATOR, the client
    /// config file, or http://127.0.0.1:7420).
    #[arg(long, global = true)]
    coordinator: Option<String>,
    /// The tenant's bearer token (default: $CANON_TOKEN or the client config
    /// file).
    #[arg(long, global = true)]
    token: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    coordinator: Option<String>,
    token: Option<String>,
}

fn client_file() -> Result<ClientFile> {
    let dir = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    let Some(path) = dir.map(|d| d.join("canon/client.toml")) else { return Ok(ClientFile::default()) };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display())),
        Err(_) => Ok(ClientFile::default()),
    }
}

impl Conn {
    fn url(&self, file: &ClientFile) -> String {
        self.coordinator
            .clone()
            .or_else(|| std::env::var("CANON_COORDINATOR").ok())
            .or_else(|| file.coordinator.clone())
            .unwrap_or_else(|| format!("http://{DEFAULT_LISTEN}"))
    }

    fn client(&self) -> Result<Client> {
        let file = client_file()?;
        let token = self.token.clone().or_else(|| std::env::var("CANON_TOKEN").ok()).or_else(|| file.token.clone()).ok_or_else(|| {
            anyhow!("no token: pass --token, set CANON_TOKEN, or put `token = \"…\"` in the client config file (the coordinator's default tenant's token is in DATA/token)")
        })?;
        Client::new(&self.url(&file), Auth::Token(token)).map_err(|e| anyhow!(e))
    }
}

/// `canon serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The data directory: the database, the blobs, the default token
    /// (default: $XDG_DATA_HOME/canon/pool or ~/.local/share/canon/pool).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to listen (HOST:PORT; port 0 picks one). Default: the config
    /// file's, or 127.0.0.1:7420.
    #[arg(long)]
    listen: Option<String>,
    /// The quorum policy (TOML; default: the config file's, or implicit).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The coordinator's configuration (TOML, see docs/POOL.md).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn default_data() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(d).join("canon/pool"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/canon/pool")),
        None => bail!("no --data DIR given and neither XDG_DATA_HOME nor HOME is set"),
    }
}

/// The default tenant's token: read from `DATA/token`, created (mode 0600)
/// on first start.
fn default_token(data: &Path) -> Result<String> {
    let path = data.join("token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    let token = hex::encode(bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write as _;
    opts.open(&path).and_then(|mut f| f.write_all(format!("{token}\n").as_bytes())).with_context(|| format!("{}: cannot write the token", path.display()))?;
    Ok(token)
}

/// Runs the coordinator.
pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(p) => Config::load(p).map_err(|e| anyhow!(e))?,
        None => Config::default(),
    };
    if let Some(l) = &args.listen {
        config.listen = l.parse().map_err(|_| anyhow!("--listen {l}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}"))?;
    }
    if let Some(p) = &args.policy {
        config.policy = Some(p.clone());
    }
    let data = match &args.data {
        Some(d) => d.clone(),
        None => default_data()?,
    };
    std::fs::create_dir_all(&data).with_context(|| format!("{}: cannot create the data directory", data.display()))?;
    if config.tenants.is_empty() {
        let token = default_token(&data)?;
        config.tenants.push(Tenant { name: "default".into(), token_sha256: Digest::of(token.as_bytes()), max_unfinished: config.max_unfinished });
        eprintln!("canon serve: tenant \"default\", token in {}", data.join("token").display());
    }
    let policy = match &config.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::implicit(),
    };
    let listen = config.listen;
    let app = Arc::new(App::open(&data, config, policy).map_err(|e| anyhow!(e))?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(canon::pool::server::serve(app, listen, |addr| {
        // The first line on stdout: scripts and tests read the address.
        println!("listening on http://{addr}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }))
    .with_context(|| format!("cannot serve on {listen}"))?;
    eprintln!("canon serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// `canon worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The coordinator's URL.
    #[arg(long)]
    coordinator: String,
    /// The node key (OpenSSH ed25519); created if the file does not exist.
    #[arg(long)]
    key: PathBuf,
    /// Runs at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Keep fetched blobs here between jobs.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Run only jobs signed by these submitters (did:key ids; repeatable).
    #[arg(long = "trust-submitter", value_name = "ID")]
    trust_submitter: Vec<String>,
    /// Byzantine: flip the first byte of stdout before signing (tests and
    /// demonstrations of the quorum).
    #[arg(long)]
    faulty: bool,
    /// The backend.
    #[arg(long, default_value = "cranelift")]
    backend: Backend,
    /// Stop after this many runs.
    #[arg(long)]
    max_runs: Option<u64>,
}

/// Runs a worker until SIGTERM or Ctrl-C, then drains.
pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    if args.concurrency == 0 || args.concurrency > 256 {
        bail!("--concurrency {}: expected 1 to 256", args.concurrency);
    }
    let key = if args.key.exists() {
        NodeKey::load(&args.key)?
    } else {
        let k = NodeKey::generate();
        k.save_new(&args.key)?;
        eprintln!("canon worker: created node key {}", args.key.display());
        k
    };
    let trust: Vec<NodeId> =
        args.trust_submitter.iter().map(|s| s.parse::<NodeId>().map_err(|e| anyhow!("--trust-submitter {s}: {e}"))).collect::<Result<_>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(canon::pool::server::shutdown_signal());
        flag.store(true, Ordering::SeqCst);
    });
    let opts = canon::pool::worker::WorkerOptions {
        coordinator: args.coordinator,
        key,
        concurrency: args.concurrency,
        cache: args.cache,
        trust_submitters: trust,
        faulty: args.faulty,
        backend: args.backend,
        idle_poll: Duration::from_millis(50),
        max_runs: args.max_runs,
    };
    canon::pool::worker::run(opts, stop).map_err(|e| anyhow!(e))?;
    Ok(ExitCode::SUCCESS)
}

/// `canon submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The job spec.
    job: PathBuf,
    /// Distinct nodes to run it on (default: the coordinator's).
    #[arg(long)]
    replicas: Option<u32>,
    /// Its group (a deployment, a branch).
    #[arg(long)]
    group: Option<String>,
    /// What it does to earlier jobs of its group.
    #[arg(long, default_value = "replace", value_parser = ["replace", "enqueue"])]
    mode: String,
    /// 0 (least) to 9; default 4.
    #[arg(long)]
    priority: Option<u8>,
    /// Sign the job with this key (OpenSSH ed25519).
    #[arg(long)]
    sign: Option<PathBuf>,
    /// Wait for the verdict, with progress.
    #[arg(long)]
    wait: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Submits a job: uploads the blobs the coordinator lacks, then the bundle.
pub fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let job = Job::load(&args.job)?;
    let client = args.conn.client()?;
    let (bundle, blobs) = Bundle::of(&job);
    let missing = client.missing(blobs.keys().copied().collect())?;
    for d in &missing {
        if let Some(b) = blobs.get(d) {
            client.put_blob(d, b.to_vec()).with_context(|| format!("uploading blob {d}"))?;
        }
    }
    let signature = match &args.sign {
        Some(p) => Some(String::from_utf8_lossy(&canon::pool::submitter::sign(&NodeKey::load(p)?, &bundle.job_digest)).into_owned()),
        None => None,
    };
    let req = SubmitRequest {
        replicas: args.replicas,
        group: args.group.clone(),
        mode: args.mode.parse::<GroupMode>().map_err(|e| anyhow!("--mode: {e}"))?,
        priority: args.priority,
        signature,
        ..SubmitRequest::of(&bundle)
    };
    let r = client.submit(&req)?;
    if !args.wait {
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&r)?)?;
        } else {
            outln!("{}", r.id)?;
            for s in &r.superseded {
                eprintln!("canon: superseded {s}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let view = wait(&client, &r.id, !args.json)?;
    print_view(&view, args.json)?;
    Ok(if view.state == JobState::Succeeded { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Polls a job until it ends, drawing "runs done of R" on stderr.
fn wait(client: &Client, id: &str, bar: bool) -> Result<JobView> {
    let pb = indicatif::ProgressBar::new(0);
    if bar {
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} {wide_bar} {pos}/{len} receipts {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    loop {
        let v = client.status(id)?;
        pb.set_length(u64::from(v.replicas));
        pb.set_position(u64::from(v.runs.succeeded));
        pb.set_message(v.state.to_string());
        if v.state.is_final() {
            pb.finish_and_clear();
            return Ok(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_view(v: &JobView, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(v)?)?;
        return Ok(());
    }
    outln!("job       {}  {}", v.id, v.name)?;
    outln!("digest    {}", v.job_digest)?;
    outln!("state     {}{}", v.state, v.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())?;
    if let Some(g) = &v.group {
        outln!("group     {g} ({})", v.mode.as_str())?;
    }
    if let Some(s) = &v.submitter {
        outln!("submitter {s}")?;
    }
    let c = &v.runs;
    outln!(
        "runs      {} of {} wanted: {} succeeded, {} running, {} leased, {} failed, {} expired, {} cancelled",
        c.succeeded + c.running + c.leased,
        v.replicas,
        c.succeeded,
        c.running,
        c.leased,
        c.failed,
        c.expired,
        c.cancelled
    )?;
    if let Some(verdict) = &v.verdict {
        let score = v.tally.as_ref().and_then(|t| t["groups"][0]["score"].as_f64()).unwrap_or(0.0);
        outln!("verdict   {verdict}{}", v.accepted.as_deref().map(|a| format!(" {a} (score {score:.2})")).unwrap_or_default())?;
        if let Some(d) = v.tally.as_ref().and_then(|t| t["dissenters"].as_array()) {
            for n in d {
                outln!("dissenter {}", n["node"].as_str().unwrap_or("?"))?;
            }
        }
    }
    // Per node, as radicle-job partitions them.
    for r in &v.run_list {
        outln!("  {}  {}  {:<9} {}", r.id, r.node, r.state.as_str(), r.reason.as_deref().unwrap_or(""))?;
    }
    for r in &v.rejected {
        outln!("  rejected receipt of run {} from {}: {}: {}", r.run, r.node, r.code, r.reason)?;
    }
    Ok(())
}

/// `canon status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The job's id.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Shows a job.
pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let v = args.conn.client()?.status(&args.id)?;
    print_view(&v, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `canon list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only jobs in this state.
    #[arg(long)]
    status: Option<String>,
    /// Only jobs of this group.
    #[arg(long)]
    group: Option<String>,
    /// Only jobs signed by this submitter (its did:key).
    #[arg(long)]
    submitter: Option<String>,
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// The cursor a previous page ended with.
    #[arg(long)]
    cursor: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Lists jobs, newest first.
pub fn list(args: ListArgs) -> Result<ExitCode> {
    if let Some(s) = &args.status {
        s.parse::<JobState>().map_err(|e| anyhow!("--status: {e}"))?;
    }
    let q = JobQuery { status: args.status, group: args.group, submitter: args.submitter, limit: Some(args.limit), cursor: args.cursor };
    let page = args.conn.client()?.list(&q)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&page)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for j in &page.jobs {
        outln!(
            "{}  {:<10} {:<13} p{}  {}{}",
            j.id,
            j.state,
            j.verdict.as_deref().unwrap_or("-"),
            j.priority,
            j.name,
            j.group.as_deref().map(|g| format!("  [{g}]")).unwrap_or_default()
        )?;
    }
    if let Some(c) = &page.next_cursor {
        eprintln!("canon: more: --cursor {c}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `canon cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The job's id.
    id: String,
    /// Why (shown in its status).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Cancels a job.
pub fn cancel(args: CancelArgs) -> Result<ExitCode> {
    args.conn.client()?.cancel(&args.id, args.reason)?;
    Ok(ExitCode::SUCCESS)
}

/// `canon watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Only this job's events.
    id: Option<String>,
    /// Resume after this event sequence number (default: from now).
    #[arg(long)]
    after: Option<i64>,
    /// Stop when the job ends (needs ID).
    #[arg(long)]
    until_done: bool,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Prints job and run state changes as they happen.
pub fn watch(args: WatchArgs) -> Result<ExitCode> {
    let client = args.conn.client()?;
    let mut failed = None;
    client.events(args.id.as_deref(), args.after, &mut |e| {
        let line = if args.json {
            serde_json::to_string(&e).unwrap_or_default()
        } else {
            format!(
                "{:>8}  {:<17} {}{}{}",
                e.seq,
                e.kind,
                e.job,
                e.run.as_deref().map(|r| format!(" run {r}")).unwrap_or_default(),
                e.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            )
        };
        if let Err(err) = outln!("{line}") {
            failed = Some(err);
            return false;
        }
        !(args.until_done && e.run.is_none() && e.state.parse::<JobState>().is_ok_and(JobState::is_final))
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// `canon fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The job's id.
    id: String,
    /// Where to write (must not exist, or be empty).
    #[arg(long)]
    out: PathBuf,
    /// The quorum policy to tally with (default: implicit).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Fetch this outcome group of the tally even if it is not accepted.
    #[arg(long, value_name = "OUTCOME_DIGEST")]
    outcome: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Downloads the accepted outcome's artifacts, checked against the receipts.
pub fn fetch(args: FetchArgs) -> Result<ExitCode> {
    let client = args.conn.client()?;
    let list = client.receipts(&args.id)?;
    let policy = match &args.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::implicit(),
    };
    let labelled: Vec<(String, Vec<u8>)> = list.receipts.iter().map(|(run, env)| (format!("run {run}"), env.clone().into_bytes())).collect();
    let tally = canon::quorum::tally(&labelled, &TallyOptions { policy, expected_job: Some(list.job_digest), ledger: None });
    let chosen = match &args.outcome {
        Some(o) => tally
            .groups
            .iter()
            .find(|g| g.outcome.to_string() == *o || g.outcome.to_string().ends_with(o.as_str()))
            .ok_or_else(|| anyhow!("--outcome {o}: no outcome group of the tally has that digest"))?,
        None => {
            if tally.verdict != Verdict::Accepted {
                bail!(
                    "job {}: the tally is {} over {} receipts, so no outcome is accepted; name one with --outcome DIGEST to fetch it anyway",
                    args.id,
                    tally.verdict,
                    tally.receipts
                );
            }
            tally.accepted_group().ok_or_else(|| anyhow!("job {}: accepted, but no accepted group", args.id))?
        }
    };
    // The outcome's digests, from a receipt of that group.
    let run = chosen.votes.first().ok_or_else(|| anyhow!("the outcome group has no votes"))?;
    let source = run.source.clone();
    let envelope = labelled.iter().find(|(s, _)| *s == source).map(|(_, e)| e.clone()).ok_or_else(|| anyhow!("no receipt {source}"))?;
    let verified = canon::receipt::verify_envelope(&envelope)?;
    let o = &verified.statement.predicate.outcome;
    let staged = super::outdir::Staged::new(&args.out, std::iter::empty::<&Path>())?;
    let mut cache: BTreeMap<Digest, Arc<Vec<u8>>> = BTreeMap::new();
    let mut get = |d: &Digest| -> Result<Arc<Vec<u8>>> {
        if let Some(b) = cache.get(d) {
            return Ok(b.clone());
        }
        let bytes = client.job_blob(&args.id, d)?;
        let actual = Digest::of(&bytes);
        if actual != *d {
            bail!("blob {d} from the coordinator has SHA-256 {actual}: corrupt or substituted; nothing written");
        }
        let b = Arc::new(bytes);
        cache.insert(*d, b.clone());
        Ok(b)
    };
    let stdout = get(&o.stdout_sha256)?;
    let stderr = get(&o.stderr_sha256)?;
    // The output tree, rebuilt from the manifest and checked against it.
    let mut tree = Tree::new();
    for e in &o.manifest.entries {
        let parts: Vec<&str> = e.path.trim_start_matches('/').split('/').collect();
        if parts.iter().any(|p| !canon::tree::is_entry_name(p)) {
            bail!("receipt manifest path {:?} is not a path of plain names", e.path);
        }
        let node = match e.kind {
            Kind::Dir => Node::Dir(Tree::new()),
            Kind::File => Node::File(get(&e.sha256)?),
            Kind::Symlink => Node::Symlink(String::from_utf8(get(&e.sha256)?.to_vec()).map_err(|_| anyhow!("symlink {:?}: target not UTF-8", e.path))?),
        };
        let (leaf, dirs) = parts.split_last().ok_or_else(|| anyhow!("empty manifest path"))?;
        let mut here = &mut tree;
        for d in dirs {
            here = match here.entries.entry((*d).to_string()).or_insert_with(|| Node::Dir(Tree::new())) {
                Node::Dir(t) => t,
                _ => bail!("receipt manifest path {:?} goes through a file", e.path),
            };
        }
        here.entries.insert((*leaf).to_string(), node);
    }
    for reserved in ["stdout", "stderr", "receipts", "tally.json"] {
        if tree.entries.contains_key(reserved) {
            bail!("the output tree has a top-level {reserved:?}, where canon fetch writes its own; fetch with the API instead");
        }
    }
    let dir = staged.path();
    std::fs::write(dir.join("stdout"), stdout.as_slice())?;
    std::fs::write(dir.join("stderr"), stderr.as_slice())?;
    tree.write_to(dir)?;
    std::fs::create_dir(dir.join("receipts"))?;
    for (run, env) in &list.receipts {
        std::fs::write(dir.join("receipts").join(format!("{run}.json")), env)?;
    }
    std::fs::write(dir.join("tally.json"), serde_json::to_string_pretty(&tally)? + "\n")?;
    staged.commit()?;
    eprintln!(
        "canon: fetched outcome {} ({}, {} of {} receipts agree) into {}",
        chosen.outcome,
        tally.verdict,
        chosen.votes.len(),
        tally.receipts,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `canon logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The job's id.
    id: String,
    /// The run on this node (its did:key, or the end of it); default: the
    /// job's first run.
    #[arg(long)]
    node: Option<String>,
    /// This run (its UUID).
    #[arg(long, conflicts_with = "node")]
    run: Option<String>,
    /// Start at this byte of the log.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Keep printing what is appended until the run ends.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Prints a run's log: the worker's lines and the guest's stdout and stderr
/// as they were written.
pub fn logs(args: LogsArgs) -> Result<ExitCode> {
    let client = args.conn.client()?;
    let view = client.status(&args.id)?;
    let run = match (&args.run, &args.node) {
        (Some(r), _) => view.run_list.iter().find(|x| x.id == *r).ok_or_else(|| anyhow!("job {} has no run {r}", args.id))?,
        (None, Some(n)) => {
            view.run_list.iter().find(|x| x.node == *n || x.node.ends_with(n.as_str())).ok_or_else(|| anyhow!("job {} has no run on node {n}", args.id))?
        }
        (None, None) => view.run_list.first().ok_or_else(|| anyhow!("job {} has no runs yet ({})", args.id, view.state))?,
    };
    let mut out = std::io::stdout().lock();
    client.read_log(&args.id, &run.id, args.offset, args.follow, &mut out)?;
    Ok(ExitCode::SUCCESS)
}
