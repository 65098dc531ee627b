//! The command line: clap parses what the user typed (one file per
//! subcommand, each with its `Args` and `run`), and every error surfaces here
//! as one line on stderr with its context, and exit status 125.
//!
//! Exit statuses: 0 success; 1 a negative answer (a guest that exited
//! non-zero or trapped under `run`, a receipt that fails verification, a tally
//! that is not accepted); 2 a usage error (from clap); 125 canon itself could
//! not do what was asked (bad job spec, unreadable file, ...). `canon exec`
//! passes the guest's exit code through and uses 134 for a trap.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `print!` to stdout that returns the I/O error instead of panicking, so a
/// closed pipe (`canon run --json | head`) ends canon quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `println!` to stdout that returns the I/O error instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod diff;
mod exec;
mod explore;
mod inspect;
mod keygen;
mod nodes;
mod outdir;
mod pool;
mod progress;
mod quorum;
mod replay;
mod run;
mod verify;

/// Exit status when canon itself fails (bad input, I/O error, ...).
pub const EXIT_ERROR: u8 = 125;

/// Run WebAssembly jobs deterministically, sign what they produced, and score
/// trust by quorum.
#[derive(Debug, Parser)]
#[command(name = "canon", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate and run a job; with --nodes, on several local nodes, signed and tallied.
    Run(run::Args),
    /// Run a module ad hoc, like `wasmtime run`, in the deterministic sandbox.
    Exec(exec::Args),
    /// Print a job as canon resolved it, and its job digest.
    Inspect(inspect::Args),
    /// Run a threaded job under many scheduler seeds and report its distinct results.
    Explore(explore::Args),
    /// Run a threaded job along a schedule `canon run --trace` recorded.
    Replay(replay::Args),
    /// Create a node key (OpenSSH ed25519) and print its node id.
    Keygen(keygen::Args),
    /// Verify receipts: signature, consistency, job and artifacts.
    Verify(verify::Args),
    /// Tally receipts for one job and show how far to trust each outcome.
    Quorum(quorum::Args),
    /// Show which parts of two receipts' outcomes differ.
    Diff(diff::Args),
    /// Run the coordinator: the pool's HTTP API, queue and store.
    Serve(pool::ServeArgs),
    /// Run a worker: lease runs from a coordinator, run them, sign receipts.
    Worker(pool::WorkerArgs),
    /// Submit a job to a coordinator.
    Submit(pool::SubmitArgs),
    /// Show a submitted job: its state, runs and tally.
    Status(pool::StatusArgs),
    /// List submitted jobs, newest first.
    List(pool::ListArgs),
    /// Cancel a submitted job.
    Cancel(pool::CancelArgs),
    /// Follow job and run state changes as they happen.
    Watch(pool::WatchArgs),
    /// Print a run's log, from an offset, or follow it.
    Logs(pool::LogsArgs),
    /// Download a job's accepted artifacts, checked against its receipts.
    Fetch(pool::FetchArgs),
}

/// Parses the command line, runs the subcommand and maps errors to exit statuses.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands validated by an earlier process are not validated again
    // (beside the compiled code they were cached with: docs/CACHE.md).
    if let Some(dir) = canon::sandbox::cache::default_cache_dir() {
        canon::job::remember_validations(Some(std::sync::Arc::new(canon::sandbox::cache::ValidationRecords::new(&dir))));
    }
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Explore(args) => explore::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Quorum(args) => quorum::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Serve(args) => pool::serve(args),
        Command::Worker(args) => pool::worker(args),
        Command::Submit(args) => pool::submit(args),
        Command::Status(args) => pool::status(args),
        Command::List(args) => pool::list(args),
        Command::Cancel(args) => pool::cancel(args),
        Command::Watch(args) => pool::watch(args),
        Command::Logs(args) => pool::logs(args),
        Command::Fetch(args) => pool::fetch(args),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): nothing more to say, as ripgrep does.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("canon: error: {}", describe(&err));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The error and its causes on one line, leaving out a cause whose text the
/// message already contains (library errors often print their source too).
fn describe(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
