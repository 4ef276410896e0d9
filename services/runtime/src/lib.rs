//! The shared runtime of every tde service. Everything a service needs besides its own rules
//! lives here once: configuration, telemetry, database, gRPC server start-up and error
//! mapping, event bus, transactional outbox and inbox, and the test harness.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod cache;
pub mod config;
pub mod db;
pub mod dead_letter;
pub mod error;
pub mod format;
pub mod geography;
pub mod holdings;
pub mod idempotency;
pub mod inbox;
pub mod input;
pub mod migration;
pub mod observe;
pub mod operations;
pub mod outbox;
pub mod personal_data;
pub mod read_model;
pub mod server;
pub mod supervisor;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{ApiError, FieldViolation, IntoFieldViolations, InvalidFields, Violations};
pub use server::{ServiceContext, ServiceModule};
