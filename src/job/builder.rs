//! [`JobBuilder`]: the one way a [`Job`] is made.
//!
//! A job spec (`spec.rs`) and `canon exec`'s command line describe a job in
//! their own syntax. Each front end parses what it was given and hands the
//! pieces to a builder, which checks them the same way whatever their origin,
//! loads the modules and inputs and lays out the preopens, in two steps:
//!
//! 1. everything that needs no I/O: the name, argv and environment (no NUL
//!    bytes, well-formed unique names, at most [`MAX_ARGS_ENV_BYTES`] in
//!    all), the commit id, every limit's range, the preload names, and the
//!    syntax of every guest path ([`check_guest_path`]);
//! 2. the host side: read and validate the preloads in order, then the
//!    module; read stdin; load the inputs and lay out the preopens (in the
//!    order of their first input; none equal or nested, a relative name
//!    `d` counting as `/d` and a mount at `/` as holding every other place;
//!    with the sandbox dirs, `/tmp` reserved, `/out` only writable and
//!    nothing inside it), all within [`MAX_INPUT_BYTES`].
//!
//! The first failure is returned as a [`JobError`] that names the builder's
//! source (the spec file, or `canon exec`) and the item at fault by its
//! index in the order it was added, so that each front end can name it in
//! its own terms (`input[2]`, `--dir data::/data`).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::error::JobError;
use super::validate::{LinkedModule, Linking, Role, validate_command_cached, validate_module_cached_for};
use super::{
    DEFAULT_EPOCH, DEFAULT_TIMEOUT, Job, Limits, MAX_ARGS_ENV_BYTES, MAX_CALL_DEPTH, MAX_CAPTURE_BYTES, MAX_INPUT_BYTES, MAX_MEMORY_BYTES, MAX_OUTPUT_FILES,
    MAX_PCT_DEPTH, MAX_SLICE, MAX_THREADS, MAX_TIMEOUT, MIN_CALL_DEPTH, MIN_FUEL, MIN_MEMORY_BYTES, MIN_SLICE, Mount, Policy, Preload, Threads, UnknownImports,
    args_env_overflow,
};
use crate::digest::Digest;
use crate::tree::{Node, Tree, TreeError};

/// Where a job's stdin comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Stdin {
    /// No bytes: the guest reads end-of-file at once. The default.
    #[default]
    Empty,
    /// These bytes.
    Bytes(Vec<u8>),
    /// The bytes of this host file, read when the job is built.
    File(PathBuf),
}

/// One input: a host file or directory, copied in at a guest path.
#[derive(Clone, Debug)]
struct Input {
    host: PathBuf,
    guest: String,
    writable: bool,
    /// Refuse anything but a directory (`canon exec --dir`).
    dir_only: bool,
}

/// One module to preload.
#[derive(Clone, Debug)]
struct PreloadInput {
    name: String,
    module: PathBuf,
    sha256: Option<Digest>,
}

/// Builds a [`Job`]: collects what a front end was given, then
/// [`JobBuilder::build`] checks it, loads it and resolves it.
///
/// Every setter's documentation ends with its default; nothing is read from
/// the host until `build`.
#[derive(Clone, Debug)]
pub struct JobBuilder {
    source: String,
    name: String,
    module: PathBuf,
    module_bytes: Option<Arc<Vec<u8>>>,
    module_sha256: Option<Digest>,
    argv0: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Stdin,
    seed: Option<u64>,
    epoch: u64,
    limits: Limits,
    timeout: Duration,
    commit: Option<String>,
    unknown_imports: UnknownImports,
    inputs: Vec<Input>,
    preloads: Vec<PreloadInput>,
    sandbox_dirs: bool,
    threads: Option<Threads>,
}

impl JobBuilder {
    /// A job named `name` (informational; must not be empty) that runs the
    /// module at host path `module`. `source` names the description in
    /// errors: the spec file as the caller named it, or the command.
    pub fn new(source: impl Into<String>, name: impl Into<String>, module: impl Into<PathBuf>) -> JobBuilder {
        JobBuilder {
            source: source.into(),
            name: name.into(),
            module: module.into(),
            module_bytes: None,
            module_sha256: None,
            argv0: None,
            args: Vec::new(),
            env: Vec::new(),
            stdin: Stdin::Empty,
            seed: None,
            epoch: DEFAULT_EPOCH,
            limits: Limits::JOB_DEFAULT,
            timeout: DEFAULT_TIMEOUT,
            commit: None,
            unknown_imports: UnknownImports::Refuse,
            inputs: Vec::new(),
            preloads: Vec::new(),
            sandbox_dirs: true,
            threads: None,
        }
    }

