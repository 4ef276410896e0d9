//! The plans service: each territory's accompaniment plan — its charter, three plan years,
//! actions, steering meetings, reviews and celebrations.
//!
//! - `domain`: the rules, without I/O.
//!
//! Storage, the gRPC API and events follow (see the open issue "The accompaniment plans
//! service").

pub mod domain;

/// The service's name: database, stream `TDE_PLANS` and subjects `tde.plans.>`.
pub const SERVICE: &str = "plans";
