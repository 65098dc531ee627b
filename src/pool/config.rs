//! The coordinator's configuration file (`canon serve --config FILE`).
//!
//! ```toml
//! listen = "127.0.0.1:7420"      # default; --listen overrides
//! policy = "policy.toml"         # the quorum policy (default: implicit), relative to this file
//! replicas = 3                   # target replicas a job gets without --replicas
//! max_runs = 6                   # most runs of one job (BOINC's max_total_results)
//! max_errors = 3                 # most failed runs of one job (max_error_results)
//! heartbeat_secs = 5             # workers heartbeat this often
//! lease_secs = 30                # a lease ends this long after its last heartbeat
//! max_unfinished = 100000        # pending + running jobs, all tenants (queue_full past it)
//! max_body_bytes = "16 MiB"      # a request body (a bundle, a receipt)
//! max_blob_bytes = "1 GiB"       # one blob
//! max_log_bytes = "4 MiB"        # one run's log
//! blob_retention_secs = 604800   # a job's blobs are kept this long after it ends
//! blob_grace_secs = 3600         # a blob younger than this is never collected
//! gc_interval_secs = 3600        # how often blobs are collected
//! event_retention_secs = 86400   # events kept at least this long for Last-Event-ID
//! durable = false                # true: fsync every transaction and blob (power-loss safe)
//! allow_nodes = ["did:key:…"]    # only these nodes may lease (default: any)
//!
//! [[tenant]]
//! name = "ci"
//! token_sha256 = "…"             # SHA-256 of the bearer token (or token = "…")
//! max_unfinished = 10000         # this tenant's share of the queue
//! ```
//!
//! Without a config file the coordinator has one tenant, `default`, whose
//! token it creates at first start in `DATA/token` (mode 0600).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::Digest;
use crate::node::NodeId;

/// A tenant: a name and the digest of its bearer token.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Its name.
    pub name: String,
    /// SHA-256 of its token.
    pub token_sha256: Digest,
    /// Most unfinished jobs.
    pub max_unfinished: u64,
}

/// The coordinator's settings, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The quorum policy file, if any.
    pub policy: Option<PathBuf>,
    /// Default target replicas.
    pub replicas: u32,
    /// Most runs of a job.
    pub max_runs: u32,
    /// Most failed runs of a job.
    pub max_errors: u32,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Lease length after a heartbeat, ms.
    pub lease_ms: u64,
    /// Most unfinished jobs in all.
    pub max_unfinished: u64,
    /// Most bytes in a request body.
    pub max_body_bytes: u64,
    /// Most bytes in one blob.
    pub max_blob_bytes: u64,
    /// Most bytes in one run's log.
    pub max_log_bytes: u64,
    /// Blobs of a job are kept this long after it ends, ms.
    pub blob_retention_ms: i64,
    /// A blob younger than this is never collected (an upload not yet
    /// submitted), ms.
    pub blob_grace_ms: i64,
    /// How often garbage is collected, ms.
    pub gc_interval_ms: u64,
    /// How long events are kept, ms.
    pub event_retention_ms: i64,
    /// fsync every transaction and every blob written.
    pub durable: bool,
    /// Nodes allowed to lease (empty: any).
    pub allow_nodes: Vec<NodeId>,
    /// The tenants.
    pub tenants: Vec<Tenant>,
}

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7420))),
            policy: None,
            replicas: 3,
            max_runs: 6,
            max_errors: 3,
            heartbeat_ms: 5_000,
            lease_ms: 30_000,
            max_unfinished: 100_000,
            max_body_bytes: 16 << 20,
            max_blob_bytes: 1 << 30,
            max_log_bytes: 4 << 20,
            blob_retention_ms: 7 * 86_400_000,
            blob_grace_ms: 3_600_000,
            gc_interval_ms: 3_600_000,
            event_retention_ms: 86_400_000,
            durable: false,
            allow_nodes: Vec::new(),
            tenants: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    policy: Option<PathBuf>,
    replicas: Option<u32>,
    max_runs: Option<u32>,
    max_errors: Option<u32>,
    heartbeat_secs: Option<f64>,
    lease_secs: Option<f64>,
    max_unfinished: Option<u64>,
    max_body_bytes: Option<toml::Value>,
    max_blob_bytes: Option<toml::Value>,
    max_log_bytes: Option<toml::Value>,
    blob_retention_secs: Option<f64>,
    blob_grace_secs: Option<f64>,
    gc_interval_secs: Option<f64>,
    event_retention_secs: Option<u64>,
    durable: Option<bool>,
    #[serde(default)]
    allow_nodes: Vec<String>,
    #[serde(default)]
    tenant: Vec<TenantFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    name: String,
    token: Option<String>,
    token_sha256: Option<String>,
    max_unfinished: Option<u64>,
}

