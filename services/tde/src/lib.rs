//! The `tde` binary as a library: the roles it can run and the operator client, so that
//! end-to-end tests and benchmarks start exactly what `main` starts.

pub mod client;
pub mod output;
pub mod platform;
