//! Jobs as they travel: a [`Bundle`] is a job in canonical form, every
//! module, stdin and input file named by its SHA-256, with the bytes
//! travelling separately as blobs.
//!
//! A job spec names host paths, which a remote node does not have. `canon
//! submit` turns the job into a bundle ([`Bundle::of`]), uploads the blobs the
//! coordinator lacks, then the bundle. A worker fetches the blobs by digest,
//! checks each against its digest, and rebuilds the job
//! ([`Bundle::materialize`]) through the same [`JobBuilder`] checks as a local
//! spec; the job digest it computes must be the one the bundle names, or it
//! refuses the run. The bundle therefore carries exactly what the job digest
//! covers, plus the informational name and the timeout.
//!
//! # The format, `canon/bundle/v1`
//!
//! JSON, unknown fields refused:
//!
//! ```json
//! {
//!   "format": "canon/bundle/v1",
//!   "job_digest": "sha256:…",
//!   "name": "hello", "module": "<sha256>", "argv0": "hello", "args": [],
//!   "env": [["LANG", "C"]], "stdin": "<sha256>",
//!   "mounts": [{ "guest": "/data", "writable": false, "entries": [
//!     { "path": "a.txt", "kind": "file", "sha256": "<sha256>" },
//!     { "path": "sub", "kind": "dir" },
//!     { "path": "sub/link", "kind": "symlink", "target": "../a.txt" } ] }],
//!   "seed": 7, "epoch": 946684800, "limits": { "fuel": 1000000, … },
//!   "timeout_secs": 120, "commit": null, "unknown_imports": "refuse",
//!   "preloads": [{ "name": "lib", "module": "<sha256>" }],
//!   "sandbox_dirs": true,
//!   "threads": { "policy": "pct", "depth": 3, "seed": 11, "slice": 10000, "max_threads": 32 }
//! }
//! ```
//!
//! A bundle is not itself hashed or signed: what is signed about a job is its
//! job digest (`canon/job/v3`), which a worker recomputes from the bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, JobDigest};
use crate::job::{Job, JobBuilder, JobError, Limits, Policy, Stdin, Threads, UnknownImports};
use crate::tree::{Kind, Node, Tree, is_entry_name};

/// The format tag of a bundle.
pub const BUNDLE_FORMAT: &str = "canon/bundle/v1";

/// Most bytes of a bundle's JSON a coordinator or worker reads.
pub const MAX_BUNDLE_BYTES: usize = 16 << 20;

/// Most entries, over all mounts, in one bundle.
pub const MAX_BUNDLE_ENTRIES: usize = 1_000_000;

/// Where [`Bundle::materialize`] gets a blob: its bytes, or why not.
pub type GetBlob<'a> = dyn FnMut(&Digest) -> Result<Arc<Vec<u8>>, String> + 'a;

/// A job in canonical form (see the [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The job digest the submitter computed.
    pub job_digest: JobDigest,
    /// The job's name (informational).
    pub name: String,
    /// SHA-256 of the main module.
    pub module: Digest,
    /// argv[0].
    pub argv0: String,
    /// argv[1..].
    pub args: Vec<String>,
    /// The environment, sorted by name.
    pub env: Vec<(String, String)>,
    /// SHA-256 of the stdin bytes.
    pub stdin: Digest,
    /// The preopened input trees, in preopen order.
    pub mounts: Vec<BundleMount>,
    /// The seed.
    pub seed: u64,
    /// The logical clock's start, in seconds since the Unix epoch.
    pub epoch: u64,
    /// The limits.
    pub limits: Limits,
    /// The wall-clock safety timeout, in seconds (not in the job digest).
    pub timeout_secs: u64,
    /// The commit the job builds, lowercase hex.
    pub commit: Option<String>,
    /// `refuse` or `trap`.
    pub unknown_imports: String,
    /// Modules instantiated before the main one, in order.
    pub preloads: Vec<BundlePreload>,
    /// Whether the sandbox adds its `/out` and `/tmp`.
    pub sandbox_dirs: bool,
    /// A threaded job's scheduler settings (absent for other jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<BundleThreads>,
}

