//! canon's own WASI preview 1 implementation: the same ABI wasi-common
//! served, over an in-memory file system, every call deterministic by
//! construction.

pub mod cost;
pub mod errno;
pub mod host;
pub mod link;
pub mod mem;
pub mod vfs;

pub use host::{HostConfig, StdioTap, Stop, WasiHost};
pub use link::{SharedHost, StoreData, add_to_linker, lock_host};
