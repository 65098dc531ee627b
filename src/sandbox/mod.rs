//! The deterministic sandbox: engine configuration, module cache and canon's
//! own WASI preview 1 host over an in-memory file system.

pub mod abi;