/// A threaded job's scheduler settings, as the job digest covers them
/// (docs/THREADS.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleThreads {
    /// `random`, `round-robin` or `pct`.
    pub policy: String,
    /// PCT's depth (0 for the other rules).
    pub depth: u32,
    /// The scheduler seed the job gives, if it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Fuel a thread runs before the scheduler may switch.
    pub slice: u64,
    /// Most threads alive at once.
    pub max_threads: u64,
}

/// One preopened input tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleMount {
    /// The guest path of the preopen.
    pub guest: String,
    /// Whether the guest may change its copy.
    pub writable: bool,
    /// Every entry below it, parents before children.
    pub entries: Vec<BundleEntry>,
}

/// One entry of an input tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    /// `/`-separated, relative to the mount.
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// A file's SHA-256 (its bytes are the blob of that digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    /// A symbolic link's target, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A preload: its name and module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePreload {
    /// The name later modules import it as.
    pub name: String,
    /// SHA-256 of its module.
    pub module: Digest,
}

/// Why a bundle cannot be read or turned back into its job.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not JSON of the bundle's shape.
    #[error("bundle: {0}")]
    Json(String),
    /// Larger than [`MAX_BUNDLE_BYTES`].
    #[error("bundle: {size} bytes, more than the limit of {MAX_BUNDLE_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// A field has a value the format does not allow.
    #[error("bundle: `{field}` is {found}; expected {expected}")]
    Invalid {
        /// The field.
        field: String,
        /// What it holds.
        found: String,
        /// What it must hold.
        expected: &'static str,
    },
    /// A blob the bundle names is not available.
    #[error("bundle: blob {digest} ({what}): {reason}")]
    Blob {
        /// Its digest.
        digest: Digest,
        /// What the bundle uses it for.
        what: String,
        /// Why it is not available.
        reason: String,
    },
    /// A blob's bytes do not have the digest that names them.
    #[error("bundle: blob {expected} ({what}) has SHA-256 {actual}: corrupt or substituted")]
    BlobMismatch {
        /// The digest the bundle names.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
        /// What the bundle uses it for.
        what: String,
    },
    /// The job the bundle describes is not valid.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The job rebuilt from the bundle has another digest than it names.
    #[error("bundle: names job {claimed} but describes job {actual}")]
    DigestMismatch {
        /// The digest the bundle names.
        claimed: JobDigest,
        /// The digest of the job it describes.
        actual: JobDigest,
    },
    /// Writing the job's files to the staging directory failed.
    #[error("bundle: staging {path}: {source}")]
    Stage {
        /// The host path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn invalid(field: impl Into<String>, found: impl Into<String>, expected: &'static str) -> BundleError {
    BundleError::Invalid { field: field.into(), found: found.into(), expected }
}

impl Bundle {
    /// The bundle of `job` and the blobs it names, by digest.
    pub fn of(job: &Job) -> (Bundle, BTreeMap<Digest, Arc<Vec<u8>>>) {
        let mut blobs = BTreeMap::new();
        blobs.insert(job.module_sha256, job.module.clone());
        for p in &job.preloads {
            blobs.insert(p.module_sha256, p.module.clone());
        }
        let stdin = Digest::of(&job.stdin);
        blobs.insert(stdin, Arc::new(job.stdin.clone()));
        let mounts = job
            .mounts
            .iter()
            .map(|m| {
                let mut entries = Vec::new();
                m.tree().walk("", &mut |path, node| {
                    let path = path.trim_start_matches('/').to_string();
                    entries.push(match node {
                        Node::File(bytes) => {
                            let d = Digest::of(bytes);
                            blobs.insert(d, bytes.clone());
                            BundleEntry { path, kind: Kind::File, sha256: Some(d), target: None }
                        }
                        Node::Dir(_) => BundleEntry { path, kind: Kind::Dir, sha256: None, target: None },
                        Node::Symlink(t) => BundleEntry { path, kind: Kind::Symlink, sha256: None, target: Some(t.clone()) },
                    });
                });
                BundleMount { guest: m.guest.clone(), writable: m.writable, entries }
            })
            .collect();
        let mut env = job.env.clone();
        env.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let bundle = Bundle {
            format: BUNDLE_FORMAT.into(),
            job_digest: job.digest(),
            name: job.name.clone(),
            module: job.module_sha256,
            argv0: job.argv0.clone(),
            args: job.args.clone(),
            env,
            stdin,
            mounts,
            seed: job.seed,
            epoch: job.epoch,
            limits: job.limits,
            timeout_secs: job.timeout.as_secs(),
            commit: job.commit.clone(),
            unknown_imports: job.unknown_imports.as_str().into(),
            preloads: job.preloads.iter().map(|p| BundlePreload { name: p.name.clone(), module: p.module_sha256 }).collect(),
            sandbox_dirs: job.sandbox_dirs,
            threads: job.threads.map(|t| BundleThreads {
                policy: t.policy.as_str().into(),
                depth: t.policy.depth(),
                seed: t.seed,
                slice: t.slice,
                max_threads: t.max_threads,
            }),
        };
        (bundle, blobs)
    }

