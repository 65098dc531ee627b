//! canon's integration tests: one binary, one module per area. Each test gets
//! a scratch directory and drives the real `canon` binary or the library.

mod util;

mod backends;
mod cache;
mod cli;
mod determinism;
mod differential;
mod examples;
mod exec;
mod guests;
mod host_calls;
mod hostile;
mod instrument;
mod job_spec;
mod layering;
mod limits;
mod linking;
mod nan;
mod nodes;
mod pool;
mod pool_faults;
mod probes;
mod quorum;
mod receipts;
mod threads;
mod vectors;
mod wasi;
mod web;