    /// The scheduler settings of a threaded job (docs/THREADS.md); `build`
    /// checks their bounds and refuses them for a module that is not
    /// threaded ([`super::is_threaded`]). Default: none given, and a
    /// threaded module gets [`Threads::default`].
    pub fn threads(mut self, threads: Threads) -> JobBuilder {
        self.threads = Some(threads);
        self
    }

    /// The module's bytes, held in memory: `build` checks them as it would
    /// the file's, and the host path given to [`JobBuilder::new`] only names
    /// the module ([`Job::module_path`]). For callers that have the bytes
    /// already, such as a worker rebuilding a job from its bundle's blobs.
    /// Default: none, the module is read from that path.
    pub fn module_bytes(mut self, bytes: Arc<Vec<u8>>) -> JobBuilder {
        self.module_bytes = Some(bytes);
        self
    }

    /// Pins the module's SHA-256: `build` refuses a module with another.
    /// Default: not pinned.
    pub fn module_sha256(mut self, sha256: Digest) -> JobBuilder {
        self.module_sha256 = Some(sha256);
        self
    }

    /// `argv[0]` as the guest sees it. Default: the job's name.
    pub fn argv0(mut self, argv0: impl Into<String>) -> JobBuilder {
        self.argv0 = Some(argv0.into());
        self
    }

    /// `argv[1..]`. Default: none.
    pub fn args(mut self, args: impl IntoIterator<Item = String>) -> JobBuilder {
        self.args = args.into_iter().collect();
        self
    }

    /// Adds an environment variable; the job lists them sorted by name, and
    /// a name given twice is refused. Default: no variables.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> JobBuilder {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Where stdin's bytes come from. Default: [`Stdin::Empty`].
    pub fn stdin(mut self, stdin: Stdin) -> JobBuilder {
        self.stdin = stdin;
        self
    }

    /// The seed of the guest's random stream. Default:
    /// [`Job::derived_seed`], a function of everything else in the job.
    pub fn seed(mut self, seed: u64) -> JobBuilder {
        self.seed = Some(seed);
        self
    }

    /// The wall-clock time the guest sees at start, in seconds since the Unix
    /// epoch. Default: [`DEFAULT_EPOCH`].
    pub fn epoch(mut self, epoch: u64) -> JobBuilder {
        self.epoch = epoch;
        self
    }

    /// The deterministic limits; `build` checks each against its bounds.
    /// Default: [`Limits::JOB_DEFAULT`].
    pub fn limits(mut self, limits: Limits) -> JobBuilder {
        self.limits = limits;
        self
    }

