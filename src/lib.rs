//! canon runs WebAssembly (WASI preview 1) jobs in a sandbox where time,
//! randomness, the file system and scheduling are functions of the job
//! itself, so every honest node gets the same bytes out; each node signs a
//! receipt of what it produced, and a quorum of receipts says how far a
//! client may trust the result.
//!
//! The whole flow — job → run → receipt → tally — in a few lines:
//!
//! ```
//! use canon::job::Job;
//! use canon::node::NodeKey;
//! use canon::quorum::{TallyOptions, Verdict};
//! use canon::receipt::{Engine, RunFacts, RunId, Statement, Timestamp};
//! use canon::sandbox::Sandbox;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A job: a module with its arguments, environment, inputs and limits,
//! // named by its digest.
//! let job = Job::load(std::path::Path::new("fixtures/jobs/hello.toml"))?;
//!
//! // Three nodes run it; determinism makes their outcomes equal.
//! let sandbox = Sandbox::builder().cache_dir(None).build()?;
//! let mut receipts = Vec::new();
//! for seed in 1..=3u8 {
//!     let key = NodeKey::from_seed(&[seed; 32]);
//!     let outcome = sandbox.run(&job)?;
//!     let facts = RunFacts {
//!         job_digest: job.digest(),
//!         run_id: RunId::new_v4(),
//!         engine: Engine::current("cranelift"),
//!         outcome: outcome.summary(),
//!         started: Timestamp::now(),
//!         finished: Timestamp::now(),
//!     };
//!     // Each signs a receipt: an in-toto statement in a DSSE envelope.
//!     let envelope = Statement::new(key.node_id(), facts).sign(&key)?;
//!     receipts.push((format!("node-{seed}"), envelope.to_json()));
//! }
//!
//! // A client tallies the receipts: all three agree, so the outcome is accepted.
//! let tally = canon::quorum::tally(&receipts, &TallyOptions::default());
//! assert_eq!(tally.verdict, Verdict::Accepted);
//! assert_eq!(tally.groups[0].score, 1.0);
//! # Ok(()) }
//! ```
//!
//! Modules, from the bottom up; nothing depends on anything above it, and
//! the verifying side and the running side do not depend on each other:
//!
//! - shared: [`abi`] (versions and names every layer uses, the WASI
//!   surface), [`digest`], [`encoding`], [`tree`], [`outcome`], [`job`];
//! - verifying: [`node`], [`receipt`], [`quorum`] — all a client needs to
//!   check receipts and tally them, with no WebAssembly runtime; [`web`],
//!   the same checks in the browser, static reports and badges;
//! - running: [`instrument`] (load-time rewrites), and `sandbox` (on
//!   wasmtime; cargo feature `sandbox`, on by default).

pub mod abi;
pub mod digest;
pub mod encoding;
pub mod tree;

pub mod outcome;

pub mod job;

pub mod node;
pub mod receipt;

pub mod quorum;
pub mod web;

pub mod instrument;
#[cfg(feature = "sandbox")]
pub mod sandbox;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

#[cfg(feature = "pool")]
pub mod pool;
