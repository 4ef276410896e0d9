//! The `tde` binary as a library: the roles it can run, the operator client and the
//! benchmarks, so that end-to-end tests start exactly what `main` starts.

pub mod bench;
pub mod client;
pub mod output;
pub mod platform;
