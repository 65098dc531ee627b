//! `canon exec`: run a module ad hoc, like `wasmtime run`, in the
//! deterministic sandbox.
//!
//! Two steps, as for every subcommand: clap parses what was typed into
//! [`Args`]; [`job_from_args`] splits the values and feeds a
//! [`JobBuilder`], the one path every job takes, so an ad-hoc job gets
//! exactly the checks a job spec gets. The builder's errors are then named
//! in the command line's terms (`--dir ../data::/data`, `--fuel`).

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use canon::job::{ArgsEnvField, DEFAULT_EPOCH, Job, JobBuilder, JobError, Limits, MAX_INPUT_BYTES, Stdin, UnknownImports, check_guest_path};
use canon::outcome::Termination;
use canon::sandbox::{Backend, RunOptions, Sandbox};

/// Exit status of `canon exec` when the guest traps (as `wasmtime run`: 128 + SIGABRT).
pub const EXIT_TRAP: u8 = 134;

/// How `canon exec` names itself in the errors of the job it builds.
const SOURCE: &str = "canon exec";

/// Run a WebAssembly module ad hoc in the deterministic sandbox.
///
/// The guest's stdout and stderr pass through; canon exits with the guest's
/// exit code, or 134 with a one-line message if it traps.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mount a host directory as a writable in-memory copy at the guest path
    /// GUEST (the host directory is never modified). Without `::GUEST` the
    /// guest path is HOST as given, as under `wasmtime run`. A guest path is
    /// `/` (the guest's whole file system: then the only `--dir`, with no
    /// `/out` or `/tmp` beside it), absolute (`/data`) or relative (`data`,
    /// placed at `/data`), and never has `.`, `..` or empty components, so
    /// `--dir ../data` needs one: `--dir ../data::/data`. Preopened in
    /// command-line order (fd 3, 4, ..., as under `wasmtime run`), before
    /// the sandbox's `/out` and `/tmp`.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Preopen no `/out` and no `/tmp` after the `--dir`s: the guest sees
    /// the `--dir`s and nothing else, as under `wasmtime run` (with no
    /// `--dir`, nothing is open past fd 2), and `/out` and `/tmp` are guest
    /// paths like any other. The job spec's `sandbox_dirs = false`; part of
    /// the job. Refused with `--out`.
    #[arg(long)]
    no_sandbox_dirs: bool,
    /// Set an environment variable for the guest (a later one of the same
    /// name replaces an earlier one).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The guest's stdin: the bytes of FILE, or with `-` all of canon's own
    /// stdin, read to its end before the guest starts. Either way the bytes
    /// are part of the job, so the outcome depends on them and on nothing
    /// else. Without this flag stdin is empty (the guest reads end-of-file
    /// at once) whatever canon's own stdin is, so a harness that keeps a pipe
    /// open never blocks canon.
    #[arg(long, value_name = "FILE|-")]
    stdin: Option<PathBuf>,
    /// Seed of the guest's random stream.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// `argv[0]` for the guest. Default: the module path as given (as
    /// `wasmtime run` does), which is part of the outcome: set it to get the
    /// same digest wherever the module lives.
    #[arg(long, value_name = "NAME")]
    argv0: Option<String>,
    /// Fuel budget (instructions).
    #[arg(long, default_value_t = Limits::EXEC_DEFAULT.fuel)]
    fuel: u64,
    /// Wall-clock time the guest sees at start, in seconds since the Unix epoch.
    #[arg(long, default_value_t = DEFAULT_EPOCH)]
    epoch: u64,
    /// Wall-clock safety timeout in seconds (past it: no result).
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// Write the final content of every writable mount here, each at its
    /// guest path (`/out/a` as `DIR/out/a`, a relative `data` as
    /// `DIR/data`, a mount at `/` as DIR itself). DIR must not exist or be
    /// empty, must not be a symbolic link, and must not be inside a `--dir`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Backend: cranelift, cranelift-baseline, pulley or winch (refused:
    /// it lacks relaxed SIMD).
    #[arg(long, value_name = "NAME", default_value_t = Backend::Cranelift)]
    backend: Backend,
    /// What to do with function imports canon does not provide: `refuse`
    /// (an error before anything runs) or `trap` (link each as a function
    /// that traps with `unknown_import` when called).
    #[arg(long, value_name = "refuse|trap", default_value_t = UnknownImports::Refuse)]
    unknown_imports: UnknownImports,
    /// Instantiate MODULE first and register it as NAME, so that later
    /// modules import its exports as `NAME::export` (repeatable; in order).
    #[arg(long = "preload", value_name = "NAME=MODULE")]
    preloads: Vec<String>,
    /// Show a spinner with the elapsed time on stderr while a module
    /// compiles (the default when stderr is a terminal).
    #[arg(long)]
    progress: bool,
    /// The module to run.
    module: PathBuf,
    /// Arguments for the guest (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

