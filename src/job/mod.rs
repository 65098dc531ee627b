//! Jobs: what to run, written by people as TOML, named by a digest.
//!
//! A [`Job`] is fully resolved: the module's bytes, the input trees, every
//! limit. Nothing in it refers to the host that loaded it except
//! [`Job::module_path`] and [`Mount::source`], which are informational and
//! never part of the job digest.
//!
//! Every job is made by a [`JobBuilder`], which checks and loads what a
//! front end was given: [`Job::load`] parses a spec file and resolves its
//! paths against the spec's directory, `canon exec` splits its flags, and
//! both hand the pieces to a builder, so both are checked the same way,
//! before anything runs (see [`JobError`] for every refusal).
//! [`validate_module`] does the module checks alone.
//!
//! # The spec
//!
//! ```toml
//! name = "probe-time"          # required, informational
//! module = "../probe.wasm"     # required, relative to the spec file
//! module_sha256 = "…"          # optional; must match the module
//! args = ["time"]              # argv[1..]
//! argv0 = "probe"              # default: name
//! env = { LANG = "C" }         # sorted by name in the job
//! stdin = "text"               # or stdin_file = "path"; not both
//! seed = 7                     # default: derived, see Job::derived_seed
//! epoch = 946684800            # default: DEFAULT_EPOCH
//! commit = "<40 or 64 hex>"    # optional, stored lowercase
//! unknown_imports = "refuse"   # or "trap"; default "refuse"
//! sandbox_dirs = true          # false: no /out or /tmp after the inputs
//! [limits]                     # each defaults to Limits::JOB_DEFAULT
//! fuel = 1000000               # at least MIN_FUEL
//! memory = "64 MiB"            # MIN_MEMORY_BYTES ..= MAX_MEMORY_BYTES
//! stdout = "1 MiB"             # 0 ..= MAX_CAPTURE_BYTES (also stderr, output_bytes)
//! output_files = 100           # 0 ..= MAX_OUTPUT_FILES
//! call_depth = 10000           # MIN_CALL_DEPTH ..= MAX_CALL_DEPTH
//! timeout = 120                # seconds, 1 ..= MAX_TIMEOUT; not in the digest
//! threads = 32                 # threaded modules only: 1 ..= MAX_THREADS alive at once
//! [threads]                    # threaded modules only (docs/THREADS.md)
//! policy = "random"            # or "round-robin" or "pct"; default "random"
//! seed = 7                     # default: derived from the job's seed
//! slice = 10000                # fuel per slice, MIN_SLICE ..= MAX_SLICE
//! depth = 3                    # pct only: 1 ..= MAX_PCT_DEPTH
//! [[input]]
//! host = "data"                # a file or a directory
//! guest = "/data"              # absolute, normalised
//! writable = false
//! [[preload]]                  # instantiated before `module`, in order
//! name = "lib"                 # later modules import its exports as `lib`
//! module = "lib.wasm"          # relative to the spec file
//! module_sha256 = "…"          # optional; must match
//! ```
//!
//! Sizes are integer bytes or strings `"N B"`, `"N KiB"`, `"N MiB"`,
//! `"N GiB"`. Unknown keys are errors.
//!
//! Mounts: a directory input is preopened at its guest path. A file input
//! at `/a/b.txt` is put in a synthetic preopen `/a`; file inputs with the
//! same parent share it and must agree on `writable`. Preopens are never
//! equal or nested, and are numbered in the order of their first
//! `[[input]]` (fd 3, 4, ..., as `wasmtime run --dir` numbers its
//! directories), an order the guest sees and the job digest covers. After
//! them the sandbox adds its own two, the *sandbox dirs*: an empty
//! writable `/out`, then `/tmp` (reserved: no input may be at, in or
//! around it); an input whose preopen is `/out` replaces that `/out`, in
//! its own place, and must be writable (it is where outputs go), and no
//! preopen may be nested inside `/out`. With `sandbox_dirs = false`
//! ([`Job::sandbox_dirs`]) the sandbox adds neither: the guest sees its
//! inputs and nothing else, as under `wasmtime run`, and `/out` and `/tmp`
//! are ordinary guest paths (an input there follows the rules of every
//! input and is not special). A job that mounts `/` has no sandbox dirs
//! either way.
//! An input's host path is followed if it is a symlink; symlinks inside an
//! input directory are kept as links. Inputs and stdin together are capped
//! at [`MAX_INPUT_BYTES`]; argv and the environment together at
//! [`MAX_ARGS_ENV_BYTES`].
//!
//! Preloads: like `wasmtime run --preload NAME=MODULE`, each `[[preload]]`
//! module is validated (as a library: no `_start` needed, a `memory` export
//! needed only if it calls WASI), instantiated in order in the job's one
//! store (its start function and, if exported, its `_initialize` run then),
//! and registered under its name, so modules after it, and the main module,
//! import its exports as `name::export`. Its WASI imports are served by
//! canon's host, on the job's one WASI world (same fds, files, clocks,
//! random stream), through its own memory. A module can only import from
//! modules before it, so there are no cycles. Names are unique, non-empty
//! and not `wasi_snapshot_preview1`. The memory limit covers all memories of
//! all modules together, and the fuel budget is shared.
//!
//! # The encoding, `canon/job/v3`
//!
//! The job digest is SHA-256 over this encoding (field kinds as in
//! [`crate::encoding`]); `docs/ENCODINGS.md` has the same table.
//!
//! | # | field | kind |
//! | --- | --- | --- |
//! | 0 | tag `canon/job/v3` and `\n` | 13 bytes |
//! | 1 | module SHA-256 | digest |
//! | 2 | argv0 | string |
//! | 3 | args | list of string |
//! | 4 | env, sorted by name bytes | list of (name string, value string) |
//! | 5 | SHA-256 of the stdin bytes | digest |
//! | 6 | mounts, in preopen order (fd 3, 4, ...) | list of (guest string, writable `u8` 0/1, manifest digest of the tree) |
//! | 7 | seed | optional `u64`; always present in the digest |
//! | 8 | epoch | `u64` |
//! | 9 | limits: fuel, memory, stdout, stderr, output bytes, output files, call depth | 7 × `u64` |
//! | 10 | commit | optional string (lowercase hex) |
//! | 11 | unknown imports | `u8`: 0 refuse, 1 trap |
//! | 12 | preloads, in instantiation order | list of (name string, module SHA-256 digest) |
//! | 13 | sandbox dirs ([`Job::adds_sandbox_dirs`]) | `u8`: 1 the sandbox adds `/out` and `/tmp`, 0 it adds none |
//! | 14 | threads, **only for a threaded job** ([`Job::threads`]) | policy `u8` (0 random, 1 round-robin, 2 PCT), PCT depth `u64` (0 for the others), scheduler seed optional `u64`, slice `u64`, thread limit `u64` |
//!
//! Field 14 is written only when the module is threaded, which the module
//! SHA-256 (field 1) already decides, so every unthreaded job encodes
//! exactly as before threads existed.
//!
//! v3 differs from v2 in field 6, which v2 sorted by guest path (the
//! preopen order is now the job's, because the guest sees it), and by
//! field 13, which v2 lacks (every v2 job had the sandbox dirs).
//!
//! Not encoded: `name`, `timeout`, host paths. The default seed is
//! [`Job::derived_seed`]: the first 8 bytes, read as a little-endian `u64`,
//! of the SHA-256 of this encoding with field 7 written absent (a single 0).

