//! Load-time instrumentation: passes that rewrite a job's module before it
//! is compiled, so that what it computes does not depend on the backend.

pub mod nan;
