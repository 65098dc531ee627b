//! The `canon` command line. See `canon --help` and the README.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
