//! The pool: a coordinator (`canon serve`), untrusted workers (`canon
//! worker`) and clients, over one HTTP JSON API (docs/POOL.md).
//!
//! - [`bundle`]: jobs in canonical form, their bytes as content-addressed blobs;
//! - [`api`]: the request and response bodies;
//! - [`store`]: jobs, runs, receipts and events behind one interface
//!   ([`store::Store`]), on SQLite; [`queue`]: the replication rules it
//!   applies; [`blobs`]: the blob store on disk;
//! - [`httpsig`]: RFC 9421 signatures on every worker request;
//!   [`submitter`]: signed jobs;
//! - [`server`]: the coordinator's HTTP API; [`client`]: the blocking
//!   client that workers and the client commands use; `worker` (with the
//!   `sandbox` feature): the node loop.

pub mod api;
pub mod blobs;
pub mod bundle;
pub mod client;
pub mod config;
pub mod httpsig;
pub mod queue;
pub mod server;
pub mod store;
pub mod submitter;
#[cfg(feature = "sandbox")]
pub mod worker;