mod builder;
mod error;
mod spec;
mod threads;
mod validate;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use builder::{JobBuilder, Stdin, check_guest_path, guest_place};
pub use error::{JobError, ModuleError};
pub use spec::{SIZE_FORMS, parse_size};
pub use threads::{DEFAULT_MAX_THREADS, DEFAULT_PCT_DEPTH, DEFAULT_SLICE, MAX_PCT_DEPTH, MAX_SLICE, MAX_THREADS, MIN_SLICE, Policy, Threads, is_threaded};
pub use validate::{
    CORE_FEATURES, ExportType, Exports, ImportSource, LinkedModule, Linking, Role, SHARED_MEMORY_IMPORT, THREADED_FEATURES, VALIDATION_VERSION,
    ValidationStore, import_source, remember_validations, stored_key, validate_command_cached, validate_module, validate_module_cached,
    validate_module_cached_for, validate_module_for,
};

use crate::digest::{Digest, JobDigest};
use crate::encoding::Encoder;
use crate::tree::Tree;

/// The version tag of the job encoding.
pub const JOB_TAG: &str = "canon/job/v3";

/// Wall-clock safety net when a spec names none: 120 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest wall-clock timeout a spec may ask for: 7 days. A node holds a
/// slot for the whole time; longer work belongs in several jobs.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Smallest fuel budget: 1. With no fuel a job cannot execute an
/// instruction, so 0 is always a mistake.
pub const MIN_FUEL: u64 = 1;

