//! canon runs WebAssembly jobs deterministically, signs what they produced and
//! scores trust by quorum.

pub mod digest;
pub mod encoding;
pub mod job;
pub mod node;
pub mod outcome;
pub mod quorum;
pub mod receipt;
pub mod tree;
pub mod sandbox;
