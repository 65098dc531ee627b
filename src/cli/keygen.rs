//! `canon keygen`: create a node key and print its node id.
//!
//! The key is written as an unencrypted OpenSSH ed25519 private key, mode
//! 0600, never over an existing file. Only the public node id is printed
//! (on stdout, alone, so scripts can capture it); the key itself never
//! appears in any output.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use canon::node::NodeKey;

/// Create a node key (OpenSSH ed25519) and print its node id.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the private key. Refuses to overwrite an existing file.
    #[arg(long, short, default_value = "node.key")]
    out: PathBuf,
}

/// Runs `canon keygen`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = NodeKey::generate();
    key.save_new(&args.out).context("cannot save the new node key")?;
    outln!("{}", key.node_id())?;
    eprintln!("canon: wrote private key {} (keep it secret; `ssh-keygen -y -f {}` prints its public half)", args.out.display(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