    /// The wall-clock safety net, 1 s ..= [`MAX_TIMEOUT`] (not part of the
    /// digest). Default: [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> JobBuilder {
        self.timeout = timeout;
        self
    }

    /// The git commit the job was built from: 40 or 64 hex digits, stored
    /// lowercase. Default: none.
    pub fn commit(mut self, commit: impl Into<String>) -> JobBuilder {
        self.commit = Some(commit.into());
        self
    }

    /// What to do with imports canon does not provide. Default:
    /// [`UnknownImports::Refuse`].
    pub fn unknown_imports(mut self, unknown_imports: UnknownImports) -> JobBuilder {
        self.unknown_imports = unknown_imports;
        self
    }

    /// Whether the sandbox adds its own preopens after the inputs: an empty
    /// writable `/out` (unless an input is there) and a scratch `/tmp`
    /// ([`Job::sandbox_dirs`]). With `false` the guest sees the inputs and
    /// nothing else, as under `wasmtime run` (with no inputs, nothing is
    /// open past fd 2), the output tree holds only the writable inputs, and
    /// `/out` and `/tmp` are ordinary guest paths: an input there is
    /// checked like any other input (it may be read-only, and no preopen
    /// may be nested with it). Ignored beside a mount at `/`, which never
    /// has them. Default: true.
    pub fn sandbox_dirs(mut self, sandbox_dirs: bool) -> JobBuilder {
        self.sandbox_dirs = sandbox_dirs;
        self
    }

    /// Adds an input: the host file or directory `host` (followed if it is a
    /// symbolic link; links inside a directory are kept as links), at the
    /// guest path `guest` ([`check_guest_path`]: `/`, absolute and
    /// normalised, or relative of plain components). A directory is
    /// preopened at `guest`; a file is put in a synthetic preopen of its
    /// parent, shared with the other file inputs there. A directory at `/`
    /// is the guest's whole file system: it must be the only input, and the
    /// sandbox adds no `/out` or `/tmp` beside it. Preopens are numbered in the order
    /// of their first input (fd 3, 4, ...; the sandbox's `/out`, unless an
    /// input is there, and `/tmp` come after them, unless
    /// [`JobBuilder::sandbox_dirs`] is false), and that order is part of
    /// the job. A writable input is a copy the guest may change; the
    /// host is never modified. Default: no inputs.
    pub fn input(mut self, host: impl Into<PathBuf>, guest: impl Into<String>, writable: bool) -> JobBuilder {
        self.inputs.push(Input { host: host.into(), guest: guest.into(), writable, dir_only: false });
        self
    }

    /// Like [`JobBuilder::input`], but `host` must be a directory.
    pub fn dir(mut self, host: impl Into<PathBuf>, guest: impl Into<String>, writable: bool) -> JobBuilder {
        self.inputs.push(Input { host: host.into(), guest: guest.into(), writable, dir_only: true });
        self
    }

    /// Adds a module to instantiate before the main one, registered as
    /// `name` (see [`Preload`]), optionally pinned to a SHA-256. Preloads are
    /// instantiated in the order added. Default: none.
    pub fn preload(mut self, name: impl Into<String>, module: impl Into<PathBuf>, sha256: Option<Digest>) -> JobBuilder {
        self.preloads.push(PreloadInput { name: name.into(), module: module.into(), sha256 });
        self
    }

    /// Checks everything, reads the modules, stdin and inputs, and returns
    /// the job. Nothing runs.
    pub fn build(self) -> Result<Job, JobError> {
        let file = self.source.as_str();
        let f = || file.to_string();

        // Step 1: everything that needs no I/O.
        if self.name.is_empty() {
            return Err(invalid(file, "name", "empty", "a non-empty string"));
        }
        let argv0 = self.argv0.unwrap_or_else(|| self.name.clone());
        no_nul(file, "argv0", &argv0)?;
        for (i, arg) in self.args.iter().enumerate() {
            no_nul(file, &format!("args[{i}]"), arg)?;
        }
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in self.env {
            check_env_name(file, &name)?;
            no_nul(file, &format!("env.{name}"), &value)?;
            if env.contains_key(&name) {
                return Err(invalid(file, &format!("env.{name}"), "given twice", "each variable once"));
            }
            env.insert(name, value);
        }
        if let Some(field) = args_env_overflow(&argv0, &self.args, env.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            return Err(JobError::ArgsTooLarge { file: f(), field, limit: MAX_ARGS_ENV_BYTES });
        }
        let commit = self.commit.as_deref().map(|c| parse_commit(file, c)).transpose()?;
        check_limits(file, &self.limits, self.timeout)?;
        if let Some(t) = &self.threads {
            check_threads(file, t)?;
        }
        for (index, p) in self.preloads.iter().enumerate() {
            let refuse = |expected| JobError::PreloadName { file: f(), index, name: p.name.clone(), expected };
            if !super::is_preload_name(&p.name) {
                return Err(refuse(super::PRELOAD_NAME_RULE));
            }
            if self.preloads[..index].iter().any(|q| q.name == p.name) {
                return Err(refuse("a name no earlier preload has"));
            }
        }
        for (index, input) in self.inputs.iter().enumerate() {
            check_guest_path(&input.guest).map_err(|reason| JobError::GuestPath { file: f(), index, guest: input.guest.clone(), reason: reason.into() })?;
        }

        // Step 2: the host side.
        let unknown_imports = self.unknown_imports;
        let mut preloads: Vec<Preload> = Vec::with_capacity(self.preloads.len());
        let mut linked: Vec<LinkedModule> = Vec::with_capacity(self.preloads.len());
        for (index, p) in self.preloads.into_iter().enumerate() {
            let path = p.module;
            let err = |message: String| JobError::Preload { file: f(), index, path: path.clone(), message };
            let bytes = fs::read(&path).map_err(|e| err(format!("cannot read: {e}")))?;
            let sha = Digest::of(&bytes);
            if let Some(expected) = p.sha256
                && expected != sha
            {
                return Err(err(format!("`preload[{index}].module_sha256` is {expected} but the module has SHA-256 {sha}")));
            }
            let exports =
                validate_module_cached_for(&bytes, &sha, Role::Library, &Linking { unknown_imports, preloads: &linked }).map_err(|e| err(e.to_string()))?;
            linked.push(LinkedModule { name: p.name.clone(), sha256: sha, exports });
            preloads.push(Preload { name: p.name, module: Arc::new(bytes), module_sha256: sha, module_path: path.clone() });
        }
        let module_path = self.module;
        let module = match self.module_bytes {
            Some(bytes) => bytes,
            None => Arc::new(fs::read(&module_path).map_err(|source| JobError::ModuleRead { file: f(), path: module_path.clone(), source })?),
        };
        let module_sha256 = Digest::of(&module);
        if let Some(expected) = self.module_sha256
            && expected != module_sha256
        {
            return Err(JobError::Sha256Mismatch { file: f(), path: module_path, expected, actual: module_sha256 });
        }
        validate_command_cached(&module, &module_sha256, &Linking { unknown_imports, preloads: &linked }).map_err(|source| JobError::Module {
            file: f(),
            path: module_path.clone(),
            source: Box::new(source),
        })?;
        let threads = match (super::is_threaded(&module), self.threads) {
            (true, _) if !preloads.is_empty() => {
                return Err(invalid(file, "preload", "preloads beside a threaded module", "no [[preload]]: canon runs threaded modules alone"));
            }
            (true, given) => Some(given.unwrap_or_default()),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(invalid(
                    file,
                    "threads",
                    "thread settings for a module that does not use threads",
                    "no [threads] table and no limits.threads: the module imports neither `wasi::thread-spawn` nor a shared memory",
                ));
            }
        };

        let mut budget = MAX_INPUT_BYTES;
        let stdin = match self.stdin {
            Stdin::Empty => Vec::new(),
            Stdin::Bytes(bytes) => bytes,
            Stdin::File(path) => {
                let read_err = |source| JobError::StdinRead { file: f(), path: path.clone(), source };
                if fs::metadata(&path).map_err(read_err)?.len() > budget {
                    return Err(JobError::InputsTooLarge { file: f(), field: "stdin_file".into(), limit: MAX_INPUT_BYTES });
                }
                fs::read(&path).map_err(read_err)?
            }
        };
        if stdin.len() as u64 > budget {
            return Err(JobError::InputsTooLarge { file: f(), field: "stdin".into(), limit: MAX_INPUT_BYTES });
        }
        budget -= stdin.len() as u64;

        let mounts = load_inputs(file, self.inputs, self.sandbox_dirs, &mut budget)?;
        // A mount at `/` has nothing beside it: say so in the job itself.
        let sandbox_dirs = self.sandbox_dirs && !mounts.iter().any(|m| m.guest == "/");

        let mut job = Job {
            name: self.name,
            module,
            module_sha256,
            module_path,
            argv0,
            args: self.args,
            env: env.into_iter().collect(),
            stdin,
            mounts,
            seed: 0,
            epoch: self.epoch,
            limits: self.limits,
            timeout: self.timeout,
            commit,
            unknown_imports,
            preloads,
            sandbox_dirs,
            threads,
        };
        job.seed = match self.seed {
            Some(seed) => seed,
            None => job.derived_seed(),
        };
        Ok(job)
    }
}