/// Resolves the arguments into a job, through the [`JobBuilder`].
fn job_from_args(args: &Args) -> Result<Job> {
    let name = args.module.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "module".into());
    let mut job = JobBuilder::new(SOURCE, name, &args.module)
        .argv0(args.argv0.clone().unwrap_or_else(|| args.module.display().to_string()))
        .args(args.args.iter().cloned())
        .seed(args.seed)
        .epoch(args.epoch)
        .limits(Limits { fuel: args.fuel, ..Limits::EXEC_DEFAULT })
        .timeout(Duration::from_secs(args.timeout))
        .unknown_imports(args.unknown_imports)
        .sandbox_dirs(!args.no_sandbox_dirs);
    for spec in &args.preloads {
        let Some((name, path)) = spec.split_once('=') else { bail!("--preload {spec}: expected NAME=MODULE") };
        job = job.preload(name, path, None);
    }
    for spec in &args.dirs {
        let (host, guest) = split_dir(spec)?;
        job = job.dir(host, guest, true);
    }
    let mut env: Vec<(&str, &str)> = Vec::new();
    for kv in &args.env {
        let Some((k, v)) = kv.split_once('=') else { bail!("--env {kv}: expected KEY=VALUE") };
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    }
    for (k, v) in env {
        job = job.env(k, v);
    }
    let stdin = match args.stdin.as_deref() {
        None => Stdin::Empty,
        Some(p) if p.as_os_str() == "-" => {
            // One byte past the cap, so that the builder can refuse it.
            let mut bytes = Vec::new();
            std::io::stdin().lock().take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes).context("--stdin -: cannot read canon's stdin")?;
            Stdin::Bytes(bytes)
        }
        Some(path) => Stdin::File(path.to_path_buf()),
    };
    job.stdin(stdin).build().map_err(|e| explain(e, args))
}

/// Splits `--dir HOST[::GUEST]`. Without `::GUEST` the guest path is HOST as
/// given, as `wasmtime run` has it, which canon accepts only if it is
/// already a guest path ([`check_guest_path`]: `/`, absolute or relative,
/// normalised): a guest path is data, never host path syntax, and `..` or
/// `.` must not pass from one to the other.
fn split_dir(spec: &str) -> Result<(&str, &str)> {
    let (host, guest) = spec.split_once("::").unwrap_or((spec, spec));
    if host.is_empty() || guest.is_empty() {
        bail!("--dir {spec}: expected HOST or HOST::GUEST");
    }
    if !spec.contains("::")
        && let Err(reason) = check_guest_path(host)
    {
        bail!("--dir {spec}: without ::GUEST the guest path is the host path as given, {host:?}, but {reason}; {}", suggest(host));
    }
    Ok((host, guest))
}

/// How to name a guest path for the host directory `host`.
fn suggest(host: &str) -> String {
    let leaf = Path::new(host).components().rev().find_map(|c| match c {
        Component::Normal(name) => name.to_str(),
        _ => None,
    });
    format!("name the guest path, e.g. --dir {host}::/{}", leaf.unwrap_or("data"))
}