/// Smallest call-depth limit: 1, the entry point alone.
pub const MIN_CALL_DEPTH: u64 = 1;

/// Largest call-depth limit: 100 000 nested calls. The native stack given to
/// wasm (`sandbox::engine::MAX_WASM_STACK`, 64 MiB) holds that many
/// frames of up to about 670 bytes each; deeper recursion of ordinary frames
/// could overflow the native stack first, which yields no result.
pub const MAX_CALL_DEPTH: u64 = 100_000;

/// Smallest memory limit: 64 KiB, one WebAssembly page; WASI needs a memory.
pub const MIN_MEMORY_BYTES: u64 = 64 << 10;

/// Largest memory limit: 4 GiB, all a 32-bit memory can address (WASI
/// preview 1 is 32-bit).
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// Largest cap on stdout, stderr and output bytes: 4 GiB. Every node holds
/// what a guest produces in memory and hashes it. A cap of 0 is allowed: a
/// job may be required to stay silent or write no files.
pub const MAX_CAPTURE_BYTES: u64 = 4 << 30;

/// Largest cap on files a guest creates: one million, as for `canon exec`.
/// Each costs memory in the virtual file system and a manifest line in the
/// outcome. 0 is allowed (a job that writes no files).
pub const MAX_OUTPUT_FILES: u64 = 1_000_000;

/// Cap on the bytes of all inputs and stdin of one job: 4 GiB. Every node
/// loads a job's inputs into memory and hashes them before it runs, and a
/// 32-bit guest could not hold more at once anyway.
pub const MAX_INPUT_BYTES: u64 = 4 << 30;

/// Cap on argv and environment together, as the guest sees them: 2 MiB,
/// counting a NUL after each `argv` string and each `NAME=value` string
/// (what `args_sizes_get` and `environ_sizes_get` report). It is Linux's
/// default `ARG_MAX`, so any program that runs there fits; every node
/// holds these strings in the job, hashes them into the digest and copies
/// them into the guest's memory, and a guest with a small memory could not
/// even receive more.
pub const MAX_ARGS_ENV_BYTES: u64 = 2 << 20;

/// What a `[[preload]]` name must be, for error messages.
pub const PRELOAD_NAME_RULE: &str = "a non-empty module name other than \"wasi_snapshot_preview1\" and \"canon\"";

/// Whether `name` may name a preload: not empty, and neither the WASI module
/// nor `canon`, which are canon's own import modules.
pub fn is_preload_name(name: &str) -> bool {
    !name.is_empty() && name != crate::abi::WASI_MODULE && name != crate::abi::CANON_MODULE
}

/// The argument or variable with which argv and the environment cross
/// [`MAX_ARGS_ENV_BYTES`]; displayed as a job spec names it (`argv0`,
/// `args[N]`, `env.NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgsEnvField {
    /// `argv[0]`.
    Argv0,
    /// `args[N]` (argv[N + 1]).
    Arg(usize),
    /// The environment variable of this name.
    Env(String),
}