fn invalid(file: &str, field: &str, found: &str, expected: &str) -> JobError {
    JobError::InvalidField { file: file.into(), field: field.into(), found: found.into(), expected: expected.into() }
}

fn no_nul(file: &str, field: &str, value: &str) -> Result<(), JobError> {
    if value.contains('\0') {
        return Err(invalid(file, field, "a string with a NUL byte", "a string without NUL bytes (WASI passes C strings)"));
    }
    Ok(())
}

fn check_env_name(file: &str, key: &str) -> Result<(), JobError> {
    let field = format!("env.{key:?}");
    let expected = "a non-empty variable name without `=` or NUL bytes";
    if key.is_empty() {
        return Err(invalid(file, &field, "an empty name", expected));
    }
    if key.contains('=') {
        return Err(invalid(file, &field, "a name containing `=`", expected));
    }
    if key.contains('\0') {
        return Err(invalid(file, &field, "a name containing a NUL byte", expected));
    }
    Ok(())
}

/// A git commit id: 40 (SHA-1) or 64 (SHA-256) hex digits, stored lowercase.
fn parse_commit(file: &str, value: &str) -> Result<String, JobError> {
    let ok = matches!(value.len(), 40 | 64) && value.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(JobError::Commit { file: file.into(), value: value.into() });
    }
    Ok(value.to_ascii_lowercase())
}