/// A size in the job spec's forms ([`crate::job::parse_size`]).
fn size(file: &str, field: &str, v: &toml::Value) -> Result<u64, String> {
    crate::job::parse_size(v).map_err(|found| format!("{file}: `{field}` is {found}; expected {}", crate::job::SIZE_FORMS))
}

impl Config {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
        let f: File = toml::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
        let mut c = Config::default();
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(l) = f.listen {
            c.listen = l.parse().map_err(|_| format!("{file}: `listen` is {l:?}; expected HOST:PORT, e.g. {DEFAULT_LISTEN}"))?;
        }
        c.policy = f.policy.map(|p| base.join(p));
        let positive = |field: &str, v: Option<u32>, d: u32| -> Result<u32, String> {
            match v {
                Some(0) => Err(format!("{file}: `{field}` is 0; expected at least 1")),
                Some(n) => Ok(n),
                None => Ok(d),
            }
        };
        c.replicas = positive("replicas", f.replicas, c.replicas)?;
        c.max_runs = positive("max_runs", f.max_runs, c.max_runs.max(c.replicas * 2))?;
        if c.max_runs < c.replicas {
            return Err(format!("{file}: `max_runs` is {}; expected at least `replicas` ({})", c.max_runs, c.replicas));
        }
        c.max_errors = f.max_errors.unwrap_or(c.max_errors);
        let secs = |field: &str, v: Option<f64>, d: u64| -> Result<u64, String> {
            match v {
                Some(s) if (0.05..=86_400.0).contains(&s) => Ok((s * 1000.0) as u64),
                Some(s) => Err(format!("{file}: `{field}` is {s}; expected seconds from 0.05 to 86400")),
                None => Ok(d),
            }
        };
        c.heartbeat_ms = secs("heartbeat_secs", f.heartbeat_secs, c.heartbeat_ms)?;
        c.lease_ms = secs("lease_secs", f.lease_secs, c.lease_ms)?;
        if c.lease_ms < 2 * c.heartbeat_ms {
            return Err(format!("{file}: `lease_secs` must be at least twice `heartbeat_secs`, so one late heartbeat does not lose a lease"));
        }
        c.max_unfinished = f.max_unfinished.unwrap_or(c.max_unfinished);
        if let Some(v) = &f.max_body_bytes {
            c.max_body_bytes = size(&file, "max_body_bytes", v)?;
        }
        if let Some(v) = &f.max_blob_bytes {
            c.max_blob_bytes = size(&file, "max_blob_bytes", v)?;
        }
        if let Some(v) = &f.max_log_bytes {
            c.max_log_bytes = size(&file, "max_log_bytes", v)?;
        }
        let span = |field: &str, v: Option<f64>, d: i64| -> Result<i64, String> {
            match v {
                Some(s) if (0.0..=3.2e8).contains(&s) => Ok((s * 1000.0) as i64),
                Some(s) => Err(format!("{file}: `{field}` is {s}; expected seconds from 0 to 320000000")),
                None => Ok(d),
            }
        };
        c.blob_retention_ms = span("blob_retention_secs", f.blob_retention_secs, c.blob_retention_ms)?;
        c.blob_grace_ms = span("blob_grace_secs", f.blob_grace_secs, c.blob_grace_ms)?;
        c.gc_interval_ms = secs("gc_interval_secs", f.gc_interval_secs, c.gc_interval_ms)?;
        // A worker uploads a run's outputs before its receipt names them;
        // until then nothing names them, and only the grace period keeps
        // them. A run's lease bounds that gap.
        if c.blob_grace_ms < c.lease_ms as i64 {
            return Err(format!("{file}: `blob_grace_secs` must be at least `lease_secs`, so a run's outputs outlive the wait for its receipt"));
        }
        if let Some(s) = f.event_retention_secs {
            c.event_retention_ms = (s as i64).saturating_mul(1000);
        }
        c.durable = f.durable.unwrap_or(false);
        for (i, n) in f.allow_nodes.iter().enumerate() {
            c.allow_nodes.push(n.parse().map_err(|e| format!("{file}: `allow_nodes[{i}]`: {e}"))?);
        }
        for (i, t) in f.tenant.into_iter().enumerate() {
            let token_sha256 = match (t.token, t.token_sha256) {
                (Some(tok), None) => Digest::of(tok.as_bytes()),
                (None, Some(h)) => h.parse().map_err(|_| format!("{file}: `tenant[{i}].token_sha256` is {h:?}; expected 64 hex digits"))?,
                _ => return Err(format!("{file}: `tenant[{i}]` needs exactly one of `token` and `token_sha256`")),
            };
            if t.name.is_empty() || c.tenants.iter().any(|x| x.name == t.name) {
                return Err(format!("{file}: `tenant[{i}].name` is {:?}; expected a non-empty name no other tenant has", t.name));
            }
            c.tenants.push(Tenant { name: t.name, token_sha256, max_unfinished: t.max_unfinished.unwrap_or(c.max_unfinished) });
        }
        Ok(c)
    }
}