impl std::fmt::Display for ArgsEnvField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgsEnvField::Argv0 => f.write_str("argv0"),
            ArgsEnvField::Arg(i) => write!(f, "args[{i}]"),
            ArgsEnvField::Env(name) => write!(f, "env.{name}"),
        }
    }
}

/// Where argv and the environment, in this order, cross
/// [`MAX_ARGS_ENV_BYTES`] (counting a NUL after each argument and each
/// `NAME=value`, as the guest receives them), or `None` if they fit. The one
/// check for job specs and `canon exec`.
pub fn args_env_overflow<'a>(argv0: &str, args: &[String], env: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<ArgsEnvField> {
    let mut total = (argv0.len() as u64).saturating_add(1);
    if total > MAX_ARGS_ENV_BYTES {
        return Some(ArgsEnvField::Argv0);
    }
    for (i, a) in args.iter().enumerate() {
        total = total.saturating_add(a.len() as u64 + 1);
        if total > MAX_ARGS_ENV_BYTES {
            return Some(ArgsEnvField::Arg(i));
        }
    }
    for (k, v) in env {
        total = total.saturating_add(k.len() as u64 + v.len() as u64 + 2);
        if total > MAX_ARGS_ENV_BYTES {
            return Some(ArgsEnvField::Env(k.to_string()));
        }
    }
    None
}

/// The wall clock's starting point when a job names none:
/// 2000-01-01T00:00:00Z, in seconds since the Unix epoch.
pub const DEFAULT_EPOCH: u64 = 946_684_800;

/// What to do with a function import canon does not provide (neither a
/// WASI preview 1 function nor, with preloads, an export of an earlier
/// module).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UnknownImports {
    /// Refuse the job at validation, naming the import. The default.
    #[default]
    Refuse,
    /// Link each unknown *function* import to a stub of the declared type
    /// that traps with [`TrapKind::UnknownImport`](crate::outcome::TrapKind)
    /// when called, like wasmtime's `--unknown-imports-trap`. A module that
    /// never calls it runs as if it were provided. Unknown memories, tables,
    /// globals and tags are still refused: there is no value to give them.
    Trap,
}

impl UnknownImports {
    /// The spec and CLI spelling: `refuse` or `trap`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownImports::Refuse => "refuse",
            UnknownImports::Trap => "trap",
        }
    }

    /// The byte in the job encoding (field 11): 0 refuse, 1 trap.
    pub fn code(self) -> u8 {
        match self {
            UnknownImports::Refuse => 0,
            UnknownImports::Trap => 1,
        }
    }
}

impl std::fmt::Display for UnknownImports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for UnknownImports {
    type Err = String;
    fn from_str(s: &str) -> Result<UnknownImports, String> {
        match s {
            "refuse" => Ok(UnknownImports::Refuse),
            "trap" => Ok(UnknownImports::Trap),
            other => Err(format!("{other:?}: expected \"refuse\" or \"trap\"")),
        }
    }
}