/// Every limit within its bounds, and the timeout too.
/// The bounds of a threaded job's settings (the constants' docs say why).
fn check_threads(file: &str, t: &Threads) -> Result<(), JobError> {
    if !(MIN_SLICE..=MAX_SLICE).contains(&t.slice) {
        return Err(invalid(file, "threads.slice", &t.slice.to_string(), &format!("fuel between {MIN_SLICE} and {MAX_SLICE}")));
    }
    if !(1..=MAX_THREADS).contains(&t.max_threads) {
        return Err(invalid(file, "limits.threads", &t.max_threads.to_string(), &format!("between 1 and {MAX_THREADS} (the main thread counts)")));
    }
    if let Policy::Pct { depth } = t.policy
        && !(1..=MAX_PCT_DEPTH).contains(&depth)
    {
        return Err(invalid(file, "threads.depth", &depth.to_string(), &format!("between 1 and {MAX_PCT_DEPTH}")));
    }
    Ok(())
}

fn check_limits(file: &str, l: &Limits, timeout: Duration) -> Result<(), JobError> {
    let limit_err = |field: &'static str, found: String, expected: String| JobError::Limit { file: file.into(), field, found, expected };
    if l.fuel < MIN_FUEL {
        return Err(limit_err("fuel", l.fuel.to_string(), format!("at least {MIN_FUEL} (a job with no fuel cannot run)")));
    }
    for (field, n, min, max) in [
        ("memory", l.memory_bytes, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES),
        ("stdout", l.stdout_bytes, 0, MAX_CAPTURE_BYTES),
        ("stderr", l.stderr_bytes, 0, MAX_CAPTURE_BYTES),
        ("output_bytes", l.output_bytes, 0, MAX_CAPTURE_BYTES),
    ] {
        if !(min..=max).contains(&n) {
            return Err(limit_err(field, human(n), format!("a size between {} and {}", human(min), human(max))));
        }
    }
    if l.output_files > MAX_OUTPUT_FILES {
        return Err(limit_err("output_files", l.output_files.to_string(), format!("at most {MAX_OUTPUT_FILES}")));
    }
    if !(MIN_CALL_DEPTH..=MAX_CALL_DEPTH).contains(&l.call_depth) {
        return Err(limit_err("call_depth", l.call_depth.to_string(), format!("between {MIN_CALL_DEPTH} and {MAX_CALL_DEPTH}")));
    }
    if timeout < Duration::from_secs(1) || timeout > MAX_TIMEOUT {
        return Err(limit_err("timeout", timeout.as_secs().to_string(), format!("between 1 and {} seconds", MAX_TIMEOUT.as_secs())));
    }
    Ok(())
}

/// A size for messages: `64 KiB` when exact, else bytes.
pub(super) fn human(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n != 0 && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// Checks a guest path's syntax. Returns what is wrong.
///
/// A guest path is the name of a preopen, which the guest reads back with
/// `fd_prestat_dir_name` and wasi-libc matches path prefixes against. Three
/// forms pass:
///
/// - `/` alone, the root: a mount there is the guest's whole file system,
///   so it must be the job's only input (see [`JobBuilder::input`]);
/// - absolute and normalised: `/data`, `/a/b`;
/// - relative, of plain components: `data`, `fs-tests.dir`, `a/b`, the
///   names `wasmtime run --dir data` gives. wasi-libc resolves paths from
///   `/`, so it finds `data/x` and `/data/x` alike in a preopen named
///   `data`, and canon places that mount at `/data` ([`guest_place`]) for
///   every rule about places: nesting, the reserved `/tmp` and `/out`, and
///   where `--out` writes it. The name the guest reads is the one given,
///   so `data` and `/data` are two jobs with two digests.
///
/// Nothing else: no empty, `.` or `..` component, no trailing `/`, no NUL.
/// A guest path is data, never host path syntax: it is only ever split at
/// `/` into these components, so one that passes names a place below the
/// guest's root and, laid out under an output directory, a place below it.
pub fn check_guest_path(p: &str) -> Result<(), &'static str> {
    if p == "/" {
        return Ok(());
    }
    if p.is_empty() {
        return Err("a guest path must not be empty");
    }
    if p.ends_with('/') {
        return Err("a guest path must not end with `/`");
    }
    if p.contains('\0') {
        return Err("a guest path must not contain NUL bytes");
    }
    for component in p.strip_prefix('/').unwrap_or(p).split('/') {
        match component {
            "" => return Err("a guest path must not contain empty components (`//`)"),
            "." | ".." => return Err("a guest path must be normalised (no `.` or `..` components)"),
            _ => {}
        }
    }
    Ok(())
}