/// Says a job error in the command line's terms: inputs are the `--dir`
/// values and preloads the `--preload` values, in the order given.
fn explain(err: JobError, args: &Args) -> anyhow::Error {
    let dir = |i: usize| args.dirs.get(i).map_or_else(|| format!("input {i}"), |d| format!("--dir {d}"));
    // A guest path the user did not write: say how to write one.
    let hint = |i: usize| match args.dirs.get(i) {
        Some(d) if !d.contains("::") => format!("; without ::GUEST the guest path is the host path as given: {}", suggest(d)),
        _ => String::new(),
    };
    let preload = |i: usize| args.preloads.get(i).map_or_else(|| format!("preload {i}"), |p| format!("--preload {p}"));
    match err {
        JobError::GuestPath { index, guest, reason, .. } => anyhow!("{}: guest path {guest:?}: {reason}{}", dir(index), hint(index)),
        JobError::Reserved { index, guest, reason, .. } => anyhow!("{}: guest path {guest:?}: {reason}{}", dir(index), hint(index)),
        JobError::Overlap { first, first_dir, second, second_dir, relation, .. } => {
            anyhow!("{} and {}: guest paths {first_dir:?} and {second_dir:?} {relation}", dir(first), dir(second))
        }
        JobError::InputMissing { index, path, source, .. } => anyhow!("{}: cannot read {}: {source}", dir(index), path.display()),
        JobError::InputLoad { index, source, .. } => anyhow!("{}: {source}", dir(index)),
        JobError::NotADirectory { index, path, .. } => anyhow!("{}: {} is not a directory", dir(index), path.display()),
        JobError::InputsTooLarge { limit, .. } => anyhow!("the --dir trees and stdin exceed the limit of {limit} bytes in total"),
        JobError::ArgsTooLarge { field, limit, .. } => {
            let field = match field {
                ArgsEnvField::Argv0 if args.argv0.is_some() => "--argv0".to_string(),
                ArgsEnvField::Argv0 => "the module path (argv[0])".to_string(),
                ArgsEnvField::Arg(i) => format!("guest argument {}", i + 1),
                ArgsEnvField::Env(name) => format!("--env {name}"),
            };
            anyhow!("{field} takes argv and environment past the limit of {limit} bytes (counting a NUL after each argument and each NAME=value)")
        }
        JobError::InvalidField { field, found, expected, .. } if field.starts_with("env.") => anyhow!("--env: `{field}` is {found}; expected {expected}"),
        JobError::Limit { field, found, expected, .. } => anyhow!("--{} {found}: expected {expected}", field.replace('_', "-")),
        JobError::ModuleRead { path, source, .. } => anyhow!("{}: cannot read module: {source}", path.display()),
        JobError::Module { path, source, .. } => anyhow!("{}: not a module canon can run: {source}", path.display()),
        JobError::Preload { index, message, .. } => anyhow!("{}: {message}", preload(index)),
        JobError::PreloadName { index, name, expected, .. } => anyhow!("{}: the name is {name:?}; expected {expected}", preload(index)),
        JobError::StdinRead { path, source, .. } => anyhow!("--stdin {}: cannot read: {source}", path.display()),
        other => anyhow!(other),
    }
}

/// Runs `canon exec`.
pub fn run(args: Args) -> Result<ExitCode> {
    if args.no_sandbox_dirs && args.out.is_some() {
        bail!(
            "--no-sandbox-dirs and --out cannot be used together: --no-sandbox-dirs leaves out /out, the guest's output directory that --out is there to collect; drop one of them"
        );
    }
    let job = job_from_args(&args)?;
    let mounted = job.mounts.iter().filter_map(|m| m.source.as_deref());
    let staged = args.out.as_deref().map(|out| super::outdir::Staged::new(out, mounted)).transpose()?;
    let sandbox = Sandbox::builder().backend(args.backend).build()?;
    super::progress::precompile(&sandbox, &job, super::progress::wanted(args.progress))?;
    let outcome = sandbox.run_with(&job, RunOptions { stream_stdio: true, ..RunOptions::default() })?;
    if let Some(staged) = staged {
        outcome.write_outputs(staged.path()).context("cannot write the output tree")?;
        staged.commit()?;
    }
    Ok(match outcome.termination {
        Termination::Exit(code) => ExitCode::from((code & 0xff) as u8),
        Termination::Trap(kind) => {
            eprintln!("canon: guest trapped: {kind}");
            ExitCode::from(EXIT_TRAP)
        }
    })
}