/// A job, resolved and validated, ready to run.
#[derive(Clone, Debug)]
pub struct Job {
    /// A human name (informational, not part of the digest).
    pub name: String,
    /// The module's bytes.
    pub module: Arc<Vec<u8>>,
    /// SHA-256 of the module's bytes.
    pub module_sha256: Digest,
    /// Where the module was loaded from (informational).
    pub module_path: PathBuf,
    /// `argv[0]` as the guest sees it.
    pub argv0: String,
    /// `argv[1..]`.
    pub args: Vec<String>,
    /// Environment variables, sorted by name, names unique.
    pub env: Vec<(String, String)>,
    /// The bytes the guest reads from stdin.
    pub stdin: Vec<u8>,
    /// Preopened directories in preopen order (fd 3, 4, ...), none equal to
    /// or nested in another. The order is part of the digest.
    pub mounts: Vec<Mount>,
    /// Seed of the guest's random stream.
    pub seed: u64,
    /// Wall-clock time at the start of the run, seconds since the Unix epoch.
    pub epoch: u64,
    /// Deterministic limits.
    pub limits: Limits,
    /// Wall-clock safety net: past it the run yields no result at all.
    /// Not part of the digest.
    pub timeout: Duration,
    /// The git commit the job was built from, if it names one.
    pub commit: Option<String>,
    /// What to do with imports canon does not provide.
    pub unknown_imports: UnknownImports,
    /// Modules instantiated before [`Job::module`], in order, each
    /// registered under its name for later modules to import from.
    pub preloads: Vec<Preload>,
    /// Whether the sandbox adds its own preopens after [`Job::mounts`]: an
    /// empty writable `/out` (unless a mount is placed there) and a scratch
    /// `/tmp`. When false the guest sees the job's mounts and nothing else,
    /// as under `wasmtime run`: with no mounts, nothing is open past fd 2,
    /// and the output tree holds only what writable mounts hold. A job that
    /// mounts `/` never has them ([`Job::adds_sandbox_dirs`]); the builder
    /// sets this false for one. Part of the digest.
    pub sandbox_dirs: bool,
    /// The scheduler settings: `Some` exactly when the module is threaded
    /// ([`is_threaded`]), which the builder ensures. Part of the digest
    /// (field 14) when present.
    pub threads: Option<Threads>,
}

/// A module preloaded into a job's store and registered under a name.
#[derive(Clone, Debug)]
pub struct Preload {
    /// The name later modules import its exports under.
    pub name: String,
    /// The module's bytes.
    pub module: Arc<Vec<u8>>,
    /// SHA-256 of the module's bytes.
    pub module_sha256: Digest,
    /// Where it was loaded from (informational).
    pub module_path: PathBuf,
}

/// One preopened directory.
#[derive(Clone, Debug)]
pub struct Mount {
    /// Absolute, normalised guest path (`/data`), the preopen's name.
    pub guest: String,
    /// Whether the guest may change it. A writable mount is an in-memory
    /// copy; its final content is part of the outcome.
    pub writable: bool,
    /// Where it came from on the host (informational).
    pub source: Option<PathBuf>,
    /// The directory's content; private so that it cannot change under
    /// its digest.
    tree: Tree,
    /// The `canon/manifest/v1` digest of `tree`, computed once: hashing
    /// every input byte again on each [`Job::digest`] would cost as much as
    /// loading the job (a tool's data directory can be many megabytes).
    manifest_digest: Digest,
}

impl Mount {
    /// A mount of `tree` at `guest`; hashes the tree once, here.
    pub fn new(guest: String, writable: bool, tree: Tree, source: Option<PathBuf>) -> Mount {
        let manifest_digest = tree.manifest().digest();
        Mount { guest, writable, source, tree, manifest_digest }
    }

    /// The directory's content.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The `canon/manifest/v1` digest of the content (field 6 of the job
    /// encoding).
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }
}

/// Limits a guest can push against, all enforced deterministically. As
/// JSON (in a bundle) each field is a number of its own name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Fuel budget (instructions, as metered by the engine).
    pub fuel: u64,
    /// Linear memory, in bytes, of all the job's memories together (one per
    /// module when the job has preloads; a multi-memory module's memories
    /// count together too).
    pub memory_bytes: u64,
    /// Cap on stdout bytes.
    pub stdout_bytes: u64,
    /// Cap on stderr bytes.
    pub stderr_bytes: u64,
    /// Cap on the bytes of all files in writable mounts (including `/tmp`).
    pub output_bytes: u64,
    /// Cap on the number of files, directories and links the guest creates.
    pub output_files: u64,
    /// Most wasm frames active at once (the entry point counts as one); the
    /// call that would make one more traps `call_depth_exceeded`.
    pub call_depth: u64,
}

