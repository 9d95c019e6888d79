//! Where events and the model's changes go besides the journal: the live stream's clients
//! and the Prometheus endpoint.

pub mod conn;
pub mod metrics;
pub mod stream;