    /// Reads a bundle's JSON, checking its shape (but not the job: see
    /// [`Bundle::materialize`]).
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge { size: bytes.len() });
        }
        let b: Bundle = serde_json::from_slice(bytes).map_err(|e| BundleError::Json(e.to_string()))?;
        b.check_shape()?;
        Ok(b)
    }

    /// The bundle as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn check_shape(&self) -> Result<(), BundleError> {
        if self.format != BUNDLE_FORMAT {
            return Err(invalid("format", format!("{:?}", self.format), "\"canon/bundle/v1\""));
        }
        if self.unknown_imports.parse::<UnknownImports>().is_err() {
            return Err(invalid("unknown_imports", format!("{:?}", self.unknown_imports), "\"refuse\" or \"trap\""));
        }
        let entries: usize = self.mounts.iter().map(|m| m.entries.len()).sum();
        if entries > MAX_BUNDLE_ENTRIES {
            return Err(invalid("mounts", format!("{entries} entries"), "at most 1 000 000 entries"));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            for (j, e) in m.entries.iter().enumerate() {
                let field = || format!("mounts[{i}].entries[{j}]");
                if !e.path.split('/').all(is_entry_name) {
                    return Err(invalid(format!("{}.path", field()), format!("{:?}", e.path), "a relative path of plain names"));
                }
                let ok = match e.kind {
                    Kind::File => e.sha256.is_some() && e.target.is_none(),
                    Kind::Dir => e.sha256.is_none() && e.target.is_none(),
                    Kind::Symlink => e.sha256.is_none() && e.target.is_some(),
                };
                if !ok {
                    return Err(invalid(
                        field(),
                        format!("{:?} with sha256 {:?} and target {:?}", e.kind, e.sha256, e.target),
                        "a file with sha256, a dir with neither, a symlink with target",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every blob the bundle names, with what it is for.
    pub fn blobs(&self) -> BTreeMap<Digest, String> {
        let mut out = BTreeMap::new();
        out.insert(self.module, "module".to_string());
        out.insert(self.stdin, "stdin".to_string());
        for (i, p) in self.preloads.iter().enumerate() {
            out.entry(p.module).or_insert_with(|| format!("preloads[{i}].module"));
        }
        for m in &self.mounts {
            for e in &m.entries {
                if let Some(d) = e.sha256 {
                    out.entry(d).or_insert_with(|| format!("{}/{}", m.guest.trim_end_matches('/'), e.path));
                }
            }
        }
        out
    }

    /// Rebuilds the job: writes the blobs `get` returns into `stage` (an
    /// empty directory the caller removes afterwards), builds the job from
    /// them with every check of a local spec, and checks that its digest is
    /// the one the bundle names. Each blob is checked against its digest
    /// before it is used.
    pub fn materialize(&self, stage: &Path, get: &mut GetBlob<'_>) -> Result<Job, BundleError> {
        let names = self.blobs();
        let mut fetch = |d: &Digest| -> Result<Arc<Vec<u8>>, BundleError> {
            let what = names.get(d).cloned().unwrap_or_default();
            let bytes = get(d).map_err(|reason| BundleError::Blob { digest: *d, what: what.clone(), reason })?;
            let actual = Digest::of(&bytes);
            if actual != *d {
                return Err(BundleError::BlobMismatch { expected: *d, actual, what });
            }
            Ok(bytes)
        };
        let write = |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).map_err(|source| BundleError::Stage { path: path.to_path_buf(), source });

        // The module is held in memory (only preloads and mounts are
        // staged as files): nothing is written for a job without them.
        let module_path = stage.join("module.wasm");
        let mut builder = JobBuilder::new(format!("bundle {}", self.job_digest), self.name.clone(), module_path)
            .module_bytes(fetch(&self.module)?)
            .module_sha256(self.module)
            .argv0(self.argv0.clone())
            .args(self.args.clone())
            .stdin(Stdin::Bytes(fetch(&self.stdin)?.to_vec()))
            .seed(self.seed)
            .epoch(self.epoch)
            .limits(self.limits)
            .timeout(Duration::from_secs(self.timeout_secs))
            .sandbox_dirs(self.sandbox_dirs)
            .unknown_imports(self.unknown_imports.parse().map_err(|_| invalid("unknown_imports", self.unknown_imports.clone(), "\"refuse\" or \"trap\""))?);
        for (name, value) in &self.env {
            builder = builder.env(name.clone(), value.clone());
        }
        if let Some(t) = &self.threads {
            let policy = match t.policy.as_str() {
                "random" => Policy::Random,
                "round-robin" => Policy::RoundRobin,
                "pct" => Policy::Pct { depth: t.depth },
                other => return Err(invalid("threads.policy", format!("{other:?}"), "\"random\", \"round-robin\" or \"pct\"")),
            };
            // `build` checks the bounds, as it does a spec's.
            builder = builder.threads(Threads { policy, seed: t.seed, slice: t.slice, max_threads: t.max_threads });
        }
        if let Some(c) = &self.commit {
            builder = builder.commit(c.clone());
        }
        for (i, p) in self.preloads.iter().enumerate() {
            let path = stage.join(format!("preload-{i}.wasm"));
            write(&path, &fetch(&p.module)?)?;
            builder = builder.preload(p.name.clone(), path, Some(p.module));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            let mut tree = Tree::new();
            for (j, e) in m.entries.iter().enumerate() {
                let node = match e.kind {
                    Kind::Dir => Node::Dir(Tree::new()),
                    Kind::File => Node::File(fetch(&e.sha256.ok_or_else(|| invalid(format!("mounts[{i}].entries[{j}].sha256"), "absent", "a digest"))?)?),
                    Kind::Symlink => Node::Symlink(e.target.clone().unwrap_or_default()),
                };
                insert(&mut tree, &e.path, node).map_err(|expected| invalid(format!("mounts[{i}].entries[{j}].path"), format!("{:?}", e.path), expected))?;
            }
            let dir = stage.join(format!("mount-{i}"));
            std::fs::create_dir(&dir).map_err(|source| BundleError::Stage { path: dir.clone(), source })?;
            tree.write_to(&dir).map_err(|e| BundleError::Stage { path: dir.clone(), source: std::io::Error::other(e.to_string()) })?;
            builder = builder.dir(dir, m.guest.clone(), m.writable);
        }
        let job = builder.build()?;
        let actual = job.digest();
        if actual != self.job_digest {
            return Err(BundleError::DigestMismatch { claimed: self.job_digest, actual });
        }
        Ok(job)
    }
}

/// Puts `node` at `path` in `tree`; its parent must already be there, and
/// nothing else at `path`.
fn insert(tree: &mut Tree, path: &str, node: Node) -> Result<(), &'static str> {
    let mut parts: Vec<&str> = path.split('/').collect();
    let leaf = parts.pop().ok_or("a non-empty path")?;
    let mut here = tree;
    for part in parts {
        match here.entries.get_mut(part) {
            Some(Node::Dir(sub)) => here = sub,
            _ => return Err("a path whose parent directory comes earlier in the list"),
        }
    }
    if here.entries.insert(leaf.to_string(), node).is_some() {
        return Err("a path listed once");
    }
    Ok(())
}

/// The digests in `wanted` that `have` lacks, in order.
pub fn missing(wanted: impl IntoIterator<Item = Digest>, have: &dyn Fn(&Digest) -> bool) -> Vec<Digest> {
    let set: BTreeSet<Digest> = wanted.into_iter().collect();
    set.into_iter().filter(|d| !have(d)).collect()
}