/// Where a guest path ([`check_guest_path`]) puts its mount: the path
/// itself when it is absolute, else the relative name below `/` (`data`
/// is placed at `/data`).
pub fn guest_place(p: &str) -> String {
    if p.starts_with('/') { p.to_string() } else { format!("/{p}") }
}

/// `inner` is the place `outer` or inside it (both absolute).
fn inside(inner: &str, outer: &str) -> bool {
    outer == "/" || inner.strip_prefix(outer).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The places `a` and `b` (both absolute) are equal, or one is inside the other.
fn nested(a: &str, b: &str) -> bool {
    inside(a, b) || inside(b, a)
}

/// A preopen being assembled from one directory input or several file inputs.
struct Preopen {
    /// The first input contributing to it.
    index: usize,
    writable: bool,
    /// Some(host) for a directory input; None for files merged into a
    /// synthetic directory.
    source: Option<PathBuf>,
    tree: Tree,
    /// For merged files: which input put each file there.
    file_inputs: BTreeMap<String, usize>,
}

/// Loads the inputs and lays out their preopens. `sandbox_dirs`: the
/// sandbox adds `/out` and `/tmp`, so those places are reserved.
fn load_inputs(file: &str, inputs: Vec<Input>, sandbox_dirs: bool, budget: &mut u64) -> Result<Vec<Mount>, JobError> {
    let f = || file.to_string();
    let too_large = |index: usize| JobError::InputsTooLarge { file: f(), field: format!("input[{index}]"), limit: MAX_INPUT_BYTES };
    // In the order of each preopen's first input: the order the guest sees.
    let mut preopens: Vec<(String, Preopen)> = Vec::new();
    let find = |preopens: &[(String, Preopen)], dir: &str| preopens.iter().position(|(g, _)| g == dir);

    for (index, Input { host, guest, writable, dir_only }) in inputs.into_iter().enumerate() {
        // The input's own host path is followed if it is a symlink; links
        // inside an input directory are kept as links.
        let meta = fs::metadata(&host).map_err(|source| JobError::InputMissing { file: f(), index, path: host.clone(), source })?;
        let (dir, node_name) = if meta.is_dir() {
            (guest.clone(), None)
        } else if dir_only {
            return Err(JobError::NotADirectory { file: f(), index, path: host });
        } else if meta.is_file() {
            let (parent, leaf) = guest.rsplit_once('/').unwrap_or(("", &guest));
            if parent.is_empty() {
                let reason = "a file input must be inside a directory (e.g. `/in/file.txt`), which becomes its preopen".into();
                return Err(JobError::GuestPath { file: f(), index, guest, reason });
            }
            (parent.to_string(), Some(leaf.to_string()))
        } else {
            return Err(JobError::InputLoad { file: f(), index, source: TreeError::Unsupported(host) });
        };

        if sandbox_dirs {
            check_reserved(file, index, &guest, &guest_place(&dir), writable)?;
        }

        let load_err = |source: TreeError| match source {
            TreeError::TooLarge { .. } => too_large(index),
            source => JobError::InputLoad { file: f(), index, source },
        };
        match node_name {
            None => {
                if let Some(other) = find(&preopens, &dir) {
                    return Err(same_dir(file, preopens[other].1.index, index, &dir));
                }
                let tree = Tree::load_dir(&host, *budget).map_err(load_err)?;
                *budget = budget.saturating_sub(tree.file_bytes());
                preopens.push((dir, Preopen { index, writable, source: Some(host), tree, file_inputs: BTreeMap::new() }));
            }
            Some(leaf) => {
                if meta.len() > *budget {
                    return Err(too_large(index));
                }
                let bytes = fs::read(&host).map_err(|source| JobError::InputMissing { file: f(), index, path: host.clone(), source })?;
                *budget = budget.saturating_sub(bytes.len() as u64);
                let at = match find(&preopens, &dir) {
                    Some(at) => at,
                    None => {
                        preopens.push((dir.clone(), Preopen { index, writable, source: None, tree: Tree::new(), file_inputs: BTreeMap::new() }));
                        preopens.len() - 1
                    }
                };
                let entry = &mut preopens[at].1;
                if entry.source.is_some() {
                    return Err(same_dir(file, entry.index, index, &dir));
                }
                if entry.writable != writable {
                    return Err(JobError::WritableConflict { file: f(), first: entry.index, second: index, dir });
                }
                if let Some(&first) = entry.file_inputs.get(&leaf) {
                    return Err(JobError::Overlap {
                        file: f(),
                        first,
                        first_dir: guest.clone(),
                        second: index,
                        second_dir: guest,
                        relation: "name the same guest file",
                    });
                }
                entry.file_inputs.insert(leaf.clone(), index);
                entry.tree.entries.insert(leaf, Node::File(Arc::new(bytes)));
            }
        }
    }

    for (i, (a, pa)) in preopens.iter().enumerate() {
        for (b, pb) in &preopens[i + 1..] {
            if nested(&guest_place(a), &guest_place(b)) {
                let ((first, first_dir), (second, second_dir)) =
                    if pa.index < pb.index { ((pa.index, a), (pb.index, b)) } else { ((pb.index, b), (pa.index, a)) };
                let relation = if a == "/" || b == "/" {
                    "are nested: a mount at `/` is the guest's whole file system, so it must be the job's only input"
                } else if guest_place(a) == guest_place(b) {
                    "name the same place (a relative guest path `d` is placed at `/d`); preopened directories must be disjoint"
                } else {
                    "are nested; preopened directories must be disjoint"
                };
                return Err(JobError::Overlap { file: f(), first, first_dir: first_dir.to_string(), second, second_dir: second_dir.to_string(), relation });
            }
        }
    }

    Ok(preopens.into_iter().map(|(guest, p)| Mount::new(guest, p.writable, p.tree, p.source)).collect())
}

fn same_dir(file: &str, first: usize, second: usize, dir: &str) -> JobError {
    JobError::Overlap {
        file: file.into(),
        first,
        first_dir: dir.into(),
        second,
        second_dir: dir.into(),
        relation: "are the same preopened directory; a directory input cannot share its guest path with another input",
    }
}

/// With the sandbox dirs, `/tmp` belongs to the sandbox; `/out` may be
/// replaced by a writable input but nothing may be mounted inside it. `dir` is the preopen's place
/// ([`guest_place`]); a mount at `/` holds neither (the sandbox adds no
/// `/out` or `/tmp` beside it).
fn check_reserved(file: &str, index: usize, guest: &str, dir: &str, writable: bool) -> Result<(), JobError> {
    let reserved = |reason| JobError::Reserved { file: file.into(), index, guest: guest.into(), reason };
    if inside(dir, "/tmp") {
        return Err(reserved("/tmp is reserved: the sandbox provides it for the guest's scratch files, so no input may be at or inside it"));
    }
    if dir == "/out" {
        if !writable {
            return Err(JobError::OutReadOnly { file: file.into(), index, guest: guest.into() });
        }
    } else if inside(dir, "/out") {
        return Err(reserved(
            "no preopen may be inside /out, which the sandbox provides; to seed /out, mount a writable directory at /out or put files directly in it",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_the_root_absolute_or_relative_and_normalised() {
        for good in ["/", "/data", "/a/b", "/a.b/c-d", "/é", "/..a", "/a/...", "data", "fs-tests.dir", "a/b", "..a", "...", "é"] {
            assert_eq!(check_guest_path(good), Ok(()), "{good}");
        }
        for bad in [
            "", "./data", "/data/", "data/", "/a//b", "a//b", "//", "/a/./b", "a/./b", "/a/../b", "a/..", "/..", "/a\0", "a\0", "../data", ".", "..", "./",
            "//a",
        ] {
            assert!(check_guest_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_relative_guest_path_is_placed_below_the_root() {
        assert_eq!(guest_place("data"), "/data");
        assert_eq!(guest_place("a/b"), "/a/b");
        assert_eq!(guest_place("/data"), "/data");
        assert_eq!(guest_place("/"), "/");
    }

    #[test]
    fn nesting_respects_component_boundaries() {
        assert!(nested("/a", "/a"));
        assert!(nested("/a", "/a/b"));
        assert!(nested("/a/b/c", "/a"));
        assert!(!nested("/a", "/ab"));
        assert!(!nested("/a-b", "/a"));
        assert!(!nested("/out", "/outside"));
        assert!(nested("/", "/a") && nested("/a/b", "/") && nested("/", "/"));
    }

    fn minimal() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/vectors/minimal.wasm")
    }

    #[test]
    fn every_check_applies_whatever_the_front_end() {
        let b = || JobBuilder::new("test", "t", minimal());
        let half = "x".repeat((MAX_ARGS_ENV_BYTES / 2) as usize);
        let refused: [(JobBuilder, &str); 9] = [
            (JobBuilder::new("test", "", minimal()), "`name`"),
            (b().args([half.clone(), half.clone()]), "`args[1]`"),
            (b().env("K", "1").env("K", "2"), "given twice"),
            (b().env("A=B", "1"), "`="),
            (b().limits(Limits { fuel: 0, ..Limits::EXEC_DEFAULT }), "limits.fuel"),
            (b().timeout(Duration::ZERO), "limits.timeout"),
            (b().dir("/nonexistent-canon-test", "../data", true), "must be normalised"),
            (b().preload("wasi_snapshot_preview1", minimal(), None), "preload[0].name"),
            (b().commit("xyz"), "commit"),
        ];
        for (builder, want) in refused {
            let msg = builder.build().expect_err(want).to_string();
            assert!(msg.starts_with("test: ") && msg.contains(want), "{want}: {msg}");
        }
        assert!(b().build().is_ok());
    }

    #[test]
    fn a_root_mount_is_alone_and_a_relative_name_counts_as_its_absolute_place() {
        let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/inputs/data");
        let b = || JobBuilder::new("test", "t", minimal());
        let guests = |job: Job| job.mounts.iter().map(|m| m.guest.clone()).collect::<Vec<_>>();
        assert_eq!(guests(b().dir(&data, "/", true).build().expect("a lone root")), ["/"]);
        assert_eq!(guests(b().dir(&data, "data", false).dir(&data, "/in", false).build().expect("relative")), ["data", "/in"]);
        assert_eq!(guests(b().dir(&data, "out", true).build().expect("a writable out")), ["out"]);
        let refused: [(&str, &str, &str); 7] = [
            ("/", "/data", "must be the job's only input"),
            ("data", "/", "must be the job's only input"),
            ("data", "/data", "name the same place"),
            ("/a", "a/b", "are nested"),
            ("tmp", "/x", "/tmp is reserved"),
            ("out/sub", "/x", "inside /out"),
            ("/x", "tmp/sub", "/tmp is reserved"),
        ];
        for (first, second, want) in refused {
            let msg = b().dir(&data, first, true).dir(&data, second, true).build().expect_err(want).to_string();
            assert!(msg.contains(want), "{first} {second}: {msg}");
        }
        let read_only_out = b().dir(&data, "out", false).build().expect_err("read-only out");
        assert!(matches!(read_only_out, JobError::OutReadOnly { .. }), "{read_only_out:?}");
        let file_at_root = b().input(data.join("hello.txt"), "/hello.txt", false).build().expect_err("a file at the root");
        assert!(file_at_root.to_string().contains("must be inside a directory"), "{file_at_root}");
    }

    #[test]
    fn without_sandbox_dirs_out_and_tmp_are_ordinary_guest_paths() {
        let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/inputs/data");
        let b = || JobBuilder::new("test", "t", minimal());
        assert!(b().build().expect("default").sandbox_dirs, "on by default");
        let job = b().sandbox_dirs(false).dir(&data, "/tmp", false).dir(&data, "out", false).build().expect("ordinary inputs");
        assert!(!job.sandbox_dirs);
        assert_eq!(job.mounts.iter().map(|m| (m.guest.as_str(), m.writable)).collect::<Vec<_>>(), [("/tmp", false), ("out", false)]);
        assert!(b().sandbox_dirs(false).dir(&data, "/out/sub", true).build().is_ok(), "nothing to be nested in");
        // The rules every input follows still hold.
        let nested = b().sandbox_dirs(false).dir(&data, "/tmp", true).dir(&data, "/tmp/sub", true).build().expect_err("nested");
        assert!(nested.to_string().contains("are nested"), "{nested}");
        // A root mount never has them, so its job says so whatever was asked.
        assert!(!b().dir(&data, "/", true).build().expect("root").sandbox_dirs);
        assert_eq!(
            b().dir(&data, "/", true).build().expect("root").digest(),
            b().sandbox_dirs(false).dir(&data, "/", true).build().expect("root").digest(),
            "one guest view, one job"
        );
    }

    #[test]
    fn a_dir_input_must_be_a_directory() {
        let err = JobBuilder::new("test", "t", minimal()).dir(minimal(), "/m", false).build().expect_err("a file");
        assert!(matches!(err, JobError::NotADirectory { index: 0, .. }), "{err:?}");
    }
}
