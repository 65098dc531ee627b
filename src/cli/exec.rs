//! `canon exec`: run a module ad hoc, like `wasmtime run`, in the
//! deterministic sandbox.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use canon::digest::Digest;
use canon::job::{ArgsEnvField, DEFAULT_EPOCH, Job, Limits, LinkedModule, Linking, Mount, Preload, Role, UnknownImports};
use canon::outcome::Termination;
use canon::sandbox::{Backend, RunOptions, Sandbox};
use canon::tree::Node;

/// Exit status of `canon exec` when the guest traps (as `wasmtime run`: 128 + SIGABRT).
pub const EXIT_TRAP: u8 = 134;

/// Largest input tree `canon exec` loads into memory per `--dir`.
const MAX_DIR_BYTES: u64 = 4 << 30;

/// Run a WebAssembly module ad hoc in the deterministic sandbox.
///
/// The guest's stdout and stderr pass through; canon exits with the guest's
/// exit code, or 134 with a one-line message if it traps.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mount a host directory as a writable in-memory copy (the host
    /// directory is never modified), at GUEST or at the host path as given.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Set an environment variable for the guest.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
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
    /// Write the final content of every writable mount here.
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

/// Resolves the arguments into a job.
fn job_from_args(args: &Args) -> Result<Job> {
    let bytes = std::fs::read(&args.module).with_context(|| format!("{}: cannot read module", args.module.display()))?;
    let sha256 = Digest::of(&bytes);
    let mut preloads = Vec::new();
    let mut linked: Vec<LinkedModule> = Vec::new();
    for spec in &args.preloads {
        let Some((name, path)) = spec.split_once('=') else { bail!("--preload {spec:?}: expected NAME=MODULE") };
        if !canon::job::is_preload_name(name) || linked.iter().any(|l| l.name == name) {
            bail!("--preload {spec:?}: the name must be unique and {}", canon::job::PRELOAD_NAME_RULE);
        }
        let path = PathBuf::from(path);
        let bytes = std::fs::read(&path).with_context(|| format!("--preload {spec:?}: cannot read {}", path.display()))?;
        let sha = Digest::of(&bytes);
        let linking = Linking { unknown_imports: args.unknown_imports, preloads: &linked };
        let exports = canon::job::validate_module_cached_for(&bytes, &sha, Role::Library, &linking)
            .with_context(|| format!("--preload {spec:?}: not a module canon can link"))?;
        linked.push(LinkedModule { name: name.to_string(), sha256: sha, exports });
        preloads.push(Preload { name: name.to_string(), module: Arc::new(bytes), module_sha256: sha, module_path: path });
    }
    let linking = Linking { unknown_imports: args.unknown_imports, preloads: &linked };
    canon::job::validate_module_cached_for(&bytes, &sha256, Role::Command, &linking)
        .with_context(|| format!("{}: not a module canon can run", args.module.display()))?;
    let mut mounts: Vec<Mount> = Vec::new();
    for spec in &args.dirs {
        let (host, guest) = match spec.split_once("::") {
            Some((h, g)) => (h, g),
            None => (spec.as_str(), spec.as_str()),
        };
        if guest.is_empty() || host.is_empty() {
            bail!("--dir {spec:?}: expected HOST or HOST::GUEST");
        }
        if mounts.iter().any(|m| m.guest == guest) {
            bail!("--dir {spec:?}: guest path {guest:?} is mounted twice");
        }
        let host_path = PathBuf::from(host);
        let tree = match Node::load(&host_path, MAX_DIR_BYTES).with_context(|| format!("--dir {spec:?}"))? {
            Node::Dir(t) => t,
            _ => bail!("--dir {spec:?}: {host} is not a directory"),
        };
        mounts.push(Mount::new(guest.to_string(), true, tree, Some(host_path)));
    }
    mounts.sort_by(|a, b| a.guest.cmp(&b.guest));
    let mut env = Vec::new();
    for kv in &args.env {
        let Some((k, v)) = kv.split_once('=') else { bail!("--env {kv:?}: expected KEY=VALUE") };
        if k.is_empty() {
            bail!("--env {kv:?}: the name is empty");
        }
        env.retain(|(name, _): &(String, String)| name != k);
        env.push((k.to_string(), v.to_string()));
    }
    env.sort();
    let argv0 = args.argv0.clone().unwrap_or_else(|| args.module.display().to_string());
    if let Some(field) = canon::job::args_env_overflow(&argv0, &args.args, env.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        let field = match field {
            ArgsEnvField::Argv0 if args.argv0.is_some() => "--argv0".to_string(),
            ArgsEnvField::Argv0 => "the module path (argv[0])".to_string(),
            ArgsEnvField::Arg(i) => format!("guest argument {}", i + 1),
            ArgsEnvField::Env(name) => format!("--env {name}"),
        };
        bail!(
            "{field} takes argv and environment past the limit of {} bytes (counting a NUL after each argument and each NAME=value)",
            canon::job::MAX_ARGS_ENV_BYTES
        );
    }
    let mut stdin = Vec::new();
    if !std::io::stdin().is_terminal() {
        std::io::stdin().read_to_end(&mut stdin).context("cannot read stdin")?;
    }
    let name = args.module.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "module".into());
    Ok(Job {
        name,
        module_sha256: sha256,
        module: Arc::new(bytes),
        module_path: args.module.clone(),
        argv0,
        args: args.args.clone(),
        env,
        stdin,
        mounts,
        seed: args.seed,
        epoch: args.epoch,
        limits: Limits { fuel: args.fuel, ..Limits::EXEC_DEFAULT },
        timeout: Duration::from_secs(args.timeout.max(1)),
        commit: None,
        unknown_imports: args.unknown_imports,
        preloads,
    })
}

/// Runs `canon exec`.
pub fn run(args: Args) -> Result<ExitCode> {
    let job = job_from_args(&args)?;
    let staged = args.out.as_deref().map(super::outdir::Staged::new).transpose()?;
    let sandbox = Sandbox::builder().backend(args.backend).build()?;
    super::progress::precompile(&sandbox, &job, super::progress::wanted(args.progress))?;
    let outcome = sandbox.run_with(&job, RunOptions { stream_stdio: true })?;
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