impl Limits {
    /// Defaults for job specs: sized for a build step, bounded for a shared node.
    pub const JOB_DEFAULT: Limits = Limits {
        fuel: 20_000_000_000,
        memory_bytes: 1 << 30,
        stdout_bytes: 16 << 20,
        stderr_bytes: 16 << 20,
        output_bytes: 256 << 20,
        output_files: 10_000,
        call_depth: 10_000,
    };

    /// Defaults for `canon exec`: generous enough for real tools.
    pub const EXEC_DEFAULT: Limits = Limits {
        fuel: 1_000_000_000_000,
        memory_bytes: 4 << 30,
        stdout_bytes: 1 << 30,
        stderr_bytes: 1 << 30,
        output_bytes: 4 << 30,
        output_files: 1_000_000,
        call_depth: MAX_CALL_DEPTH,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::JOB_DEFAULT
    }
}

impl Job {
    /// Reads a job spec, resolves it against the spec's directory and
    /// validates it and its module. Nothing runs.
    pub fn load(path: &Path) -> Result<Job, JobError> {
        let file = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|source| JobError::Read { file: file.clone(), source })?;
        let base = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        spec::resolve(&text, &base, &file)
    }

    /// Like [`Job::load`], from spec text: paths are relative to `base_dir`
    /// and errors name the spec `source_name`.
    pub fn from_toml_str(text: &str, base_dir: &Path, source_name: &str) -> Result<Job, JobError> {
        spec::resolve(text, base_dir, source_name)
    }

    /// The job digest: SHA-256 of [`Job::encode`].
    pub fn digest(&self) -> JobDigest {
        JobDigest::new(self.encoder(Some(self.seed)).digest_of())
    }

    /// The canonical encoding, `canon/job/v3` (layout in the
    /// [module documentation](self)).
    pub fn encode(&self) -> Vec<u8> {
        self.encoder(Some(self.seed)).into_bytes()
    }

    /// The seed a spec without `seed` gets: the first 8 bytes, little-endian,
    /// of the SHA-256 of the encoding with the seed written absent. It
    /// depends on everything in the digest except the seed itself.
    pub fn derived_seed(&self) -> u64 {
        let digest = self.encoder(None).digest_of();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    /// Whether the sandbox adds `/out` and `/tmp` after the job's mounts:
    /// [`Job::sandbox_dirs`], unless a mount at `/` is the guest's whole
    /// file system. This, not the field alone, is what the guest sees and
    /// what the encoding holds (field 13), so a job built by hand with a
    /// root mount encodes as the builder would make it.
    pub fn adds_sandbox_dirs(&self) -> bool {
        self.sandbox_dirs && !self.mounts.iter().any(|m| m.guest == "/")
    }

    fn encoder(&self, seed: Option<u64>) -> Encoder {
        let mut e = Encoder::new(JOB_TAG);
        e.digest(&self.module_sha256);
        e.str(&self.argv0);
        e.count(self.args.len());
        for arg in &self.args {
            e.str(arg);
        }
        // Sorted here too, so a Job built by hand encodes canonically.
        let mut env: Vec<&(String, String)> = self.env.iter().collect();
        env.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        e.count(env.len());
        for (name, value) in env {
            e.str(name).str(value);
        }
        e.digest(&Digest::of(&self.stdin));
        // In preopen order, not sorted: the guest sees the order.
        e.count(self.mounts.len());
        for m in &self.mounts {
            e.str(&m.guest).u8(u8::from(m.writable)).digest(&m.manifest_digest);
        }
        e.option(seed, |e, s| {
            e.u64(s);
        });
        e.u64(self.epoch);
        let l = &self.limits;
        e.u64(l.fuel).u64(l.memory_bytes).u64(l.stdout_bytes).u64(l.stderr_bytes).u64(l.output_bytes).u64(l.output_files).u64(l.call_depth);
        e.option(self.commit.as_deref(), |e, c| {
            e.str(c);
        });
        e.u8(self.unknown_imports.code());
        e.count(self.preloads.len());
        for p in &self.preloads {
            e.str(&p.name).digest(&p.module_sha256);
        }
        e.u8(u8::from(self.adds_sandbox_dirs()));
        if let Some(t) = &self.threads {
            e.u8(t.policy.code()).u64(u64::from(t.policy.depth()));
            e.option(t.seed, |e, s| {
                e.u64(s);
            });
            e.u64(t.slice).u64(t.max_threads);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Node;

    fn job() -> Job {
        let mut tree = Tree::new();
        tree.entries.insert("f".into(), Node::File(Arc::new(b"x".to_vec())));
        Job {
            name: "n".into(),
            module: Arc::new(vec![]),
            module_sha256: Digest::of(b"module"),
            module_path: PathBuf::from("/host/m.wasm"),
            argv0: "p".into(),
            args: vec!["a".into()],
            env: vec![("K".into(), "V".into())],
            stdin: b"in".to_vec(),
            mounts: vec![Mount::new("/d".into(), true, tree, None)],
            seed: 9,
            epoch: 5,
            limits: Limits { fuel: 1, memory_bytes: 2, stdout_bytes: 3, stderr_bytes: 4, output_bytes: 5, output_files: 6, call_depth: 7 },
            timeout: DEFAULT_TIMEOUT,
            commit: Some("ab".into()),
            unknown_imports: UnknownImports::Trap,
            preloads: vec![Preload {
                name: "lib".into(),
                module: Arc::new(vec![]),
                module_sha256: Digest::of(b"lib"),
                module_path: PathBuf::from("/host/l.wasm"),
            }],
            sandbox_dirs: false,
            threads: None,
        }
    }

    /// The layout, written out byte by byte without the Encoder.
    #[test]
    fn encoding_layout_is_as_documented() {
        let j = job();
        let str_ = |s: &str| [&(s.len() as u64).to_le_bytes()[..], s.as_bytes()].concat();
        let u64_ = |v: u64| v.to_le_bytes().to_vec();
        let mut want = b"canon/job/v3\n".to_vec();
        want.extend(Digest::of(b"module").as_bytes());
        want.extend(str_("p"));
        want.extend(u64_(1));
        want.extend(str_("a"));
        want.extend(u64_(1));
        want.extend(str_("K"));
        want.extend(str_("V"));
        want.extend(Digest::of(b"in").as_bytes());
        want.extend(u64_(1));
        want.extend(str_("/d"));
        want.push(1);
        want.extend(j.mounts[0].tree().manifest().digest().as_bytes());
        want.push(1);
        want.extend(u64_(9));
        want.extend(u64_(5));
        for v in 1..=7 {
            want.extend(u64_(v));
        }
        want.push(1);
        want.extend(str_("ab"));
        want.push(1);
        want.extend(u64_(1));
        want.extend(str_("lib"));
        want.extend(Digest::of(b"lib").as_bytes());
        want.push(0);
        assert_eq!(j.encode(), want);
        assert_eq!(j.digest().digest(), &Digest::of(&want));
    }

    /// Field 14, the thread settings, follows field 13 only for a threaded
    /// job, and every setting changes the digest.
    #[test]
    fn thread_settings_are_field_14_and_in_the_digest() {
        let plain = job();
        let mut t = job();
        t.threads = Some(Threads { policy: Policy::Pct { depth: 3 }, seed: Some(11), slice: 500, max_threads: 8 });
        let mut want = plain.encode();
        want.push(2);
        want.extend(3u64.to_le_bytes());
        want.push(1);
        want.extend(11u64.to_le_bytes());
        want.extend(500u64.to_le_bytes());
        want.extend(8u64.to_le_bytes());
        assert_eq!(t.encode(), want);
        let base = t.digest();
        let variants = [
            Threads { policy: Policy::Random, ..t.threads.expect("set") },
            Threads { policy: Policy::Pct { depth: 4 }, ..t.threads.expect("set") },
            Threads { seed: None, ..t.threads.expect("set") },
            Threads { seed: Some(12), ..t.threads.expect("set") },
            Threads { slice: 501, ..t.threads.expect("set") },
            Threads { max_threads: 9, ..t.threads.expect("set") },
        ];
        for v in variants {
            let mut k = t.clone();
            k.threads = Some(v);
            assert_ne!(k.digest(), base, "{v:?}");
        }
        // The scheduler's derived seed is a stream apart from the job's.
        let d = Threads::default();
        assert_ne!(d.effective_seed(9), 9);
        assert_ne!(d.effective_seed(9), d.effective_seed(10));
        assert_eq!(Threads { seed: Some(5), ..d }.effective_seed(9), 5);
    }

    #[test]
    fn derived_seed_ignores_the_seed_and_informational_fields() {
        let j = job();
        let mut k = job();
        k.seed = 12345;
        k.name = "other".into();
        k.timeout = Duration::from_secs(1);
        k.module_path = PathBuf::from("elsewhere");
        assert_eq!(j.derived_seed(), k.derived_seed());
        assert_ne!(j.digest(), k.digest());
        k.seed = j.seed;
        assert_eq!(j.digest(), k.digest());
        k.epoch += 1;
        assert_ne!(j.derived_seed(), k.derived_seed());
    }

    #[test]
    fn args_env_overflow_names_the_field_that_crosses_the_cap() {
        let half = "x".repeat((MAX_ARGS_ENV_BYTES / 2) as usize);
        assert_eq!(args_env_overflow("p", &[], []).map(|f| f.to_string()), None);
        assert_eq!(args_env_overflow("p", std::slice::from_ref(&half), [("K", "v")]).map(|f| f.to_string()), None);
        assert_eq!(args_env_overflow("p", &[half.clone(), half.clone()], []).map(|f| f.to_string()), Some("args[1]".into()));
        assert_eq!(args_env_overflow("p", std::slice::from_ref(&half), [("K", half.as_str())]).map(|f| f.to_string()), Some("env.K".into()));
        assert_eq!(args_env_overflow(&"x".repeat(MAX_ARGS_ENV_BYTES as usize), &[], []).map(|f| f.to_string()), Some("argv0".into()));
    }

    #[test]
    fn a_mount_hashes_its_tree_once_and_encodes_that_digest() {
        let j = job();
        assert_eq!(*j.mounts[0].manifest_digest(), j.mounts[0].tree().manifest().digest());
    }

    #[test]
    fn env_encodes_in_canonical_order_whatever_the_vec_order() {
        let mut j = job();
        j.env = vec![("B".into(), "1".into()), ("A".into(), "2".into())];
        let mut k = j.clone();
        k.env.reverse();
        assert_eq!(j.encode(), k.encode());
    }

    #[test]
    fn mounts_encode_in_preopen_order_which_the_digest_covers() {
        let mut j = job();
        j.mounts.push(Mount::new("/a".into(), false, Tree::new(), None));
        let mut k = j.clone();
        k.mounts.reverse();
        assert_ne!(j.digest(), k.digest(), "the guest sees fd order, so the digest must");
        assert_ne!(j.derived_seed(), k.derived_seed());
    }

    #[test]
    fn sandbox_dirs_change_the_digest_except_beside_a_root_mount() {
        let j = job();
        let mut k = job();
        k.sandbox_dirs = true;
        assert_ne!(j.digest(), k.digest(), "the guest sees whether /out and /tmp exist, so the digest must");
        assert_ne!(j.derived_seed(), k.derived_seed());
        // A mount at `/` has no sandbox dirs beside it, whatever the field says.
        let root = vec![Mount::new("/".into(), true, Tree::new(), None)];
        let (mut j, mut k) = (j, k);
        j.mounts = root.clone();
        k.mounts = root;
        assert!(!k.adds_sandbox_dirs());
        assert_eq!(j.encode(), k.encode());
    }
}
